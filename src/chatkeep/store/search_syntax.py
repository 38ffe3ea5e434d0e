"""The search query language, parsed once in Python so that both databases see the same query.

Syntax (PostgreSQL's ``websearch_to_tsquery``): every word must match, ``"a phrase"`` matches its
words in order, ``-word`` and ``-"a phrase"`` exclude, ``or`` between two terms matches either.
Anything else (colons, brackets, ``NEAR``, ``*``, stray quotes) is not syntax but a separator, so
user input can never be FTS5 or tsquery syntax (G8). The parsed query is written back out as an
FTS5 MATCH expression of quoted strings (here), or as tsquery functions of bound words
(``store/search.py``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chatkeep.problems import InvalidQuery

MAX_TERMS = 32
# Words as FTS5's unicode61 and search_fold() on PostgreSQL split them: letters and digits, with
# any combining accents that follow them (decomposed text).
_WORD = re.compile(r"[^\W_][^\W_\u0300-\u036f]*(?:[\u0300-\u036f]+[^\W_]*)*")
_PIECE = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')


def fold(word: str) -> str:
    """Case and accents ignored: what a word is compared as (for highlights)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True)
class Term:
    """One word, or a phrase of several (``"a b"``, or ``e-mail`` written unquoted)."""

    words: tuple[str, ...]

    def fts5(self) -> str:
        return '"' + " ".join(self.words).replace('"', '""') + '"'


@dataclass(frozen=True)
class Query:
    groups: tuple[tuple[Term, ...], ...]  # every group must match; one term of a group suffices
    excluded: tuple[Term, ...]

    def fts5(self) -> str:
        match = " AND ".join("(" + " OR ".join(t.fts5() for t in g) + ")" for g in self.groups)
        return "".join([f"({match})", *(f" NOT {t.fts5()}" for t in self.excluded)])

    def folded_words(self) -> frozenset[str]:
        """The words a hit is highlighted at."""
        return frozenset(fold(w) for g in self.groups for t in g for w in t.words)


def parse(q: str) -> Query:
    """``q`` as a Query; ``invalid_query`` when it holds no word to look for."""
    groups: list[list[Term]] = []
    excluded: list[Term] = []
    join_next = False
    for match in _PIECE.finditer(q):
        negated = bool(match[1] or match[3])
        raw = match[2] if match[2] is not None else match[4]
        if match[2] is None and not negated and raw.lower() == "or":
            join_next = bool(groups)
            continue
        words = tuple(_WORD.findall(raw))
        if not words:
            continue
        term = Term(words)
        if negated:
            excluded.append(term)
        elif join_next:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    if not groups:
        raise InvalidQuery("the query has no word to search for", field="q")
    if sum(len(g) for g in groups) + len(excluded) > MAX_TERMS:
        raise InvalidQuery(f"at most {MAX_TERMS} words and phrases", field="q")
    return Query(tuple(tuple(g) for g in groups), tuple(excluded))


SNIPPET_CHARS = 200
_LEAD = 60


def snippet(text: str, words: frozenset[str]) -> tuple[str, list[tuple[int, int]]]:
    """Plain text around the first matching word, with ``[start, end)`` offsets of each word of
    the query in it. Whitespace is collapsed; a cut is marked with an ellipsis."""
    text = " ".join(text.split())
    start = 0
    for found in _WORD.finditer(text):
        if fold(found[0]) in words:
            start = found.start()
            break
    if start > _LEAD:
        cut = text.rfind(" ", 0, start - _LEAD)
        begin = cut + 1 if cut >= 0 and start - cut < _LEAD * 2 else start - _LEAD
    else:
        begin = 0
    window = text[begin : begin + SNIPPET_CHARS]
    prefix = "…" if begin > 0 else ""
    suffix = "…" if begin + SNIPPET_CHARS < len(text) else ""
    shown = prefix + window + suffix
    spans = [
        (m.start() + len(prefix), m.end() + len(prefix))
        for m in _WORD.finditer(window)
        if fold(m[0]) in words
    ]
    return shown, spans
