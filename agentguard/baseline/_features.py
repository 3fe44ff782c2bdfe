"""What a profile learns from a value: string shape, hosts, e-mail domains, path prefixes, result
sizes and record counts, network blocks, and structured decisions in a model's output.

Everything here reads attacker-controlled text, so every scan is linear and bounded: regular
expressions have bounded repetition and run on a bounded prefix, JSON is parsed only up to a size
limit, and large containers are sampled.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import os
import re
from typing import Any

from agentguard._numbers import text_number
from agentguard._urls import email_domains
from agentguard.baseline._numbers import as_float, digits
from agentguard.redaction import redact

__all__ = [
    "TEXT_SCAN",
    "cidr",
    "clean_value",
    "decisions",
    "domain_suffix",
    "email_domains",
    "flatten_arguments",
    "measure",
    "path_prefix",
    "secret_key",
    "shape",
    "url_hosts",
]

# Only this much of a string is searched for URLs, e-mail addresses and paths.
TEXT_SCAN = 4096
# At most this many hosts / domains are taken from one string.
_MAX_FOUND = 8
# Strings of JSON up to this size are parsed to count their records; larger ones are estimated.
_MAX_PARSE = 4 << 20
# Containers larger than this are sized from a sample of their items.
_SAMPLE_OVER = 1000
_SAMPLE = 64
# Shape: strings up to this length keep the order of their character classes; of longer ones
# this much is scanned for the classes they contain; a shape is kept to this length.
_SHAPE_EXACT = 32
_SHAPE_SCAN = 256
_SHAPE_LENGTH = 24
# Arguments: nesting followed this deep, list items summarised per list.
_ARG_DEPTH = 2
_LIST_ITEMS = 8
_MAX_ARG_ITEMS = 256

_SHAPE_TABLE = str.maketrans(
    {**{c: "a" for c in "abcdefghijklmnopqrstuvwxyz"},
     **{c: "A" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
     **{c: "9" for c in "0123456789"},
     **{c: " " for c in "\t\n\r\x0b\x0c"}}
)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Repeats of a class character (deleted, leaving one of each run).
_RUNS = re.compile(r"(?<=a)a+|(?<=A)A+|(?<=9)9+|(?<= ) +|(?<=u)u+")
# The authority as RFC 3986 reads it (to '/', '?' or '#'); a backslash in it is read as the end
# by WHATWG clients (urllib3, requests), and both readings are hosts the URL can reach.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}://([^/\s?#\"'<>]{1,255})")
_SECRET_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|secret|token|api[_\-]?key|access[_\-]?key|credential|auth|cookie"
    r"|session|private[_\-]?key|signature|\bpin\b|otp"
)
_DIGIT = re.compile(r"\d")
_ROW_KEYS = ("rows", "records", "items", "results", "data", "hits", "entries", "Items",
             "Contents", "documents", "matches", "objects", "values", "list", "customers",
             "users", "orders")
_DECISION_KEYS = frozenset({
    "decision", "label", "verdict", "action", "approved", "approve", "approval",
    "classification", "category", "class", "status", "outcome", "result", "answer", "sentiment",
    "allow", "allowed", "risk", "risk_level", "priority", "intent", "route",
})
_SCORE_KEYS = frozenset({"score", "confidence", "probability", "risk_score", "rating",
                         "likelihood", "amount"})
_MAX_DECISION_TEXT = 64 * 1024
_MAX_DECISION_FIELDS = 16
_HOME = os.path.expanduser("~").rstrip("/")
_IP_CHARS = frozenset("0123456789abcdefABCDEF.:%[]")
# One encoder: json.dumps with options builds a new one per call, which costs more than encoding.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"),
                            check_circular=False)


@functools.lru_cache(maxsize=4096)
def clean_value(value: str) -> str:
    """A value as a profile may keep it: secrets redacted (values too short to be one pass)."""
    return redact(value) if len(value) >= 16 else value


@functools.lru_cache(maxsize=1024)
def secret_key(key: str) -> bool:
    """Whether an argument's name says its values are secrets (only their shape is kept)."""
    lowered = key.lower()
    return "max_tokens" not in lowered and _SECRET_KEY.search(lowered) is not None


def shape(text: str) -> str:
    """The character-class outline of a string: ``ticket-4711`` → ``a-9``, ``A-17`` → ``A-9``.

    Short strings keep their order of classes; longer ones (free text) are described by the set
    of classes and punctuation they contain, prefixed with ``~`` (``~ ,.9Aa``).
    """
    if len(text) <= _SHAPE_EXACT:
        return _collapse(text.translate(_SHAPE_TABLE))
    classes = set(text[:_SHAPE_SCAN].translate(_SHAPE_TABLE))
    if not text.isascii():
        classes = {c if c < "\x80" else "u" for c in classes}
    return "~" + "".join(sorted(classes))[:_SHAPE_LENGTH]


@functools.lru_cache(maxsize=4096)
def _collapse(classes: str) -> str:
    # Keyed by the class string, which repeats across values of one argument (ids, dates).
    return _RUNS.sub("", _NON_ASCII.sub("u", classes))[:_SHAPE_LENGTH]


def numeric_text(text: str) -> float | None:
    """The number a string spells as the tool reading it would (``"50000"``, ``" 50000"``,
    ``"-1"``, ``"2.5"``, ``"1e5"``, ``"5_000"``, forty zeros and ``5``), if any.

    Digits too large for a float (``"1e400"``) spell an infinity, which is outside every learned
    range; the words ``inf`` and ``nan`` spell no number.
    """
    number = text_number(text)
    if number is None or math.isfinite(number) or _DIGIT.search(text) is not None:
        return number
    return None


def url_hosts(text: str) -> list[str]:
    """Host names of the URLs in ``text`` (lower case, without user info and port)."""
    if "://" not in text:
        return []
    hosts: list[str] = []
    for match in _URL.finditer(text, 0, TEXT_SCAN):
        authority = match.group(1)
        readings = (authority, authority.partition("\\")[0]) if "\\" in authority \
            else (authority,)
        for netloc in readings:
            netloc = netloc.rpartition("@")[2]
            # An IPv6 literal is bracketed: [::1]:8080.
            host = netloc[1:].partition("]")[0] if netloc.startswith("[") \
                else netloc.partition(":")[0]
            host = host.rstrip(".").lower()
            if host and host not in hosts:
                hosts.append(host)
        if len(hosts) >= _MAX_FOUND:
            del hosts[_MAX_FOUND:]
            break
    return hosts


def looks_like_path(text: str) -> bool:
    first = text[:1]
    if first == "/":
        return not text.startswith("//")
    if first == "~":
        return text[1:2] in ("/", "")
    if first == ".":
        return text.startswith(("./", "../"))
    return len(text) > 2 and text[1] == ":" and text[2] in "\\/" and text[0].isalpha()


def path_prefix(path: str, depth: int = 3) -> str:
    """The directory area a path is in: up to ``depth`` directories, the home directory as ``~``,
    and directory names with digits (temporary, per-run, per-user) as ``*``."""
    path = path[:TEXT_SCAN].replace("\\", "/")
    if path.startswith("file://"):
        path = path[7:]
    if _HOME and (path == _HOME or path.startswith(_HOME + "/")):
        path = "~" + path[len(_HOME):]
    is_dir = path.endswith("/")
    parts = [p for p in path.split("/", 32) if p not in ("", ".")]
    root = "/" if path.startswith("/") else ""
    if parts and not is_dir:
        parts = parts[:-1]
    kept: list[str] = []
    for part in parts[:depth]:
        kept.append("*" if _DIGIT.search(part) or len(part) > 40 else part)
    if not kept:
        return root or "."
    if kept[0] == "~" or (len(kept[0]) == 2 and kept[0][1] == ":"):
        return "/".join(kept)
    return root + "/".join(kept)


@functools.lru_cache(maxsize=4096)
def domain_suffix(host: str) -> str | None:
    """The registrable-looking part of a host name (``eu.api.example.com`` → ``example.com``)."""
    if not host or _is_ip(host):
        return None
    labels = host.rstrip(".").lower().split(".")
    if len(labels) < 2:
        return host.lower()
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _is_ip(text: str) -> bool:
    if not _IP_CHARS.issuperset(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def cidr(address: str) -> str | None:
    """The network block an address is in (/24 for IPv4, /48 for IPv6), else ``None``."""
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/24"
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


# -- arguments ---------------------------------------------------------------------------------

def flatten_arguments(arguments: Any) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs of a tool's arguments: nested objects as ``outer.inner`` (after the
    object itself), scalar list items as ``key[]``; a non-object argument is the key ``""``."""
    if type(arguments) is dict:
        items = list(arguments.items())
        for key, value in items:
            if type(key) is not str or type(value) in _NESTED:
                break
        else:
            # The common case: a flat object of named scalars.
            return items if len(items) <= _MAX_ARG_ITEMS else items[:_MAX_ARG_ITEMS]
        out: list[tuple[str, Any]] = []
        _walk(arguments, "", 0, out)
        return out
    if isinstance(arguments, dict):
        out = []
        _walk(dict(arguments), "", 0, out)
        return out
    if arguments is None:
        return []
    return [("", arguments)]


_NESTED = frozenset({dict, list, tuple})


def _walk(mapping: dict[Any, Any], prefix: str, depth: int, out: list[tuple[str, Any]]) -> None:
    for key, value in mapping.items():
        if len(out) >= _MAX_ARG_ITEMS:
            return
        name = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{key!r}"
        out.append((name, value))
        kind = type(value)
        if kind is dict and depth < _ARG_DEPTH:
            _walk(value, name + ".", depth + 1, out)
        elif (kind is list or kind is tuple) and value:
            item_key = name + "[]"
            for item in value[:_LIST_ITEMS]:
                if item is None or isinstance(item, (str, int, float, bool)):
                    out.append((item_key, item))


# -- results -----------------------------------------------------------------------------------

def measure(value: Any) -> tuple[int | None, int | None]:
    """``(size in bytes, number of records)`` of a tool result; either may be unknown (``None``).

    Records: the length of a list or JSON array, of the row list inside an object (``rows``,
    ``items``, ``Items``, ...), of an object of objects, the data lines of CSV-like text or JSON
    lines, the first dimension of a data frame; one for a single object.
    """
    if value is None:
        return 0, None
    kind = type(value)
    if kind is str:
        return _measure_text(value)
    if kind is dict:
        return _json_size(value), _rows(value)
    if kind is list or kind is tuple:
        text = _content_blocks(value)
        if text is not None:
            return _measure_text(text)
        return _json_size(value), len(value)
    if kind is int:
        # repr() of an integer beyond 4300 digits raises; its length is its digit count.
        return digits(value) + (value < 0), None
    if kind is bool or kind is float:
        return len(repr(value)), None
    if isinstance(value, str):
        return _measure_cut(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value), None
    shape_attr = getattr(value, "shape", None)
    if isinstance(shape_attr, tuple) and shape_attr and isinstance(shape_attr[0], int):
        size = getattr(value, "nbytes", None)
        return (size if isinstance(size, int) else None), shape_attr[0]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return measure(dump(mode="json"))
        except Exception:
            return None, None
    if isinstance(value, dict):
        return _json_size(dict(value)), _rows(value)
    if isinstance(value, (list, tuple)):
        return _json_size(list(value)), len(value)
    return None, None


def _measure_cut(text: str) -> tuple[int | None, int | None]:
    """Text that was cut at capture (a ``str`` with ``full_size``): its full size, and its records
    estimated from the part that was kept."""
    kept = str(text)
    size, records = _measure_text(kept)
    full = getattr(text, "full_size", None)
    if not isinstance(full, int) or full <= size or size == 0:
        return size, records
    if records is None:
        records = _estimate_records(kept.lstrip())
    return full, (round(records * full / size) if records else None)


def _content_blocks(items: list[Any] | tuple[Any, ...]) -> str | None:
    """The text of a LangChain message content list (``[{"type": "text", "text": ...}]``)."""
    if not items or len(items) > 64:
        return None
    parts: list[str] = []
    for item in items:
        if type(item) is str:
            parts.append(item)
        elif type(item) is dict and item.get("type") == "text" and isinstance(item.get("text"), str):
            parts.append(item["text"])
        else:
            return None
    return "".join(parts)


def text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _measure_text(text: str) -> tuple[int, int | None]:
    size = text_bytes(text)
    stripped = text.lstrip()
    first = stripped[:1]
    if first in ("[", "{"):
        if size <= _MAX_PARSE:
            try:
                parsed = json.loads(stripped)
            except (ValueError, RecursionError):
                parsed = None
            else:
                if type(parsed) is list:
                    return size, len(parsed)
                if type(parsed) is dict:
                    return size, _rows(parsed)
        return size, _estimate_records(stripped)
    return size, _line_records(text)


def _estimate_records(text: str) -> int | None:
    """Records of JSON text too large (or too broken) to parse: JSON lines, else object separators."""
    lines = _nonempty_lines(text)
    if lines >= 2 and text.lstrip().startswith("{") and "}\n{" in text.replace("\r", "")[:TEXT_SCAN]:
        return lines
    if text.startswith("["):
        separators = text.count("},{") + text.count("}, {") + text.count("},\n")
        return separators + 1 if separators else None
    return None


def _nonempty_lines(text: str) -> int:
    lines = text.count("\n") + 1
    if text.endswith("\n"):
        lines -= 1
    return lines - text.count("\n\n")


def _line_records(text: str) -> int | None:
    """Data rows of CSV-like or tabular text (the first line taken as the header); else ``None``."""
    newline = text.find("\n")
    if newline < 0:
        return None
    header = text[:newline]
    delimiter = next((d for d in (",", "\t", "|", ";") if d in header), None)
    if delimiter is None:
        return None
    lines = _nonempty_lines(text)
    if lines < 2:
        return None
    second_end = text.find("\n", newline + 1)
    second = text[newline + 1: second_end if second_end >= 0 else None]
    if second.count(delimiter) == 0:
        return None
    rows = lines - 1
    # A Markdown table has a separator line (|---|---|) under its header.
    if delimiter == "|" and set(second.strip()) <= set("|-: "):
        rows -= 1
    return max(rows, 0)


def _rows(mapping: dict[Any, Any]) -> int:
    size = len(mapping)
    if size <= 64:
        kinds = {type(v) for v in mapping.values()}
        if list in kinds:
            for key in _ROW_KEYS:
                rows = mapping.get(key)
                if type(rows) is list:
                    return len(rows)
        if size >= 2 and kinds == {dict}:
            return size
        return 1
    for key in _ROW_KEYS:
        rows = mapping.get(key)
        if type(rows) is list:
            return len(rows)
    if all(type(v) is dict for v in list(mapping.values())[:_SAMPLE]):
        return size
    return 1


def _json_size(value: list[Any] | dict[Any, Any]) -> int | None:
    """UTF-8 size of the compact JSON of a container (sampled for large ones)."""
    try:
        if len(value) > _SAMPLE_OVER:
            items = value[:_SAMPLE] if isinstance(value, list) else \
                dict(list(value.items())[:_SAMPLE])
            return int(text_bytes(_ENCODER.encode(items)) * len(value) / _SAMPLE)
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        return None
    return text_bytes(text)


# -- model output ------------------------------------------------------------------------------

def decisions(output: Any) -> tuple[list[tuple[str, str]], list[tuple[str, float]]]:
    """Structured decisions in a model's answer: categorical fields (``decision``, ``label``,
    ``approved``, ...) and numeric scores, from JSON content or from a structured-output tool call.
    """
    labels: list[tuple[str, str]] = []
    scores: list[tuple[str, float]] = []
    if not output:
        return labels, scores
    for message in output[-2:]:
        role = getattr(message, "role", None)
        if role not in ("assistant", "ai", None):
            continue
        content = getattr(message, "content", None)
        if isinstance(content, str):
            parsed = _json_object(content)
            if parsed is not None:
                _fields(parsed, "", labels, scores)
        calls = getattr(message, "tool_calls", None) or []
        for call in calls[:4]:
            if not isinstance(call, dict):
                continue
            args = call.get("args", call.get("arguments"))
            if isinstance(args, str):
                args = _json_object(args)
            if isinstance(args, dict):
                _fields(args, f"{call.get('name') or 'tool'}.", labels, scores)
    return labels, scores


def _json_object(text: str) -> dict[str, Any] | None:
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        if text[:4].lower() == "json":
            text = text[4:]
        text = text.strip()
    if not text.startswith("{") or len(text) > _MAX_DECISION_TEXT:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _fields(mapping: dict[str, Any], prefix: str, labels: list[tuple[str, str]],
            scores: list[tuple[str, float]]) -> None:
    for index, (key, value) in enumerate(mapping.items()):
        if index >= 32 or len(labels) + len(scores) >= _MAX_DECISION_FIELDS:
            return
        if not isinstance(key, str):
            continue
        lowered = key.lower()
        if lowered in _DECISION_KEYS:
            if isinstance(value, bool):
                labels.append((prefix + key, "true" if value else "false"))
            elif isinstance(value, str) and 0 < len(value) <= 48:
                labels.append((prefix + key, value.strip().lower()))
            elif isinstance(value, (int, float)) and lowered in ("risk", "priority"):
                scores.append((prefix + key, as_float(value)))
        elif lowered in _SCORE_KEYS and isinstance(value, (int, float)) and \
                not isinstance(value, bool):
            scores.append((prefix + key, as_float(value)))
