"""chatkeep's benchmarks: ``python -m bench`` runs every module here; see bench/README.md."""

import sys
from pathlib import Path

# tests/support holds the real-server, account and PostgreSQL helpers the test suite uses; the
# benchmarks use the same ones (``import support.server``), so tests/ goes on the path first.
_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
