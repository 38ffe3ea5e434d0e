"""G8 from the outside: Schemathesis reads the live server's OpenAPI document and sends, for every
operation, requests that follow it (positive) and requests that break it (negative), as alice.
No answer may be a server error, and an answer whose status the document describes must match
the schema given for it (SPEC 2, G8; SPEC 3).

Each operation that names a session runs twice: with ids Schemathesis makes up (mostly 404s) and
with alice's real session and message, so that generated bodies also reach the store.

A stateful run follows OpenAPI links added to the live document (create → read → append →
turn → stream → delete): sequences of generated calls where each uses the ids the one before
created, with the same checks. ``make test`` runs a few hundred cases per database; the
chaos-marked variants (``make chaos``) a few thousand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
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
    operation: Any,
    mode: GenerationMode,
    target: Target,
    path_parameters: dict[str, str] | None,
    examples: int = EXAMPLES,
) -> str | None:
    """Run one operation in one mode; Schemathesis's report of the failure it found, or None."""
    http = requests.Session()

    @settings(
        max_examples=examples,
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
    every_operation(target, EXAMPLES)


@pytest.mark.chaos
def test_every_operation_answers_without_server_errors_at_length(target: Target) -> None:
    every_operation(target, 10 if os.environ.get("CHATKEEP_CHAOS_SHORT") else 30)


def every_operation(target: Target, examples: int) -> None:
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
                found = fuzz(operation, mode, target, path_parameters, examples)
                if found is not None:
                    which = "alice's ids" if path_parameters else "generated ids"
                    failures[f"{operation.label} ({mode.value}, {which})"] = found
    assert ran > 40, "the OpenAPI document lost its operations"
    assert not failures, "\n\n".join(f"== {label}\n{report}" for label, report in failures.items())


# ---- stateful: follow the links ---------------------------------------------------------------

SESSION = "/api/sessions/{session_id}"
MESSAGE = "/api/sessions/{session_id}/messages/{message_id}"
_FROM_SESSION = {"session_id": "$request.path.session_id"}
_FROM_MESSAGE = {"session_id": "$request.path.session_id", "message_id": "$request.path.message_id"}
# (source operation, its statuses) -> [(target operation, parameters)]
LINKS: dict[tuple[str, str], list[tuple[str, str, dict[str, str]]]] = {
    ("put", SESSION): [
        ("get", SESSION, _FROM_SESSION),
        ("patch", SESSION, _FROM_SESSION),
        ("put", MESSAGE, _FROM_SESSION),
        ("post", SESSION + "/messages:batch", _FROM_SESSION),
        ("post", SESSION + "/turns", _FROM_SESSION),
        ("get", SESSION + "/messages", _FROM_SESSION),
        ("delete", SESSION, _FROM_SESSION),
    ],
    ("put", MESSAGE): [
        ("get", MESSAGE + "/stream", _FROM_MESSAGE),
        ("post", MESSAGE + "/cancel", _FROM_MESSAGE),
        ("post", SESSION + "/turns", _FROM_SESSION),
        ("get", SESSION, _FROM_SESSION),
        ("delete", SESSION, _FROM_SESSION),
    ],
    ("post", SESSION + "/turns"): [
        ("get", SESSION + "/messages", _FROM_SESSION),
        ("delete", SESSION, _FROM_SESSION),
    ],
}


def with_links(document: dict[str, Any]) -> dict[str, Any]:
    """The live document with OpenAPI links between the operations that share ids."""
    paths = document["paths"]
    for (method, path), targets in LINKS.items():
        responses = paths[path][method]["responses"]
        for status in ("200", "201"):
            response = responses.setdefault(status, {"description": "stored"})
            response["links"] = {
                f"{t_method}_{t_path}".replace("/", "_").replace("{", "").replace("}", ""): {
                    "operationId": paths[t_path][t_method]["operationId"],
                    "parameters": parameters,
                }
                for t_method, t_path, parameters in targets
            }
    return document


def stateful(target: Target, examples: int) -> None:
    document = requests.get(f"{target.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(with_links(document))
    schema.config.phases.stateful.inference.algorithms = []  # only the links above
    http = requests.Session()
    failures: list[str] = []
    steps: list[str] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": target.url, "headers": target.headers, "session": http}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            # Kept, not raised: Hypothesis would replay the sequence to shrink it, and the
            # server, which keeps its state, cannot give the same answers twice.
            steps.append(f"{case.method} {case.path}")
            try:
                case.validate_response(response, checks=CHECKS, headers=target.headers)
            except FailureGroup as found:
                failures.append(str(found))

    try:
        Workflow.run(
            settings=settings(
                max_examples=examples,
                stateful_step_count=6,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    except FlakyStrategyDefinition:
        # The links draw from what the server answered, which differs between runs; Hypothesis
        # stops generating then. Every step that ran was checked.
        pass
    finally:
        http.close()
    assert not failures, "\n\n".join(failures[:5])
    followed = {step for step in steps if "{" not in step}
    assert len(steps) >= min(examples, 20), f"only {len(steps)} linked calls ran"
    assert any("/turns" in step for step in steps), sorted(followed)[:20]


def test_linked_sequences_answer_without_server_errors(target: Target) -> None:
    stateful(target, 25)


@pytest.mark.chaos
def test_linked_sequences_answer_without_server_errors_at_length(target: Target) -> None:
    stateful(target, 40 if os.environ.get("CHATKEEP_CHAOS_SHORT") else 150)
