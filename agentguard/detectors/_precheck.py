"""The pre-check for short ASCII texts: clears a text with no anchor word, holding the GIL.

Most tool results and documents an agent reads are benign, and most of those are small; the full
scan is for the rest. Asking the Aho-Corasick automaton whether a 200-byte result has an anchor
costs little in itself, but it releases the GIL, and on an agent's thread with another Python
thread runnable, getting it back can cost far more. This module answers the same question, with
the same answer, using C-level string, bytes and set operations only.

It works on *chunks*: the text is lower-cased, every digit becomes ``0`` and every comma a space
(one ``bytes.translate``); the chunks are the runs between whitespace. Anchors contain no
whitespace but single spaces, and no comma, so for each anchor one of its space-separated
*pieces* is picked, with the relation a chunk must have with it wherever the anchor occurs: the
chunk *is* the piece (a space on both sides of the piece in the anchor), *starts* with it (a
space before), *ends* with it (a space after) or *contains* it (no space next to it: the anchor
may be glued to other characters). A text none of whose chunks has its relation with any piece
has no anchor.

The rest of the pre-check is decided per chunk as well: a base64-like run (24 characters of its
alphabet) never crosses whitespace or a comma, so it lies in one chunk; and letters spelled out
between separators need at least three letters with a separator (or a chunk's end) on both sides,
so a text none of whose chunks has such a letter cannot have them.

Chunks are judged once and remembered (bounded): a text made of inert chunks seen before costs a
translate, a split and one set operation. A chunk that does relate to a piece is a *suspect*: the
anchors whose piece it holds are compared at their exact places around each occurrence of the
chunk (``str.startswith``), so the answer is exactly the automaton's; a chunk with a lone letter
sends the whole text through the spaced-letter probes; a chunk with a blob needs the full scan.
Texts found clean are remembered too (bounded), as tool results repeat.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection

from agentguard.detectors._matcher import SMALL_TEXT, compiled_presence
from agentguard.detectors._text import (
    BLOB_PROBE,
    BLOB_SHAPE,
    SPACED_PROBES,
    SPACING_SHAPE,
)

__all__ = ["MAX_TEXT", "PreCheck", "relation_literal"]

MAX_TEXT = SMALL_TEXT
# Bounds: texts remembered as clean (and the longest one remembered), chunks remembered (and the
# longest one remembered), and the comparisons one text may cost before the exact search.
CACHED_TEXTS = 1024
CACHED_TEXT_CHARS = 4 * 1024
CACHED_CHUNKS = 32768
CACHED_CHUNK_CHARS = 48
MAX_COMPARISONS = 2048
# What one suspect chunk's ``find`` passes over the text count against that budget.
_FIND_COST = 16

# Frequent chunks of English prose and of API results: a piece that one of them relates to is a
# poor choice for its anchor, as every text carrying the chunk would need the comparisons. The
# most frequent English words weigh most; JSON keys and values arrive quoted (``"email":``), so
# API words matter less, in plain ``key: value`` text.
_TOP_WORDS = """
the of and to a in is it you that he was for on are as with his they i at be this have from or
one had by but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first been call who its now find
long down day did get come made may part any
"""
_ENGLISH_WORDS = """
above after again against also am back because before being below between both done during
even every few further got having here hers just last let much must new next nor off old once
only our over own per please same should since still such those through too under until upon
used very well where while why yet yours
"""
_API_WORDS = """
account active address amount api available balance billing calls cancel city code company
complete completed contact content count country created customer customers data date days
default delete description details due email error event false file files full id info
information invoice item items key level limit link list manager message messages name none
note notes null ok open order orders owner page paid payment pending phone plan price product
query quarter read record records report request result results search send sent service session
set status summary system team text title today total true type update updated url user users
value view week year
: - -- | / ( ) [ ] { } [] {} # ## ### ! @ . .. ... < > => -> :: // */ /* (0) [0] 00:00 0:00
"""
_WEIGHTED = ((_TOP_WORDS.split(), 50), (_ENGLISH_WORDS.split(), 5), (_API_WORDS.split(), 3))


@functools.cache
def _affix_weights() -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
    """How often common chunks are, start with, end with or contain each string (built on first
    use: importing costs nothing)."""
    exact: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    suffixes: dict[str, int] = {}
    inner: dict[str, int] = {}
    for words, weight in _WEIGHTED:
        for word in words:
            exact[word] = exact.get(word, 0) + weight
            for i in range(len(word)):
                prefixes[word[: i + 1]] = prefixes.get(word[: i + 1], 0) + weight
                suffixes[word[i:]] = suffixes.get(word[i:], 0) + weight
                for j in range(i + 1, len(word) + 1):
                    inner[word[i:j]] = inner.get(word[i:j], 0) + weight
    return exact, prefixes, suffixes, inner


_DIGITS = "0123456789"
# A suspect chunk's anchors, grouped by where each would start relative to the chunk; in a group,
# the prefix they share, whether it is one of them, and the rest by the character after it.
_Group = tuple[int, str, bool, dict[str, tuple[str, ...]]]
_Candidates = tuple[_Group, ...]
# What a chunk that is not inert holds: its candidate anchors (None: not a suspect; empty: too
# long to enumerate), a blob, its lone letters.
_Flags = tuple[_Candidates | None, bool, int]
# Spacing shape with newlines (the chunk delimiter when chunks are judged together) as separators:
# a chunk's ends count as separators, which can only find more lone letters.
_UNIT_SHAPE = SPACING_SHAPE[:10] + b" " + SPACING_SHAPE[11:]
_UNIT = b" a "
_UNITS = re.compile(rb"(?<= )a(?= )")
# Spaced-out letters need at least this many lone letters: " a a a a a " five, "a  a  a  a  a"
# three (the middle ones).
_MIN_UNITS = 3


def _canonical(text: str) -> str:
    return text.lower().translate(str.maketrans(_DIGITS, "0" * 10))


def _group(delta: int, anchors: list[str]) -> _Group:
    unique = tuple(dict.fromkeys(anchors))
    prefix = unique[0]
    for anchor in unique[1:]:
        while not anchor.startswith(prefix):
            prefix = prefix[:-1]
    by_next: dict[str, list[str]] = {}
    for anchor in unique:
        if len(anchor) > len(prefix):
            by_next.setdefault(anchor[len(prefix)], []).append(anchor)
    return delta, prefix, prefix in unique, {c: tuple(a) for c, a in by_next.items()}


def relation_literal(anchor: str) -> tuple[str, int]:
    """The chosen piece of ``anchor`` as a literal over newline-framed chunks, and the piece's
    offset in the anchor: ``"\\npiece\\n"`` (the chunk is the piece), ``"\\npiece"`` (starts with
    it), ``"piece\\n"`` (ends with it) or ``"piece"`` (contains it). The piece chosen is the one
    fewest common chunks relate to, then the one with the strictest relation, then the longest.
    """
    exact_hits, prefix_hits, suffix_hits, inner_hits = _affix_weights()
    best: tuple[tuple[int, int, int], str, int] | None = None
    offset = 0
    parts = anchor.split(" ")
    for i, piece in enumerate(parts):
        if piece:
            left, right = i > 0, i < len(parts) - 1
            if left and right:
                common, rank = exact_hits.get(piece, 0), 0
            elif left:
                common, rank = prefix_hits.get(piece, 0), 1
            elif right:
                common, rank = suffix_hits.get(piece, 0), 1
            else:
                common, rank = inner_hits.get(piece, 0), 2
            literal = ("\n" if left else "") + piece + ("\n" if right else "")
            key = (common, rank, -len(piece))
            if best is None or key < best[0]:
                best = (key, literal, offset)
        offset += len(piece) + 1
    if best is None:
        raise ValueError(f"anchor {anchor!r} has no piece")
    return best[1], best[2]


class PreCheck:
    """Whether a short ASCII text could give the full scan anything to read, answered without
    releasing the GIL: an anchor, a base64-like run or spaced-out letters (exactly the question
    the automaton and the shape probes answer for longer texts).

    Thread-safe: the caches only grow between resets, and a reset replaces them instead of
    emptying them, so a thread never sees a chunk as judged without its verdict.
    """

    def __init__(self, anchors: Collection[str], *, cached_texts: int = CACHED_TEXTS,
                 cached_chunks: int = CACHED_CHUNKS) -> None:
        ascii_anchors = tuple(sorted({a for a in anchors if a and a.isascii() and a.strip()}))
        if not ascii_anchors:
            raise ValueError("PreCheck needs at least one ASCII anchor")
        if any("," in a or "\n" in a or "\t" in a for a in ascii_anchors):
            raise ValueError("anchors must not contain commas, tabs or newlines")
        self._anchors = ascii_anchors
        self._cached_texts = cached_texts
        self._cached_chunks = cached_chunks
        # Lower case, digits as '0', commas as spaces.
        table = bytearray(range(256))
        for code in range(ord("A"), ord("Z") + 1):
            table[code] = code + 32
        for code in range(ord("0"), ord("9") + 1):
            table[code] = ord("0")
        table[ord(",")] = ord(" ")
        self._table = bytes(table)
        # Canonical literal -> (canonical anchor, offset of the piece in it) for every anchor
        # choosing it, and each canonical anchor's real ones (digits made the difference).
        index: dict[str, list[tuple[str, int]]] = {}
        real: dict[str, list[str]] = {}
        for anchor in ascii_anchors:
            literal, offset = relation_literal(anchor)
            canonical = _canonical(anchor)
            index.setdefault(_canonical(literal), []).append((canonical, offset))
            real.setdefault(canonical, []).append(anchor)
        self._index = {literal: tuple(found) for literal, found in index.items()}
        self._real = {canonical: tuple(anchors) for canonical, anchors in real.items()}
        self._longest_literal = max(len(literal) for literal in self._index)
        self._relation_regex: re.Pattern[str] | None = None
        self._anchor_regex: re.Pattern[str] | None = None
        # Texts found clean (emptied in place when full: a stale answer cannot be wrong here).
        self.texts: dict[str, None] = {}
        # Chunks judged inert, all chunks judged, and the ones not inert with what they hold.
        self._chunks: tuple[set[str], set[str], dict[str, _Flags]] = (set(), set(), {})
        # Counters: caches emptied on reaching their bound; texts that needed comparisons; texts
        # whose comparisons went over budget (or held a chunk too long to enumerate) and were
        # searched whole.
        self.cache_resets = 0
        self.compared = 0
        self.searched = 0

    def clean(self, text: str) -> bool:
        """``True`` when ``text`` (ASCII, at most ``MAX_TEXT`` characters) has nothing for the
        full scan to read; ``False`` when it has."""
        texts = self.texts
        if text in texts:
            return True
        canon = text.encode("ascii").translate(self._table).decode("ascii")
        chunks = canon.split()
        if not self._chunks[0].issuperset(chunks) and not self._chunks_clean(text, canon, chunks):
            return False
        if len(text) <= CACHED_TEXT_CHARS:
            if len(texts) >= self._cached_texts:
                texts.clear()
                self.cache_resets += 1
            texts[text] = None
        return True

    def stats(self) -> dict[str, int]:
        """Sizes of the caches and the counters."""
        _, judged, flagged = self._chunks
        return {"cached_texts": len(self.texts), "cached_chunks": len(judged),
                "cached_suspects": len(flagged), "cache_resets": self.cache_resets,
                "compared": self.compared, "searched": self.searched}

    # -- chunks ------------------------------------------------------------------------------
    def _chunks_clean(self, text: str, canon: str, chunks: list[str]) -> bool:
        _, judged, flagged = self._chunks
        present = flagged.keys() & chunks
        fresh: dict[str, _Flags] = {}
        if not judged.issuperset(chunks):
            novel = set(chunks)
            if len(judged) + len(novel) > self._cached_chunks:
                # Replaced whole (and counted), never emptied in place: a thread still reading
                # the old ones keeps a consistent view. Judging again is cheap.
                self._chunks = (set(), set(), {})
                self.cache_resets += 1
            else:
                novel.difference_update(judged)
            fresh = self._judge(novel)
        if not present and not fresh:
            return True
        suspects: list[tuple[str, _Candidates]] = []
        lone_letters = 0
        for chunk in present:
            candidates, blob, units = flagged[chunk]
            if blob:
                return False
            if units and lone_letters < _MIN_UNITS:  # counted until enough: bounded work
                lone_letters += units * chunks.count(chunk)
            if candidates is not None:
                suspects.append((chunk, candidates))
        for chunk, (candidates, blob, units) in fresh.items():
            if blob:
                return False
            if units and lone_letters < _MIN_UNITS:
                lone_letters += units * chunks.count(chunk)
            if candidates is not None:
                suspects.append((chunk, candidates))
        if suspects and self._anchor_at(text, canon, suspects):
            return False
        if lone_letters >= _MIN_UNITS:
            shape = text.encode("ascii").translate(SPACING_SHAPE)
            return shape.find(SPACED_PROBES[0]) < 0 and shape.find(SPACED_PROBES[1]) < 0
        return True

    def _judge(self, chunks: set[str]) -> dict[str, _Flags]:
        """Judge chunks not seen before and remember them (those up to ``CACHED_CHUNK_CHARS``);
        returns the ones that are not inert with what they hold."""
        if not chunks:
            return {}
        inert, judged, flagged = self._chunks
        regex = self._relation_regex
        if regex is None:
            regex = self._relation_regex = compiled_presence(tuple(self._index))
        joined = "\n" + "\n".join(chunks) + "\n"
        data = joined.encode("ascii")
        found: dict[str, _Flags] = {}
        if (regex.search(joined) is not None or data.translate(BLOB_SHAPE).find(BLOB_PROBE) >= 0
                or data.translate(_UNIT_SHAPE).find(_UNIT) >= 0):
            for chunk in chunks:
                framed = f"\n{chunk}\n"
                raw = framed.encode("ascii")
                suspect = regex.search(framed) is not None
                blob = raw.translate(BLOB_SHAPE).find(BLOB_PROBE) >= 0
                shape = raw.translate(_UNIT_SHAPE)
                units = len(_UNITS.findall(shape)) if shape.find(_UNIT) >= 0 else 0
                if suspect or blob or units:
                    found[chunk] = (self._candidates(chunk) if suspect else None, blob, units)
        keep = [c for c in chunks if len(c) <= CACHED_CHUNK_CHARS]
        if len(judged) + len(keep) <= self._cached_chunks:
            # Flagged before judged: a chunk in ``judged`` has its verdict.
            flagged.update((c, f) for c, f in found.items() if len(c) <= CACHED_CHUNK_CHARS)
            inert.update(c for c in keep if c not in found)
            judged.update(keep)
        return found

    def _candidates(self, chunk: str) -> _Candidates:
        """The anchors whose chosen piece ``chunk`` holds with the anchor's relation, grouped by
        where they would start relative to the chunk; empty for a chunk too long to enumerate
        (the text is then searched instead)."""
        if len(chunk) > CACHED_CHUNK_CHARS:
            return ()
        framed = f"\n{chunk}\n"
        index = self._index
        longest = self._longest_literal
        by_start: dict[int, list[str]] = {}
        for i in range(len(framed)):
            # The piece starts at framed[i], or just after the framing newline.
            at = i if framed[i] != "\n" else i + 1
            for j in range(i + 1, min(len(framed), i + longest) + 1):
                for anchor, offset in index.get(framed[i:j], ()):
                    by_start.setdefault(at - 1 - offset, []).append(anchor)
        return tuple(_group(delta, anchors) for delta, anchors in by_start.items())

    def _anchor_at(self, text: str, canon: str,
                   suspects: list[tuple[str, _Candidates]]) -> bool:
        """Whether an anchor starts where a suspect chunk's candidates say it would.

        Compared in the canonical text first (digits as ``0``), then, on a match, in the
        lower-cased text itself."""
        self.compared += 1
        budget = MAX_COMPARISONS
        for chunk, candidates in suspects:
            if not candidates:
                return self._search(text.lower())  # a chunk too long to enumerate
            # Each suspect costs a pass of ``find`` over the text: many distinct ones are
            # cheaper searched for at once.
            budget -= _FIND_COST
            if budget < 0:
                return self._search(text.lower())
            width = len(chunk)
            at = canon.find(chunk)
            # A chunk occurrence cannot start inside another (chunks end at whitespace).
            while at >= 0:
                for delta, prefix, whole, by_next in candidates:
                    start = at + delta
                    if start < 0 or not canon.startswith(prefix, start):
                        continue
                    budget -= 1
                    if whole and self._confirm(text, (prefix,), start, canon):
                        return True
                    after = start + len(prefix)
                    rest = by_next.get(canon[after:after + 1])
                    if rest is not None and canon.startswith(rest, start):
                        budget -= len(rest)
                        if self._confirm(text, rest, start, canon):
                            return True
                if budget < 0:
                    return self._search(text.lower())
                at = canon.find(chunk, at + width)
        return False

    def _confirm(self, text: str, anchors: tuple[str, ...], start: int, canon: str) -> bool:
        low = text.lower()
        return any(low.startswith(self._real[anchor], start)
                   for anchor in anchors if canon.startswith(anchor, start))

    def _search(self, low: str) -> bool:
        self.searched += 1
        regex = self._anchor_regex
        if regex is None:
            regex = self._anchor_regex = compiled_presence(self._anchors)
        return regex.search(low) is not None
