"""Field paths: ``arguments.query.limit``, ``result[*].email``, ``argv[0]``, ``arguments.**``.

A path starts with a field of the event (or ``context.<field>``) and descends with ``.name``,
``["quoted name"]``, ``[index]`` (negative counts from the end), ``[*]`` (every item of a list or
value of a mapping) and ``**`` (every scalar below, at any depth). Tool arguments and results are
often JSON text (LangChain hands tools' return values to the model as JSON strings), so a step
into a string that holds a JSON object or array parses it first, once per event.

Everything is bounded: JSON text over :data:`MAX_JSON` characters is not parsed, ``**`` visits at
most :data:`MAX_NODES` values to :data:`MAX_DEPTH` levels, and a path yields at most
:data:`MAX_VALUES` values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from agentguard._numbers import MAX_NUMBER_SCAN, MAX_NUMBER_TEXT, text_number

__all__ = [
    "MAX_DEPTH",
    "MAX_JSON",
    "MAX_NODES",
    "MAX_NUMBER_SCAN",
    "MAX_NUMBER_TEXT",
    "MAX_VALUES",
    "MISSING",
    "FieldPath",
    "PathSyntaxError",
    "Scratch",
    "as_number",
    "attribute",
    "context_fields",
    "event_fields",
    "record_count",
]

MAX_JSON = 8 << 20
MAX_NODES = 5000
MAX_DEPTH = 32
MAX_VALUES = 1000


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

_JSON_START = re.compile(r"[ \t\r\n]*[\[{]")
_NAME = re.compile(r"[A-Za-z_$@][A-Za-z0-9_$@-]*")


class PathSyntaxError(ValueError):
    """A field path that cannot be parsed; the message says where."""


class Scratch:
    """Per-event working memory: parsed JSON text, and values several rules read.

    ``cache`` maps ``("v", path)`` to a path's values, ``("i", path, *transforms)`` to them
    flattened and transformed, and ``("t", path, *transforms)`` to those joined into one text.
    """

    __slots__ = ("cache", "json")

    def __init__(self) -> None:
        self.cache: dict[tuple[str, ...], Any] = {}
        # id(text) → (text, parsed); the text is kept so its id cannot be reused meanwhile.
        self.json: dict[int, tuple[str, Any]] | None = None

    def parse(self, text: str) -> Any:
        """``text`` parsed as a JSON object or array, or MISSING."""
        cache = self.json
        if cache is None:
            cache = self.json = {}
        else:
            hit = cache.get(id(text))
            if hit is not None and hit[0] is text:
                return hit[1]
        parsed: Any = MISSING
        if len(text) <= MAX_JSON and _JSON_START.match(text):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = MISSING
            if not isinstance(parsed, (dict, list)):
                parsed = MISSING
        cache[id(text)] = (text, parsed)
        return parsed


def _container(value: Any, scratch: Scratch) -> Any:
    """``value`` as something to descend into: JSON text parsed, models as their fields."""
    if isinstance(value, str):
        return scratch.parse(value) if value[:1] in "[{ \t\r\n" else MISSING
    if isinstance(value, BaseModel):
        return {k: v for k, v in value.__dict__.items() if not k.startswith("_")}
    return value


def _key(value: Any, name: str, scratch: Scratch) -> Any:
    if not isinstance(value, Mapping):
        value = _container(value, scratch)
        if not isinstance(value, Mapping):
            return MISSING
    try:
        return value.get(name, MISSING)
    except Exception:  # a user mapping whose get() misbehaves
        return MISSING


def _index(value: Any, index: int, scratch: Scratch) -> Any:
    if not isinstance(value, (list, tuple)):
        value = _container(value, scratch)
        if not isinstance(value, (list, tuple)):
            return MISSING
    if -len(value) <= index < len(value):
        return value[index]
    return MISSING


def _each(value: Any, scratch: Scratch) -> list[Any]:
    if not isinstance(value, (list, tuple, Mapping)):
        value = _container(value, scratch)
    if isinstance(value, (list, tuple)):
        return list(value[:MAX_VALUES])
    if isinstance(value, Mapping):
        out = []
        for item in value.values():
            out.append(item)
            if len(out) >= MAX_VALUES:
                break
        return out
    return []


_JSON_FIRST = frozenset("[{ \t\r\n")


def _leaves(value: Any, scratch: Scratch) -> list[Any]:
    """Every scalar at or below ``value`` (JSON text parsed), depth-first in document order."""
    out: list[Any] = []
    _walk(value, scratch, out, 0, [MAX_NODES])
    return out


def _walk(item: Any, scratch: Scratch, out: list[Any], depth: int, budget: list[int]) -> None:
    kind = type(item)
    children: Any
    if kind is dict:
        children = item.values()
    elif kind is list or kind is tuple:
        children = item
    elif item is None:
        return
    elif isinstance(item, str):
        parsed = scratch.parse(item) if item[:1] in _JSON_FIRST else MISSING
        if parsed is MISSING:
            out.append(item)
        elif depth < MAX_DEPTH:
            _walk(parsed, scratch, out, depth + 1, budget)
        return
    elif isinstance(item, (int, float)):
        out.append(item)
        return
    elif isinstance(item, BaseModel):
        children = _container(item, scratch).values()
    elif isinstance(item, Mapping):
        children = item.values()
    elif isinstance(item, (list, tuple)):
        children = item
    else:
        return
    if depth >= MAX_DEPTH:
        return
    for child in children:
        budget[0] -= 1
        if budget[0] < 0 or len(out) >= MAX_VALUES:
            return
        child_kind = type(child)
        # Plain scalars inline: tool arguments are mostly flat mappings of them.
        if (child_kind is str and child[:1] not in _JSON_FIRST) or child_kind is int or \
                child_kind is float or child_kind is bool:
            out.append(child)
        elif child is not None:
            _walk(child, scratch, out, depth + 1, budget)


class _Attributes(Mapping[str, Any]):
    """The fields of an event that is not a pydantic model, read with getattr."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return getattr(self._obj, name, default)
        except Exception:
            return default

    def __getitem__(self, name: str) -> Any:
        value = self.get(name, MISSING)
        if value is MISSING:
            raise KeyError(name)
        return value

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def event_fields(event: Any) -> Mapping[str, Any]:
    """An event's fields as a mapping: a pydantic event's own ``__dict__`` (no copy; reading a
    field another kind lacks costs a dict miss, not pydantic's slow ``__getattr__`` fallback)."""
    if isinstance(event, BaseModel):
        fields = event.__dict__
        if isinstance(fields, dict):
            return fields
    if isinstance(event, Mapping):
        return event
    return _Attributes(event)


_NO_CONTEXT: Mapping[str, Any] = {}


def context_fields(ctx: Any) -> Mapping[str, Any]:
    """An event context's fields as a mapping (empty when there is none)."""
    if ctx is None:
        return _NO_CONTEXT
    fields = getattr(ctx, "__dict__", None)
    if type(fields) is dict:
        return fields
    if isinstance(ctx, Mapping):
        return ctx
    return _Attributes(ctx)


def attribute(obj: Any, name: str) -> Any:
    """A field of an event: read from the instance dict (pydantic's ``__getattr__`` fallback for
    a missing name is slow and events of different kinds have different fields), else getattr
    for events that are not pydantic models (plain objects, properties)."""
    fields = getattr(obj, "__dict__", None)
    if type(fields) is dict:
        value = fields.get(name, MISSING)
        if value is not MISSING or isinstance(obj, BaseModel):
            return value
    elif isinstance(obj, Mapping):
        try:
            return obj.get(name, MISSING)
        except Exception:
            return MISSING
    try:
        return getattr(obj, name, MISSING)
    except Exception:
        return MISSING


Step = tuple[str, Any]


class FieldPath:
    """A parsed field path and a compiled function from an event to the values it names."""

    __slots__ = ("child", "context", "get", "get_one", "head", "multi", "steps", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        head, steps = _parse(text)
        self.context = head == "context"
        if self.context:
            if not steps or steps[0][0] != "key":
                raise PathSyntaxError("'context' needs a field, e.g. context.conversation_id")
            head = steps[0][1]
            steps = steps[1:]
        self.head: str = head
        self.steps: tuple[Step, ...] = tuple(steps)
        self.multi = any(kind in ("each", "deep") for kind, _ in self.steps)
        self.get: Callable[[Any, Scratch], list[Any]] = self._compile()
        # For a path without [*] or **: the value itself, or MISSING (no list built).
        self.get_one: Callable[[Any, Scratch], Any] | None = \
            None if self.multi else self._compile_one()
        # (head, name) for the plain two-level form "head.name".
        self.child: tuple[str, str] | None = \
            (head, steps[0][1]) if not self.context and len(self.steps) == 1 and \
            self.steps[0][0] == "key" else None

    def __repr__(self) -> str:
        return f"FieldPath({self.text!r})"

    @property
    def first(self) -> str:
        """The event field the path starts with (``context.X`` → ``context``)."""
        return "context" if self.context else self.head

    def _compile_one(self) -> Callable[[Any, Scratch], Any]:
        head, steps, context = self.head, self.steps, self.context
        if not steps and not context:
            def get_head(fields: Any, scratch: Scratch) -> Any:
                value = fields.get(head, MISSING)
                return MISSING if value is None else value
            return get_head
        multi_get = self.get

        def get_one(fields: Any, scratch: Scratch) -> Any:
            values = multi_get(fields, scratch)
            return values[0] if values else MISSING
        if context or len(steps) > 1 or steps[0][0] != "key":
            return get_one
        name = steps[0][1]

        def get_child(fields: Any, scratch: Scratch) -> Any:
            value = fields.get(head)
            if value is None:
                return MISSING
            value = value.get(name, MISSING) if type(value) is dict else \
                _key(value, name, scratch)
            return MISSING if value is None else value
        return get_child

    def _compile(self) -> Callable[[Any, Scratch], list[Any]]:
        head, steps, context = self.head, self.steps, self.context

        def root(fields: Any) -> Any:
            if context:
                ctx = fields.get("context")
                if ctx is None:
                    return MISSING
                value = attribute(ctx, head)
            else:
                value = fields.get(head, MISSING)
            return MISSING if value is None else value

        if not steps:
            def get_field(fields: Any, scratch: Scratch) -> list[Any]:
                value = root(fields)
                return [] if value is MISSING else [value]
            return get_field

        if not self.multi:
            simple = tuple(steps)

            def get_single(fields: Any, scratch: Scratch) -> list[Any]:
                value = root(fields)
                for kind, arg in simple:
                    if value is MISSING or value is None:
                        return []
                    value = _key(value, arg, scratch) if kind == "key" else \
                        _index(value, arg, scratch)
                return [] if value is MISSING or value is None else [value]
            return get_single

        cache_key = ("v", self.text)
        if steps == (("deep", None),):
            def get_deep(fields: Any, scratch: Scratch) -> list[Any]:
                cache = scratch.cache
                hit = cache.get(cache_key)
                if hit is not None:
                    return hit  # type: ignore[no-any-return]
                value = root(fields)
                result = [] if value is MISSING else _leaves(value, scratch)
                cache[cache_key] = result
                return result
            return get_deep

        def get_multi(fields: Any, scratch: Scratch) -> list[Any]:
            cache = scratch.cache
            hit = cache.get(cache_key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
            value = root(fields)
            current = [] if value is MISSING else [value]
            for kind, arg in steps:
                if not current:
                    break
                following: list[Any] = []
                for item in current:
                    if item is None or item is MISSING:
                        continue
                    if kind == "key":
                        found = _key(item, arg, scratch)
                        if found is not MISSING and found is not None:
                            following.append(found)
                    elif kind == "index":
                        found = _index(item, arg, scratch)
                        if found is not MISSING and found is not None:
                            following.append(found)
                    elif kind == "each":
                        following.extend(_each(item, scratch))
                    else:
                        following.extend(_leaves(item, scratch))
                    if len(following) >= MAX_VALUES:
                        del following[MAX_VALUES:]
                        break
                current = following
            result = [v for v in current if v is not None]
            cache[cache_key] = result
            return result
        return get_multi


def _parse(text: str) -> tuple[str, list[Step]]:
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError("the field path is empty")
    match = _NAME.match(text)
    if not match or match.group(0).startswith(("$", "@")):
        raise PathSyntaxError(f"a field path starts with a field name, e.g. 'arguments'; "
                              f"got {text[:40]!r}")
    head = match.group(0)
    pos = match.end()
    steps: list[Step] = []
    while pos < len(text):
        char = text[pos]
        if text.startswith(".**", pos):
            steps.append(("deep", None))
            pos += 3
        elif char == ".":
            name = _NAME.match(text, pos + 1)
            if name is None:
                raise PathSyntaxError(f"expected a name after '.' at position {pos + 1} of "
                                      f"{text!r}")
            steps.append(("key", name.group(0)))
            pos = name.end()
        elif char == "[":
            end = text.find("]", pos)
            if text.startswith('["', pos) or text.startswith("['", pos):
                quote = text[pos + 1]
                close = text.find(quote + "]", pos + 2)
                if close < 0:
                    raise PathSyntaxError(f"unclosed [{quote}...{quote}] at position {pos} of "
                                          f"{text!r}")
                steps.append(("key", text[pos + 2:close]))
                pos = close + 2
                continue
            if end < 0:
                raise PathSyntaxError(f"unclosed '[' at position {pos} of {text!r}")
            inner = text[pos + 1:end].strip()
            if inner == "*":
                steps.append(("each", None))
            elif re.fullmatch(r"-?\d{1,9}", inner):
                steps.append(("index", int(inner)))
            else:
                raise PathSyntaxError(f"expected [*], [number] or [\"name\"] at position {pos} "
                                      f"of {text!r}; got [{inner}]")
            pos = end + 1
        else:
            raise PathSyntaxError(f"unexpected {char!r} at position {pos} of {text!r}; steps are "
                                  f".name, [index], [*], [\"name\"] and .**")
    if len(steps) > MAX_DEPTH:
        raise PathSyntaxError(f"a field path has at most {MAX_DEPTH} steps")
    return head, steps


def as_number(value: Any) -> float | None:
    """A number, or a string that is one (models often send "5000"); else None.

    An integer beyond the range of a float is ±infinity: it still compares right with every
    bound. A string is read as Python's ``float()`` and ``int()`` read it (the way a tool reads
    it): surrounding whitespace, a sign, leading zeros and ``_`` between digits ("5_000") are
    allowed; "nan" is not a number.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, str):
        return text_number(value)
    return None


_ROW_KEYS = ("rows", "items", "records", "data", "results", "Items", "Contents", "hits")


def record_count(value: Any, scratch: Scratch) -> int:
    """How many records a value carries (see ``count`` in the policy format)."""
    if value is None or value is MISSING:
        return 0
    if isinstance(value, str):
        parsed = scratch.parse(value) if value[:1] in "[{ \t\r\n" else MISSING
        if parsed is not MISSING:
            return record_count(parsed, scratch)
        if not value.strip():
            return 0
        # Text: one record per non-empty line (CSV, JSON lines, tables).
        return sum(1 for line in value.splitlines() if line.strip()) if len(value) < (1 << 16) \
            else value.count("\n") + 1
    if isinstance(value, (list, tuple, set, frozenset)):
        return len(value)
    if isinstance(value, BaseModel):
        value = _container(value, scratch)
    if isinstance(value, Mapping):
        best = -1
        for key in _ROW_KEYS:
            rows = value.get(key)
            if isinstance(rows, (list, tuple)):
                return len(rows)
        for item in list(value.values())[:MAX_VALUES]:
            if isinstance(item, (list, tuple)) and len(item) > best:
                best = len(item)
        return best if best >= 0 else 1
    if isinstance(value, (bytes, bytearray)):
        return value.count(b"\n") + 1 if value else 0
    try:
        return len(value)
    except Exception:
        return 1
