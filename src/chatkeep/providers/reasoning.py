"""``ThinkSplitter``: a reply's leading ``<think>…</think>`` block is the model's reasoning
(DeepSeek R1, QwQ and Qwen3 on servers without a reasoning parser), not its answer (issue 8,
item 4). Tags may be split across chunks, so the splitter holds back a possible partial tag.

Only a block at the very start counts: a reply that merely mentions ``<think>`` later on keeps
it as text.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """How many trailing characters of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    def __init__(self) -> None:
        self._mode = "start"  # start -> think -> after -> text, or start -> text
        self._held = ""

    def feed(self, piece: str) -> tuple[str, str]:
        """(reasoning, text) of ``piece``, given everything fed before it."""
        if self._mode == "text":  # the common case, once the answer has begun
            return "", piece
        buf, self._held = self._held + piece, ""
        if self._mode == "start":
            stripped = buf.lstrip()
            if not stripped or (OPEN.startswith(stripped) and stripped != OPEN):
                self._held = buf  # whitespace, or a tag that may still turn into <think>
                return "", ""
            if not stripped.startswith(OPEN):
                self._mode = "text"
                return "", buf
            self._mode, buf = "think", stripped[len(OPEN) :]
        if self._mode == "think":
            end = buf.find(CLOSE)
            if end < 0:
                keep = _partial_suffix(buf, CLOSE)
                self._held = buf[len(buf) - keep :] if keep else ""
                return buf[: len(buf) - keep], ""
            reasoning, buf = buf[:end], buf[end + len(CLOSE) :]
            self._mode = "after"
            text = self._after(buf)
            return reasoning, text
        return "", self._after(buf)

    def _after(self, buf: str) -> str:
        # The blank line models put between the block and the answer is not part of the answer.
        text = buf.lstrip()
        if text:
            self._mode = "text"
        return text

    def flush(self) -> tuple[str, str]:
        """What is held back when the reply ends: an unfinished tag is what it is."""
        held, self._held = self._held, ""
        if self._mode == "think":
            return held, ""
        return "", held if self._mode == "start" else ""
