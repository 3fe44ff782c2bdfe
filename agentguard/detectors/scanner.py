"""The prompt-injection scanner: indicators in untrusted text, a score, and the evidence for it.

Work is linear in the input and bounded on any input:

* huge texts are read as head + tail + randomly placed windows (``ScanLimits``);
* one pass of a multi-literal matcher finds anchor words (texts up to 8 KB with a trie regex that
  holds the GIL, longer ones with an Aho-Corasick automaton, see :mod:`._matcher`); each anchor
  is confirmed by small patterns inside a bounded window (see
  :mod:`agentguard.detectors._lexicon`), and the number of anchors confirmed per scan is capped
  (a result says when the cap cut the reading short);
* invisible characters, look-alike letters, spaced-out letters and base64/hex blobs are found
  with single C-level passes (``str.translate``, ``bytes.translate``, ``str.find``) and decoded
  payloads are rescanned to a bounded depth and size;
* on long texts, when Hyperscan is installed, one more native pass (see :mod:`._candidates`)
  tells which URLs can be worth parsing and whether any letters are spaced out, so the others
  never reach Python; the result is the same with that pass or without it.
"""

from __future__ import annotations

import binascii
import bisect
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import compress, islice
from operator import itemgetter
from typing import Literal

from agentguard.detectors._candidates import CandidateFilter, RawCandidates, shared_filter
from agentguard.detectors._lexicon import (
    ANCHOR_RULES,
    COMPACT_PHRASES,
    LEET,
    LEET_ANCHORS,
    SUBSTITUTION,
    PhraseRule,
)
from agentguard.detectors._matcher import SMALL_TEXT, LiteralMatcher
from agentguard.detectors._precheck import MAX_TEXT as _PRECHECK_MAX
from agentguard.detectors._precheck import PreCheck
from agentguard.detectors._text import (
    BIDI_ISOLATES,
    BIDI_OVERRIDES,
    BLOB_PROBE,
    BLOB_SHAPE,
    GREEK_OR_CYRILLIC,
    SPACED_PROBES,
    SPACING_SHAPE,
    TAG_DECODE,
    TAG_FIRST,
    TAG_LAST,
    VARIATION_BYTE,
    VARIATION_DECODE,
    ZERO_WIDTH,
    NormalisedView,
    encodes_space,
    escape_invisible,
    hidden_runs,
    mixed_script,
    non_ascii,
    normalise,
    shapes_clean,
    to_latin,
)
from agentguard.detectors._urls import UrlFinding, analyse_url

__all__ = [
    "Evidence",
    "InjectionScanner",
    "ScanLimits",
    "ScanResult",
    "SourceKind",
    "combine",
    "default_scanner",
    "local_score",
]

SourceKind = Literal["turn", "document", "tool_result", "tool_message", "model_output", "text"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One indicator found in a text: what, where (offsets into the scanned text), and why."""

    indicator: str
    family: str
    weight: float
    start: int
    end: int
    excerpt: str
    via: str | None = None
    lang: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for findings; the excerpt is redacted (it leaves the process)."""
        from agentguard.redaction import redact

        out: dict[str, object] = {"indicator": self.indicator, "family": self.family,
                                  "weight": round(self.weight, 3), "start": self.start,
                                  "end": self.end, "excerpt": redact(self.excerpt)}
        if self.via:
            out["via"] = self.via
        if self.lang and self.lang != "en":
            out["lang"] = self.lang
        return out


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The scanner's verdict on one text: a score in [0, 1] and the evidence behind it."""

    score: float
    evidence: tuple[Evidence, ...] = ()
    length: int = 0
    scanned: int = 0
    sampled: bool = False
    # Work done: anchors confirmed, whether the per-scan anchor cap was reached, pattern attempts.
    anchors: int = 0
    anchors_capped: bool = False
    checks: int = 0
    # Whether an anchor word sits near the end of the text (a phrase the next fragment may finish).
    open_tail: bool = False
    exact_offsets: bool = True

    @property
    def indicators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.indicator for e in self.evidence))

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.family for e in self.evidence))


EMPTY = ScanResult(0.0)


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """How much of a text one scan reads, and the caps on work per scan."""

    full_scan_chars: int = 256 * 1024
    head_chars: int = 64 * 1024
    tail_chars: int = 64 * 1024
    window_chars: int = 16 * 1024
    windows: int = 8
    max_anchors: int = 4096
    max_checks: int = 3000
    max_hidden_runs: int = 2048
    max_blobs: int = 64
    max_blob_chars: int = 16 * 1024
    max_depth: int = 2
    max_evidence: int = 64
    max_evidence_per_indicator: int = 8
    max_spaced_runs: int = 32
    excerpt_chars: int = 120


# Source profiles: what is ordinary in one kind of text is suspicious in another. A user asking
# the assistant to send an e-mail, or addressing it, is normal; a retrieved document doing so
# is not. Multipliers by indicator prefix (longest prefix wins).
_SOURCE_WEIGHTS: dict[str, dict[str, float]] = {
    "turn": {"address-ai": 0.0, "directive": 0.3, "directive-exfiltrate": 0.8,
             "directive-shell": 0.6, "exfil-instruction": 0.6, "directive-covert": 0.8},
    "model_output": {"override": 0.5, "role": 0.5, "address-ai": 0.3, "directive": 0.4,
                     "delimiter": 0.5, "encoded-directive": 0.5},
}

# In a user's own turn, an override that names the user's earlier words ("ignore my previous
# message", "forget what I said") is the user changing their mind, not an attack on the
# instructions the agent was given: its weight is cut to this share. Elsewhere (documents, tool
# results) "my" is the author's, and nothing changes.
_OWN_WORDS_SHARE = 0.3
# What a URL's fixed query value (an encoded token, a text) weighs outside model output.
_FIXED_VALUE_SHARE = 0.75
_OWN_WORDS = re.compile(
    r"\b(?:my|what i|i (?:said|asked|wrote|typed|told|sent|mentioned|meant|requested))\b")

_SPECIAL_ANCHORS: dict[str, str] = {
    "![": "md-image", "](": "md-link", "<img": "html-image", "http://": "url", "https://": "url",
    "<!--": "html-comment", "[//]: #": "md-comment", "[//]:#": "md-comment",
}
for _a in ("display:none", "display: none", "display :none", "visibility:hidden",
           "visibility: hidden", "font-size:0", "font-size: 0", "font-size:1px", "font-size: 1px",
           "opacity:0", "opacity: 0", "color:white", "color: white", "color:#fff", "color: #fff",
           "color:transparent", "color: transparent", "<span hidden", "<div hidden",
           "<p hidden", "height:0", "height: 0", "max-height:0", "clip-path:inset(50%)",
           "left:-9999", "left: -9999", "text-indent:-9999", "text-indent: -9999"):
    _SPECIAL_ANCHORS[_a] = "style"
for _a in ("<|im_start|>", "<|im_end|>", "<|system|>", "<|user|>", "<|assistant|>",
           "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
           "<|begin_of_text|>", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<start_of_turn>",
           "<end_of_turn>", "<|tool|>", "<|ipython|>", "<|channel|>", "<|message|>",
           "<|end|>", "<|im_sep|>", "<\uff5cbegin\u2581of\u2581sentence\uff5c>"):
    _SPECIAL_ANCHORS[_a] = "chat-template"
for _a in ("[system]", "[/system]", "<system>", "</system>", "(system)", "{system}", "[admin]",
           "<admin>", "[developer]", "<developer>", "<instructions>", "</instructions>",
           "[instructions]", "[sys]", "<sys>", "<system_prompt>", "[system message]",
           "[system note]", "<system-reminder>", "<important>", "[override]"):
    _SPECIAL_ANCHORS[_a] = "role-tag"
for _a in ("</document>", "</documents>", "</context>", "</tool_result>", "</tool_output>",
           "</function_results>", "</search_results>", "</untrusted>", "</user_input>",
           "</retrieved>", "</source>", "</email>", "</results>", "</webpage>", "</content>"):
    _SPECIAL_ANCHORS[_a] = "close-tag"
for _a in ("end of document", "end of context", "end of input", "end of text", "end of email",
           "end of data", "end of search results", "end of tool output", "end of untrusted",
           "end of user input", "end of conversation", "end of prompt", "end of system prompt",
           "end of instructions", "end of the document", "end of the email", "end of message"):
    _SPECIAL_ANCHORS[_a] = "end-marker"
for _a in LEET_ANCHORS:
    _SPECIAL_ANCHORS[_a] = "leet"
_SPECIAL_ANCHORS["]:"] = "reference"
_ROLE_LABELS = {"system": "system", "assistant": "assistant", "user": "user", "human": "user",
                "ai": "assistant", "model": "assistant", "developer": "system",
                "instruction": "system", "response": "assistant", "bot": "assistant"}
for _label in _ROLE_LABELS:
    _SPECIAL_ANCHORS[f"{_label}:"] = "role-line"
    _SPECIAL_ANCHORS[f"{_label} :"] = "role-line"
    _SPECIAL_ANCHORS[f"### {_label}"] = "role-line"


def _build_tables() -> tuple[list[str], list[tuple[PhraseRule, ...]], list[str | None]]:
    words: list[str] = []
    rules: list[tuple[PhraseRule, ...]] = []
    special: list[str | None] = []
    seen: dict[str, int] = {}
    for anchor, anchor_rules in ANCHOR_RULES.items():
        seen[anchor] = len(words)
        words.append(anchor)
        rules.append(anchor_rules)
        special.append(None)
    for anchor, kind in _SPECIAL_ANCHORS.items():
        if anchor in seen:
            special[seen[anchor]] = kind
            continue
        seen[anchor] = len(words)
        words.append(anchor)
        rules.append(())
        special.append(kind)
    # The matcher reports the longest anchor at a position, so an anchor that starts with a
    # shorter one ("silently forward" and "silently") must also run the shorter one's checks.
    for i, word in enumerate(words):
        for cut in range(1, len(word)):
            j = seen.get(word[:cut])
            if j is None:
                continue
            rules[i] = (*rules[i], *(rule for rule in rules[j] if rule not in rules[i]))
            if special[i] is None:
                special[i] = special[j]
    return words, rules, special


_B64_SHAPE = BLOB_SHAPE
_SPACING_SHAPE = SPACING_SHAPE
_BLOB_PROBE = BLOB_PROBE
_SPACED_PROBES = SPACED_PROBES
_SPACED_RUN = re.compile(rb"(?:a {1,3}){4,400}a")
_HEX = re.compile(r"[0-9a-fA-F]+")
# Base64 of text has digits, capitals or "+/" early on; a run of lower-case letters is a word.
_B64_SIGNAL = re.compile(r"[0-9A-Z+/]")
_URLSAFE = str.maketrans("-_", "+/")
# _printable_text looks for a space in the first 512 characters of a decoded text (3 more are
# dropped after a shifted decode); in UTF-8 those are at most four bytes each.
_SPACE_REACH = 4 * (512 + 3)
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_NOT_LETTER = re.compile(r"[^a-z]+")

_IMG_MD = re.compile(r"!\[([^\]\n]{0,300})\]\(\s{0,3}<?([^)\s>]{1,2048})")
_LINK_MD = re.compile(r"\]\(\s{0,3}<?([^)\s>]{1,2048})")
_IMG_HTML = re.compile(r"<img\b[^>]{0,600}?\bsrc(?:set)?\s{0,3}=\s{0,3}[\"']?([^\"'\s>]{1,2048})",
                       re.I)
# Every address an <img> tag makes the client fetch: src, srcset (its first candidate; the others
# follow a comma and are read as bare URLs), data-src and data-srcset of lazy loaders. The name
# must start within the 600 characters after "<img" that _IMG_HTML reads.
_IMG_SOURCES = re.compile(r"\bsrc(?:set)?\s{0,3}=\s{0,3}[\"']?([^\"'\s>]{1,2048})", re.I)
_IMG_ATTRIBUTE_REACH = 600
# Where an <img> tag's source attribute ends, just before its address (read backwards).
_SOURCE_BEFORE = re.compile(r"\bsrc(?:set)?\s{0,3}=\s{0,3}[\"']?\Z", re.I)
# A reference-style image, "![alt][label]" or "![label][]", whose address is defined on a line of
# its own, "[label]: https://...": the client fetches it as it fetches an inline image.
# A markdown link's address, read backwards from it: "](", "]( <".
_LINK_BEFORE = re.compile(r"\]\(\s{0,3}<?\Z")
_IMG_REF = re.compile(r"!\[([^\]\n]{0,300})\]\[([^\]\n]{0,100})\]")
# Matched at the start of a line holding "]:" (found with str.find: a regex searching for the
# line starts is tried at every character of a long document, and "]:" is rare).
# Substituted words looked for (per segment) and the places each is looked at in links.
_MAX_SUBSTITUTIONS = 4
_MAX_SUBSTITUTED_VALUES = 16
_SUBSTITUTED_LINK = "exfil-substituted-link"
# What ends an address read backwards, how far back its start is looked for, and the attributes
# that make a quoted address a link's or an image's.
_ADDRESS_ENDS = (" ", "\n", "\t", "(", ")", "<", ">", '"', "'")
_MAX_ADDRESS = 2048
_LINK_ATTRIBUTE = re.compile(r"\b(?:src|href|srcset)\s{0,3}=\s{0,3}\Z", re.IGNORECASE)
_REF_DEFINITION = re.compile(r" {0,3}\[([^\]\n]{1,100})\]:[ \t]{0,8}<?([^\s>]{1,2048})")
_BARE_URL = re.compile(r"https?://[^\s<>\"'`)]{1,2048}", re.I)
_MARKERS = frozenset("-=#*[]()<>|~_")
# A phrase quoted as what attacks say is a mention: its weight is cut to this share (security
# writing quotes them all the time; the same words unquoted, or more of them, still count).
_MENTION_SHARE = 0.3
_OPEN_QUOTES = ('"', "\u201c", "\u00ab")
_CLOSE_QUOTES = ('"', "\u201d", "\u00bb")
_MENTION_CUE = re.compile(r"(?:such as|like|e\.g\.|for example|for instance|phrases?|words?|"
                          r"strings?|sentences?|lines?|text|commands?|prompts?|says?|said|saying|"
                          r"called|reads?|containing|contains?|include|includes)\W{0,3}\Z",
                          re.IGNORECASE)
# What ends a role heading ("### Assistant", "### System:"): a heading that goes on is a title.
_HEADING_ROLE_END = re.compile(r"[ \t]*(?::|\r?\n|$)")
_URL_INDICATORS = {"md-image": "exfil-markdown-image", "html-image": "exfil-markdown-image",
                   "md-link": "exfil-markdown-link", "url": "exfil-url"}
_PREFILTERS = ("auto", "hyperscan", "none")
_URL_WORTH_PARSING = re.compile(r"[?#{}%$<\[]")
# Leetspeak: the stretch of the view read again with digits as letters around a leet anchor
# (from before it, so that the verb of a phrase whose noun is the anchor is read too), and how
# many such stretches one scan reads at most.
_LEET_BACK = 80
_LEET_AHEAD = 240
_MAX_LEET_WINDOWS = 16
# The variation selectors that choose an emoji's or a symbol's presentation (text or emoji).
_PRESENTATION = "\ufe0e\ufe0f"
# Variation selectors in a row from which a hidden text is decoded (one follows a character to
# choose its form; a flag or a keycap sequence has no run of this length).
_VARIATION_RUN = 8
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")


# One phrase check of an anchor: (rule identity, back, ahead, rule, compiled pattern).
_Check = tuple[int, int, int, PhraseRule, "re.Pattern[str]"]

_index = itemgetter(0)
_start = itemgetter(1)


# Evidence further apart than this is not combined: an injection is one passage, and weak
# indicators scattered over a long document (a code block here, a "from now on" there) are not.
LOCALITY = 1536


def local_score(evidence: Sequence[Evidence], span: int = LOCALITY) -> float:
    """The highest :func:`combine` score of the evidence inside any window of ``span``
    characters (evidence from decoded or hidden payloads sits at the payload's span)."""
    if not evidence:
        return 0.0
    items = sorted(evidence, key=lambda e: e.start)
    if items[-1].start - items[0].start <= span:
        return combine(items)
    best = 0.0
    end = 0
    last_end = -1
    for begin, item in enumerate(items):
        while end < len(items) and items[end].start - item.start <= span:
            end += 1
        if end == last_end:
            # The window before held all of this one: adding evidence never lowers a score.
            continue
        last_end = end
        best = max(best, combine(items[begin:end]))
    return best


def combine(evidence: Iterable[Evidence]) -> float:
    """The score of a set of evidence: strongest indicator per family, noisy-OR across families.

    Within a family, further distinct indicators add a little (a tenth of their weight each, two
    at most); the same indicator repeated adds nothing, so one benign phrase used often stays weak.
    """
    per_family: dict[str, dict[str, float]] = {}
    for item in evidence:
        if item.weight <= 0:
            continue
        family = per_family.setdefault(item.family, {})
        if item.weight > family.get(item.indicator, 0.0):
            family[item.indicator] = item.weight
    keep = 1.0
    for indicators in per_family.values():
        weights = sorted(indicators.values(), reverse=True)
        strength = min(0.97, weights[0] + 0.1 * sum(weights[1:3]))
        keep *= 1.0 - strength
    return round(min(0.99, 1.0 - keep), 3)


def _boost(weight: float, factor: float = 0.6) -> float:
    """Strengthen an indicator found in hidden or encoded text (nobody hides a benign phrase)."""
    return min(0.97, 1.0 - (1.0 - weight) * factor)


class _References:
    """A segment's markdown reference definitions ("[label]: https://...", by lower-cased label,
    the first of each) and its reference-style images ("![alt][label]"), found at their anchors
    and matched once the segment's anchors are read (a definition usually follows its use)."""

    __slots__ = ("definitions", "images", "substitutions")

    def __init__(self) -> None:
        self.definitions: dict[str, str] = {}
        # (start, end, label, base, via, span) of each image in the segment.
        self.images: list[tuple[int, int, str, int, str | None, tuple[int, int] | None]] = []
        # The words the text tells the model to replace with a secret (see SUBSTITUTION).
        self.substitutions: list[str] = []


class _Run:
    """Per-scan state: the evidence so far and the shared work budget."""

    __slots__ = ("anchors", "capped", "checks", "decoded", "evidence", "exact",
                 "fixed_value_share", "hidden_runs", "leet", "leet_windows", "limits", "native",
                 "open_tail", "own_words", "per_indicator", "references", "source_weights")

    def __init__(self, limits: ScanLimits, source_weights: dict[str, float],
                 native: bool = False, own_words: bool = False,
                 fixed_value_share: float = 1.0) -> None:
        self.limits = limits
        # What a URL's fixed query value weighs (see _judge_url): all of it in model output.
        self.fixed_value_share = fixed_value_share
        # The reference definitions and reference-style images of the segment being read.
        self.references = _References()
        # Leetspeak stretches read so far, and the text and offset up to which the last one read.
        self.leet_windows = 0
        self.leet: tuple[str, int] | None = None
        # Whether the text is the user's own turn (see _OWN_WORDS).
        self.own_words = own_words
        # Whether the text is long enough for the automaton (which releases the GIL) to search
        # every part of it, decoded payloads included; short texts never leave the GIL.
        self.native = native
        self.evidence: list[Evidence] = []
        self.anchors = 0
        self.capped = False
        self.checks = 0
        self.open_tail = False
        self.exact = True
        self.hidden_runs = 0
        self.per_indicator: dict[str, int] = {}
        self.source_weights = source_weights
        # Parts of encoded runs decoded so far, with the result: the same token in every record
        # of a JSON response or a log is decoded once per scan. Bounded by the blob budget
        # (``max_blobs`` runs per segment, five parts per run), and the keys are parts of the
        # scanned text.
        self.decoded: dict[str, tuple[str | None, str]] = {}

    def room_for(self, indicator: str) -> bool:
        """Whether another piece of evidence for ``indicator`` would still be kept."""
        return (len(self.evidence) < self.limits.max_evidence
                and self.per_indicator.get(indicator, 0) < self.limits.max_evidence_per_indicator)

    def weight_for(self, indicator: str, weight: float) -> float:
        table = self.source_weights
        if not table:
            return weight
        best = ""
        for prefix in table:
            if indicator.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return weight * table[best] if best else weight


class _WindowView:
    """The offsets of a stretch of a view that starts at ``offset``, as :class:`NormalisedView`
    gives them for the whole view (what :meth:`InjectionScanner._anchors` reads)."""

    __slots__ = ("_offset", "_view")

    def __init__(self, view: NormalisedView | _WindowView, offset: int) -> None:
        self._view = view
        self._offset = offset

    def original(self, offset: int) -> int:
        return self._view.original(self._offset + offset)

    def removed_between(self, start: int, end: int) -> bool:
        return self._view.removed_between(self._offset + start, self._offset + end)

    def view_offset(self, original: int) -> int:
        return self._view.view_offset(original) - self._offset


class InjectionScanner:
    """Finds prompt-injection indicators in untrusted text; thread-safe and reusable."""

    def __init__(self, limits: ScanLimits | None = None, *, engine: str = "auto",
                 prefilter: str = "auto") -> None:
        """``engine``: the anchor matcher (see :class:`LiteralMatcher`). ``prefilter``: the
        native pass that keeps ordinary URLs of long texts out of Python (see
        :mod:`._candidates`): ``"hyperscan"`` requires it, ``"none"`` never uses it, ``"auto"``
        (the default) uses it when Hyperscan is installed. Results are the same either way."""
        self.limits = limits or ScanLimits()
        if prefilter not in _PREFILTERS:
            raise ValueError(f"unknown prefilter {prefilter!r}")
        words, rules, special = _build_tables()
        self._matcher = LiteralMatcher(words, engine=engine)
        # The matcher deduplicates; index tables follow its order.
        order = {word: i for i, word in enumerate(words)}
        self._rules = [rules[order[w]] for w in self._matcher.words]
        self._special = [special[order[w]] for w in self._matcher.words]
        # Per anchor, its checks as plain tuples, built at the anchor's first occurrence: the
        # loop over a long document's anchors reads no attributes or properties.
        self._plans: list[tuple[_Check, ...] | None] = [None] * len(self._rules)
        # Per anchor: whether every occurrence is looked at (phrase rules, or a special kind
        # other than a URL), and its URL kind (looked at only where the prefilter says so).
        self._always = [bool(r) or (k is not None and k not in _URL_INDICATORS)
                        for r, k in zip(self._rules, self._special, strict=True)]
        self._url_kind = [k if k in _URL_INDICATORS else None for k in self._special]
        self._url_only = [k is not None and not a for k, a in zip(self._url_kind, self._always,
                                                                   strict=True)]
        # Resolved at the first long text (building it takes tens of milliseconds), or now
        # when it is required.
        self._filter: CandidateFilter | None = None
        self._filter_pending = prefilter != "none"
        if prefilter == "hyperscan" and self._candidate_filter() is None:
            raise RuntimeError("the hyperscan prefilter is not available")
        self._compact = LiteralMatcher([p[0] for p in COMPACT_PHRASES], engine=engine)
        self._compact_info = {p[0]: p[1:] for p in COMPACT_PHRASES}
        self._random = random.Random()
        self._random_lock = threading.Lock()
        self._precheck = PreCheck(self._matcher.words)
        self._precheck_clean = self._precheck.clean
        # Texts up to this size go to the pre-check (none when the matcher was asked to use the
        # automaton for every text).
        self._precheck_max = min(_PRECHECK_MAX, self.limits.full_scan_chars) \
            if self._matcher.holds_gil("") else -1

    @property
    def engine(self) -> str:
        return self._matcher.engine

    @property
    def prefilter(self) -> str:
        """The native prefilter in use for long texts: ``"hyperscan"`` or ``"none"``."""
        return "none" if self._candidate_filter() is None else "hyperscan"

    def _candidate_filter(self) -> CandidateFilter | None:
        if self._filter_pending:
            self._filter = shared_filter()
            self._filter_pending = False
        return self._filter

    # -- public ----------------------------------------------------------------------------
    def scan(self, text: str, *, source: SourceKind = "text") -> ScanResult:
        """Scan ``text`` (untrusted content of the given ``source`` kind)."""
        if not text:
            return EMPTY
        limits = self.limits
        run = _Run(limits, _SOURCE_WEIGHTS.get(source, {}), len(text) > self._precheck_max,
                   source == "turn", 1.0 if source == "model_output" else _FIXED_VALUE_SHARE)
        segments = self._segments(text)
        for base, segment in segments:
            self._scan_segment(segment, base, run, 0)
        evidence = self._finish(run.evidence)
        scanned = sum(len(s) for _, s in segments)
        return ScanResult(
            score=local_score(evidence), evidence=tuple(evidence), length=len(text),
            scanned=scanned, sampled=scanned < len(text), anchors=run.anchors,
            anchors_capped=run.capped, checks=run.checks,
            open_tail=run.open_tail, exact_offsets=run.exact,
        )

    def quick_check(self, text: str) -> bool:
        """Whether a full scan of ``text`` could report anything: ``False`` only when it has no
        anchor word, no non-ASCII character, no long base64-like run and no spaced-out letters.

        Texts up to 8 KB are answered without releasing the GIL (:mod:`._precheck`), and texts
        found clean are remembered (bounded), so a repeated result costs a dictionary lookup.
        """
        if not text:
            return False
        if not text.isascii():
            return True
        size = len(text)
        if size <= self._precheck_max:
            return not self._precheck_clean(text)
        if size > self.limits.full_scan_chars:
            return True
        return self._matcher.search(text.lower()) or not shapes_clean(text.encode("ascii"))

    @property
    def clean_texts(self) -> Mapping[str, None]:
        """Short texts the pre-check found clean, remembered (bounded) so a repeated one costs a
        lookup; read-only."""
        return self._precheck.texts

    def precheck_stats(self) -> dict[str, int]:
        """Cache sizes and counters of the pre-check for short texts."""
        return self._precheck.stats()

    # -- segments --------------------------------------------------------------------------
    def _segments(self, text: str) -> list[tuple[int, str]]:
        limits = self.limits
        n = len(text)
        if n <= limits.full_scan_chars:
            return [(0, text)]
        head, tail = limits.head_chars, limits.tail_chars
        segments = [(0, text[:head])]
        middle_start, middle_end = head, n - tail
        span = middle_end - middle_start
        count = limits.windows
        if span > 0 and count > 0:
            width = min(limits.window_chars, span // count or span)
            stratum = span / count
            # Random placement inside each stratum: an attacker cannot know which parts of a huge
            # text are read, and every region has the same chance.
            with self._random_lock:
                offsets = [
                    int(middle_start + i * stratum
                        + self._random.random() * max(0.0, stratum - width))
                    for i in range(count)
                ]
            for offset in offsets:
                segments.append((offset, text[offset:offset + width]))
        segments.append((n - tail, text[n - tail:]))
        return segments

    # -- one segment -----------------------------------------------------------------------
    def _scan_segment(self, segment: str, base: int, run: _Run, depth: int,
                      via: str | None = None, span: tuple[int, int] | None = None) -> None:
        """Scan ``segment`` (at ``base`` in the original). For decoded payloads ``span`` is the
        original span of the encoded form, used for every offset reported."""
        limits = self.limits
        runs: list[tuple[int, int]] = []
        complete = True
        ascii_text = segment.isascii()
        data = segment.encode("utf-8", "surrogatepass")
        raw: RawCandidates | None = None
        if run.native and len(segment) > SMALL_TEXT:
            # Long texts only: short ones (and every text of a scan that holds the GIL) are
            # checked in Python, where a native call would cost more than it saves.
            candidate_filter = self._candidate_filter()
            if candidate_filter is not None:
                raw = candidate_filter.scan(segment, data)
        present: frozenset[str] | None = frozenset()
        if not ascii_text:
            # Which non-ASCII characters occur, once: the checks for hidden, foldable and
            # Greek/Cyrillic characters below read this small set instead of the whole text.
            present = non_ascii(segment, data)
            complete = self._hidden(segment, base, run, depth, runs, span, present)
            if not complete:
                run.exact = False
        view = normalise(segment, runs, runs_complete=complete, present=present, data=data)
        regions: list[tuple[int, int, str]] = []
        labels: dict[str, int] = {}
        first = len(run.evidence)
        outer, run.references = run.references, _References()
        self._anchors(segment, view, view.text, base, run, regions, labels, via, span, raw=raw)
        references, run.references = run.references, outer
        if references.images and references.definitions:
            self._reference_images(segment, references, run)
        if references.substitutions:
            self._substituted_links(segment, references.substitutions, base, run, via, span)
        # The view's non-ASCII characters are lower-cased ones of the segment (folding only
        # yields ASCII), so the small set answers whether any Greek or Cyrillic letter is there.
        if (not ascii_text and GREEK_OR_CYRILLIC.search(
                view.text if present is None else "".join(present).lower()) is not None
                and mixed_script(view.text, present)):
            self._homoglyphs(segment, view, base, run, via, span, first, present)
        self._roles(labels, segment, base, run, via, span)
        if raw is None or raw.spaced:
            self._spaced(segment, data, base, run, via, span)
        if depth < limits.max_depth:
            self._blobs(segment, data, base, run, depth, span)
        if regions:
            self._hidden_regions(regions, run, first, span)

    def _where(self, base: int, start: int, end: int, span: tuple[int, int] | None
               ) -> tuple[int, int]:
        if span is not None:
            return span
        return base + start, base + end

    def _excerpt(self, segment: str, start: int, end: int) -> str:
        limit = self.limits.excerpt_chars
        text = segment[max(0, start):min(len(segment), end, max(0, start) + limit)]
        return escape_invisible(text)

    def _add(self, run: _Run, evidence: Evidence) -> None:
        if not run.room_for(evidence.indicator):
            return
        run.per_indicator[evidence.indicator] = run.per_indicator.get(evidence.indicator, 0) + 1
        weight = run.weight_for(evidence.indicator, evidence.weight)
        if run.own_words and evidence.family == "override" and evidence.via is None and \
                _OWN_WORDS.search(evidence.excerpt.lower()):
            weight *= _OWN_WORDS_SHARE
        if weight <= 0:
            return
        if weight != evidence.weight:
            evidence = replace(evidence, weight=weight)
        run.evidence.append(evidence)

    # -- anchors and phrase rules ----------------------------------------------------------
    def _anchors(self, segment: str, view: NormalisedView | _WindowView, text: str, base: int, run: _Run,
                 regions: list[tuple[int, int, str]], labels: dict[str, int], via: str | None,
                 span: tuple[int, int] | None, *, phrases_only: bool = False,
                 raw: RawCandidates | None = None, room: int | None = None
                 ) -> set[tuple[str, int]]:
        """Confirm the anchors of ``text`` (the view, or a stretch of it: ``view`` maps its
        offsets). ``room``: the anchors this call may read, when not what is left of the scan's
        cap (a stretch read again has its own, bounded by its length)."""
        limits = self.limits
        if room is None:
            room = max(0, limits.max_anchors - run.anchors)
        hits = self._matcher.find(text, room + 1, native=run.native)
        if len(hits) > room:
            # Past the cap the rest of this text is not read for anchors (counted, not silent).
            run.capped = True
            hits = hits[:room]
        run.anchors += len(hits)
        if raw is not None and hits:
            hits = self._worth_checking(hits, raw, view)
        found: set[tuple[str, int]] = set()
        # Per rule, where its last match ended: a dense run of anchors inside one matched phrase
        # is not re-checked, which keeps repeated anchors cheap.
        covered: dict[int, int] = {}
        covered_get = covered.get
        n = len(text)
        tail_from = n - 240
        plans = self._plans
        special_table = self._special
        max_checks = limits.max_checks
        for index, start, end in hits:
            plan = plans[index]
            if plan is None:
                plan = self._plan(index)
            if plan:
                if start >= tail_from:
                    run.open_tail = True
                for key, back, ahead, rule, regex in plan:
                    if covered_get(key, -1) > start:
                        continue
                    if run.checks >= max_checks:
                        run.capped = True
                        break
                    hi = start + ahead
                    if hi > n:
                        hi = n
                    run.checks += 1
                    if back:
                        # The phrase starts before the anchor: the first match in the window
                        # that reaches the anchor (one more search at most per earlier match).
                        lo = start - back
                        match = regex.search(text, lo if lo > 0 else 0, hi)
                        while match is not None and match.end() <= start:
                            run.checks += 1
                            match = regex.search(text, match.end(), hi)
                        if match is None or match.start() > start:
                            continue
                    else:
                        match = regex.match(text, start, hi)
                        if match is None:
                            continue
                    covered[key] = match.end()
                    if not run.room_for(rule.indicator):
                        continue
                    m_start, m_end = match.span()
                    o_start, o_end = view.original(m_start), view.original(m_end)
                    evidence_via = via
                    weight = rule.weight
                    if via is None and view.removed_between(m_start, m_end):
                        evidence_via = "invisible-characters"
                        weight = _boost(weight)
                    elif _quoted_mention(segment, o_start, o_end):
                        weight *= _MENTION_SHARE
                    where = self._where(base, o_start, o_end, span)
                    found.add((rule.indicator, where[0]))
                    self._add(run, Evidence(rule.indicator, rule.family, weight, where[0], where[1],
                                            self._excerpt(segment, o_start, o_end), evidence_via,
                                            rule.lang))
                    if rule.indicator == SUBSTITUTION:
                        run.references.substitutions.append(match.group("word"))
            if phrases_only:
                continue
            kind = special_table[index]
            if kind is not None:
                self._special_anchor(kind, segment, view, text, start, end, base, run, regions,
                                     labels, via, span)
        return found

    def _plan(self, index: int) -> tuple[_Check, ...]:
        """The phrase checks of anchor ``index``, with their patterns compiled (on the anchor's
        first occurrence, so rules a process never meets are never compiled)."""
        plan = tuple((id(rule), rule.back, rule.ahead, rule, rule.regex)
                     for rule in self._rules[index])
        self._plans[index] = plan
        return plan

    def _worth_checking(self, hits: list[tuple[int, int, int]], raw: RawCandidates,
                        view: NormalisedView | _WindowView) -> list[tuple[int, int, int]]:
        """The anchors a check can act on: all but the URL anchors outside every prefilter
        match (their URL check cannot report anything)."""
        always = self._always
        url_kind = self._url_kind
        # C-level filtering: a long document has hundreds of anchors, most of them URLs.
        kept = list(compress(hits, map(always.__getitem__, map(_index, hits))))
        if not raw.urls:
            return kept
        urls = list(compress(hits, map(self._url_only.__getitem__, map(_index, hits))))
        starts = list(map(_start, urls))
        keep: set[int] = set()
        for kind, start, end in raw.urls:
            # Prefilter offsets are in the original text, anchors in the view (which lacks the
            # invisible characters); the view span [start', end'] holds every such anchor.
            first = bisect.bisect_left(starts, view.view_offset(start))
            last = bisect.bisect_right(starts, view.view_offset(end))
            for position in range(first, last):
                if url_kind[urls[position][0]] == kind:
                    keep.add(position)
        if not keep:
            return kept
        return sorted([*kept, *(urls[position] for position in keep)], key=_start)

    def _special_anchor(self, kind: str, segment: str, view: NormalisedView | _WindowView,
                        text: str, start: int, end: int, base: int, run: _Run,
                        regions: list[tuple[int, int, str]], labels: dict[str, int],
                        via: str | None, span: tuple[int, int] | None) -> None:
        # The two commonest kinds first, each computing only the offsets it uses.
        if kind == "role-line":
            self._role_line(segment, view, text, start, end, base, run, labels, via, span)
            return
        if kind in _URL_INDICATORS:
            self._url(kind, segment, view.original(start), base, run, via, span)
            return
        if kind == "reference":
            self._reference(segment, view.original(start), run)
            return
        o_start, o_end = view.original(start), view.original(end)
        if kind in ("html-comment", "md-comment", "style") and regions and \
                regions[-1][1] > base + o_start:
            return  # inside the hidden region opened just before
        elif kind == "html-comment":
            close = text.find("-->", end, end + 8192)
            stop = close + 3 if close >= 0 else min(len(text), end + 8192)
            regions.append((base + o_start, base + view.original(stop), "html-comment"))
        elif kind == "md-comment":
            stop = text.find("\n", end, end + 2048)
            stop = stop if stop >= 0 else min(len(text), end + 2048)
            regions.append((base + o_start, base + view.original(stop), "markdown-comment"))
        elif kind == "style":
            nxt = text[end:end + 1]
            anchor = text[start:end]
            if anchor[-1:] in "0f" and nxt and (nxt.isdigit() or nxt == "."
                                                 or nxt in "0123456789abcdef"):
                return  # font-size:0.9em, opacity:0.5, color:#fffbe6: visible after all
            close = text.find("</", end, end + 4096)
            stop = close if close >= 0 else min(len(text), end + 4096)
            regions.append((base + o_start, base + view.original(stop), "invisible-styling"))
        elif kind == "leet":
            self._leet(segment, view, text, start, base, run, via, span)

        elif kind == "chat-template":
            where = self._where(base, o_start, o_end, span)
            # Not enough alone: documentation of tokenizers and chat formats names these tokens.
            self._add(run, Evidence("delimiter-chat-template", "delimiter", 0.45, where[0], where[1],
                                    self._excerpt(segment, o_start, o_end), via))
        elif kind == "role-tag":
            where = self._where(base, o_start, o_end, span)
            self._add(run, Evidence("delimiter-role-tag", "delimiter", 0.5, where[0], where[1],
                                    self._excerpt(segment, o_start, o_end), via))
        elif kind == "close-tag":
            where = self._where(base, o_start, o_end, span)
            self._add(run, Evidence("delimiter-close-tag", "delimiter", 0.35, where[0], where[1],
                                    self._excerpt(segment, o_start, o_end), via))
        elif kind == "end-marker":
            before = text[max(0, start - 6):start]
            after = text[end:end + 6]
            if any(c in _MARKERS for c in before) or any(c in _MARKERS for c in after):
                where = self._where(base, o_start, o_end, span)
                self._add(run, Evidence("delimiter-end-marker", "delimiter", 0.35, where[0],
                                        where[1], self._excerpt(segment, o_start, o_end + 6), via))

    def _role_line(self, segment: str, view: NormalisedView | _WindowView, text: str, start: int,
                   end: int, base: int, run: _Run, labels: dict[str, int], via: str | None,
                   span: tuple[int, int] | None) -> None:
        """A role label ("system:", "### assistant"): a fake system line, a note to the model,
        or one side of a fake transcript."""
        label = text[start:end].strip("#: ")
        role = _ROLE_LABELS.get(label)
        if role is None:
            return
        heading = text.startswith("#", start)
        if heading and _HEADING_ROLE_END.match(text, end, end + 40) is None:
            return  # "### System Instructions and Other Configs", "#### Model Context": a title
        before = text[max(0, start - 5):start].rstrip(" ")
        if not heading and before.endswith(("(", "[", "{", "<!--", "#", "//", "/*")) and \
                role == "assistant":
            # "(assistant: ...)", "<!-- ai: ..." or a code comment "# assistant: ...": a note
            # addressed to the model, inline.
            o_start, o_end = view.original(start), view.original(end)
            where = self._where(base, o_start, o_end, span)
            self._add(run, Evidence("address-ai", "role", 0.45, where[0], where[1],
                                    self._excerpt(segment, o_start, o_end + 60), via))
            return
        line_start = text.rfind("\n", max(0, start - 16), start) + 1
        if line_start == 0 and start > 16:
            return
        prefix = text[line_start:start]
        if prefix.strip(" \t>*#-_[(<!") != "":
            return
        o_start = view.original(start)
        if role == "system":
            o_end = view.original(end)
            where = self._where(base, o_start, o_end, span)
            self._add(run, Evidence("delimiter-fake-system", "delimiter", 0.45, where[0],
                                    where[1], self._excerpt(segment, o_start, o_end + 60), via))
        labels.setdefault(role, o_start)

    def _url(self, kind: str, segment: str, position: int, base: int, run: _Run,
             via: str | None, span: tuple[int, int] | None) -> None:
        if not run.room_for(_URL_INDICATORS[kind]):
            return  # enough evidence of this kind already: skip the parsing
        if kind == "md-image":
            match = _IMG_MD.match(segment, position, position + 2400)
            url_kind = "image"
            if match is None:
                reference = _IMG_REF.match(segment, position, position + 420)
                if reference is not None:
                    label = (reference.group(2) or reference.group(1)).strip().lower()
                    run.references.images.append((reference.start(), reference.end(), label,
                                                  base, via, span))
                return
        elif kind == "md-link":
            opening = segment.rfind("[", max(0, position - 300), position)
            if opening > 0 and segment[opening - 1] == "!":
                return  # the image form was judged at its "!["
            match = _LINK_MD.match(segment, position, position + 2100)
            url_kind = "link"
        elif kind == "html-image":
            self._html_image(segment, position, base, run, via, span)
            return
        else:
            if position and segment[position - 1] in "(=\"'<" and \
                    self._judged_elsewhere(segment, position):
                return
            match = _BARE_URL.match(segment, position, position + 2100)
            url_kind = "bare"
        # Not counted against ``max_checks``: a URL check is one bounded match, and there is at
        # most one per anchor (the anchors are capped).
        if match is None:
            return
        finding = _judge_url(match.group(match.lastindex or 0), url_kind, run)
        if finding is not None:
            self._add_url(finding, segment, match.start(), match.end(), base, run, via, span)

    @staticmethod
    def _reference(segment: str, position: int, run: _Run) -> None:
        """ "[label]: https://..." on a line of its own (``position`` is its "]:"): where the
        reference images with that label point."""
        line = segment.rfind("\n", max(0, position - 110), position) + 1
        if line or position <= 110:
            match = _REF_DEFINITION.match(segment, line)
            if match is not None and match.end(1) == position:
                run.references.definitions.setdefault(match.group(1).strip().lower(),
                                                      match.group(2))

    def _reference_images(self, segment: str, references: _References, run: _Run) -> None:
        """Each reference-style image of a segment, judged by the address its label defines."""
        for start, end, label, base, via, span in references.images:
            url = references.definitions.get(label)
            if url is None or not run.room_for("exfil-markdown-image"):
                continue
            finding = _judge_url(url, "image", run)
            if finding is not None:
                self._add_url(finding, segment, start, end, base, run, via, span)

    def _substituted_links(self, segment: str, words: list[str], base: int, run: _Run,
                           via: str | None, span: tuple[int, int] | None) -> None:
        """A link or image whose query carries a word the text tells the model to replace with a
        secret ("with the word confetti replaced with the other key: [click here](https://x/?
        secret=confetti)"): the model is to write the secret into an address it renders."""
        for word in dict.fromkeys(words[:_MAX_SUBSTITUTIONS]):
            pattern = re.compile(r"[?&#;][\w.%-]{1,40}=" + re.escape(word) + r"(?![\w%-])",
                                 re.IGNORECASE)
            for match in islice(pattern.finditer(segment), _MAX_SUBSTITUTED_VALUES):
                start = _link_start(segment, match.start())
                if start is None or not run.room_for(_SUBSTITUTED_LINK):
                    continue
                where = self._where(base, start, match.end(), span)
                self._add(run, Evidence(_SUBSTITUTED_LINK, "exfiltration", 0.75, where[0], where[1],
                                        self._excerpt(segment, start, match.end()), via))

    def _add_url(self, finding: tuple[UrlFinding, float], segment: str, m_start: int, m_end: int,
                 base: int, run: _Run, via: str | None, span: tuple[int, int] | None) -> None:
        found, weight = finding
        where = self._where(base, m_start, m_end, span)
        self._add(run, Evidence(found.indicator, "exfiltration", weight, where[0], where[1],
                                self._excerpt(segment, m_start, m_end) + f" ({found.detail})",
                                via))
        if found.text is not None and via != "url-encoding":
            # A sentence written into a query ("?msg=Ignore%20all%20previous...") is read as
            # text, once: what it says is boosted, as in any encoded payload. (Read at the
            # deepest level, so nothing inside it is decoded further.)
            before = len(run.evidence)
            self._scan_segment(found.text[:self.limits.max_blob_chars], 0, run,
                               self.limits.max_depth, "url-encoding", where)
            inner = run.evidence[before:]
            if inner:
                del run.evidence[before:]
                for item in inner:
                    self._add(run, replace(item, weight=_boost(item.weight)))

    def _html_image(self, segment: str, position: int, base: int, run: _Run, via: str | None,
                    span: tuple[int, int] | None) -> None:
        """The <img> tag at ``position``, judged by the strongest of its sources (src, srcset,
        data-src...)."""
        first = _IMG_HTML.match(segment, position, position + 2700)
        if first is None:
            return
        best = _judge_url(first.group(1), "html-image", run)
        end = first.end()
        close = segment.find(">", end, position + 2700)
        stop = close if close >= 0 else min(len(segment), position + 2700)
        if segment.find("src", end, stop) >= 0:  # more sources than the first (rare)
            reach = position + 4 + _IMG_ATTRIBUTE_REACH
            for match in _IMG_SOURCES.finditer(segment, end, stop):
                if match.start() > reach:
                    break
                finding = _judge_url(match.group(1), "html-image", run)
                if finding is not None and (best is None or finding[1] > best[1]):
                    best, end = finding, match.end()
        if best is not None:
            self._add_url(best, segment, position, end, base, run, via, span)

    @staticmethod
    def _judged_elsewhere(segment: str, position: int) -> bool:
        """Whether the bare URL at ``position`` is the address of a markdown link (judged at
        its "](") or a source of an <img> tag (judged at "<img"). An <a href>, a CSS url(), an
        autolink "<https://...>" or an <iframe src> is judged here, as a bare URL."""
        before = segment[position - 1]
        if before in "(<":
            return _LINK_BEFORE.search(segment, max(0, position - 8), position) is not None
        if not _SOURCE_BEFORE.search(segment, max(0, position - 16), position):
            return False
        opening = segment.rfind("<", max(0, position - 2700), position)
        return (opening >= 0 and segment[opening + 1:opening + 4].lower() == "img"
                and segment.find(">", opening, position) < 0)

    # -- fake transcripts ------------------------------------------------------------------
    def _roles(self, labels: dict[str, int], segment: str, base: int, run: _Run,
               via: str | None, span: tuple[int, int] | None) -> None:
        if "user" in labels and "assistant" in labels:
            first = min(labels["user"], labels["assistant"])
            where = self._where(base, first, first + 1, span)
            self._add(run, Evidence("delimiter-fake-transcript", "delimiter", 0.45, where[0],
                                    where[1], self._excerpt(segment, first, first + 80), via))

    # -- hidden text -----------------------------------------------------------------------
    def _hidden(self, segment: str, base: int, run: _Run, depth: int,
                runs: list[tuple[int, int]], span: tuple[int, int] | None,
                present: frozenset[str] | bool | None = True) -> bool:
        """Collect the runs of invisible characters and report what they hide; returns whether
        every run was recorded (``False`` past the cap: offsets become approximate)."""
        limits = self.limits
        internal = 0
        zero_width = 0
        long_run: tuple[int, int] | None = None
        bidi_override: int | None = None
        bidi_isolate: int | None = None
        complete = True
        if present is True:
            present = non_ascii(segment)  # not computed by the caller
        assert not isinstance(present, bool)
        cap = limits.max_hidden_runs
        for start, stop in hidden_runs(segment, present):
            if run.hidden_runs >= cap:
                complete = False
                break
            if stop - start == 1 and segment[start] in ZERO_WIDTH:
                # One zero-width character, the common run (what follows does the same for it,
                # in fewer steps: it is no tag, variation selector, bidi control or long run).
                run.hidden_runs += 1
                runs.append((start, 1))
                zero_width += 1
                if _inside_word(segment, start, stop):
                    internal += 1
                continue
            chars = segment[start:stop]
            first = chars[0]
            if stop - start == 1 and first in _PRESENTATION and not (
                    start and segment[start - 1].isalpha()):
                # An emoji's presentation selector ("\u2764\ufe0f"): it breaks no word, and
                # left in the view it keeps the view's fast path (texts with emoji are common).
                continue
            run.hidden_runs += 1
            runs.append((start, stop - start))
            code = ord(first)
            if TAG_FIRST <= code <= TAG_LAST:
                self._tags(segment, start, stop, base, run, depth, span)
                continue
            if code in VARIATION_BYTE and stop - start >= _VARIATION_RUN:
                self._variation_bytes(segment, start, stop, base, run, depth, span)
                continue
            zw = len(chars) if first in ZERO_WIDTH and len(chars) == 1 else \
                sum(1 for c in chars if c in ZERO_WIDTH)
            if zw:
                zero_width += zw
                if _inside_word(segment, start, stop):
                    internal += zw
                if zw >= 8 and long_run is None:
                    long_run = (start, stop)
            if bidi_override is None and not BIDI_OVERRIDES.isdisjoint(chars):
                bidi_override = start
            if bidi_isolate is None and not BIDI_ISOLATES.isdisjoint(chars):
                bidi_isolate = start
        if internal:
            first_run = runs[0][0]
            where = self._where(base, first_run, first_run + 1, span)
            weight = 0.4 if internal >= 3 else 0.25
            self._add(run, Evidence("hidden-zero-width", "hidden", weight, where[0], where[1],
                                    f"{internal} zero-width character(s) inside words", None))
        if long_run is not None:
            where = self._where(base, long_run[0], long_run[1], span)
            self._add(run, Evidence("hidden-zero-width-run", "hidden", 0.45, where[0], where[1],
                                    f"run of {long_run[1] - long_run[0]} invisible characters"))
        if bidi_override is not None or bidi_isolate is not None:
            rtl = _RTL.search(segment) is not None
            position = bidi_override if bidi_override is not None else bidi_isolate
            assert position is not None
            weight = (0.2 if bidi_override is not None else 0.0) if rtl else \
                (0.3 if bidi_override is not None else 0.15)
            if weight:
                where = self._where(base, position, position + 1, span)
                self._add(run, Evidence("hidden-bidi-control", "hidden", weight, where[0],
                                        where[1], "bidirectional override/isolate characters"))
        return complete

    def _tags(self, segment: str, start: int, stop: int, base: int, run: _Run, depth: int,
              span: tuple[int, int] | None) -> None:
        """Unicode tag characters: invisible ASCII. Flag emoji subdivisions are their one
        ordinary use (🏴 + tag letters + cancel tag)."""
        chars = segment[start:stop]
        if (start > 0 and segment[start - 1] == "\U0001f3f4" and chars.endswith("\U000e007f")
                and len(chars) <= 8):
            return
        decoded = chars[:self.limits.max_blob_chars].translate(TAG_DECODE)
        where = self._where(base, start, stop, span)
        if len(decoded) >= 3:
            self._add(run, Evidence("hidden-unicode-tags", "hidden", 0.6, where[0], where[1],
                                    "invisible tag characters spell: "
                                    + escape_invisible(decoded[:self.limits.excerpt_chars])))
            if depth < self.limits.max_depth:
                self._scan_segment(decoded, 0, run, depth + 1, "unicode-tags", where)

    def _leet(self, segment: str, view: NormalisedView | _WindowView, text: str, start: int,
              base: int, run: _Run, via: str | None, span: tuple[int, int] | None) -> None:
        """A word spelled with digits for letters ("1gn0r3"): the stretch around it is read
        again, digits as letters, for phrases; what only that reading finds is boosted."""
        last = run.leet
        if last is not None and last[0] is text and start < last[1]:
            return  # inside the stretch read for an earlier anchor
        if run.leet_windows >= _MAX_LEET_WINDOWS:
            run.capped = True
            return
        run.leet_windows += 1
        lo = max(0, start - _LEET_BACK)
        hi = min(len(text), start + _LEET_AHEAD)
        run.leet = (text, hi)
        known = {(e.indicator, e.start) for e in run.evidence}
        before = len(run.evidence)
        self._anchors(segment, _WindowView(view, lo), text[lo:hi].translate(LEET), base, run, [],
                      {}, via or "leetspeak", span, phrases_only=True, room=hi - lo)
        fresh = [e for e in run.evidence[before:] if (e.indicator, e.start) not in known]
        del run.evidence[before:]
        for item in fresh:
            self._add(run, replace(item, weight=_boost(item.weight)))
        if fresh:
            item = fresh[0]
            self._add(run, Evidence("hidden-leetspeak", "hidden", 0.4, item.start, item.end,
                                    "digits written for letters hide a phrase"))

    def _variation_bytes(self, segment: str, start: int, stop: int, base: int, run: _Run,
                         depth: int, span: tuple[int, int] | None) -> None:
        """A run of variation selectors long enough to spell something: each stands for a byte
        (an emoji followed by such a run carries a hidden text). What it spells, when it is
        text, is rescanned."""
        chars = segment[start:min(stop, start + self.limits.max_blob_chars)]
        decoded = chars.translate(VARIATION_DECODE).encode("latin-1").decode("utf-8", "replace")
        if not _printable_text(decoded):
            return
        where = self._where(base, start, stop, span)
        self._add(run, Evidence("hidden-variation-selectors", "hidden", 0.6, where[0], where[1],
                                "variation selectors spell: "
                                + escape_invisible(decoded[:self.limits.excerpt_chars])))
        if depth < self.limits.max_depth:
            before = len(run.evidence)
            self._scan_segment(decoded, 0, run, depth + 1, "variation-selectors", where)
            inner = run.evidence[before:]
            if inner:
                del run.evidence[before:]
                for item in inner:
                    self._add(run, replace(item, weight=_boost(item.weight)))

    def _homoglyphs(self, segment: str, view: NormalisedView, base: int, run: _Run,
                    via: str | None, span: tuple[int, int] | None, first: int,
                    present: frozenset[str] | None) -> None:
        latin = to_latin(view.text, present)
        known = {(e.indicator, e.start) for e in run.evidence[first:]}
        before = len(run.evidence)
        found = self._anchors(segment, view, latin, base, run, [], {}, via or "homoglyphs", span,
                              phrases_only=True)
        # Keep only what the look-alike letters hid; the rest was already reported.
        fresh = [e for e in run.evidence[before:] if (e.indicator, e.start) not in known]
        del run.evidence[before:]
        for item in fresh:
            self._add(run, replace(item, weight=_boost(item.weight)))
        if fresh and found:
            item = fresh[0]
            self._add(run, Evidence("hidden-homoglyph", "hidden", 0.45, item.start, item.end,
                                    "look-alike letters from another script hide a phrase"))

    def _spaced(self, segment: str, data: bytes, base: int, run: _Run, via: str | None,
                span: tuple[int, int] | None) -> None:
        shape = data.translate(_SPACING_SHAPE)
        if shape.find(_SPACED_PROBES[0]) < 0 and shape.find(_SPACED_PROBES[1]) < 0:
            return
        ascii_text = len(data) == len(segment)
        position = 0
        for _ in range(self.limits.max_spaced_runs):
            match = _SPACED_RUN.search(shape, position)
            if match is None:
                break
            position = match.end()
            run.checks += 1
            raw = data[match.start():match.end()].decode("ascii", "replace").lower()
            compact = _NOT_LETTER.sub("", raw)
            for index, _s, _e in self._compact.find(compact, native=run.native):
                phrase = self._compact.words[index]
                indicator, family, weight = self._compact_info[phrase]
                start, end = match.start(), match.end()
                if not ascii_text:
                    start = len(data[:start].decode("utf-8", "replace"))
                    end = len(data[:end].decode("utf-8", "replace"))
                where = self._where(base, start, end, span)
                self._add(run, Evidence(indicator, family, _boost(weight), where[0], where[1],
                                        self._excerpt(segment, start, end), via or "letter-spacing"))

    def _blobs(self, segment: str, data: bytes, base: int, run: _Run, depth: int,
               span: tuple[int, int] | None) -> None:
        limits = self.limits
        shape = data.translate(_B64_SHAPE)
        ascii_text = len(data) == len(segment)
        position = 0
        tried = 0
        find = shape.find
        while tried < limits.max_blobs:
            found = find(_BLOB_PROBE, position)
            if found < 0:
                break
            position = find(b" ", found + len(_BLOB_PROBE))
            if position < 0:
                position = len(shape)
            # A run without an encoded space cannot decode to text: skipped without counting
            # (links and identifiers are such runs, and a long document has hundreds).
            if not encodes_space(data, found, position):
                continue
            tried += 1
            run.checks += 1
            blob = data[found:position][:limits.max_blob_chars * 4 // 3 + 4].decode("ascii")
            decoded: str | None = None
            encoding = "base64"
            # "key=value" runs: the payload is one of the parts between '=' signs.
            for part in blob.split("=", 4):
                if len(part) >= 16:
                    known = run.decoded.get(part)
                    if known is None:
                        known = run.decoded[part] = _decode_blob(part)
                    decoded, encoding = known
                    if decoded is not None:
                        break
            if decoded is None:
                continue
            start, end = found, position
            if not ascii_text:
                start = len(data[:found].decode("utf-8", "replace"))
                end = start + (position - found)
            where = self._where(base, start, end, span)
            before = len(run.evidence)
            self._scan_segment(decoded, 0, run, depth + 1, encoding, where)
            inner = run.evidence[before:]
            if inner:
                del run.evidence[before:]
                for item in inner:
                    self._add(run, replace(item, weight=_boost(item.weight)))
                self._add(run, Evidence(f"encoded-{encoding}", "encoded", 0.35, where[0], where[1],
                                        f"{encoding} payload decodes to: "
                                        + escape_invisible(decoded[:limits.excerpt_chars])))

    def _hidden_regions(self, regions: list[tuple[int, int, str]], run: _Run, first: int,
                        span: tuple[int, int] | None) -> None:
        """Indicators inside HTML comments or invisibly styled elements are boosted."""
        if span is not None:
            return  # decoded payloads report the encoded span, which the regions do not describe
        reported: set[int] = set()
        items = run.evidence[first:]
        for i, item in enumerate(items):
            if item.family == "hidden":
                continue
            for index, (start, stop, kind) in enumerate(regions):
                if start <= item.start < stop:
                    items[i] = replace(item, weight=_boost(item.weight), via=item.via or kind)
                    reported.add(index)
                    break
        run.evidence[first:] = items
        for index in sorted(reported):
            start, stop, kind = regions[index]
            self._add(run, Evidence(f"hidden-{kind}", "hidden", 0.35, start, stop,
                                    f"instructions inside {kind.replace('-', ' ')}"))

    # -- result ----------------------------------------------------------------------------
    def _finish(self, evidence: Sequence[Evidence]) -> list[Evidence]:
        """Deduplicate (same indicator at the same place: keep the strongest), order by offset."""
        best: dict[tuple[str, int], Evidence] = {}
        for item in evidence:
            key = (item.indicator, item.start)
            if key not in best or item.weight > best[key].weight:
                best[key] = item
        # A weak indicator wholly inside a stronger one of the same family says nothing more.
        items = sorted(best.values(), key=lambda e: (e.start, -e.weight))
        out: list[Evidence] = []
        for item in items:
            if any(o.family == item.family and o.start <= item.start and item.end <= o.end
                   and o.weight >= item.weight and o.indicator != item.indicator for o in out[-4:]):
                continue
            out.append(item)
        return out


def _quoted_mention(segment: str, start: int, end: int) -> bool:
    """Whether the phrase ``segment[start:end]`` is quoted as an example of what attacks say
    ('phrases such as "ignore previous instructions"'): opened by a quote at most 40 characters
    before it, closed within 200 after it on the same line, the quote introduced as words
    ("such as", "like", "the phrase", "says")."""
    lo = max(0, start - 40)
    window = segment[lo:start]
    opening = max(window.rfind(quote) for quote in _OPEN_QUOTES)
    if opening < 0 or any(quote in window[opening + 1:] for quote in _CLOSE_QUOTES):
        return False
    after = segment[end:end + 200]
    line = after.split("\n", 1)[0]
    if not any(quote in line for quote in _CLOSE_QUOTES):
        return False
    return _MENTION_CUE.search(segment, max(0, lo + opening - 32), lo + opening) is not None


def _inside_word(segment: str, start: int, stop: int) -> bool:
    """Whether ``segment[start:stop]`` (a run of invisible characters) sits between two letters
    of an alphabetic script up to Cyrillic (Latin, Greek, Cyrillic), as inside a word."""
    if not start or stop >= len(segment):
        return False
    before, after = segment[start - 1], segment[stop]
    return before.isalpha() and after.isalpha() and before < "\u0530" and after < "\u0530"


def _link_start(segment: str, position: int) -> int | None:
    """Where the link or image holding the address around ``position`` starts (its "](" or
    ``src=``/``href=``), or ``None`` when that address is not a link's or an image's (a bare URL
    in a command, say)."""
    low = max(0, position - _MAX_ADDRESS)
    cut = max([segment.rfind(end, low, position) for end in _ADDRESS_ENDS])
    if cut < 0:
        return None
    opener = segment[cut]
    if opener == "<" and cut > low:  # "](<https://...>)"
        cut -= 1
        opener = segment[cut]
    if opener == "(":
        return cut - 1 if cut > 0 and segment[cut - 1] == "]" else None
    if opener in "\"'":
        attribute = _LINK_ATTRIBUTE.search(segment, max(0, cut - 24), cut)
        return attribute.start() if attribute is not None else None
    return None


def _judge_url(url: str, url_kind: str, run: _Run) -> tuple[UrlFinding, float] | None:
    """What ``analyse_url`` finds in ``url`` and the weight it has in this scan."""
    if url.endswith("]") and "[" not in url:
        url = url[:-1]  # "[see https://example.com]"
    if not _URL_WORTH_PARSING.search(url):
        return None  # no query, fragment, placeholder or encoding: an ordinary address
    finding = analyse_url(url, url_kind)
    if finding is None:
        return None
    weight = finding.weight
    if finding.fixed:
        # A value written into the URL carries none of the user's data in text the model reads
        # (a mail's tracking pixel has one); a placeholder for the model to fill does. In the
        # model's own output the value is the data leaving.
        weight *= run.fixed_value_share
    return finding, weight


def _decode_blob(blob: str) -> tuple[str | None, str]:
    """Decode a base64 or hex run into text, or ``None`` when it is not printable text.

    A payload glued to the word before it ("Thanks,JonasQXNz...") is misaligned; trying the
    four alignments recovers it with at most one garbled group at the start.
    """
    body = blob.strip("=")
    if len(body) >= 32 and len(body) % 2 == 0 and _HEX.fullmatch(body) is not None:
        try:
            text = binascii.unhexlify(body).decode("utf-8")
        except (binascii.Error, ValueError):
            return None, "hex"
        return (text if _printable_text(text) else None), "hex"
    if _B64_SIGNAL.search(body, 0, 256) is None:
        return None, "base64"  # an ordinary long word or identifier
    if "-" in body or "_" in body:
        body = body.translate(_URLSAFE)  # the URL-safe alphabet
    for shift in range(4):
        part = body[shift:]
        if len(part) % 4 == 1:
            part = part[:-1]  # a lone trailing character is never valid base64
        part += "=" * (-len(part) % 4)
        if len(part) < 12:
            break
        try:
            raw = binascii.a2b_base64(part)  # what base64.b64decode does, without the wrappers
        except (binascii.Error, ValueError):
            continue
        if b" " not in raw[:_SPACE_REACH]:
            continue  # no space where _printable_text looks for one
        text = raw.decode("utf-8", "replace")
        if shift:
            text = text[3:]  # the garbled first group
        if _printable_text(text):
            return text, "base64"
    return None, "base64"


def _printable_text(text: str) -> bool:
    if len(text) < 8:
        return False
    head = text[:512]
    if " " not in head:
        return False
    # U+FFFD (a byte sequence that is not UTF-8) is printable, but it marks binary data, which
    # the 10 % rule below judges: garbage decoded from an identifier is not text to rescan.
    if head.isprintable() and "\ufffd" not in head:
        return True
    return len(_UNPRINTABLE.findall(head)) <= 0.1 * len(head)


_DEFAULT: InjectionScanner | None = None
_DEFAULT_LOCK = threading.Lock()


def default_scanner() -> InjectionScanner:
    """The process-wide scanner with default limits (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = InjectionScanner()
    return _DEFAULT

