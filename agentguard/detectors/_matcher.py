"""Multi-literal search: every occurrence of a fixed set of anchor strings, in linear time.

The scanner finds candidate positions with one pass of this matcher and verifies each candidate
with a small bounded regex, so the cost over attacker text is one linear pass plus bounded work
per candidate. ``ahocorasick_rs`` (an Aho-Corasick automaton in Rust) is used when installed; the
fallback is one stdlib regex built as a trie of the literals, which has no quantifiers at all and
so cannot backtrack. Both report leftmost-longest, non-overlapping matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["LiteralMatcher", "native_available"]

_CHUNK = 32 * 1024
_SMALL = 8 * 1024

_ac: Any
try:  # pragma: no cover - exercised through whichever engine is installed
    import ahocorasick_rs as _ac
except Exception:  # pragma: no cover
    _ac = None


def native_available() -> bool:
    """Whether the compiled Aho-Corasick engine is installed."""
    return _ac is not None


def _trie_pattern(words: Sequence[str]) -> str:
    """A regex alternation factored as a trie: greedy optional suffixes give leftmost-longest."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        terminal = "" in node
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if terminal:
            return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
        return body

    return build(trie)


class LiteralMatcher:
    """Finds every anchor of a fixed list in a string: ``(anchor index, start, end)`` tuples."""

    __slots__ = ("_automaton", "_bytes_automaton", "_index", "_longest", "_regex", "engine",
                 "words")

    def __init__(self, words: Sequence[str], *, engine: str = "auto") -> None:
        unique = list(dict.fromkeys(w for w in words if w))
        if not unique:
            raise ValueError("LiteralMatcher needs at least one non-empty anchor")
        self.words: tuple[str, ...] = tuple(unique)
        self._index = {word: i for i, word in enumerate(self.words)}
        self._longest = max(len(w) for w in self.words)
        self._automaton: Any = None
        self._bytes_automaton: Any = None
        self._regex: re.Pattern[str] | None = None
        if engine not in ("auto", "native", "regex"):
            raise ValueError(f"unknown matcher engine {engine!r}")
        if engine != "regex" and _ac is not None:
            self._automaton = _ac.AhoCorasick(
                list(self.words), matchkind=_ac.MatchKind.LeftmostLongest
            )
            # Short ASCII texts go through the bytes automaton on a bytearray: the str automaton
            # releases the GIL around each search, and on a busy process getting it back costs
            # more than searching a few hundred bytes. A mutable haystack is searched holding it.
            bytes_automaton = getattr(_ac, "BytesAhoCorasick", None)
            if bytes_automaton is not None:
                self._bytes_automaton = bytes_automaton(
                    [word.encode("utf-8") for word in self.words],
                    matchkind=_ac.MatchKind.LeftmostLongest,
                )
            self.engine = "native"
        elif engine == "native":
            raise RuntimeError("ahocorasick_rs is not installed")
        else:
            self._regex = re.compile(_trie_pattern(self.words))
            self.engine = "regex"

    def find(self, text: str, limit: int | None = None) -> list[tuple[int, int, int]]:
        """Non-overlapping leftmost-longest matches in order of position; with ``limit``, stops
        once at least that many were found (a text dense with anchors costs no more than that).
        """
        if limit is None or len(text) <= _CHUNK:
            return self._find(text)[:limit] if limit is not None else self._find(text)
        out: list[tuple[int, int, int]] = []
        overlap = self._longest
        for chunk_start in range(0, len(text), _CHUNK):
            chunk_end = chunk_start + _CHUNK
            # Read a little past the chunk so an anchor crossing its end is still seen; matches
            # starting past the end belong to the next chunk.
            for index, start, end in self._find(text[chunk_start:chunk_end + overlap]):
                if start >= _CHUNK:
                    break
                if out and chunk_start + start < out[-1][2]:
                    continue
                out.append((index, chunk_start + start, chunk_start + end))
            if len(out) >= limit:
                return out[:limit]
        return out

    def _find(self, text: str) -> list[tuple[int, int, int]]:
        if self._automaton is not None:
            found: list[tuple[int, int, int]]
            if len(text) <= _SMALL and self._bytes_automaton is not None and text.isascii():
                # ASCII: byte offsets are character offsets.
                found = self._bytes_automaton.find_matches_as_indexes(
                    bytearray(text.encode("ascii")))
            else:
                found = self._automaton.find_matches_as_indexes(text)
            return found
        assert self._regex is not None
        index = self._index
        return [(index[m.group()], m.start(), m.end()) for m in self._regex.finditer(text)]

    def search(self, text: str) -> bool:
        """Whether any anchor occurs in ``text``."""
        if self._automaton is not None:
            return bool(self._find(text))
        assert self._regex is not None
        return self._regex.search(text) is not None
