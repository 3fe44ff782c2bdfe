"""Turning captured values (prompts, arguments, results) into bounded, redacted span attribute text.

Modes: ``full`` (truncated only), ``redacted`` (secrets removed, then truncated), ``hash``
(``sha256:<hex>`` of the full text) and ``none`` (nothing captured).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from agentguard.redaction import redact

__all__ = ["CaptureMode", "ContentCapture", "to_json"]

CaptureMode = Literal["full", "redacted", "hash", "none"]

# Redaction looks this far past the cut, so a secret straddling the truncation point is still
# recognised whole (private keys and JWTs are the longest).
_REDACT_MARGIN = 4096
# Above this many nodes a value is serialised by the bounded encoder instead of json.dumps.
_NODE_BUDGET = 2000


def _default(obj: Any) -> Any:
    """``json.dumps`` fallback for the objects tools commonly return."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            return repr(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes>"
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def _small(obj: Any, budget: int) -> int:
    """Count nodes of ``obj`` up to ``budget``; returns the remaining budget (negative: too big)."""
    stack = [obj]
    while stack:
        budget -= 1
        if budget < 0:
            return budget
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            budget -= len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, str) and len(item) > 65536:
            return -1
    return budget


class _Bounded:
    """A JSON writer that stops after ``limit`` characters (for huge or hostile values)."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def put(self, text: str) -> bool:
        room = self.limit - self.size
        if room <= 0:
            return False
        if len(text) > room:
            text = text[:room]
        self.parts.append(text)
        self.size += len(text)
        return self.size < self.limit

    def value(self, obj: Any, depth: int = 0) -> bool:
        if depth > 32:
            return self.put('"<nested too deep>"')
        if isinstance(obj, dict):
            if not self.put("{"):
                return False
            for i, (key, val) in enumerate(obj.items()):
                if (i and not self.put(",")) or not self.put(json.dumps(str(key)) + ":"):
                    return False
                if not self.value(val, depth + 1):
                    return False
            return self.put("}")
        if isinstance(obj, (list, tuple, set, frozenset)):
            if not self.put("["):
                return False
            for i, val in enumerate(obj):
                if (i and not self.put(",")) or not self.value(val, depth + 1):
                    return False
            return self.put("]")
        if isinstance(obj, str):
            return self.put(json.dumps(obj[: self.limit]))
        if obj is None or isinstance(obj, (bool, int, float)):
            return self.put(json.dumps(obj))
        converted = _default(obj)
        if isinstance(converted, str):
            return self.put(json.dumps(converted[: self.limit]))
        return self.value(converted, depth + 1)


def to_json(value: Any, limit: int = 1 << 20) -> str:
    """Serialise ``value`` to JSON text, never raising and never producing more than ``limit`` chars.

    Strings are returned as they are. Values that cannot be encoded fall back to ``repr``.
    """
    if isinstance(value, str):
        return value
    try:
        if _small(value, _NODE_BUDGET) >= 0:
            return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))
        writer = _Bounded(limit)
        writer.value(value)
        return "".join(writer.parts)
    except (ValueError, TypeError, RecursionError, OverflowError):
        # Circular references and exotic objects end up here.
        try:
            return repr(value)[:limit]
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"


class ContentCapture:
    """Applies the capture mode and size cap to content before it becomes a span attribute."""

    __slots__ = ("enabled", "max_length", "mode")

    def __init__(self, mode: CaptureMode = "redacted", max_length: int = 4096) -> None:
        self.mode = mode
        self.max_length = max_length
        self.enabled = mode != "none"

    def text(self, text: str) -> str | None:
        """Captured form of ``text``, or ``None`` when nothing may be captured."""
        mode = self.mode
        if mode == "none":
            return None
        if mode == "hash":
            return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        limit = self.max_length
        total = len(text)
        if mode == "redacted":
            text = redact(text[: limit + _REDACT_MARGIN] if total > limit + _REDACT_MARGIN else text)
        if len(text) > limit:
            return text[:limit] + f"...[truncated, {total} chars]"
        return text

    def value(self, value: Any) -> str | None:
        """Captured JSON form of any value (dicts, lists, models, strings)."""
        if self.mode == "none":
            return None
        # A hash must cover the whole value; otherwise serialising past the cut is wasted work.
        limit = (1 << 24) if self.mode == "hash" else self.max_length + _REDACT_MARGIN
        return self.text(to_json(value, limit))
