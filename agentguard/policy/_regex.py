"""Regular expressions in policies: refuse those that backtrack catastrophically, bound the rest.

Python's ``re`` is a backtracking engine: a pattern such as ``(a+)+b`` takes exponential time and
``a.*b.*c`` cubic time on text chosen by an attacker (a tool argument, a tool result). A policy
regex runs on exactly that text, so each pattern is analysed when the policy loads, on the parse
tree ``re`` itself builds, and refused when it has one of the shapes that cause super-linear
backtracking:

* a quantifier inside a quantifier where one of them is unbounded (``(a+)+``, ``(a*b?)*``,
  ``(\\w+\\s?)+``) — unless the inner one is possessive or atomic (``(?:a++b)+``, Python 3.11+);
* alternatives inside an unbounded quantifier that can start with the same character
  (``(a|ab)*``, ``(\\w|\\d)+``) or that can match nothing (``(a|)*``);
* two unbounded quantifiers that can consume the same characters with nothing between them that
  only one can match (``a.*b.*c``, ``\\d+\\w+``); a separator the first cannot consume makes
  them safe (``\\d+\\.\\d+``, ``[^/]*/[^/]*``);
* an unbounded quantifier inside a look-ahead or look-behind, back-references and conditional
  groups, counted repetitions above 1000, patterns longer than 1000 characters;
* quantifiers that can split the same text between them in more than :data:`MAX_SPLITS`
  ways at one position: a counted repetition of a variable-width body
  (``(?:a{1,32}){1,32}``, ``(?:a?){25}``), or counted quantifiers in a row that compete for the
  same characters (``a{0,32}a{0,32}a{0,32}``, ``\\w+\\w{0,2}``). Each split is a path a failing
  match backtracks through, so their number, not the length of the pattern, sets the cost.

What remains is at worst quadratic in the input (a search restarts at every position), so a
regex sees at most :data:`MAX_REGEX_INPUT` characters of each value; the other operators
(``contains``, ``glob``, ``startswith`` ...) are linear and see the whole value. A leading or
trailing ``.*`` is dropped: for a yes/no search it changes nothing and costs quadratic time.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import re._constants as _c
    import re._parser as _parser
else:  # pragma: no cover - Python 3.10
    import sre_constants as _c
    import sre_parse as _parser

__all__ = ["MAX_PATTERN_LENGTH", "MAX_REGEX_INPUT", "MAX_SPLITS", "RegexProblem", "check_regex",
           "compile_regex"]

MAX_REGEX_INPUT = 4096
MAX_PATTERN_LENGTH = 1000
MAX_COUNTED_REPEAT = 1000
# Counted repetitions larger than this behave like unbounded ones for backtracking.
_LARGE = 32
# At most this many ways for quantifiers to split the same text at one start position. A failing
# search tries each at every position of its (at most MAX_REGEX_INPUT characters of) input, so
# this keeps an accepted pattern within a few tens of milliseconds on text built against it;
# the built-in rules need 121 (\s{0,10}\(?\s{0,10}).
MAX_SPLITS = 128
# The ways an unbounded quantifier adds: any length of the input it sees.
_UNBOUNDED_WAYS = MAX_REGEX_INPUT
# Bounds on the split analysis itself: iterations of one repetition unrolled, items visited.
_MAX_UNROLL = 64
_MAX_VISITS = 100_000
# Counts of ways stop growing here (far past every budget; keeps the integers small).
_CAP = 1 << 62
_TOP = 0x10FFFF

# A plain int: '&' of an int with a RegexFlag runs Python code of the enum module.
_IGNORECASE = int(re.IGNORECASE)
_ATOMIC = getattr(_c, "ATOMIC_GROUP", None)
_POSSESSIVE = getattr(_c, "POSSESSIVE_REPEAT", None)
_REPEATS = tuple(op for op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _POSSESSIVE) if op is not None)

Ranges = tuple[tuple[int, int], ...]
_ALL: Ranges = ((0, _TOP),)
_NONE: Ranges = ()


class RegexProblem(ValueError):
    """A pattern refused by :func:`check_regex`; ``hint`` says how to rewrite it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


# -- character sets as sorted, merged, inclusive code-point ranges ---------------------------------

def _merge(ranges: list[tuple[int, int]]) -> Ranges:
    ranges.sort()
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _union(*sets: Ranges) -> Ranges:
    if len(sets) == 1:
        return sets[0]
    return _merge([r for s in sets for r in s])


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _TOP:
        out.append((start, _TOP))
    return tuple(out)


def _overlap(a: Ranges, b: Ranges) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


@functools.lru_cache(maxsize=1024)
def _fold(ranges: Ranges) -> Ranges:
    """Add the other ASCII case of every letter (for IGNORECASE)."""
    extra: list[tuple[int, int]] = []
    for lo, hi in ranges:
        for base, other in ((65, 97), (97, 65)):
            a, b = max(lo, base), min(hi, base + 25)
            if a <= b:
                extra.append((a - base + other, b - base + other))
    return _union(ranges, tuple(extra)) if extra else ranges


_SPACE: Ranges = _merge([(9, 13), (28, 32), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
                         (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
                         (0x3000, 0x3000)])
_ASCII_WORD: Ranges = _merge([(48, 57), (65, 90), (95, 95), (97, 122)])
# \w and \d also match non-ASCII letters and digits; every non-ASCII code point that is not a
# space is counted in, which can only make the analysis stricter.
_NON_ASCII: Ranges = tuple(r for r in _complement(_SPACE) if r[0] >= 0x80) or ((0x80, _TOP),)
_WORD = _union(_ASCII_WORD, _NON_ASCII)
_DIGIT = _union(((48, 57),), _NON_ASCII)
_CATEGORIES: dict[Any, Ranges] = {}
for _name, _ranges in (("DIGIT", _DIGIT), ("WORD", _WORD), ("SPACE", _SPACE),
                       ("LINEBREAK", ((10, 10),))):
    for _prefix in ("CATEGORY_", "CATEGORY_UNI_", "CATEGORY_LOC_"):
        _pos = getattr(_c, f"{_prefix}{_name}", None)
        _neg = getattr(_c, f"{_prefix}NOT_{_name}", None)
        if _pos is not None:
            _CATEGORIES[_pos] = _ranges
        if _neg is not None:
            # The complement of the ASCII part: larger than the true set, so again stricter.
            ascii_part = tuple(r for r in _ranges if r[1] < 0x80)
            _CATEGORIES[_neg] = _complement(ascii_part)


def _in_set(items: list[tuple[Any, Any]]) -> Ranges:
    negate = False
    parts: list[tuple[int, int]] = []
    for op, av in items:
        if op == _c.NEGATE:
            negate = True
        elif op == _c.LITERAL:
            parts.append((av, av))
        elif op == _c.RANGE:
            parts.append((av[0], av[1]))
        elif op == _c.CATEGORY:
            parts.extend(_CATEGORIES.get(av, _ALL))
        else:
            parts.append((0, _TOP))
    ranges = _merge(parts)
    return _complement(ranges) if negate else ranges


@functools.lru_cache(maxsize=1024)
def _in_set_of(items: tuple[tuple[Any, Any], ...]) -> Ranges:
    """:func:`_in_set` of a class's items as a tuple (the same classes, \\s or [a-z], recur)."""
    return _in_set(list(items))


_SINGLE = (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN, _c.CATEGORY)


class _Analyser:
    def __init__(self, ignore_case: bool) -> None:
        self.ignore_case = ignore_case
        # What each one-character item consumes, by (op, argument; the id of a class's list):
        # asked for each item again at every level of the checks.
        self.leaves: dict[tuple[Any, Any], Ranges] = {}

    def leaf(self, op: Any, av: Any) -> Ranges:
        """What a one-character item (a literal, a class, '.', a category) consumes: the same
        as ``chars([(op, av)])``."""
        key = (op, id(av) if op == _c.IN else av)
        ranges = self.leaves.get(key)
        if ranges is None:
            if op == _c.LITERAL:
                ranges = ((av, av),)
            elif op == _c.NOT_LITERAL:
                ranges = _complement(((av, av),))
            elif op == _c.ANY:
                ranges = _ALL
            elif op == _c.IN:
                ranges = _in_set_of(tuple(av))
            else:
                ranges = _CATEGORIES.get(av, _ALL)
            if self.ignore_case:
                ranges = _fold(ranges)
            self.leaves[key] = ranges
        return ranges

    # What characters an item can consume anywhere inside it.
    def chars(self, seq: Any) -> Ranges:
        out: list[Ranges] = []
        for op, av in seq:
            if op in _SINGLE:
                # Folded already: folding the union below again changes nothing.
                out.append(self.leaf(op, av))
            elif op == _c.BRANCH:
                out.extend(self.chars(alt) for alt in av[1])
            elif op == _c.SUBPATTERN:
                out.append(self.chars(av[3]))
            elif op in _REPEATS:
                out.append(self.chars(av[2]))
            elif _ATOMIC is not None and op == _ATOMIC:
                out.append(self.chars(av))
        ranges = _union(*out) if out else _NONE
        return _fold(ranges) if self.ignore_case else ranges

    def first(self, seq: Any) -> tuple[Ranges, bool]:
        """The characters a sequence can start with, and whether it can match nothing."""
        out: list[Ranges] = []
        for op, av in seq:
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            if op == _c.BRANCH:
                nullable = False
                for alt in av[1]:
                    chars, empty = self.first(alt)
                    out.append(chars)
                    nullable = nullable or empty
                if not nullable:
                    return _union(*out), False
                continue
            if op == _c.SUBPATTERN or (_ATOMIC is not None and op == _ATOMIC):
                chars, empty = self.first(av[3] if op == _c.SUBPATTERN else av)
                out.append(chars)
                if not empty:
                    return _union(*out), False
                continue
            if op in _REPEATS:
                chars, empty = self.first(av[2])
                out.append(chars)
                if av[0] > 0 and not empty:
                    return _union(*out), False
                continue
            out.append(self.leaf(op, av) if op in _SINGLE else self.chars([(op, av)]))
            return _union(*out), False
        return (_union(*out) if out else _NONE), True

    # -- the checks ------------------------------------------------------------------------
    def check(self, seq: Any, in_repeat: bool, in_unbounded: bool) -> None:
        self.sequence(seq)
        for op, av in seq:
            if op in (_c.GROUPREF, getattr(_c, "GROUPREF_EXISTS", None)):
                raise RegexProblem("back-references and conditional groups can take exponential "
                                   "time", "match the repeated text explicitly")
            if op in (_c.ASSERT, _c.ASSERT_NOT):
                if self.has_unbounded(av[1]):
                    raise RegexProblem(
                        "an unbounded quantifier inside a look-ahead/look-behind is re-run at "
                        "every position", "use a bounded repetition such as .{0,100}, or drop "
                        "the look-around")
                self.check(av[1], in_repeat, in_unbounded)
            elif op == _c.BRANCH:
                if in_unbounded:
                    self.branch_disjoint(av[1])
                for alt in av[1]:
                    self.check(alt, in_repeat, in_unbounded)
            elif op == _c.SUBPATTERN:
                self.check(av[3], in_repeat, in_unbounded)
            elif _ATOMIC is not None and op == _ATOMIC:
                # Nothing inside an atomic group is backtracked into from outside.
                self.check(av, False, False)
            elif op in _REPEATS:
                lo, hi, body = av
                if hi != _c.MAXREPEAT and hi > MAX_COUNTED_REPEAT:
                    raise RegexProblem(f"a counted repetition above {MAX_COUNTED_REPEAT}",
                                       "use a smaller count")
                possessive = _POSSESSIVE is not None and op == _POSSESSIVE
                unbounded = hi == _c.MAXREPEAT or hi > _LARGE
                variable = hi != lo
                if possessive:
                    self.check(body, False, False)
                    continue
                if in_repeat and variable and (unbounded or in_unbounded):
                    raise RegexProblem(
                        "nested quantifiers (a quantified group that contains another "
                        "quantifier, like (a+)+) can take exponential time",
                        "remove the inner quantifier, or make it possessive (a++) or atomic "
                        "((?>...)) so it never gives characters back")
                repeats = hi > 1 and (variable or unbounded)
                if unbounded and repeats:
                    _, empty = self.first(body)
                    if empty and body:
                        raise RegexProblem("a repeated group that can match nothing",
                                           "make the group consume at least one character")
                self.check(body, in_repeat or repeats, in_unbounded or (unbounded and repeats))
                if hi >= 2 and self.has_unbounded(body, backtracking=True):
                    # A repeated body follows itself: (?:a.*){2} is a.*a.*.
                    self.sequence(list(body) * 2)

    def branch_disjoint(self, alternatives: list[Any]) -> None:
        seen: list[Ranges] = []
        for alt in alternatives:
            chars, empty = self.first(alt)
            if empty:
                raise RegexProblem("an alternative that can match nothing, inside a repeated "
                                   "group", "remove the empty alternative; use ? on the group")
            for other in seen:
                if _overlap(chars, other):
                    raise RegexProblem(
                        "alternatives inside a repeated group that can start with the same "
                        "character (like (a|ab)*) can take exponential time",
                        "merge the alternatives into a character class, or factor out their "
                        "common start")
            seen.append(chars)

    def has_unbounded(self, seq: Any, backtracking: bool = False) -> bool:
        """Whether ``seq`` has an unbounded quantifier (only ones that backtrack, if asked)."""
        for op, av in seq:
            possessive = _POSSESSIVE is not None and op == _POSSESSIVE
            atomic = _ATOMIC is not None and op == _ATOMIC
            if backtracking and (possessive or atomic):
                continue
            if op in _REPEATS:
                if av[1] == _c.MAXREPEAT or av[1] > _LARGE or self.has_unbounded(av[2], backtracking):
                    return True
            elif op == _c.SUBPATTERN:
                if self.has_unbounded(av[3], backtracking):
                    return True
            elif op == _c.BRANCH:
                if any(self.has_unbounded(alt, backtracking) for alt in av[1]):
                    return True
            elif atomic and self.has_unbounded(av, backtracking):
                return True
        return False

    def sequence(self, seq: Any) -> None:
        """Two unbounded quantifiers in a row that can consume the same text are ambiguous."""
        pending: Ranges | None = None
        for op, av in _flatten(seq):
            if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
                continue
            if op in _SINGLE:
                # One character: bounded, never empty (the general case below, faster).
                if pending is not None and not _overlap(pending, self.leaf(op, av)):
                    pending = None
                continue
            item = [(op, av)]
            chars = self.chars(item)
            _, nullable = self.first(item)
            if self.has_unbounded(item, backtracking=True):
                if pending is not None and _overlap(pending, chars):
                    raise RegexProblem(
                        "two unbounded quantifiers that can match the same characters, with "
                        "nothing between them that only one can match (like a.*b.*c), take "
                        "polynomial time", "use a negated class ([^b]*), a bounded repetition "
                        "(.{0,100}), or two separate conditions under all:")
                # One that must consume something the earlier ones cannot separates them.
                pending = chars if pending is None or not nullable else _union(pending, chars)
            elif pending is not None and not nullable and not _overlap(pending, chars):
                pending = None


# -- how many ways quantifiers can split the same text --------------------------------------------
#
# A left-to-right walk over the parse tree keeps the open "components": groups of quantifiers
# that may still trade characters with what follows, each with the number of ways they can split
# their text. A quantifier joins the components whose characters it overlaps, multiplying their
# ways. An item that must consume a character closes the components that cannot consume it: the
# text before it is fixed, so of all the splits only those of that same text stay alive, and
# everything after is tried again for each of them ("live"). A single character that joins a
# component narrows it: what comes after can trade with it only through that character (after
# the '.' of [\w.]{1,255}\.[a-z]{2,24} the letters that follow cannot move the '.'), and it stays
# open, its splits ending at different places. Alternatives (a branch, or how many times a
# repetition runs) add their ways; when two of them carry on the same earlier component, its
# splits multiply with the choice. A repetition whose body is not one character is unrolled until
# the walk comes back to the same state, so (?:a{1,32}){1,32} multiplies 32 ways per iteration
# while (?:\d{1,3}\.){1,4} stays at 3.


class _Part:
    """Quantifiers that may trade characters: what they can consume and how many ways.

    Immutable. A plain class with slots rather than a frozen dataclass: one is made for every
    item of every pattern, and a frozen dataclass takes several times as long to make.
    """

    __slots__ = ("chars", "largest", "pinned", "roots", "variable", "ways")

    def __init__(self, chars: Ranges, ways: int, variable: int, largest: int, pinned: bool,
                 roots: frozenset[int]) -> None:
        self.chars = chars
        self.ways = ways
        # Quantifiers (or choices) with more than one way that it multiplies (0, 1, or 2 for
        # "more").
        self.variable = variable
        # The most ways any one of them has: ways // largest is how many splits share one end.
        self.largest = largest
        # Joined by a required character: only that character links it to what follows.
        self.pinned = pinned
        # The items it joined, numbered in pattern order: a choice carries on an earlier
        # component when they share one, and components interleave when their ranges overlap.
        # Not compared when finding that unrolling a repetition came back to the same state.
        self.roots = roots

    def _key(self) -> tuple[Ranges, int, int, int, bool]:
        return self.chars, self.ways, self.variable, self.largest, self.pinned

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Part):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


_State = tuple[tuple[_Part, ...], int]  # open components, splits alive at this point


class _Splits:
    """Refuses a pattern whose quantifiers can split one text in more than MAX_SPLITS ways."""

    def __init__(self, analyser: _Analyser) -> None:
        self.analyser = analyser
        self.visits = 0
        self.created = 0
        # id(subpattern) → (characters, can match nothing): asked again at every unrolling.
        self.summaries: dict[int, tuple[Ranges, bool]] = {}

    def summary(self, seq: Any) -> tuple[Ranges, bool]:
        """What ``seq`` can consume, and whether it can match nothing."""
        known = self.summaries.get(id(seq))
        if known is None:
            known = self.summaries[id(seq)] = (self.analyser.chars(seq),
                                               self.analyser.first(seq)[1])
        return known

    def check(self, seq: Any) -> None:
        self.walk(seq, ((), 1))

    def walk(self, seq: Any, state: _State) -> _State:
        for op, av in seq:
            self.visits += 1
            if self.visits > _MAX_VISITS:
                raise _too_complex()
            if op == _c.AT:
                continue
            if op in (_c.ASSERT, _c.ASSERT_NOT):
                # Tried where it stands, once for each split alive; it consumes nothing.
                self.walk(av[1], ((), state[1]))
            elif op == _c.SUBPATTERN:
                state = self.walk(av[3], state)
            elif op == _c.BRANCH:
                ends = [(self.walk(alt, state), 1) for alt in av[1]]
                state = self.alternatives(ends, state, _union(*(self.summary(alt)[0]
                                                                for alt in av[1])))
            elif _ATOMIC is not None and op == _ATOMIC:
                # Backtracking stays inside: one way from outside, whatever it holds.
                self.walk(av, ((), state[1]))
                chars, empty = self.summary(av)
                state = self.add(state, chars, 1, not empty)
            elif op in _REPEATS:
                state = self.repeat(op, av, state)
            else:
                chars = self.analyser.leaf(op, av) if op in _SINGLE else \
                    self.analyser.chars([(op, av)])
                state = self.add(state, chars, 1, True, narrow=True)
        return state

    def repeat(self, op: Any, av: Any, state: _State) -> _State:
        lo, hi, body = av
        chars, empty = self.summary(body)
        required = lo > 0 and not empty
        if _POSSESSIVE is not None and op == _POSSESSIVE:
            self.walk(body, ((), state[1]))
            return self.add(state, chars, 1, required)
        unbounded = hi == _c.MAXREPEAT
        if _single(body):
            return self.add(state, chars, _UNBOUNDED_WAYS if unbounded else hi - lo + 1, required)
        for _ in range(min(lo, _MAX_UNROLL)):
            following = self.walk(body, state)
            if following == state:
                break
            state = following
        else:
            if lo > _MAX_UNROLL:
                raise _too_complex()
        optional = _UNBOUNDED_WAYS if unbounded else hi - lo
        if optional <= 0:
            return state
        # The ends of 0, 1, 2 ... optional iterations are the alternatives after the repetition.
        ends: list[tuple[_State, int]] = [(state, 1)]
        current = state
        for done in range(1, optional + 1):
            following = self.walk(body, current)
            if following == current:
                # Steady: every further iteration ends the same way.
                ends.append((following, optional - done + 1))
                break
            if done >= _MAX_UNROLL:
                raise _too_complex()
            ends.append((following, 1))
            current = following
        return self.alternatives(ends, state, chars)

    def add(self, state: _State, chars: Ranges, ways: int, required: bool,
            narrow: bool = False) -> _State:
        """``state`` followed by an item that consumes ``chars`` in ``ways`` ways (at least one
        character when ``required``)."""
        parts, live = state
        joined: list[_Part] = []
        kept: list[_Part] = []
        closed: list[_Part] = []
        for part in parts:
            if _overlap(part.chars, chars):
                joined.append(part)
            elif not required or part.pinned:
                kept.append(part)
            elif part.variable >= 2:
                closed.append(part)
        if closed:
            # The splits of the same text that end here all carry on from here.
            live = min(live * _sharing_an_end(closed), _CAP)
        variable = 1 if ways > 1 else 0
        largest = ways
        self.created += 1
        roots = frozenset((self.created,))
        merged_chars = chars
        for part in joined:
            merged_chars = _union(merged_chars, part.chars)
            ways = min(ways * part.ways, _CAP)
            variable += part.variable
            largest = max(largest, part.largest)
            roots |= part.roots
        # A split that is still open (more than one way) stays open past a required character.
        pinned = narrow and required and ways > 1 and bool(joined)
        merged = _Part(chars if pinned else merged_chars, ways, min(variable, 2), largest, pinned,
                       roots)
        self.record(merged, live)
        return (*kept, merged), live

    def alternatives(self, ends: list[tuple[_State, int]], before: _State,
                     chars: Ranges) -> _State:
        """The open components after a choice between ``ends`` (each with how many alternatives
        end that way); ``chars`` is everything the choice can consume."""
        earlier = {id(part) for part in before[0]}
        earlier_roots = frozenset().union(*(part.roots for part in before[0]))
        live = max(state[1] for state, _ in ends)
        # [chars, ways, variable, largest, pinned, roots, alternatives, carried on]
        groups: list[list[Any]] = []
        seen: set[int] = set()
        for state, count in ends:
            for part in state[0]:
                if id(part) in earlier:
                    # Not touched by the choice: the same whichever alternative is taken.
                    if id(part) in seen:
                        continue
                    seen.add(id(part))
                    groups.append([part.chars, part.ways, part.variable, part.largest,
                                   part.pinned, part.roots, 1, 1])
                    continue
                carried = count if part.roots & earlier_roots else 0
                groups.append([part.chars, min(part.ways * count, _CAP), part.variable,
                               part.largest, part.pinned, part.roots, count, carried])
        changed = True
        while changed:
            changed = False
            for group in groups:
                # Alternatives that end at different places share the text between them.
                if group[6] > 1:
                    union = _union(group[0], chars)
                    if union != group[0]:
                        group[0] = union
                        changed = True
            merged: list[list[Any]] = []
            for group in groups:
                target = next((m for m in merged if _overlap(m[0], group[0])), None)
                if target is None:
                    merged.append(group)
                    continue
                target[0] = _union(target[0], group[0])
                target[1] = min(target[1] + group[1], _CAP)
                target[2] = max(target[2], group[2])
                target[3] = max(target[3], group[3])
                target[4] = target[4] and group[4]
                target[5] = target[5] | group[5]
                target[6] += group[6]
                target[7] += group[7]
                changed = True
            groups = merged
        out: list[_Part] = []
        for group_chars, ways, variable, largest, pinned, roots, count, carried in groups:
            if carried > 1:
                variable += 1  # several alternatives multiply the same earlier splits
            elif count > 1:
                variable = max(variable, 1)  # the choice itself is one more way to split
            part = _Part(group_chars, ways, min(variable, 2), largest, pinned, roots)
            self.record(part, live)
            out.append(part)
        return tuple(out), live

    @staticmethod
    def record(part: _Part, live: int) -> None:
        total = part.ways * live
        if (part.variable >= 2 or live > 1) and total > MAX_SPLITS:
            raise RegexProblem(
                f"quantifiers that can split the same text between them in more than "
                f"{MAX_SPLITS} ways (nested counted repetitions like (a{{1,32}}){{1,32}} or "
                f"(a?){{25}}, or counted ones in a row like a{{0,32}}a{{0,32}}a{{0,32}}) take "
                f"exponential or high polynomial time",
                "use smaller counts, put a character only one side can match between the "
                "quantifiers, or make the inner one possessive (a{1,32}+) or atomic ((?>...))")


def _sharing_an_end(closed: list[_Part]) -> int:
    """How many splits of the components closed together can end at the same place."""
    # A component whose quantifiers sit between those of another (\s{0,10}\(?\s{0,10}\(? holds
    # two) can only split differently while the other's middle ones match nothing: their splits
    # add up instead of multiplying. Components one after the other multiply.
    clusters: list[list[int]] = []  # first item, last item, splits, components
    for part in sorted(closed, key=lambda part: min(part.roots)):
        first, last = min(part.roots), max(part.roots)
        splits = max(part.ways // part.largest, 1)
        if clusters and first <= clusters[-1][1]:
            cluster = clusters[-1]
            cluster[1] = max(cluster[1], last)
            cluster[2] += splits - 1
        else:
            clusters.append([first, last, splits])
    total = 1
    for _, _, splits in clusters:
        total = min(total * splits, _CAP)
    return total


def _too_complex() -> RegexProblem:
    return RegexProblem("the pattern is too complex to check for slow backtracking",
                        "simplify it, or split it into several patterns")


def _single(body: Any) -> bool:
    """Whether a repeated body is one character (inside plain groups)."""
    while len(body) == 1 and body[0][0] == _c.SUBPATTERN:
        body = body[0][1][3]
    return len(body) == 1 and body[0][0] in _SINGLE


def _lists(seq: Any) -> list[tuple[Any, Any]]:
    """The parse tree with each sequence the checks walk as a plain list: ``re``'s SubPattern
    runs a Python method for every item read, and the checks read each item many times."""
    out: list[tuple[Any, Any]] = []
    data: Any = seq.data if isinstance(seq, _parser.SubPattern) else seq
    for op, av in data:
        if op == _c.SUBPATTERN:
            av = (av[0], av[1], av[2], _lists(av[3]))
        elif op == _c.BRANCH:
            av = (av[0], [_lists(alt) for alt in av[1]])
        elif op in _REPEATS:
            av = (av[0], av[1], _lists(av[2]))
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            av = (av[0], _lists(av[1]))
        elif _ATOMIC is not None and op == _ATOMIC:
            av = _lists(av)
        out.append((op, av))
    return out


def _flatten(seq: Any) -> list[tuple[Any, Any]]:
    """Items of a sequence with plain (unrepeated) groups inlined."""
    out: list[tuple[Any, Any]] = []
    for op, av in seq:
        if op == _c.SUBPATTERN:
            out.extend(_flatten(av[3]))
        else:
            out.append((op, av))
    return out


_LEADING_ANY = re.compile(r"^(?:\.\*\??)+(?!\*|\+|\?|\{)")
_TRAILING_ANY = re.compile(r"(?<!\\)(?:\.\*\??)+$")


def _trim(pattern: str) -> str:
    if pattern.startswith("(?"):
        return pattern
    trimmed = _LEADING_ANY.sub("", pattern, count=1)
    if not trimmed.endswith("\\.*"):
        trimmed = _TRAILING_ANY.sub("", trimmed, count=1)
    return trimmed or pattern


def check_regex(pattern: str, ignore_case: bool = False) -> str:
    """The pattern to compile (a leading/trailing ``.*`` dropped); raises :class:`RegexProblem`."""
    return _check(pattern, ignore_case)[0]


def _check(pattern: str, ignore_case: bool) -> tuple[str, Any, list[tuple[Any, Any]]]:
    """:func:`check_regex`, the parse tree of what it returns but a look-behind in front, and
    that tree as plain lists (:func:`_lists`)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexProblem(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters",
                           "split it into several patterns (a list is any-of)")
    trimmed = _trim(pattern)
    try:
        tree = _parser.parse(trimmed)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RegexProblem(f"invalid regular expression: {exc}", "check the escaping; in YAML, "
                           "single-quote patterns so backslashes stay as written") from None
    # Case-insensitive anywhere (flag, inline group or the condition's ignore_case) folds the
    # character sets everywhere: stricter, never laxer.
    folded = ignore_case or bool(tree.state.flags & _IGNORECASE) or \
        re.search(r"\(\?[a-zA-Z]*i[a-zA-Z]*[:)]", trimmed) is not None
    analyser = _Analyser(folded)
    try:
        items = _lists(tree)
        analyser.check(items, False, False)
        _Splits(analyser).check(items)
    except RecursionError:
        raise RegexProblem("the pattern nests too deeply", "simplify the pattern") from None
    return _anchor_leading_run(trimmed, tree), tree, items


# A pattern's leading repeat of one character class (``\w+``, ``[a-z]*``, ``.{2,}``), as written.
_LEADING_CLASS = re.compile(r"(\\[wdsWDS]|\[(?:\\.|[^\]\\])+\]|\.)(?:[+*]|\{\d*,\})")


def _anchor_leading_run(pattern: str, tree: Any) -> str:
    """``pattern`` made to start only where its leading class run starts, when it begins with an
    unbounded repeat of one character class: the same search results, in linear instead of
    quadratic time.

    ``search`` tries every start; from inside a run of the class, the leading repeat can take
    only a suffix of what it could take from the run's first character, so any match found there
    is matched from the run's start as well, which is further left and found first. A search of
    ``\\w+\\s+\\w+`` in 4 KB of letters re-scanned the run from each of its positions (0.25 s);
    with ``(?<!\\w)`` in front, positions inside the run fail at once.
    """
    items = list(tree)
    if not items or items[0][0] not in _REPEATS or items[0][1][1] is not _c.MAXREPEAT:
        return pattern  # a bounded repeat cannot always reach from the run's start
    body = list(items[0][1][2])
    if len(body) != 1 or body[0][0] not in (_c.IN, _c.ANY, _c.LITERAL, _c.NOT_LITERAL):
        return pattern
    match = _LEADING_CLASS.match(pattern)
    if match is None:
        return pattern
    return f"(?<!{match.group(1)}){pattern}"


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Check and compile a policy regex; raises :class:`RegexProblem`.

    The check takes milliseconds; the built-in pack's patterns are checked again by every
    policy built in the process, and a pattern in a macro or a list again by each rule using it,
    so results are kept (a compiled pattern is immutable; a refused one is not kept).
    """
    text, tree, items = _check(pattern, ignore_case)
    try:
        compiled = re.compile(text, re.IGNORECASE if ignore_case else 0)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RegexProblem(f"invalid regular expression: {exc}", "check the escaping") from None
    # The literals of the pattern compiled are those of the tree checked (a look-behind put in
    # front holds none), so the compiler's next question is answered without parsing again.
    _remember_literals(text, _literals_of(items, tree.state.flags))
    return compiled


# required_literals by pattern: each regex of a policy is asked for once more after it compiled.
_literals: dict[str, tuple[str, ...] | None] = {}
_LITERALS_KEPT = 4096


def _remember_literals(pattern: str, literals: tuple[str, ...] | None) -> None:
    if len(_literals) >= _LITERALS_KEPT:
        _literals.clear()
    _literals[pattern] = literals


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Strings one of which every match of ``pattern`` contains (lower-cased when the pattern
    ignores case), or None when no such set is found. Used to skip regexes on text that holds
    none of them."""
    try:
        return _literals[pattern]
    except KeyError:
        pass
    try:
        tree = _parser.parse(pattern)
    except (re.error, OverflowError, RecursionError):
        return None
    found = _literals_of(tree, tree.state.flags)
    _remember_literals(pattern, found)
    return found


def _literals_of(tree: Any, flags: int) -> tuple[str, ...] | None:
    """:func:`required_literals` of a parsed pattern (a SubPattern or its :func:`_lists`) with
    these global flags."""
    fold = bool(flags & _IGNORECASE)
    try:
        found = _required(tree)
    except RecursionError:
        return None
    if not found:
        return None
    return tuple(sorted({s.lower() if fold else s for s in found}))


def _required(seq: Any) -> list[str] | None:
    best: list[str] | None = None

    def consider(candidate: list[str] | None) -> None:
        nonlocal best
        if not candidate or any(not s for s in candidate):
            return
        # The most selective set: the one whose shortest string is longest.
        if best is None or min(map(len, candidate)) > min(map(len, best)):
            best = candidate

    run: list[str] = []
    for op, av in seq:
        if op == _c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            consider(["".join(run)])
            run = []
        if op == _c.SUBPATTERN:
            consider(_required(av[3]))
        elif _ATOMIC is not None and op == _ATOMIC:
            consider(_required(av))
        elif op == _c.BRANCH:
            alternatives = [_required(alt) for alt in av[1]]
            if all(alternatives):
                consider([s for alt in alternatives if alt for s in alt])
        elif op in _REPEATS and av[0] >= 1:
            consider(_required(av[2]))
    if run:
        consider(["".join(run)])
    return best
