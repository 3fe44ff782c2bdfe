"""Python regexes as Hyperscan expressions that match wherever the regex can, and a small
compiled-database wrapper: the building blocks of the scanner's native prefilter.

The scanner confirms candidates (anchors, URLs, encoded runs) with small Python regexes; on a
long document most candidates confirm nothing. A Hyperscan database scans a whole text in native
code, in linear time, and reports where an expression matches. :func:`superset_expression`
translates a ``str`` regex into a byte-level expression whose matches are a *superset* of the
regex's: assertions (``\\b``, look-arounds, ``^``) are dropped, each character class keeps its
exact ASCII members and accepts any non-ASCII character when the Python class could match one
(so repetition counts still count characters of UTF-8 text, at up to four bytes each), and a
repeated group becomes a run of the characters it can contain. A Python check is then skipped
only where the expression proves it fails; the Python check stays the judge.

Hyperscan releases the GIL for a scan and takes it back for every match it reports: callers keep
expressions that report rarely, and :meth:`Database.scan` stops past a cap. ``python-hyperscan``
is optional and imported on first use: without it :func:`available` is false and callers check
every candidate in Python.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

try:  # Python 3.11+; the private parser is the one the stdlib compiler uses
    import re._constants as _sre
    import re._parser as _parser
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre
    import sre_parse as _parser

__all__ = ["Database", "Expression", "Unsupported", "available", "char_offsets", "literal",
           "superset_expression"]

_LOADED: list[Any] = []
_LOAD_LOCK = threading.Lock()


def _hyperscan() -> Any:
    """The ``hyperscan`` module, imported on first use (``None`` when it is not installed)."""
    if not _LOADED:
        with _LOAD_LOCK:
            if not _LOADED:
                try:
                    import hyperscan
                except Exception:  # not installed, or no wheel for this platform
                    _LOADED.append(None)
                else:
                    _LOADED.append(hyperscan)
    return _LOADED[0]


# One UTF-8 encoded character outside ASCII (lead byte, one to three continuation bytes; lone
# surrogates, encoded with "surrogatepass", have the same shape).
_NON_ASCII = rb"[\xc0-\xff][\x80-\xbf]{1,3}"
# Bounded repeats larger than this become unbounded: still a superset, and much smaller for
# Hyperscan to compile.
_MAX_BOUND = 16
_IGNORECASE = 2  # re.IGNORECASE; the parser's flag value
# ASCII letters that re.IGNORECASE also matches to non-ASCII characters (U+0130, U+0131,
# KELVIN SIGN, LONG S).
_CASE_BEYOND_ASCII = frozenset("iksIKS")
_ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")
_NOT_CONTINUATION = bytes(b for b in range(256) if not 0x80 <= b < 0xC0)


class Unsupported(ValueError):
    """A regex construct :func:`superset_expression` does not translate."""


def available() -> bool:
    """Whether the Hyperscan engine is installed."""
    return _hyperscan() is not None


# -- translation ---------------------------------------------------------------------------------

def _category_ascii(category: Any) -> set[int]:
    """The ASCII code points of a ``str`` regex category (``\\d``, ``\\w``, ``\\s`` and their
    negations); every one of them has non-ASCII members too."""
    name = str(category)
    if "DIGIT" in name:
        members = {c for c in range(128) if chr(c).isdigit()}
    elif "WORD" in name:
        members = {c for c in range(128) if chr(c).isalnum() or c == ord("_")}
    elif "SPACE" in name:
        members = {ord(c) for c in _ASCII_SPACE}
    elif "LINEBREAK" in name:
        members = {ord("\n")}
    else:
        raise Unsupported(f"category {name}")
    if "NOT" in name:
        members = set(range(128)) - members
    return members


def _fold(members: set[int]) -> set[int]:
    """Both cases of every ASCII letter in ``members`` (for ``re.IGNORECASE``)."""
    out = set(members)
    for c in members:
        ch = chr(c)
        if ch.isalpha():
            out.add(ord(ch.lower()))
            out.add(ord(ch.upper()))
    return out


def _class(items: Sequence[tuple[Any, Any]], ignorecase: bool) -> tuple[set[int], set[str] | None]:
    """A character class as (ASCII members, non-ASCII members), the latter ``None`` for "any
    non-ASCII character" (negated classes, categories, wide ranges, case-folded letters)."""
    negate = False
    members: set[int] = set()
    wide: set[str] | None = set()
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            if av < 128:
                members.add(av)
            elif wide is not None:
                wide.add(chr(av))
        elif op is _sre.RANGE:
            low, high = av
            members.update(range(low, min(high, 127) + 1))
            if high >= 128:
                wide = None
        elif op is _sre.CATEGORY:
            members |= _category_ascii(av)
            wide = None
        else:
            raise Unsupported(f"class item {op}")
    if ignorecase:
        members = _fold(members)
        if wide or any(chr(c) in _CASE_BEYOND_ASCII for c in members):
            wide = None  # 'k' also matches KELVIN SIGN, 's' LONG S, 'i' U+0130 and U+0131
    if negate:
        return set(range(128)) - members, None
    return members, wide


def _byte_class(members: Iterable[int]) -> bytes:
    codes = sorted(set(members))
    parts: list[bytes] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        parts.append(b"\\x%02x" % codes[i] if i == j else b"\\x%02x-\\x%02x" % (codes[i], codes[j]))
        i = j + 1
    return b"[" + b"".join(parts) + b"]"


def literal(text: str) -> bytes:
    """``text`` as a Hyperscan expression matching its UTF-8 bytes."""
    return b"".join(b"\\x%02x" % b for b in text.encode("utf-8", "surrogatepass"))


def _char(members: set[int], wide: set[str] | None) -> bytes:
    """One character: the ASCII members and the non-ASCII ones (``None``: any)."""
    options: list[bytes] = []
    if len(members) == 1:
        options.append(b"\\x%02x" % next(iter(members)))
    elif members:
        options.append(_byte_class(members))
    if wide is None:
        options.append(_NON_ASCII)
    else:
        options.extend(literal(ch) for ch in sorted(wide))
    if not options:
        raise Unsupported("a class that matches nothing")
    return options[0] if len(options) == 1 else b"(?:" + b"|".join(options) + b")"


_SINGLE = (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN)


def _single(op: Any, av: Any, ignorecase: bool) -> tuple[set[int], set[str] | None]:
    """The characters one single-character token matches (see :func:`_class`)."""
    if op is _sre.LITERAL:
        if ignorecase and chr(av).isalpha():
            return _class([(op, av)], True)
        return ({av}, set()) if av < 128 else (set(), {chr(av)})
    if op is _sre.NOT_LITERAL:
        members, _ = _class([(_sre.LITERAL, av)], ignorecase)
        return set(range(128)) - members, None
    if op is _sre.ANY:
        return set(range(128)) - {ord("\n")}, None
    return _class(av, ignorecase)


def _charset(tokens: Iterable[tuple[Any, Any]], flags: int) -> tuple[set[int], bool]:
    """Every character any match of ``tokens`` can contain: ASCII members, and whether any
    non-ASCII character is possible."""
    members: set[int] = set()
    wide = False
    ignorecase = bool(flags & _IGNORECASE)
    for op, av in tokens:
        if op in _SINGLE:
            ascii_members, non_ascii = _single(op, av, ignorecase)
            members |= ascii_members
            wide = wide or non_ascii is None or bool(non_ascii)
        elif op is _sre.BRANCH:
            for branch in av[1]:
                m, w = _charset(branch, flags)
                members |= m
                wide = wide or w
        elif op is _sre.SUBPATTERN:
            m, w = _charset(av[3], (flags | av[1]) & ~av[2])
            members |= m
            wide = wide or w
        elif op is _sre.ATOMIC_GROUP:
            m, w = _charset(av, flags)
            members |= m
            wide = wide or w
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            m, w = _charset(av[2], flags)
            members |= m
            wide = wide or w
        elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
            continue
        else:
            raise Unsupported(f"regex construct {op}")
    return members, wide


def _repeat(low: int, high: int) -> bytes:
    if high is _sre.MAXREPEAT or high > _MAX_BOUND:
        return b"*" if low == 0 else b"+" if low == 1 else b"{%d,}" % min(low, 4 * _MAX_BOUND)
    return b"{%d,%d}" % (low, high)


def _emit(tokens: Iterable[tuple[Any, Any]], flags: int, *, tail: bool = False) -> bytes:
    """The Hyperscan form of a token sequence; with ``tail``, its end shortened (see
    :func:`_tail`)."""
    items = list(tokens)
    last = b""
    while tail and items:
        op, av = items.pop()
        last = _tail(op, av, flags)
        if last:
            break
    out: list[bytes] = []
    ignorecase = bool(flags & _IGNORECASE)
    for op, av in items:
        if op in _SINGLE:
            out.append(_char(*_single(op, av, ignorecase)))
        elif op is _sre.BRANCH:
            options = [_emit(branch, flags) for branch in av[1]]
            body = b"|".join(o for o in options if o)
            if not body:
                continue
            out.append(b"(?:" + body + b")" + (b"?" if not all(options) else b""))
        elif op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            inner = _emit(sub, (flags | add_flags) & ~del_flags)
            if inner:
                out.append(b"(?:" + inner + b")")
        elif op is _sre.ATOMIC_GROUP:
            inner = _emit(av, flags)
            if inner:
                out.append(b"(?:" + inner + b")")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            low, high, sub = av
            repeated = list(sub)
            if len(repeated) == 1 and repeated[0][0] in _SINGLE:
                members, wide = _single(repeated[0][0], repeated[0][1], ignorecase)
                if wide is None or wide:
                    # Counted in bytes: a non-ASCII character is up to four of them.
                    out.append(_byte_class(members | set(range(0x80, 0x100))) + _repeat(
                        low, high if high is _sre.MAXREPEAT else 4 * high))
                elif members:
                    out.append(_byte_class(members) + _repeat(low, high))
                continue
            if high is not _sre.MAXREPEAT and high <= 1:
                inner = _emit(repeated, flags)
                if inner:
                    out.append(b"(?:" + inner + b")" + (b"?" if low == 0 else b""))
                continue
            # A repeated group (a bounded run of words, say): any run of the characters it can
            # contain. Nested bounded repeats are what makes Hyperscan databases slow to build.
            chars, any_wide = _charset(repeated, flags)
            if any_wide:
                chars |= set(range(0x80, 0x100))
            if chars:
                out.append(_byte_class(chars) + b"*")
        elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
            continue  # dropping an assertion only widens the match set
        else:
            raise Unsupported(f"regex construct {op}")
    out.append(last)
    return b"".join(out)


def _tail(op: Any, av: Any, flags: int) -> bytes:
    """The last token of an expression, shortened to the least of it any match must contain:
    a match of the shortened expression is a prefix of a match of the full one, and it ends at
    one place per match where a trailing repeat would end at many (a report each)."""
    if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
        return b""
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
        low, _high, sub = av
        body = list(sub)
        if low == 0 or len(body) != 1 or body[0][0] not in _SINGLE:
            return b""
        members, wide = _single(body[0][0], body[0][1], bool(flags & _IGNORECASE))
        if wide is None or wide:
            # ``low`` characters are at least ``low`` bytes, each a member or non-ASCII.
            members = members | set(range(0x80, 0x100))
        return _byte_class(members) + (b"{%d}" % low if low > 1 else b"")
    if op is _sre.BRANCH:
        options = [_emit(branch, flags, tail=True) for branch in av[1]]
        if not all(options):
            return b""  # the whole alternation is optional here
        return b"(?:" + b"|".join(options) + b")"
    if op is _sre.SUBPATTERN:
        inner = _emit(av[3], (flags | av[1]) & ~av[2], tail=True)
        return b"(?:" + inner + b")" if inner else b""
    return _emit([(op, av)], flags)


def superset_expression(pattern: str, flags: int = 0) -> bytes:
    """A Hyperscan expression over UTF-8 bytes that matches wherever the Python regex
    ``pattern`` (a ``str`` pattern, compiled with ``flags``) can match: for every match of the
    regex, the expression matches from the same start to a point inside that match (the end of
    its last required part), at the same byte offsets. It may match more.

    Raises :class:`Unsupported` for back-references and other constructs it does not translate,
    or when the result could match the empty string.
    """
    parsed = _parser.parse(pattern, flags)
    state_flags = int(getattr(getattr(parsed, "state", None), "flags", flags))
    expression = _emit(parsed, state_flags, tail=True)
    if not expression:
        raise Unsupported("the pattern only asserts")
    return expression


# -- databases -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Expression:
    """One expression of a database: Hyperscan source and how it is compiled.

    ``leftmost``: report the leftmost start of each match; ``single``: report only the first
    match.
    """

    source: bytes
    leftmost: bool = False
    single: bool = False


class Database:
    """Compiled Hyperscan expressions (block mode) with a scratch space per thread.

    :meth:`scan` returns the ``(expression index, start, end)`` byte offsets of every match in
    order of end offset (the start is 0 unless the expression asked for it), or ``None`` when
    more than ``cap`` were reported (the scan stops there).
    """

    __slots__ = ("_db", "_hs", "_local", "size")

    def __init__(self, expressions: Sequence[Expression]) -> None:
        _hs = _hyperscan()
        if _hs is None:
            raise RuntimeError("hyperscan is not installed")
        flags = [(_hs.HS_FLAG_SOM_LEFTMOST if e.leftmost else 0)
                 | (_hs.HS_FLAG_SINGLEMATCH if e.single else 0) for e in expressions]
        self._db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        self._db.compile(expressions=[e.source for e in expressions],
                         ids=list(range(len(expressions))), elements=len(expressions),
                         flags=flags)
        self._hs = _hs
        self.size = int(self._db.size())
        self._local = threading.local()

    def scan(self, data: bytes, cap: int) -> list[tuple[int, int, int]] | None:
        """Every match in ``data`` as ``(expression index, start, end)``; ``None`` past ``cap``."""
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            # Scratch space is per thread: a Hyperscan scratch cannot serve two scans at once.
            scratch = local.scratch = self._hs.Scratch(self._db)
        found: list[tuple[int, int, int]] = []
        append = found.append

        def on_match(index: int, start: int, end: int, _flags: int, _ctx: object) -> bool:
            append((index, start, end))
            return len(found) > cap

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        except self._hs.ScanTerminated:
            return None
        return found


def char_offsets(data: bytes, ends: Sequence[int]) -> Callable[[int], int]:
    """A map from the byte offsets ``ends`` (UTF-8 ``data``) to string offsets.

    One pass over the bytes up to the largest offset: each offset is the count of bytes before
    it that start a character. An offset inside a character maps to the end of that character.
    """
    table: dict[int, int] = {}
    position = 0
    chars = 0
    for end in sorted(set(ends)):
        # Characters started in data[position:end]: its bytes minus its continuation bytes.
        piece = data[position:end]
        chars += len(piece) - len(piece.translate(None, _NOT_CONTINUATION))
        table[end] = chars
        position = end
    return table.__getitem__
