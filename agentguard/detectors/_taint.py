"""Taint: values from flagged untrusted content that later show up in tool-call arguments.

When a document or tool result is flagged, the concrete things an attacker wants the agent to
use (e-mail addresses, URLs and hosts, account numbers, phone numbers, file paths, long tokens,
amounts) are remembered per conversation with the source they came from, and so is the text
itself, for copied passages. A tool call whose arguments carry one of them was steered by that
content. Memory is bounded per conversation (values and text), and every extraction reads a
bounded prefix with single-pass patterns.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agentguard._urls import reached_hosts
from agentguard.detectors._text import escape_invisible

__all__ = ["SourceRef", "TaintMatch", "TaintStore", "UserValues", "extract_values",
           "iter_arguments"]

MAX_TEXT = 64 * 1024
MAX_VALUES_PER_TEXT = 256
# Characters of one value kept (a longer URL is compared by this prefix, in arguments too).
MAX_VALUE_CHARS = 256
MAX_LEAF = 8 * 1024
MAX_LEAVES = 256
MAX_DEPTH = 8
SPAN_WINDOW = 24
SPAN_STRIDE = 8


@dataclass(slots=True)
class SourceRef:
    """Where a piece of untrusted content came from (a document, a tool result, a turn...)."""

    kind: str
    ref: str
    turn: int | None = None
    score: float = 0.0
    document_id: str | None = None
    retriever: str | None = None
    tool: str | None = None
    call_id: str | None = None

    @property
    def key(self) -> tuple[str, str, int | None]:
        """Identity of the source, whatever score it was given."""
        return self.kind, self.ref, self.turn

    def describe(self) -> str:
        if self.kind == "document":
            where = f"document {self.document_id or self.ref}"
            return where + (f" (retriever {self.retriever})" if self.retriever else "")
        if self.kind == "tool_result":
            return f"result of tool {self.tool}" + (f" (call {self.call_id})" if self.call_id else "")
        if self.kind == "turn":
            return f"user turn {self.turn}" if self.turn is not None else "user turn"
        if self.kind == "tool_message":
            named = f" (tool {self.tool})" if self.tool and self.tool != self.ref else ""
            return f"tool message {self.ref}{named}"
        if self.kind == "model_output":
            return "model output"
        return self.ref

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ref": self.ref, "describe": self.describe(),
                               "score": round(self.score, 3)}
        for name in ("turn", "document_id", "retriever", "tool", "call_id"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class TaintMatch:
    """A tool argument carrying a value from flagged content."""

    argument: str
    kind: str
    match: str
    value: str
    source: SourceRef

    def to_dict(self) -> dict[str, Any]:
        return {"argument": self.argument, "value_kind": self.kind, "match": self.match,
                "value": self.value, "source": self.source.to_dict()}


# -- extraction ------------------------------------------------------------------------------------

# An e-mail address is found from its "@": the local part read backwards (a pattern tried at
# every start would read up to 64 characters at each one), the domain forwards.
_LOCAL_PART = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
_MAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,9}://[^\s<>\"'`)\]}]{1,2048}")
_DOMAIN = re.compile(
    r"(?<![\w.@-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,6}(?:com|net|org|io|co|xyz|ru|cn|"
    r"top|site|info|biz|me|app|dev|link|click|tk|ml|ga|cf|gq|cc|ws|pw|online|live|shop|uk|de|fr|"
    r"es|it|nl|eu|us|ca|au|ch|se|no|pl|br|in|jp|kr|cloud|ai|sh|gg|to|ly|su|zip|mov)(?![\w-])",
    re.IGNORECASE,
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{6,18}\d(?![\w])")
_PATH = re.compile(r"(?<![\w/.~])(?:~|/)(?:[\w.-]{1,64}/){1,16}[\w.-]{1,64}|\b[A-Za-z]:\\"
                   r"(?:[\w .-]{1,64}\\){0,16}[\w .-]{1,64}")
_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{20,128}(?![\w-])")
_AMOUNT = re.compile(
    r"[$€£¥]\s?\d[\d,]{2,15}(?:\.\d{1,2})?|\b\d[\d,]{2,15}(?:\.\d{1,2})?\s?(?:usd|eur|gbp|chf|"
    r"btc|eth|dollars|euros|pounds)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"\d{3,15}(?:\.\d{1,2})?")
_DIGITS = re.compile(r"\D+")
_DIGIT = re.compile(r"\d")
# Argument text read for values per match() call: past it, leaves are still compared with the
# tainted values as substrings (bounded by MAX_SUBSTRING_SCAN), not parsed for values.
MAX_EXTRACTED = 64 * 1024
# Characters read per match() call by substring searches: arguments searched for each tainted
# value, and flagged text searched for each window of an argument (copied passages). Each is a
# few milliseconds of substring search at most, however large and many the arguments.
MAX_SUBSTRING_SCAN = 32 * 1024 * 1024
MAX_PASSAGE_SCAN = 32 * 1024 * 1024


def _emails(text: str) -> Iterator[str]:
    """The e-mail addresses in ``text``, left to right, without overlaps: what a search for
    ``local{1,64}@domain`` finds, in time linear in the text however many "@" it holds."""
    floor = 0
    at = text.find("@")
    while at >= 0:
        local = _LOCAL_PART.match(text[max(floor, at - 64):at][::-1])
        domain = _MAIL_DOMAIN.match(text, at + 1) if local else None
        if local and domain:
            yield text[at - local.end():domain.end()]
            floor = domain.end()
            at = text.find("@", floor)
        else:
            at = text.find("@", at + 1)


def _url_key(url: str) -> tuple[str, tuple[str, ...]]:
    """A URL's key (host and what follows, lower-cased) and every host it reaches: two when
    clients read a backslash differently (``http://evil.test\\@ok.com/`` is ``evil.test`` to
    requests, ``ok.com`` to httpx), so a later call to either host is tainted."""
    url = url.rstrip(".,;:!?'\"")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return url.lower(), ()
    hosts = tuple(dict.fromkeys(h[4:] if h.startswith("www.") else h
                                for h in reached_hosts(url)))
    if host.startswith("www."):
        host = host[4:]
    rest = url[url.find(parts.netloc) + len(parts.netloc):] if parts.netloc else ""
    return (host + rest).rstrip("/").lower(), hosts


def extract_values(text: str) -> list[tuple[str, str, str]]:
    """``(kind, normalised key, as written)`` for the values in ``text`` worth tracking."""
    text = text[:MAX_TEXT]
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def add(kind: str, key: str, raw: str) -> None:
        key, raw = key[:MAX_VALUE_CHARS], raw[:MAX_VALUE_CHARS]
        if key and len(out) < MAX_VALUES_PER_TEXT and f"{kind}:{key}" not in seen:
            seen.add(f"{kind}:{key}")
            out.append((kind, key, raw))

    if "://" in text:
        for match in _URL.finditer(text):
            key, hosts = _url_key(match.group())
            add("url", key, match.group())
            for host in hosts:
                add("host", host, host)
    if "@" in text:
        for email in _emails(text):
            email = email.rstrip(".")
            add("email", email.lower(), email)
            add("host", email.rsplit("@", 1)[1].lower(), email.rsplit("@", 1)[1])
    # Each pattern below needs a character that many texts lack (a dot, a digit, a slash): one
    # C-level search for it spares the pattern's slower pass over the whole text.
    if "." in text:
        for match in _DOMAIN.finditer(text):
            host = match.group().lower()
            add("host", host[4:] if host.startswith("www.") else host, match.group())
    digit = _DIGIT.search(text) is not None
    if digit:
        for match in _IBAN.finditer(text):
            add("account", match.group().replace(" ", ""), match.group())
        for match in _PHONE.finditer(text):
            digits = _DIGITS.sub("", match.group())
            if 8 <= len(digits) <= 15:
                add("phone", digits, match.group())
    if "/" in text or ":\\" in text:
        for match in _PATH.finditer(text):
            add("path", match.group().lower(), match.group())
    if not digit:
        return out  # tokens are kept only with a digit in them; amounts are numbers
    for match in _TOKEN.finditer(text):
        token = match.group()
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            add("token", token, token)
    for match in _AMOUNT.finditer(text):
        digits = re.sub(r"[^\d.]", "", match.group()).rstrip(".")
        if digits.endswith(".00"):
            digits = digits[:-3]
        add("amount", digits, match.group())
    return out


def iter_arguments(value: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """``(path, text)`` for every string or number leaf of tool arguments, bounded."""
    count = 0
    stack: list[tuple[str, Any, int]] = [(path, value, depth)]
    while stack and count < MAX_LEAVES:
        where, item, level = stack.pop()
        if isinstance(item, str):
            count += 1
            yield where or "$", item[:MAX_LEAF]
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, (int, float)):
            count += 1
            yield where or "$", str(item)
        elif level >= MAX_DEPTH:
            continue
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())[:MAX_LEAVES]):
                stack.append((f"{where}.{key}" if where else str(key), child, level + 1))
        elif isinstance(item, (list, tuple)):
            for index in range(min(len(item), MAX_LEAVES) - 1, -1, -1):
                stack.append((f"{where}[{index}]", item[index], level + 1))


def _excerpt(value: str, limit: int = 80) -> str:
    from agentguard.redaction import redact

    return escape_invisible(redact(value[:limit]))


class UserValues:
    """What the user typed in a conversation: an argument value the user gave is the user's
    request, not one injected by content that happens to contain it too."""

    __slots__ = ("hosts", "texts", "values")

    def __init__(self, texts: list[str]) -> None:
        self.values: set[str] = set()
        self.hosts: set[str] = set()
        self.texts = [_SPACES.sub(" ", text[:MAX_TEXT]).lower() for text in texts]
        for text in texts:
            for kind, key, _ in extract_values(text):
                if kind == "host":
                    self.hosts.add(key)
                else:
                    self.values.add(f"{kind}:{key}")

    def typed(self, window: str) -> bool:
        """Whether the user's own text holds this passage."""
        return any(window in text for text in self.texts)


class TaintStore:
    """The tainted values and text of one conversation, bounded, with their sources."""

    __slots__ = ("_chars", "_host_chars", "_texts", "_value_chars", "empty", "hosts",
                 "max_chars", "max_value_chars", "max_values", "values")

    def __init__(self, max_values: int = 512, max_chars: int = 32 * 1024,
                 max_value_chars: int = 32 * 1024) -> None:
        self.values: OrderedDict[str, tuple[str, str, SourceRef]] = OrderedDict()
        self.hosts: OrderedDict[str, SourceRef] = OrderedDict()
        self._texts: deque[tuple[str, SourceRef]] = deque()
        self._chars = 0
        self.max_values = max_values
        self.max_chars = max_chars
        # Characters of the values kept (and, apart, of the hosts): a conversation fed long
        # values (attacker-chosen URLs) holds tens of kilobytes, not megabytes.
        self.max_value_chars = max_value_chars
        self._value_chars = 0
        self._host_chars = 0
        # Nothing was ever added: a plain attribute, read on every tool call.
        self.empty = True

    def __bool__(self) -> bool:
        return bool(self.values or self._texts)

    def add(self, text: str, source: SourceRef) -> None:
        """Remember the values and the text of flagged content."""
        self.empty = False
        hosts, values = self.hosts, self.values
        for kind, key, raw in extract_values(text):
            if kind == "host":
                if key not in hosts:
                    self._host_chars += len(key)
                hosts[key] = source
                hosts.move_to_end(key)
                while len(hosts) > self.max_values or self._host_chars > self.max_value_chars:
                    self._host_chars -= len(hosts.popitem(last=False)[0])
                continue
            name = f"{kind}:{key}"
            known = values.get(name)
            self._value_chars += len(name) + len(raw) - \
                (len(name) + len(known[1]) if known else 0)
            values[name] = (kind, raw, source)
            values.move_to_end(name)
            while len(values) > self.max_values or self._value_chars > self.max_value_chars:
                gone, (_, gone_raw, _) = values.popitem(last=False)
                self._value_chars -= len(gone) + len(gone_raw)
        flat = _SPACES.sub(" ", text[:MAX_TEXT]).lower()[: self.max_chars]
        if len(flat) >= SPAN_WINDOW:
            self._texts.append((flat, source))
            self._chars += len(flat)
            while self._chars > self.max_chars and self._texts:
                old, _ = self._texts.popleft()
                self._chars -= len(old)

    def match(self, arguments: Any, user: UserValues | None = None) -> list[TaintMatch]:
        """The argument leaves that carry tainted values or copied passages; values and
        passages the user typed (``user``) are not taint, wherever else they appear."""
        mine_values = user.values if user is not None else frozenset()
        mine_hosts = user.hosts if user is not None else frozenset()
        found: list[TaintMatch] = []
        seen: set[tuple[str, str]] = set()
        searched = 0
        scanned = 0
        # The tainted values to look for as substrings, lower-cased once per call.
        keys: list[tuple[str, str, str, SourceRef]] | None = None

        def note(path: str, kind: str, how: str, raw: str, source: SourceRef) -> None:
            if (path, kind) not in seen:
                seen.add((path, kind))
                found.append(TaintMatch(path, kind, how, _excerpt(raw), source))

        extract_left = MAX_EXTRACTED
        for path, leaf in iter_arguments(arguments):
            lowered = leaf.lower()
            hit = False
            values = extract_values(leaf) if extract_left > 0 else ()
            extract_left -= len(leaf)
            for kind, key, raw in values:
                if kind == "host":
                    # The host or a parent domain of it (upload.evil.com after evil.com), never
                    # a bare top-level domain.
                    labels = key.split(".")
                    for index in range(max(0, len(labels) - 6), len(labels) - 1):
                        parent = ".".join(labels[index:])
                        source = self.hosts.get(parent)
                        if source is not None and parent not in mine_hosts:
                            note(path, "host", "host", raw, source)
                            hit = True
                            break
                    continue
                stored = self.values.get(f"{kind}:{key}")
                if stored is not None and f"{kind}:{key}" not in mine_values:
                    note(path, kind, "exact" if stored[1] == raw else "normalised", raw, stored[2])
                    hit = True
            if not hit and _NUMBER.fullmatch(leaf):
                # A bare number argument (amount=12500) against tainted amounts ("$12,500.00").
                number = leaf[:-2] if leaf.endswith(".0") else leaf
                number = number[:-3] if number.endswith(".00") else number
                stored = self.values.get(f"amount:{number}")
                if stored is not None and f"amount:{number}" not in mine_values:
                    note(path, "amount", "normalised", leaf, stored[2])
                    hit = True
            if hit:
                continue
            # Values the extractor cannot see in this argument's context (a number glued to
            # text, an address without its scheme): plain substring of the normalised value.
            if keys is None:
                keys = [(kind, key, raw, source)
                        for name, (kind, raw, source) in self.values.items()
                        if len(key := raw.lower()) >= 6 and name not in mine_values]
            for kind, key, raw, source in keys:
                # Each comparison reads the argument: the budget is in characters read.
                searched += len(lowered)
                if searched > MAX_SUBSTRING_SCAN:
                    break
                if key in lowered:
                    note(path, kind, "substring", raw, source)
                    hit = True
                    break
            if (hit or len(leaf) < SPAN_WINDOW + SPAN_STRIDE or not self._texts
                    or scanned + self._chars > MAX_PASSAGE_SCAN):
                continue
            # Copied passages: windows of the argument found verbatim in flagged text. Any shared
            # span of SPAN_WINDOW + SPAN_STRIDE characters contains one of the windows tried.
            flat = _SPACES.sub(" ", lowered)
            for offset in range(0, min(len(flat), MAX_LEAF) - SPAN_WINDOW + 1, SPAN_STRIDE):
                window = flat[offset:offset + SPAN_WINDOW]
                # Each window is searched for in all the flagged text kept (up to max_chars).
                scanned += self._chars
                if scanned > MAX_PASSAGE_SCAN:
                    break
                for text, source in self._texts:
                    if window in text:
                        if user is not None and user.typed(window):
                            break  # the user wrote this passage themselves
                        note(path, "passage", "span", window, source)
                        hit = True
                        break
                if hit:
                    break
        return found
