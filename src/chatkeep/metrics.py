"""Prometheus metrics (G10). With several worker processes, ``chatkeep serve`` sets
PROMETHEUS_MULTIPROC_DIR before they start and ``/metrics`` merges their files."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WRITES = Counter(
    "chatkeep_writes",
    "Idempotent writes by outcome: created, replayed (same id, same payload), conflict.",
    ["resource", "outcome"],
)
SAVE_FAILURES = Counter("chatkeep_save_failures", "Writes that failed with a server error.")
DB_RETRIES = Counter("chatkeep_db_retries", "Transactions run again after a transient error.")
REQUEST_SECONDS = Histogram(
    "chatkeep_request_seconds",
    "Request latency by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GENERATIONS = Counter("chatkeep_generations", "Finished generations by outcome.", ["outcome"])
TTFT_SECONDS = Histogram(
    "chatkeep_time_to_first_token_seconds",
    "From the turn request to the first token relayed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def resource_of(path: str) -> str:
    """session, message or turn: what a write under ``path`` creates."""
    if path.endswith("/turns"):
        return "turn"
    return "message" if "/messages" in path else "session"
