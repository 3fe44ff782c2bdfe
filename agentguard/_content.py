"""Turning captured values (prompts, arguments, results) into bounded, redacted span attribute text.

Modes: ``full`` (truncated only), ``redacted`` (secrets removed, then truncated), ``hash``
(``sha256:<hex>`` of the full text) and ``none`` (nothing captured).

Text over the size cap is cut and marked ``...[truncated, N chars]``. In ``redacted`` mode the
text is redacted before it is cut, looking well past the cut, so a secret straddling it is
replaced whole and never shown in part. Values are serialised to compact JSON by ``to_json``,
which never raises and stops at a size limit, so a huge value costs no more than what is shown;
when a value was cut that way its full size is unknown and the marker says
``...[truncated, more than N chars]``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import re
import traceback
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, Literal, get_args

from agentguard._spans import PendingContent
from agentguard.redaction import redact

__all__ = ["CaptureMode", "ContentCapture", "to_json"]

CaptureMode = Literal["full", "redacted", "hash", "none"]
_MODES: tuple[str, ...] = get_args(CaptureMode)

# Redaction looks at least this far past the cut, so a secret straddling the truncation point is
# recognised whole (private keys and JWTs are the longest).
_REDACT_MARGIN = 4096
# Small values of plain JSON types are serialised by json.dumps; anything else by the bounded
# encoder, which stops at the size limit.
_NODE_BUDGET = 2000
# The bounded encoder hands plain values with at most this many nodes to json.
_SMALL_ITEM = 64
# Nesting deeper than this is written as a placeholder by the bounded encoder.
_MAX_DEPTH = 32
# `hash` mode of a non-string value covers at most this much of its JSON text.
_HASH_LIMIT = 1 << 24
# Appended by to_json when it had to cut a value.
_JSON_CUT = "...[truncated]"
_REDACTED = "[REDACTED:"
_LONG_WINDOW = 1 << 20
# A dict of at most this many scalar values, none a string longer than _FLAT_STRING, is encoded
# without the size walk (its JSON text is then at most about 16 * (key + 1 KiB)).
_FLAT_ITEMS = 16
_FLAT_STRING = 1024
_FLAT = frozenset({str, int, float, bool, type(None)})
# Longer strings are redacted at once rather than kept alive until they are exported.
_PENDING_LIMIT = 1 << 16
# Keys under which findings' evidence quotes captured content (the scanner's excerpts, policy
# and taint values, baseline observations, exception messages, queries and texts).
_QUOTING_KEYS = frozenset({"excerpt", "value", "values", "transformed", "observed", "message",
                           "text", "content", "query", "match_text", "sample", "samples"})
# Items of one evidence container walked in hash/none mode.
_EVIDENCE_ITEMS = 256
_ENDS_REDACTED = re.compile(r"\[REDACTED:[a-z_]{1,32}\]\Z")

_PLAIN_LEAVES = (str, int, float, bool, type(None))
# An exception event's stack trace: at most this many chained exceptions, and the innermost
# frames of each.
_MAX_CHAIN = 8
_MAX_FRAMES = 64
# One encoder for every call (json.dumps with arguments builds a new one each time).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _no_default(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _make_plain_encoder() -> Callable[[Any], str]:
    """The fastest encoder for acyclic values of plain JSON types.

    ``JSONEncoder.encode`` builds its C encoder on every call, which costs more than encoding a
    small dict; this builds it once (without the cycle check: callers rule cycles out).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return _ENCODER.encode
    try:
        chunks = make(None, _no_default, basestring, None, ":", ",", False, False, True)
        if "".join(chunks({"a": [1, 2.5, None, True]}, 0)) != '{"a":[1,2.5,null,true]}':
            return _ENCODER.encode
    except Exception:
        return _ENCODER.encode
    return lambda value: "".join(chunks(value, 0))


_encode_plain = _make_plain_encoder()


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = None
    if isinstance(text, str):
        return text
    try:
        name = type(obj).__name__
    except Exception:
        name = "object"
    return f"<unrepresentable {name}>"


def _convert(obj: Any) -> Any:
    """A JSON-friendly stand-in for an object json.dumps cannot encode (never raises)."""
    try:
        dump = getattr(obj, "model_dump", None)
        if callable(dump):  # pydantic models
            try:
                return dump(mode="json")
            except Exception:
                return _safe_repr(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return f"<{len(obj)} bytes>"  # the content may be anything; only its size is kept
        if isinstance(obj, (set, frozenset, tuple)):
            return list(obj)
        if isinstance(obj, enum.Enum):
            return obj.value
        if isinstance(obj, (datetime.date, datetime.time)):
            return obj.isoformat()
        if isinstance(obj, (uuid.UUID, decimal.Decimal, PurePath)):
            return str(obj)
    except Exception:
        pass
    return _safe_repr(obj)


def _is_small(value: Any, limit: int, budget: int = _NODE_BUDGET) -> bool:
    """Whether ``value`` is made of plain JSON types only, has few nodes and short strings."""
    stack = [value]
    nodes = 0
    chars = 0
    while stack:
        item = stack.pop()
        nodes += 1
        if nodes > budget:
            return False
        kind = type(item)
        if kind is str:
            chars += len(item)
        elif kind is dict:
            if len(item) > budget:
                return False
            for key in item:
                if type(key) is not str:
                    return False
                chars += len(key)
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            if len(item) > budget:
                return False
            stack.extend(item)
        elif kind not in _PLAIN_LEAVES:  # subclasses (enums, ...) go to the bounded encoder
            return False
        if chars > limit:
            return False
    return True


class _Bounded:
    """A JSON writer that stops after ``limit`` characters (for huge, deep or hostile values)."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.room = limit
        self.cut = False
        self.active: set[int] = set()  # ids of the containers being written (cycle detection)

    def put(self, text: str) -> bool:
        """Append ``text``; False once the limit is reached (the rest is not needed)."""
        if len(text) > self.room:
            self.parts.append(text[: self.room])
            self.room = 0
            self.cut = True
            return False
        self.parts.append(text)
        self.room -= len(text)
        return True

    def string(self, text: str) -> bool:
        # Escaping only lengthens a string, so the part past the room is never needed.
        return self.put(_ENCODER.encode(text[: self.room + 1]))

    def value(self, obj: Any, depth: int = 0) -> bool:
        if isinstance(obj, str):
            return self.string(obj)
        if obj is None or isinstance(obj, (bool, int, float)):
            try:
                return self.put(json.dumps(obj))
            except Exception:  # ints too long to print
                return self.string(_safe_repr(obj))
        if isinstance(obj, (dict, list)):
            if _is_small(obj, self.room, _SMALL_ITEM):
                # Plain and small (the items of a big list usually are): the C encoder is faster.
                try:
                    return self.put(_encode_plain(obj))
                except Exception:
                    pass
            return self.container(obj, depth)
        return self.value_of(_convert(obj), depth)

    def value_of(self, converted: Any, depth: int) -> bool:
        if isinstance(converted, (dict, list)):
            return self.container(converted, depth)
        if isinstance(converted, str):
            return self.string(converted)
        if converted is None or isinstance(converted, (bool, int, float)):
            return self.value(converted, depth)
        return self.string(_safe_repr(converted))

    def container(self, obj: dict[Any, Any] | list[Any], depth: int) -> bool:
        if depth >= _MAX_DEPTH:
            return self.put('"<nested too deep>"')
        if id(obj) in self.active:
            return self.put('"<circular>"')
        self.active.add(id(obj))
        try:
            if isinstance(obj, dict):
                return self.mapping(obj, depth)
            return self.sequence(obj, depth)
        finally:
            self.active.discard(id(obj))

    def mapping(self, obj: dict[Any, Any], depth: int) -> bool:
        if not self.put("{"):
            return False
        for i, (key, val) in enumerate(obj.items()):
            if i and not self.put(","):
                return False
            if not self.string(_key(key)) or not self.put(":"):
                return False
            if not self.value(val, depth + 1):
                return False
        return self.put("}")

    def sequence(self, obj: list[Any], depth: int) -> bool:
        if not self.put("["):
            return False
        for i, val in enumerate(obj):
            if (i and not self.put(",")) or not self.value(val, depth + 1):
                return False
        return self.put("]")


def _key(key: Any) -> str:
    """A dict key as json.dumps would write it (non-string keys included)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        try:
            return json.dumps(key)
        except Exception:
            return _safe_repr(key)
    return _safe_repr(key)


def _encode(value: Any, limit: int) -> tuple[str, bool]:
    """JSON text of ``value``, at most ``limit`` characters, and whether it is complete."""
    if isinstance(value, str):
        return (value, True) if len(value) <= limit else (value[:limit], False)
    try:
        if _is_small(value, limit):
            text = _encode_plain(value)
            return (text, True) if len(text) <= limit else (text[:limit], False)
    except Exception:
        pass  # circular references, deep nesting, huge ints: the bounded encoder copes
    writer = _Bounded(limit)
    try:
        writer.value(value)
    except Exception:  # a hostile container (items() raising, changed while iterating, ...)
        return "".join(writer.parts), False  # what could be written, marked as cut
    return "".join(writer.parts), not writer.cut


def to_json(value: Any, limit: int = 1 << 20) -> str:
    """Serialise ``value`` to JSON text; never raises, never returns more than ``limit`` chars.

    Strings are returned as they are when they fit. Objects json.dumps cannot encode are written
    as what they stand for (pydantic models and dataclasses as objects, sets and tuples as arrays,
    bytes as their size, anything else as its ``repr``); circular references as ``"<circular>"``.
    A value that does not fit is cut and ends with ``...[truncated]`` (the result is then no
    longer valid JSON).
    """
    limit = max(limit, 0)
    text, complete = _encode(value, limit)
    if complete:
        return text
    if limit <= len(_JSON_CUT):
        return text
    return text[: limit - len(_JSON_CUT)] + _JSON_CUT


def _far_enough(redacted: str, keep: int, window: int) -> bool:
    """Whether the redacted start (``window`` characters) of a text reaches far enough past what
    is shown.

    A secret cut by the end of the part redacted would be shown in part if that end were close
    to the part shown; it is far enough when at least half the margin lies between them. A long
    start that ends in a redaction (a private key without its END line runs to the end) is far
    enough too: redacting more of it would show nothing more.
    """
    if len(redacted) > keep + _REDACT_MARGIN // 2:
        return True
    tail = max(0, len(redacted) - 40)
    return window >= _LONG_WINDOW and _ENDS_REDACTED.search(redacted, tail) is not None


def _redact_head(text: str, keep: int) -> tuple[str, bool]:
    """Redacted text covering at least the first ``keep`` characters that will be shown.

    Returns the redacted text and whether it covers all of ``text``. Only the start of a long
    text is redacted: ``keep`` characters and a margin, more when redaction shortened it a lot.
    """
    window = keep + _REDACT_MARGIN
    while True:
        if window >= len(text):
            return redact(text), True
        redacted = redact(text[:window])
        if _far_enough(redacted, keep, window):
            return redacted, False
        window *= 2


def _cut(text: str, keep: int) -> str:
    """``text[:keep]``, ending before a redaction marker rather than inside one."""
    start = text.rfind(_REDACTED, max(0, keep - 40), keep + len(_REDACTED))
    if 0 <= start < keep and text.find("]", start) >= keep:
        return text[:start]
    return text[:keep]


class ContentCapture:
    """Applies the capture mode and size cap to content before it becomes a span attribute.

    ``text`` and ``value`` never raise. Their result is at most ``max_length`` characters plus a
    truncation marker ``...[truncated, N chars]`` (N: the size of the whole text) or, when a value
    was too large to serialise completely, ``...[truncated, more than N chars]``.
    """

    __slots__ = ("enabled", "max_length", "mode")

    def __init__(self, mode: CaptureMode = "redacted", max_length: int = 4096) -> None:
        if mode not in _MODES:
            raise ValueError(f"capture mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if max_length < 0:
            raise ValueError(f"max_length must not be negative, not {max_length}")
        self.mode = mode
        self.max_length = max_length
        self.enabled = mode != "none"

    def text(self, text: str) -> str | None:
        """Captured form of ``text``, or ``None`` when nothing may be captured."""
        mode = self.mode
        if mode == "none":
            return None
        if not isinstance(text, str):
            return self.value(text)
        if mode == "hash":
            return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return self._shown(text, complete=True)

    def value(self, value: Any) -> str | None:
        """Captured JSON form of any value (dicts, lists, models, strings)."""
        if self.mode == "none":
            return None
        if isinstance(value, str):
            return self.text(value)
        if self.mode == "hash":
            # The whole JSON text, up to _HASH_LIMIT characters.
            return self.text(_encode(value, _HASH_LIMIT)[0])
        # Serialising past what can be shown is wasted work; the margin leaves room for redaction
        # to see a secret straddling the cut. When redaction shrank the text a lot, serialise more.
        limit = self.max_length + _REDACT_MARGIN
        while True:
            encoded, complete = _encode(value, limit)
            if complete or self.mode == "full":
                return self._shown(encoded, complete)
            redacted = redact(encoded)
            if _far_enough(redacted, self.max_length, limit) or limit >= _HASH_LIMIT:
                return self._marked(redacted, f"more than {len(encoded)}")
            limit *= 4

    def evidence(self, evidence: dict[str, Any], limit: int = 8192) -> str:
        """A finding's evidence as the JSON text of its span event, under the capture mode.

        Evidence names what was found (indicators, rules, offsets, sources) and quotes some of
        what it was found in (``excerpt``, ``value``, ``observed``...). ``full`` keeps the quotes,
        ``redacted`` removes secrets from them, ``hash`` replaces each quote by its hash and
        ``none`` by a marker, so what the capture mode keeps in is not let out through a finding.
        """
        if self.mode == "full":
            return to_json(evidence, limit)
        if self.mode == "redacted":
            return redact(to_json(evidence, limit))
        return to_json(self._unquoted(evidence, 0), limit)

    def _unquoted(self, value: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return "<nested>"
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= _EVIDENCE_ITEMS:
                    out["..."] = f"{len(value) - index} more"
                    break
                name = _key(key)
                if name in _QUOTING_KEYS and not isinstance(item, (bool, int, float, type(None))):
                    out[name] = "[not captured]" if self.mode == "none" else self.value(item)
                else:
                    out[name] = self._unquoted(item, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self._unquoted(item, depth + 1) for item in value[:_EVIDENCE_ITEMS]]
        return value

    def exception(self, exc: BaseException, *, escaped: bool = False) -> dict[str, str]:
        """The attributes of an ``exception`` span event for ``exc``, under the capture mode.

        An exception's message is content (a tool's error often quotes its input, a cloud error
        the resource it was refused): it is captured like any other text, so redacted, hashed or
        left out, and bounded. The stack trace keeps its frames (code, not data; redacted in
        ``redacted`` mode, at most the innermost ``_MAX_FRAMES`` per exception) with every
        message of the chain replaced by its captured form.
        """
        attributes = {"exception.type": type(exc).__qualname__,
                      "exception.stacktrace": self._stacktrace(exc),
                      "exception.escaped": str(escaped)}
        message = self.text(_message(exc))
        if message is not None:
            attributes["exception.message"] = message
        return attributes

    def error_status(self, exc: BaseException, kind: str | None = None) -> str:
        """A span status description for ``exc``: its kind and, when content may be captured,
        its message (captured form, at most 512 characters)."""
        kind = kind or type(exc).__name__
        message = self.text(_message(exc)) if self.mode in ("full", "redacted") else None
        return (f"{kind}: {message}" if message else kind)[:512]

    def _stacktrace(self, exc: BaseException) -> str:
        parts: list[str] = []
        seen: set[int] = set()
        current: BaseException | None = exc
        links = 0
        while current is not None and id(current) not in seen and links < _MAX_CHAIN:
            seen.add(id(current))
            links += 1
            frames = "".join(traceback.format_tb(current.__traceback__, limit=-_MAX_FRAMES))
            if self.mode == "redacted":
                frames = redact(frames)
            message = self.text(_message(current))
            line = type(current).__qualname__ + (f": {message}" if message else "")
            parts.append(("Traceback (most recent call last):\n" + frames if frames else "")
                         + line + "\n")
            if current.__cause__ is not None:
                current = current.__cause__
                parts.append("\nThe above exception was the direct cause of the following "
                             "exception:\n\n")
            elif current.__context__ is not None and not current.__suppress_context__:
                current = current.__context__
                parts.append("\nDuring handling of the above exception, another exception "
                             "occurred:\n\n")
            else:
                current = None
        if parts and parts[-1].startswith("\n"):
            parts.pop()  # a chain cut at _MAX_CHAIN (or a cycle): no dangling separator
        return "".join(reversed(parts))

    def pending(self, value: Any) -> Any:
        """Like :meth:`value`, but may leave redaction for later: returns ``None``, the captured
        text, or a :class:`~agentguard._spans.PendingContent` whose ``resolve()`` gives it.

        Serialising happens now (the value may change after the call); redacting and cutting
        the resulting immutable text can happen in the export thread, with the same result.
        """
        if self.mode != "redacted":
            return self.value(value)
        if isinstance(value, str):
            if len(value) > _PENDING_LIMIT:
                return self._shown(value, complete=True)
            return PendingContent(value, True, self._shown)
        if type(value) is dict and len(value) <= _FLAT_ITEMS:
            # Tool arguments are usually a few scalars: no need to walk them as a tree.
            for key, item in value.items():
                kind = type(item)
                if type(key) is not str or kind not in _FLAT or (
                        kind is str and len(item) > _FLAT_STRING):
                    break
            else:
                # Its values are immutable: a copy taken now is encoded in the export thread.
                return PendingContent(dict(value), True, self._shown_flat)
        encoded, complete = _encode(value, self.max_length + _REDACT_MARGIN)
        if not complete:
            return self.value(value)
        return PendingContent(encoded, True, self._shown)

    def _shown_flat(self, flat: dict[str, Any], complete: bool) -> str:
        """:meth:`_shown` of a flat dict of scalars, serialised here (in the export thread)."""
        return self._shown(_encode_plain(flat), complete)

    def _shown(self, text: str, complete: bool) -> str:
        """``text`` (redacted in ``redacted`` mode) within ``max_length``, marked when cut."""
        size = str(len(text)) if complete else f"more than {len(text)}"
        if self.mode == "redacted":
            redacted, whole = _redact_head(text, self.max_length)
            if whole and complete and len(redacted) <= self.max_length:
                return redacted
            return self._marked(redacted, size)
        if complete and len(text) <= self.max_length:
            return text
        return self._marked(text, size)

    def _marked(self, text: str, size: str) -> str:
        shown = _cut(text, self.max_length) if self.mode == "redacted" else text[: self.max_length]
        return f"{shown}...[truncated, {size} chars]"


def _message(exc: BaseException) -> str:
    """``str(exc)``, which runs the exception's own code: never raises."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"
