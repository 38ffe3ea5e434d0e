"""A Jepsen-style set checker: the verdict of a chaos test (SPEC 9).

Clients keep a log of what they sent and what the server acknowledged; after the faults, the
checker compares that log with the database's final state and reports three kinds of anomaly:

- **lost**: acknowledged, but absent from the final state, or stored with less text than was
  acknowledged as durable (G2), or a stream that skipped text (G6);
- **duplicated**: stored more than once (G1), text stored or delivered twice (G6);
- **unexpected**: present although nobody wrote it: an id no client sent, a value other than the
  one sent, text the upstream never produced, a write that the server definitely refused (G4),
  or an item whose deletion was acknowledged (G5: delete wins).

A write whose answer never came (the connection died first) is *indeterminate*: it may be stored
or not, but at most once and only with the value that was sent.

Two kinds of item are logged. A plain item (a user message) must be stored exactly as sent. A
*text* item (an assistant reply) grows while it streams: the stored text must start with what
was acknowledged as durable (a checkpoint the client saw stored) and be a prefix of what the
upstream sent; a ``complete`` reply must equal it. ``check_stream`` judges what one client was
shown: the ``delta`` events of every connection it used for one reply, joined by offset.

    history = History()
    history.ack(user_id, "hello")
    history.text(reply_id, sent=upstream_text, durable=checkpoint_seen, complete=False)
    verdict = history.check(final_rows) + check_stream(reply_id, deltas, upstream_text)
    assert verdict.ok, verdict
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

ATTEMPTED, ACKNOWLEDGED, REFUSED, DELETED = "attempted", "acknowledged", "refused", "deleted"
_RANK = {ATTEMPTED: 0, REFUSED: 1, ACKNOWLEDGED: 1, DELETED: 2}


@dataclass(repr=False)
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    checked: int = 0  # items (or streams) judged
    indeterminate: int = 0  # attempted, answer unknown, absent from the final state

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(
            self.lost + other.lost,
            self.duplicated + other.duplicated,
            self.unexpected + other.unexpected,
            self.checked + other.checked,
            self.indeterminate + other.indeterminate,
        )

    def __repr__(self) -> str:
        head = (
            f"{self.checked} checked, {self.indeterminate} indeterminate: "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated, "
            f"{len(self.unexpected)} unexpected"
        )
        lines = [head]
        for name in ("lost", "duplicated", "unexpected"):
            found: list[str] = getattr(self, name)
            lines += [f"  {name}: {item}" for item in found[:10]]
            if len(found) > 10:
                lines.append(f"  {name}: ... and {len(found) - 10} more")
        return "\n".join(lines)

    __str__ = __repr__


@dataclass
class _Item:
    value: Any
    state: str
    is_text: bool = False
    durable: str = ""
    complete: bool = False


class History:
    """The clients' log of operations, keyed by the id the client chose (SPEC 1)."""

    def __init__(self) -> None:
        self.items: dict[Hashable, _Item] = {}
        self._seen = Verdict()  # anomalies seen before the final read

    def attempt(self, key: Hashable, value: Any) -> None:
        """Sent; the answer is not known (yet)."""
        self._log(key, value, ATTEMPTED)

    def ack(self, key: Hashable, value: Any) -> None:
        """The server said it is stored."""
        self._log(key, value, ACKNOWLEDGED)

    def refuse(self, key: Hashable, value: Any) -> None:
        """The server said, before storing anything, that it will not store it (a 4xx)."""
        self._log(key, value, REFUSED)

    def delete(self, key: Hashable) -> None:
        """The server acknowledged deleting it (with its session): it must be gone."""
        item = self.items.get(key)
        if item is None:
            raise ValueError(f"{key}: deleted, but never logged")
        item.state = DELETED

    def text(
        self,
        key: Hashable,
        *,
        sent: str,
        durable: str = "",
        complete: bool = False,
        acknowledged: bool = True,
    ) -> None:
        """A streamed reply: ``sent`` is the upstream's whole text, ``durable`` the longest text
        seen stored before the faults, ``complete`` whether it must be stored whole."""
        if not sent.startswith(durable):
            bucket, what = _diverged(durable, sent)
            getattr(self._seen, bucket).append(f"{key}: while streaming, {what}")
            durable = sent[: len(os.path.commonprefix([durable, sent]))]
        item = self._log(key, sent, ACKNOWLEDGED if acknowledged else ATTEMPTED)
        item.is_text = True
        if len(durable) > len(item.durable):
            item.durable = durable
        item.complete = item.complete or complete

    def _log(self, key: Hashable, value: Any, state: str) -> _Item:
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = _Item(value, state)
            return item
        if item.value != value:
            raise ValueError(f"{key}: logged with two values, {item.value!r} and {value!r}")
        if {item.state, state} == {ACKNOWLEDGED, REFUSED}:
            raise ValueError(f"{key}: both acknowledged and refused")
        if item.state == DELETED:
            raise ValueError(f"{key}: logged again after its deletion")
        if _RANK[state] > _RANK[item.state]:
            item.state = state
        return item

    def check(self, final: Iterable[tuple[Hashable, Any]]) -> Verdict:
        """Judge the final state: ``(key, value)`` pairs as read from the database."""
        rows = list(final)
        verdict = self._seen + Verdict(checked=len(self.items))
        count = Counter(key for key, _ in rows)
        stored: dict[Hashable, Any] = {}
        for key, value in rows:
            stored.setdefault(key, value)
        verdict.duplicated += [f"{key}: stored {n} times" for key, n in count.items() if n > 1]
        verdict.unexpected += [
            f"{key}: stored, but no client ever sent it ({_short(stored[key])})"
            for key in stored
            if key not in self.items
        ]
        for key, item in self.items.items():
            if key not in stored:
                if item.state == ACKNOWLEDGED:
                    verdict.lost.append(f"{key}: acknowledged, but not stored")
                elif item.state == ATTEMPTED:
                    verdict.indeterminate += 1
                continue
            if item.state == REFUSED:
                verdict.unexpected.append(f"{key}: refused, but stored anyway")
            elif item.state == DELETED:
                verdict.unexpected.append(f"{key}: deleted, but still stored")
            elif item.is_text:
                _judge_text(verdict, key, item, stored[key])
            elif stored[key] != item.value:
                verdict.unexpected.append(
                    f"{key}: stored {_short(stored[key])}, sent {_short(item.value)}"
                )
        return verdict


def _judge_text(verdict: Verdict, key: Hashable, item: _Item, value: Any) -> None:
    sent: str = item.value
    if not isinstance(value, str):
        verdict.unexpected.append(f"{key}: stored a non-text reply {_short(value)}")
        return
    if not value.startswith(item.durable):
        common = len(os.path.commonprefix([value, item.durable]))
        verdict.lost.append(
            f"{key}: {len(item.durable)} chars were durable, the stored text keeps {common}"
        )
    if not sent.startswith(value):
        verdict_list, what = _diverged(value, sent)
        getattr(verdict, verdict_list).append(f"{key}: {what}")
    elif item.complete and value != sent:
        verdict.lost.append(f"{key}: complete, but stores {len(value)} of {len(sent)} chars")


def _diverged(value: str, sent: str) -> tuple[str, str]:
    """Text that is not a prefix of what the upstream sent: repeated text, or foreign text."""
    at = len(os.path.commonprefix([value, sent]))
    rest = value[at:]
    # Repeated: what follows the common part is text that came before it (a retried upstream
    # request or a replayed chunk), e.g. "Echo: hiEcho: hi".
    shortest = min(4, len(rest))
    if any(rest[:n] == value[at - n : at] for n in range(shortest, min(len(rest), at) + 1)):
        return "duplicated", f"text repeats at offset {at}: ...{value[max(0, at - 20) : at + 20]!r}"
    return "unexpected", f"text diverges from the upstream's at offset {at}: {_short(rest)}"


def check_stream(
    key: Hashable,
    deltas: Iterable[tuple[int, str]],
    sent: str,
    *,
    complete: bool = True,
) -> Verdict:
    """What one client was shown of one reply, across all its connections (G6).

    ``deltas`` are ``(offset, text)`` in the order received, where ``offset`` comes from the
    event id ``<reply_id>:<offset>`` (characters up to and including the text). Text must follow
    on without a gap or an overlap and match the upstream's; ``complete`` streams must cover it
    all. A client that drops partial events and resumes from its last id meets these rules.
    """
    verdict = Verdict(checked=1)
    covered = 0
    for end, text in deltas:
        start = end - len(text)
        if start > covered:
            verdict.lost.append(f"{key}: the stream skipped chars {covered}..{start}")
        elif start < covered:
            verdict.duplicated.append(
                f"{key}: chars {start}..{min(end, covered)} were delivered twice"
            )
        if sent[start:end] != text:
            verdict.unexpected.append(
                f"{key}: chars {start}..{end} are {_short(text)}, the upstream sent "
                f"{_short(sent[start:end])}"
            )
        covered = max(covered, end)
    if complete and covered < len(sent):
        verdict.lost.append(f"{key}: the stream ended at char {covered} of {len(sent)}")
    return verdict


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
