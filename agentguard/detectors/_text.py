# ruff: noqa: RUF001, RUF003  (look-alike letters and fullwidth forms are named on purpose)
"""Character-level views of untrusted text: invisible characters, look-alikes, offset mapping.

Everything here is a single C-level pass (``str.translate``, ``str.lower``, one character-class
regex), so it is linear in the input and cheap on ASCII text, which skips it entirely.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BLOB_PROBE",
    "BLOB_SHAPE",
    "CONFUSABLES",
    "GREEK_OR_CYRILLIC",
    "HIDDEN_RUN",
    "MIXED_SCRIPT",
    "SPACED_PROBES",
    "SPACING_SHAPE",
    "TAG_DECODE",
    "VARIATION_BYTE",
    "VARIATION_DECODE",
    "NormalisedView",
    "encodes_space",
    "escape_invisible",
    "hidden_runs",
    "mixed_script",
    "non_ascii",
    "normalise",
    "shapes_clean",
    "to_latin",
]

# Zero-width and formatting characters, bidi controls, Unicode tag characters, and the other
# code points that render as nothing. They are removed from the view the phrase rules read, so
# "ig\u200bnore" still reads "ignore", and reported as hidden-text indicators.
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u034f\u115f\u1160" \
              "\u3164\uffa0\u17b4\u17b5"
_SOFT_HYPHEN = "\u00ad"
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"
# Variation selectors render as nothing; besides choosing an emoji's or an ideograph's form (one
# after a character), a run of them can spell bytes (see VARIATION_BYTE), and one inside a word
# breaks it up as a zero-width space does.
VARIATION_FIRST, VARIATION_LAST = 0xFE00, 0xFE0F
VARIATION_SUPPLEMENT_FIRST, VARIATION_SUPPLEMENT_LAST = 0xE0100, 0xE01EF
_INVISIBLE_CLASS = "[" + _ZERO_WIDTH + _SOFT_HYPHEN + _BIDI + "\U000e0000-\U000e007f" \
    + "\ufe00-\ufe0f\U000e0100-\U000e01ef" + "]"
HIDDEN_RUN = re.compile(_INVISIBLE_CLASS + "+")

ZERO_WIDTH = frozenset(_ZERO_WIDTH)
BIDI_OVERRIDES = frozenset("\u202a\u202b\u202d\u202e")
BIDI_ISOLATES = frozenset("\u2066\u2067\u2068\u2069\u202c")
BIDI_MARKS = frozenset("\u200e\u200f\u061c")
TAG_FIRST, TAG_LAST = 0xE0000, 0xE007F

_DELETE: dict[int, None] = {ord(c): None for c in _ZERO_WIDTH + _SOFT_HYPHEN + _BIDI}
_DELETE.update({cp: None for cp in range(TAG_FIRST, TAG_LAST + 1)})
_DELETE.update({cp: None for cp in range(VARIATION_FIRST, VARIATION_LAST + 1)})
_DELETE.update({cp: None for cp in range(VARIATION_SUPPLEMENT_FIRST, VARIATION_SUPPLEMENT_LAST + 1)})
# The byte a variation selector stands for when a run of them spells data: U+FE00-FE0F are the
# bytes 0-15, U+E0100-E01EF the bytes 16-255.
VARIATION_BYTE: dict[int, int] = {cp: cp - VARIATION_FIRST
                                  for cp in range(VARIATION_FIRST, VARIATION_LAST + 1)}
VARIATION_BYTE.update({cp: cp - VARIATION_SUPPLEMENT_FIRST + 16
                       for cp in range(VARIATION_SUPPLEMENT_FIRST, VARIATION_SUPPLEMENT_LAST + 1)})
# A run of invisible characters as the Latin-1 characters of the bytes its variation selectors
# stand for (the others dropped): one str.translate.
VARIATION_DECODE: dict[int, int | None] = {**_DELETE, **VARIATION_BYTE}
INVISIBLE = frozenset(chr(cp) for cp in _DELETE)

_ASCII_BYTES = bytes(range(128))
# hidden_runs: with more distinct invisible characters than this, one regex pass is cheaper
# than a search per character.
_MAX_SEARCHED = 16
# non_ascii: past this many bytes of non-ASCII characters, building their set costs as much as
# the regex passes it saves (text mostly in another script), so it is not built.
_MAX_SET_BYTES = 1 << 15
# Up to this many distinct characters to replace, one str.replace each beats one str.translate.
_MAX_REPLACED = 16
# normalise: up to this many distinct non-ASCII characters are checked for a lower case.
_MAX_CASELESS = 256
# normalise: texts from this size on, with up to this many distinct non-ASCII letters that have
# a lower case, are lower-cased as bytes plus one str.replace per such letter (each replace is a
# C pass; past about eight of them str.lower is as fast).
_BYTE_LOWER_MIN = 2048
_MAX_LOWER_REPLACED = 8


def non_ascii(text: str, data: bytes | None = None) -> frozenset[str] | None:
    """The distinct non-ASCII characters of ``text``, or ``None`` when it holds so many that
    the callers' regex passes over the text are as cheap.

    One UTF-8 encode and one ``bytes.translate`` dropping the ASCII bytes, both C loops over
    bytes: on mostly-ASCII text in many languages this is several times cheaper than one
    character-class regex pass over the (often four-byte-wide) string, and it answers "is there
    any invisible / foldable / Greek character" for every such pass at once. ``data``: the
    text's UTF-8 form (``surrogatepass``) when the caller has it.
    """
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    rest = data.translate(None, _ASCII_BYTES)
    if len(rest) > _MAX_SET_BYTES:
        return None
    return frozenset(rest.decode("utf-8", "surrogatepass")) if rest else frozenset()


def hidden_runs(text: str, present: frozenset[str] | None) -> Iterator[tuple[int, int]]:
    """The maximal runs of invisible characters of ``text`` in order, as ``(start, stop)``:
    what ``HIDDEN_RUN.finditer`` finds.

    ``present`` is ``non_ascii(text)``, the characters the text holds; ``None`` (a text mostly
    in another script) means one regex pass. Otherwise the next occurrence of each invisible
    character present is found with ``str.find`` (every search moves forward only, so each such
    character costs at most one C pass over the text) and a run is extended with one anchored
    regex match: the Python work per run is constant, and a caller that stops reading stops the
    work.
    """
    chars = present & INVISIBLE if present is not None else None
    if chars is not None and not chars:
        return
    if chars is None or len(chars) > _MAX_SEARCHED:
        for match in HIDDEN_RUN.finditer(text):
            yield match.span()
        return
    find = text.find
    match_run = HIDDEN_RUN.match
    size = len(text)
    if len(chars) == 1:
        # One invisible character in the text (a text dense with zero-width spaces): its next
        # occurrence is the next run, and most runs are that one character.
        (char,) = chars
        at = find(char)
        while at >= 0:
            stop = at + 1
            if stop < size and text[stop] in INVISIBLE:
                extent = match_run(text, at)
                stop = extent.end() if extent is not None else stop
            yield at, stop
            at = find(char, stop)
        return
    following: dict[str, int] = {}
    for char in chars:
        at = find(char)
        if at >= 0:
            following[char] = at
    while following:
        start = min(following.values())
        extent = match_run(text, start)
        stop = extent.end() if extent is not None else start + 1
        yield start, stop
        for char, at in list(following.items()):
            if at < stop:
                at = find(char, stop)
                if at < 0:
                    del following[char]
                else:
                    following[char] = at

# Compatibility forms that spell ASCII letters: fullwidth forms, mathematical alphanumerics,
# enclosed letters. Each maps one code point to one, so offsets are unchanged.
_FOLD: dict[int, int | None] = dict(_DELETE)
TAG_DECODE: dict[int, int | None] = {cp: None for cp in range(TAG_FIRST, TAG_LAST + 1)}
TAG_DECODE.update({cp: cp - TAG_FIRST for cp in range(TAG_FIRST + 0x20, TAG_FIRST + 0x7F)})
_FOLD.update({cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)})
_FOLD[0x3000] = 0x20  # ideographic space
_FOLD[0x0130] = ord("i")  # 'İ'.lower() is two code points; keep the view one-to-one
for _base, _count, _target in (
    (0x1D400, 26, "A"), (0x1D41A, 26, "a"), (0x1D434, 26, "A"), (0x1D44E, 26, "a"),
    (0x1D468, 26, "A"), (0x1D482, 26, "a"), (0x1D49C, 26, "A"), (0x1D4B6, 26, "a"),
    (0x1D4D0, 26, "A"), (0x1D4EA, 26, "a"), (0x1D504, 26, "A"), (0x1D51E, 26, "a"),
    (0x1D538, 26, "A"), (0x1D552, 26, "a"), (0x1D56C, 26, "A"), (0x1D586, 26, "a"),
    (0x1D5A0, 26, "A"), (0x1D5BA, 26, "a"), (0x1D5D4, 26, "A"), (0x1D5EE, 26, "a"),
    (0x1D608, 26, "A"), (0x1D622, 26, "a"), (0x1D63C, 26, "A"), (0x1D656, 26, "a"),
    (0x1D670, 26, "A"), (0x1D68A, 26, "a"), (0x24B6, 26, "A"), (0x24D0, 26, "a"),
    (0x1F130, 26, "A"), (0x1F150, 26, "A"), (0x1F170, 26, "A"), (0x1D7CE, 10, "0"),
    (0x1D7D8, 10, "0"), (0x1D7E2, 10, "0"), (0x1D7EC, 10, "0"), (0x1D7F6, 10, "0"),
):
    for _i in range(_count):
        _FOLD[_base + _i] = ord(_target) + _i
# Letters that read as a Latin letter without being one: letter-like symbols and roman numerals
# ("\u2170gnore" reads "ignore"), superscript, subscript and modifier letters, small capitals
# ("\u026a\u0262\u0274\u1d0f\u0280\u1d07"), and the dotless i. All are folded in the view itself: none is a
# letter of a language's own words (Turkish words read with "i" for "\u0131" are still read).
_LETTERLIKE = (
    "\u0131i \u0262g \u026ai \u0274n \u0280r \u028fy \u0299b \u029ch \u029fl \u02b0h \u02b2j \u02b3r "
    "\u02b7w \u02b8y \u1d00a \u1d04c \u1d05d \u1d07e \u1d0aj \u1d0bk \u1d0dm \u1d0fo \u1d18p "
    "\u1d1bt \u1d1cu \u1d20v \u1d21w \u1d22z \u1d2cA \u1d2eB \u1d30D \u1d31E \u1d33G \u1d34H "
    "\u1d35I \u1d36J \u1d37K \u1d38L \u1d39M \u1d3aN \u1d3cO \u1d3eP \u1d3fR \u1d40T \u1d41U "
    "\u1d42W \u1d43a \u1d47b \u1d48d \u1d49e \u1d4dg \u1d4fk \u1d50m \u1d52o \u1d56p \u1d57t "
    "\u1d58u \u1d5bv \u1d62i \u1d63r \u1d64u \u1d65v \u2071i \u207fn \u2090a \u2091e \u2092o "
    "\u2093x \u2095h \u2096k \u2097l \u2098m \u2099n \u209ap \u209bs \u209ct \u2102C \u210ag "
    "\u210bH \u210cH \u210dH \u210eh \u2110I \u2111I \u2112L \u2113l \u2115N \u2119P \u211aQ "
    "\u211bR \u211cR \u211dR \u2124Z \u2128Z \u212cB \u212dC \u212fe \u2130E \u2131F "
    "\u2133M \u2134o \u2139i \u2145D \u2146d \u2147e \u2148i \u2149j \u2160I \u2164V \u2169X "
    "\u216cL \u216dC \u216eD \u216fM \u2170i \u2174v \u2179x \u217cl \u217dc \u217ed \u217fm "
    "\ua730f \ua731s"
)
_FOLD.update({ord(pair[0]): ord(pair[1]) for pair in _LETTERLIKE.split()})
# Ranges, not a list of characters: a class of thousands of single characters is checked one by
# one per position, a class of ranges in a few comparisons.
# Only letters and digits need folding for phrases to match: CJK text full of fullwidth
# punctuation ("，", "！") must not pay for a translate of the whole text.
_NEEDS_FOLD = re.compile(
    "[\u0130\u0131\u0262\u026a\u0274\u0280\u028f\u0299\u029c\u029f\u02b0-\u02b8\u1d00-\u1d65"
    "\u2071\u207f\u2090-\u209c\u2102\u210a-\u210e\u2110-\u2113\u2115\u2119-\u211d\u2124\u2128"
    "\u212c\u212d\u212f-\u2131\u2133\u2134\u2139\u2145-\u2149\u2160-\u217f\u24b6-\u24e9"
    "\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\ua730\ua731\U0001d400-\U0001d7ff"
    "\U0001f130-\U0001f189]"
)

# Cyrillic and Greek letters that look like Latin ones; applied only to a second view when a
# word mixes scripts, so Russian or Greek text is still read as itself.
_CONFUSABLE_PAIRS = (
    "аa бb вb еe ёe кk мm нh оo рp сc тt уy хx ѕs іi їi јj ԁd ɡg һh ӏl ԛq ԝw"
    " αa βb γy εe ηn ιi κk νv οo ρp τt υu χx ωw ϲc ϳj ѵv"
)
CONFUSABLES: dict[int, int] = {ord(p[0]): ord(p[1]) for p in _CONFUSABLE_PAIRS.split()}


def to_latin(view: str, present: frozenset[str] | None) -> str:
    """``view`` (lower case) with look-alike Greek and Cyrillic letters replaced by Latin ones.

    ``present`` (from :func:`non_ascii`) are the text's non-ASCII characters: with it, each
    look-alike that occurs is replaced with one ``str.replace`` (a C pass), which on a long,
    mostly Latin text is many times cheaper than a dictionary-driven ``str.translate`` of every
    character.
    """
    if present is None:
        return view.translate(CONFUSABLES)
    found = {ch for char in present for ch in char.lower() if ord(ch) in CONFUSABLES}
    if len(found) > _MAX_REPLACED:
        return view.translate(CONFUSABLES)
    for char in found:
        view = view.replace(char, chr(CONFUSABLES[ord(char)]))
    return view


# A Greek or Cyrillic letter next to a Latin one. The pattern starts with the rare class, so the
# engine skips Latin text quickly; a class listing each look-alike, or an alternation starting
# with [a-z], is checked at every position and is many times slower on long texts.
MIXED_SCRIPT = re.compile("[\u0370-\u052f\u0261](?:(?<=[a-z].)|(?=[a-z]))")
GREEK_OR_CYRILLIC = re.compile("[\u0370-\u052f\u0261]")
# mixed_script: views from this size on, with up to this many distinct Greek or Cyrillic
# letters occurring up to this many times in all, are read with str.find.
_MIXED_FIND_MIN = 4096
_MIXED_MAX_LETTERS = 16
_MIXED_MAX_PLACES = 64


def mixed_script(view: str, present: frozenset[str] | None) -> bool:
    """Whether ``MIXED_SCRIPT`` occurs in ``view``, the lower-cased view of a text whose
    non-ASCII characters are ``present`` (:func:`non_ascii`).

    A long English text quoting a Greek or Cyrillic word or two ("μ", "Привет") is often a
    wide string, where the regex tests every character (~0.3 ms per 100 KB); ``str.find``
    jumps to each place one of the few letters occurs, and their neighbours are looked at.
    Text in Greek or Russian, with many such places, is left to the regex.
    """
    if present is not None and len(present) <= _MAX_CASELESS and len(view) >= _MIXED_FIND_MIN:
        letters: set[str] = set()
        for char in present:
            # The view's form of each character: its lower case (the ohm sign lowers to omega),
            # both sigmas for a capital one (its lower case depends on its place in a word).
            forms = "\u03c3\u03c2" if char == "\u03a3" else char.lower()
            letters.update(form for form in forms if GREEK_OR_CYRILLIC.match(form))
        if len(letters) <= _MIXED_MAX_LETTERS:
            found = _next_to_latin(view, letters)
            if found is not None:
                return found
    return MIXED_SCRIPT.search(view) is not None


def _next_to_latin(view: str, letters: set[str]) -> bool | None:
    """Whether one of ``letters`` has a-z before or after it in ``view``; ``None`` once they
    occur in more places than are worth visiting one by one."""
    places = _MIXED_MAX_PLACES
    last = len(view) - 1
    find = view.find
    for letter in letters:
        at = find(letter)
        while at >= 0:
            places -= 1
            if places < 0:
                return None
            if (at and "a" <= view[at - 1] <= "z") or (at < last and "a" <= view[at + 1] <= "z"):
                return True
            at = find(letter, at + 1)
    return False


# Bytes-level shapes of an ASCII text, one bytes.translate each: base64-alphabet runs (a blob is
# 24 of them in a row) and letters spelled out between separators ("i g n o r e", "i.g.n.o.r.e").
_BLOB_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
BLOB_SHAPE = bytes(0x61 if i in _BLOB_CHARS else 0x20 for i in range(256))
BLOB_PROBE = b"a" * 24
_SPACING_SEPARATORS = b" .-_*|/\t"
SPACING_SHAPE = bytes(0x61 if chr(i).isascii() and chr(i).isalpha() else
                      0x20 if i in _SPACING_SEPARATORS else 0x78 for i in range(256))
SPACED_PROBES = (b" a a a a a ", b"a  a  a  a  a")


# Base64 of text with a space in it: the space (0x20), at one of the three places in a 3-byte
# group, is encoded as one of these character pairs (the decoder skips '=' signs in between);
# in hex it is "20". Base64 and hex runs without one cannot decode to readable text.
_SPACE_ENCODED = re.compile(rb"I[A-P]|[CSiy][A-D]|[AEIMQUYcgkosw048]g|20")
# The same pairs found by their second character: a pattern that starts with a character class
# is scanned for that class in a tight loop, where the alternation above is tried at every
# position (URL paths and lower-case identifiers rarely hold an upper-case A-P, a "g" or a "0").
# The look-behind reads the character before the search's start, so a search of ``[i, j)``
# starts at ``i + 1``.
_SPACE_ENCODED_AT_SECOND = re.compile(rb"[A-Pg0](?<=I[A-P]|[CSiy][A-D]|[AEIMQUYcgkosw048]g|20)")


def encodes_space(run: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether a base64-alphabet run (``BLOB_SHAPE``), ``run[start:end]``, can decode to text
    with a space in it (``_SPACE_ENCODED`` occurs once the ``=`` signs are removed)."""
    if end is None:
        end = len(run)
    if run.find(b"=", start, end) < 0:
        # The common case, searched in place: no slice of a long document per run.
        return _SPACE_ENCODED_AT_SECOND.search(run, start + 1, end) is not None
    return _SPACE_ENCODED_AT_SECOND.search(run[start:end].replace(b"=", b""), 1) is not None


def shapes_clean(data: bytes) -> bool:
    """No base64-like run and no spaced-out letters in ``data`` (an ASCII text's bytes)."""
    if data.translate(BLOB_SHAPE).find(BLOB_PROBE) >= 0:
        return False
    shape = data.translate(SPACING_SHAPE)
    return shape.find(SPACED_PROBES[0]) < 0 and shape.find(SPACED_PROBES[1]) < 0


@dataclass(slots=True)
class NormalisedView:
    """The lower-cased, folded view of a text and how to map its offsets back to the original."""

    text: str
    # Original offsets of removed runs and the cumulative count removed up to and including each.
    _view_starts: list[int]
    _removed_after: list[int]
    exact: bool = True
    _original_starts: list[int] | None = None

    def original(self, offset: int) -> int:
        """The offset in the original text of ``offset`` in this view."""
        if not self._view_starts:
            return offset
        k = bisect.bisect_right(self._view_starts, offset)
        return offset + (self._removed_after[k - 1] if k else 0)

    def view_offset(self, original: int) -> int:
        """The offset in this view of ``original`` in the original text (the view offset of the
        next kept character when ``original`` falls inside a removed run)."""
        if not self._view_starts:
            return original
        starts = self._original_starts
        if starts is None:
            starts = self._original_starts = [
                start + (self._removed_after[k - 1] if k else 0)
                for k, start in enumerate(self._view_starts)]
        k = bisect.bisect_right(starts, original)
        if not k:
            return original
        removed = self._removed_after[k - 1]
        # Inside the last run before ``original``: only the part before it is removed.
        return max(self._view_starts[k - 1], original - removed)

    def removed_between(self, start: int, end: int) -> bool:
        """Whether characters were removed inside the view span ``[start, end)``."""
        if not self._view_starts:
            return False
        k = bisect.bisect_right(self._view_starts, start)
        return k < len(self._view_starts) and self._view_starts[k] < end


def _lower_by_bytes(folded: str, text: str, data: bytes | None,
                    present: frozenset[str] | None) -> str | None:
    """``folded.lower()`` computed as a byte pass plus one ``str.replace`` per non-ASCII letter
    with a lower case, or ``None`` when that is not cheaper or not the same.

    ``str.lower`` looks every character of a wide string up in the Unicode database (a 100 KB
    text with one emoji or mathematical letter is stored four bytes per character, ~0.35 ms);
    ``bytes.lower`` changes only ASCII letters and leaves UTF-8 sequences alone. ``present``
    holds every non-ASCII character of ``folded`` (folding only removes characters or yields
    ASCII). Capital sigma is lowered by context (final "ς"), so a text holding one, or a
    letter whose lower case is several characters, takes ``str.lower``.
    """
    if present is None or len(present) > _MAX_CASELESS or len(folded) < _BYTE_LOWER_MIN:
        return None
    cased = [char for char in present if char.lower() != char and ord(char) not in _FOLD]
    if len(cased) > _MAX_LOWER_REPLACED or "\u03a3" in cased or \
            any(len(char.lower()) != 1 for char in cased):
        return None
    raw = data if data is not None and folded is text else \
        folded.encode("utf-8", "surrogatepass")
    lowered = raw.lower().decode("utf-8", "surrogatepass")
    for char in cased:
        lowered = lowered.replace(char, char.lower())
    return lowered


def normalise(text: str, runs: list[tuple[int, int]], *, runs_complete: bool = True,
              present: frozenset[str] | None = None, data: bytes | None = None
              ) -> NormalisedView:
    """The phrase-matching view of ``text``: invisible characters removed, compatibility letters
    folded, lower case. ``runs`` are the ``(start, length)`` runs of removed characters;
    ``present`` (optional, from :func:`non_ascii`) the non-ASCII characters of ``text``;
    ``data`` (optional) its UTF-8 form."""
    if text.isascii():
        return NormalisedView(text.lower(), [], [])
    if (not runs and data is not None and present is not None
            and len(present) <= _MAX_CASELESS and all(c.lower() == c for c in present)
            and _NEEDS_FOLD.search("".join(present)) is None):
        # Nothing to remove or fold, and no non-ASCII letter has a lower case (punctuation,
        # symbols, CJK, lower-case letters): lower-casing the ASCII bytes is the whole job,
        # and a byte pass is twice as fast as ``str.lower`` on a wide string.
        return NormalisedView(data.lower().decode("utf-8", "surrogatepass"), [], [],
                              runs_complete)
    # Deleting with the run regex and folding only when a foldable character is present: a
    # dict-driven translate of a whole non-ASCII text is several times slower than either.
    if not runs:
        folded = text
    elif runs_complete and len(runs) <= 1024:
        # Cutting the known runs out is cheaper than another regex pass over the whole text.
        parts = []
        position = 0
        for start, length in runs:
            parts.append(text[position:start])
            position = start + length
        parts.append(text[position:])
        folded = "".join(parts)
    else:
        folded = HIDDEN_RUN.sub("", text)
    # With the character set known, the small set is searched instead of the whole text, and
    # the few foldable characters that occur are replaced one C pass each (a dictionary-driven
    # translate of a long text costs tens of nanoseconds per character).
    if present is None:
        if _NEEDS_FOLD.search(folded) is not None:
            folded = folded.translate(_FOLD)
    elif _NEEDS_FOLD.search("".join(present)) is not None:
        foldable = [char for char in present if ord(char) in _FOLD]
        if len(foldable) > _MAX_REPLACED:
            folded = folded.translate(_FOLD)
        else:
            for char in foldable:
                target = _FOLD[ord(char)]
                folded = folded.replace(char, "" if target is None else chr(target))
    lowered = _lower_by_bytes(folded, text, data, present)
    if lowered is None:
        lowered = folded.lower()
    exact = runs_complete
    if len(lowered) != len(folded):
        # A few rare characters lower-case to two code points; keep offsets exact anyway by
        # lower-casing character by character only then (bounded by the text size).
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in folded)
    view_starts: list[int] = []
    removed_after: list[int] = []
    removed = 0
    for start, length in runs:
        view_starts.append(start - removed)
        removed += length
        removed_after.append(removed)
    return NormalisedView(lowered, view_starts, removed_after, exact)


def escape_invisible(text: str) -> str:
    """``text`` with invisible and control characters shown as ``\\uXXXX`` escapes (for evidence)."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        code = ord(char)
        if char in "\n\t":
            out.append(" ")
        elif (code < 0x20 or 0x7F <= code < 0xA0 or char in ZERO_WIDTH or char in _BIDI
              or char == _SOFT_HYPHEN or TAG_FIRST <= code <= TAG_LAST
              or code in VARIATION_BYTE):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)
