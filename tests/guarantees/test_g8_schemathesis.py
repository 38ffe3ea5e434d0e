"""G8 from the outside: Schemathesis reads the live server's OpenAPI document and sends, for every
operation, requests that follow it (positive) and requests that break it (negative), as alice.
No answer may be a server error, and an answer whose status the document describes must match
the schema given for it (SPEC 2, G8; SPEC 3).

Each operation that names a session runs twice: with ids Schemathesis makes up (mostly 404s) and
with alice's real session and message, so that generated bodies also reach the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from chatkeep.settings import Settings
from support.factories import make_accounts_sync, new_id
from support.server import ServerThread

EXAMPLES = 8
CHECKS = [not_a_server_error, response_schema_conformance]
# Deleting alice's real session or key would leave nothing for the operations after it.
NO_REAL_IDS = {"DELETE /api/sessions/{session_id}", "DELETE /api/auth/keys/{prefix}"}


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    real_ids: dict[str, str]


@pytest.fixture
def target(settings: Settings) -> Iterator[Target]:
    alice = make_accounts_sync(settings.resolved_database_url, "alice")["alice"]
    server = ServerThread(settings).start()
    try:
        sid, mid = new_id(), new_id()
        with requests.Session() as http:
            http.headers.update(alice.headers)
            created = http.put(f"{server.url}/api/sessions/{sid}", json={"title": "fuzzed"})
            message = {"role": "assistant", "content": "hello", "model": "demo"}
            appended = http.put(f"{server.url}/api/sessions/{sid}/messages/{mid}", json=message)
            assert (created.status_code, appended.status_code) == (201, 201)
        yield Target(server.url, alice.headers, {"session_id": sid, "message_id": mid})
    finally:
        server.stop()


def fuzz(
    operation: Any, mode: GenerationMode, target: Target, path_parameters: dict[str, str] | None
) -> str | None:
    """Run one operation in one mode; Schemathesis's report of the failure it found, or None."""
    http = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        response = case.call(base_url=target.url, headers=target.headers, session=http, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=target.headers)

    try:
        run()
    except FailureGroup as found:
        return str(found)
    except Unsatisfiable:
        # A parameter that takes any string cannot be made invalid (DELETE /api/auth/keys/{prefix}).
        if mode is GenerationMode.POSITIVE:
            raise
    finally:
        http.close()
    return None


def test_every_operation_answers_without_server_errors(target: Target) -> None:
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json")
    failures: dict[str, str] = {}
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        variants: list[dict[str, str] | None] = [None]
        if "session_id" in names and operation.label not in NO_REAL_IDS:
            variants.append({k: v for k, v in target.real_ids.items() if k in names})
        modes = [GenerationMode.POSITIVE]
        if operation.body or any(operation.iter_parameters()):
            modes.append(GenerationMode.NEGATIVE)  # else there is nothing to get wrong
        for mode in modes:
            for path_parameters in variants:
                ran += 1
                found = fuzz(operation, mode, target, path_parameters)
                if found is not None:
                    which = "alice's ids" if path_parameters else "generated ids"
                    failures[f"{operation.label} ({mode.value}, {which})"] = found
    assert ran > 40, "the OpenAPI document lost its operations"
    assert not failures, "\n\n".join(f"== {label}\n{report}" for label, report in failures.items())
