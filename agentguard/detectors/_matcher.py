"""Multi-literal search: every occurrence of a fixed set of anchor strings, in linear time.

The scanner finds candidate positions with one pass of this matcher and verifies each candidate
with a small bounded regex, so the cost over attacker text is one linear pass plus bounded work
per candidate. Two engines give the same answers (leftmost-longest, non-overlapping matches):

* ``ahocorasick_rs`` (an Aho-Corasick automaton in Rust, built as a DFA), the fastest per
  character. It releases the GIL around every search, whatever the haystack type; on an agent's
  thread, with agentguard's export thread (or any other Python thread) runnable, getting it back
  can cost more than the search itself, up to a whole switch interval (5 ms by default).
* one stdlib regex built as a trie of the literals: no quantifiers at all, so it cannot
  backtrack, and it holds the GIL. Slower per character.

``engine="auto"`` (the default) searches texts up to ``SMALL_TEXT`` characters with the regex and
longer ones with the automaton (when installed); ``"native"`` uses the automaton for every text,
``"regex"`` the regex for every text. ``LiteralMatcher.engine`` names the engine in use
(``"auto"`` falls back to ``"regex"`` when the automaton is not installed). The trie regexes are
compiled on first use and shared by every matcher with the same literals (compiling the anchor
trie takes tens of milliseconds).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["SMALL_TEXT", "LiteralMatcher", "compiled_presence", "native_available",
           "presence_pattern"]

_CHUNK = 32 * 1024
# Texts up to this size never leave the GIL (see the module docstring).
SMALL_TEXT = 8 * 1024

_ac: Any
try:  # pragma: no cover - exercised through whichever engine is installed
    import ahocorasick_rs as _ac
except Exception:  # pragma: no cover
    _ac = None

_COMPILED: dict[tuple[str, tuple[str, ...]], re.Pattern[str]] = {}
_COMPILED_LOCK = threading.Lock()


def native_available() -> bool:
    """Whether the compiled Aho-Corasick engine is installed."""
    return _ac is not None


def _trie(words: Sequence[str], *, prune: bool) -> dict[str, Any]:
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            if prune and "" in node:
                break  # a shorter word already ends here: presence needs no more
            node = node.setdefault(char, {})
        else:
            if prune:
                node.clear()
            node[""] = {}
    return trie


def _trie_regex(node: dict[str, Any]) -> str:
    branches = [re.escape(char) + _trie_regex(child) for char, child in sorted(node.items()) if char]
    terminal = "" in node
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if terminal:
        return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
    return body


def _trie_pattern(words: Sequence[str]) -> str:
    """A regex alternation factored as a trie: greedy optional suffixes give leftmost-longest."""
    return _trie_regex(_trie(words, prune=False))


def presence_pattern(words: Sequence[str]) -> str:
    """A trie regex that matches where any of ``words`` occurs (not necessarily the longest):
    a word that extends a shorter one is dropped, since the shorter one occurs wherever it does.
    """
    return _trie_regex(_trie(words, prune=True))


def _compiled(kind: str, words: tuple[str, ...]) -> re.Pattern[str]:
    key = (kind, words)
    pattern = _COMPILED.get(key)
    if pattern is None:
        with _COMPILED_LOCK:
            pattern = _COMPILED.get(key)
            if pattern is None:
                source = _trie_pattern(words) if kind == "find" else presence_pattern(words)
                pattern = _COMPILED[key] = re.compile(source)
    return pattern


def compiled_presence(words: Sequence[str]) -> re.Pattern[str]:
    """The compiled :func:`presence_pattern` of ``words`` (shared, compiled once)."""
    return _compiled("search", tuple(words))


class LiteralMatcher:
    """Finds every anchor of a fixed list in a string: ``(anchor index, start, end)`` tuples."""

    __slots__ = ("_automaton", "_find_regex", "_index", "_longest", "_search_regex", "_small",
                 "engine", "words")

    def __init__(self, words: Sequence[str], *, engine: str = "auto") -> None:
        unique = list(dict.fromkeys(w for w in words if w))
        if not unique:
            raise ValueError("LiteralMatcher needs at least one non-empty anchor")
        if engine not in ("auto", "native", "regex"):
            raise ValueError(f"unknown matcher engine {engine!r}")
        if engine == "native" and _ac is None:
            raise RuntimeError("ahocorasick_rs is not installed")
        self.words: tuple[str, ...] = tuple(unique)
        self._index = {word: i for i, word in enumerate(self.words)}
        self._longest = max(len(w) for w in self.words)
        self._automaton: Any = None
        self._find_regex: re.Pattern[str] | None = None
        self._search_regex: re.Pattern[str] | None = None
        if engine != "regex" and _ac is not None:
            # A DFA: about twice as fast per character as the default NFA on the scanner's two
            # thousand anchors, for a few more milliseconds to build.
            self._automaton = _ac.AhoCorasick(
                list(self.words), matchkind=_ac.MatchKind.LeftmostLongest,
                implementation=_ac.Implementation.DFA,
            )
        # Texts up to this length go through the regex (which holds the GIL); None: all of them.
        self._small: int | None = None
        self.engine = "regex"
        if self._automaton is not None:
            self._small = SMALL_TEXT if engine == "auto" else -1
            self.engine = engine

    def find(self, text: str, limit: int | None = None, *, native: bool = False
             ) -> list[tuple[int, int, int]]:
        """Non-overlapping leftmost-longest matches in order of position; with ``limit``, stops
        once at least that many were found (a text dense with anchors costs no more than that).
        ``native``: ``text`` is part of a longer one (a decoded payload, say), so the automaton
        may search it whatever its size.
        """
        size = len(text)
        if limit is None or size <= _CHUNK:
            found = self._find(text, native)
            return found[:limit] if limit is not None else found
        out: list[tuple[int, int, int]] = []
        overlap = self._longest
        chunk_start = 0
        while chunk_start < size:
            # Chunks bound the work on text dense with anchors; where the first chunk shows
            # the limit is far off, the rest is read in one piece.
            width = _CHUNK if 4 * len(out) * size >= limit * chunk_start else size
            chunk_end = chunk_start + width
            # Read a little past the chunk so an anchor crossing its end is still seen; matches
            # starting past the end belong to the next chunk.
            found = self._find(text[chunk_start:chunk_end + overlap], native)
            if out and found and chunk_start + found[0][1] < out[-1][2]:
                found = [m for m in found if chunk_start + m[1] >= out[-1][2]]
            if found and found[-1][1] >= width:
                found = [m for m in found if m[1] < width]
            if chunk_start:
                out.extend([(index, chunk_start + start, chunk_start + end)
                            for index, start, end in found])
            else:
                out.extend(found)
            if len(out) >= limit:
                return out[:limit]
            chunk_start = chunk_end
        return out

    def holds_gil(self, text: str) -> bool:
        """Whether searching ``text`` uses the regex engine (and so never releases the GIL)."""
        small = self._small
        return small is None or len(text) <= small

    def _find(self, text: str, native: bool = False) -> list[tuple[int, int, int]]:
        if (native and self._small is not None) or not self.holds_gil(text):
            found: list[tuple[int, int, int]] = self._automaton.find_matches_as_indexes(text)
            return found
        regex = self._find_regex
        if regex is None:
            regex = self._find_regex = _compiled("find", self.words)
        index = self._index
        return [(index[m.group()], m.start(), m.end()) for m in regex.finditer(text)]

    def search(self, text: str) -> bool:
        """Whether any anchor occurs in ``text``."""
        if not self.holds_gil(text):
            return bool(self._automaton.find_matches_as_indexes(text))
        regex = self._search_regex
        if regex is None:
            regex = self._search_regex = _compiled("search", self.words)
        return regex.search(text) is not None
