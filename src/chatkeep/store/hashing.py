"""Request fingerprints: the same id with another payload is a conflict, not a replay (G1)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
