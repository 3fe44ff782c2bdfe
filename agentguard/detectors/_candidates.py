"""Which URLs and spaced-out letters of a long text can need the scanner's Python checks.

A long document (a README, a web page) holds hundreds of links and image URLs; nearly all of
them are ordinary addresses without a query, and the scanner's URL check rejects them after a
regex match in Python each. :class:`CandidateFilter` finds, in one Hyperscan pass over the text
(see :mod:`._prefilter`), the places where a URL check can possibly report something (the
address carries a query, fragment, placeholder or encoding) and whether any letters are spelled
out between separators ("i g n o r e"), so that only those places reach Python. The matches are
a superset of what the checks accept: the Python checks stay the judge, and a scan gives the
same result with the filter or without it.

The filter is compiled once per process (about 40 ms), when the first long text is scanned, and
shared by every scanner.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from agentguard._errors import internal_error
from agentguard.detectors import _prefilter
from agentguard.detectors._prefilter import Expression, char_offsets, superset_expression

__all__ = ["MAX_REPORTS", "CandidateFilter", "RawCandidates", "shared_filter"]

# What each URL check can report, as regexes over the original text that match from the anchor
# to a character that makes the address worth a look: the scanner's own regexes (``_IMG_MD``,
# ``_LINK_MD``, ``_IMG_HTML``, ``_BARE_URL``) with that character required inside the address.
# Images report any query or fragment, so one of ``_URL_WORTH_PARSING``'s characters is enough.
_WORTH = r"[?#{}%$<\[]"


# The start of every name a placeholder value can spell ("?q=CONTEXT", "?e=E-MAIL": see
# PLACEHOLDER_NAMES in _urls). The names themselves would cost the pass a fifth more.
_NAMED = "=[A-Z][A-Z_-][A-Z]"


def _link_payload(url: str, *, angle: bool) -> str:
    """What a link or bare URL (``url``: a character class of the address) needs for
    ``analyse_url`` to report it: a placeholder-like character or encoding, a query of 16
    characters or more, a query with a value that names a placeholder (``=CONTEXT``),
    or a fragment together with an encoding or an upper-case value (which decode to a
    placeholder). Anything else returns early there."""
    marks = r"[{}<>\[\]$]" if angle else r"[{}\[\]$]"
    return (rf"(?:{marks}|%7[bBdD]|%24|%3[cC]|%s|INSERT|PLACEHOLDER|REPLACE|\?{url}{{16}}"
            rf"|{_NAMED}|\#{url}*?(?:%|=[A-Z])|(?:%|=[A-Z]){url}*?\#)")


# The spaces and '<' before a link's address are folded into its characters: wider, and a much
# smaller database than the exact sequence.
_LINK_URL = r"[^)>]"
_BARE_URL = r"[^\s<>\"'`)]"
_URL_SUPERSETS: Mapping[str, tuple[str, int]] = {
    # Inline images with a character worth parsing, and every reference-style image
    # ("![alt][label]": its address is defined elsewhere in the text).
    "md-image": (r"!\[[^\]\n]{0,300}\](?:\(\s{0,3}<?[^)\s>]{0,2047}" + _WORTH + r"|\[)", 0),
    "md-link": (r"\]\(" + _LINK_URL + "{0,2051}" + _link_payload(_LINK_URL, angle=True), 0),
    "html-image": (r"<img\b[^>]{0,600}?\bsrc(?:set)?\s{0,3}=\s{0,3}[\"']?[^\"'\s>]{0,2047}"
                   + _WORTH,
                   re.IGNORECASE),
    "url": (r"(?i:https?)://" + _BARE_URL + "{0,2047}" + _link_payload(_BARE_URL, angle=False),
            0),
}
# A bare URL's match is made of characters its class allows (the scheme, "://", the address and
# the payload marks all are), so its start is found without Hyperscan's start-of-match tracking
# (a quarter of the pass on a README, a third on a changelog full of links): just after the
# last byte before its end that the class excludes. Only ASCII bytes are excluded (the class
# takes any non-ASCII character). The space and the line break end nearly every URL, so they
# are looked for first, the others only in the stretch between.
_URL_EXCLUDED = bytes(b for b in range(128) if re.fullmatch(_BARE_URL, chr(b)) is None)
# The last of the other excluded bytes in a stretch: one greedy match, backing off from its end.
_LAST_OTHER_EXCLUDED = re.compile(
    b"(?s:.*)[" + re.escape(bytes(b for b in _URL_EXCLUDED if b not in b" \n")) + b"]")
# How far back a bare URL's start is looked for: the scanner's URL check reads at most 2,100
# characters from its anchor (four bytes each at most), so an anchor further back than this
# from a match's end is covered by an earlier match of its own.
_URL_REACH = 4 * 2100 + 64

# Letters spelled out between separators, exactly as the scanner's byte shapes define them
# (``SPACING_SHAPE`` and ``SPACED_PROBES`` in :mod:`._text`).
_SEP = rb"[ .\-_*|/\t]"
_LETTER = rb"[A-Za-z]"
_SPACED = (_SEP + (_LETTER + _SEP) * 5, _LETTER + (_SEP * 2 + _LETTER) * 4)

# Reports per scan past which the filter gives up on a text (it is then checked everywhere):
# each report is a callback that takes the GIL back, so a text dense with URLs costs more to
# filter than to check. One per 256 characters is several times what long documents have
# (READMEs full of badges and links: one per 500 to 2000), and bounds what a text dense with
# URLs wastes before the filter gives up.
MAX_REPORTS = 1024
_REPORT_SPACING = 256


class RawCandidates:
    """Where, in one text, URL checks can report something, and whether letters are spaced."""

    __slots__ = ("spaced", "urls")

    def __init__(self, urls: list[tuple[str, int, int]], spaced: bool) -> None:
        # (URL kind, start, end) in characters: a URL check of that kind at an anchor inside
        # [start, end] can report something; no check elsewhere can. (``end`` may lie past the
        # match: on non-ASCII text it is the start plus the match's length in bytes.)
        self.urls = urls
        self.spaced = spaced


class CandidateFilter:
    """The compiled Hyperscan database of the URL and spacing checks."""

    __slots__ = ("_db", "_kinds")

    def __init__(self) -> None:
        # Start of match: a URL check runs at an anchor, and only anchors inside a match (from
        # its leftmost start to the character worth parsing) can reach that character.
        # Bare URLs excepted: their start is found from the end (see ``_URL_EXCLUDED``).
        expressions = [Expression(superset_expression(pattern, flags), leftmost=kind != "url")
                       for kind, (pattern, flags) in _URL_SUPERSETS.items()]
        self._kinds = tuple(_URL_SUPERSETS)
        expressions.extend(Expression(probe, single=True) for probe in _SPACED)
        self._db = _prefilter.Database(expressions)

    def scan(self, text: str, data: bytes) -> RawCandidates | None:
        """Candidates in ``text`` (``data`` is its UTF-8 form), or ``None`` when the text has
        too many of them to be worth filtering (or Hyperscan failed): then every check runs."""
        try:
            found = self._db.scan(data, min(MAX_REPORTS, 32 + len(data) // _REPORT_SPACING))
        except Exception as exc:  # a Hyperscan failure: this text is checked everywhere
            internal_error("detectors.candidate_filter.scan", exc)
            return None
        if found is None:
            return None
        kinds = self._kinds
        count = len(kinds)
        urls = [(kinds[index], start, end) for index, start, end in found if index < count]
        spaced = len(urls) < len(found)
        if "url" in kinds:
            starts = iter(_url_starts(data, [end for kind, _, end in urls if kind == "url"]))
            urls = [(kind, next(starts), end) if kind == "url" else (kind, start, end)
                    for kind, start, end in urls]
        if urls and len(data) != len(text):
            # A span of n bytes holds at most n characters: only the starts need mapping.
            to_chars = char_offsets(data, [start for _, start, _ in urls])
            urls = [(kind, to_chars(start), to_chars(start) + end - start)
                    for kind, start, end in urls]
        return RawCandidates(urls, spaced)


def _url_starts(data: bytes, ends: list[int]) -> list[int]:
    """Where the bare URL matches ending at the bytes ``ends`` (in increasing order) can start at
    the earliest: after the last byte before each end that the class excludes, and not further
    back than ``_URL_REACH``. Each byte is looked at once, whatever the number of matches."""
    starts = []
    last = -1  # the last excluded byte found so far
    done = 0  # bytes before this were looked at
    for end in ends:
        lo = max(done, end - _URL_REACH)
        if lo < end:
            found = max(data.rfind(b" ", lo, end), data.rfind(b"\n", lo, end))
            other = _LAST_OTHER_EXCLUDED.match(data, max(found + 1, lo), end)
            if other is not None:
                found = other.end() - 1
            if found >= 0:
                last = found
        done = max(done, end)
        reach = max(0, end - _URL_REACH)
        starts.append(last + 1 if last >= reach else reach)
    return starts


_SHARED: list[CandidateFilter | None] = []
_SHARED_LOCK = threading.Lock()


def shared_filter() -> CandidateFilter | None:
    """The process-wide filter (compiled on first call), or ``None`` when Hyperscan is not
    installed or the database could not be built (an internal error, logged once)."""
    if _SHARED:
        return _SHARED[0]
    if not _prefilter.available():
        return None
    with _SHARED_LOCK:
        if not _SHARED:
            built: CandidateFilter | None = None
            try:
                built = CandidateFilter()
            except Exception as exc:  # a broken install: the scanner keeps checking everything
                internal_error("detectors.candidate_filter", exc)
            _SHARED.append(built)
    return _SHARED[0]
