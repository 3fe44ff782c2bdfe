"""``@agentguard.tool``: ``execute_tool`` spans and policy checks for plain Python functions.

For agents that run their own tool loop (a Bedrock ``Converse`` loop, an OpenAI-style loop):
the decorated function gets the same span, the same ``ToolCall`` events and the same blocking as
a LangChain tool. When agentguard is not instrumented the function is called straight through.

A model's tool-call id cannot be seen from inside the function, so integrations that see a model
ask for a tool (the Bedrock one does) note the request here with :func:`expect_tool_call`; the
decorated function claims it when it runs with those arguments, and its span carries the id.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, overload

from agentguard import _state, semconv
from agentguard._context import current_frame
from agentguard._errors import internal_error
from agentguard.findings import ToolCallBlocked

__all__ = ["expect_tool_call", "pending_tool_calls", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

# Names of decorated tools: only requests for these are worth remembering.
_names: set[str] = set()


class _PendingCalls:
    """Tool calls a model asked for that no decorated function has run yet, oldest first.

    Keyed by (conversation id, tool name); bounded in total, the oldest request dropped first
    (and counted), so a loop that never runs what the model asked for cannot grow it.
    """

    LIMIT = 512

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[str | None, str, str, Any]] = OrderedDict()
        self._serial = 0
        self.dropped = 0

    def add(self, conversation: str | None, name: str, call_id: str, arguments: Any) -> None:
        with self._lock:
            for entry in self._items.values():
                if entry[2] == call_id and entry[1] == name:
                    return  # the same request seen twice (a retried or replayed response)
            self._serial += 1
            self._items[self._serial] = (conversation, name, call_id, arguments)
            if len(self._items) > self.LIMIT:
                self._items.popitem(last=False)
                self.dropped += 1

    def claim(self, conversation: str | None, name: str, arguments: Any) -> str | None:
        """The id of the request this run answers: same arguments first, else the oldest one."""
        with self._lock:
            fallback = None
            for key, (conv, tool_name, call_id, requested) in self._items.items():
                if conv != conversation or tool_name != name:
                    continue
                if requested == arguments:
                    del self._items[key]
                    return call_id
                if fallback is None:
                    fallback = key
            if fallback is None:
                return None
            return self._items.pop(fallback)[2]

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_pending = _PendingCalls()


def expect_tool_call(name: str, call_id: str, arguments: Any) -> None:
    """Note that a model asked for tool ``name`` (id ``call_id``) in the current conversation."""
    if name not in _names or not call_id:
        return
    conv = current_frame().conversation
    _pending.add(conv.id if conv is not None else None, name, call_id, arguments)


def pending_tool_calls() -> int:
    """How many noted tool calls are still waiting for their decorated function."""
    return len(_pending)


class _ToolSpec:
    """What the decorator knows about one function."""

    __slots__ = ("attributes", "name", "signature", "skip_first")

    def __init__(self, fn: Callable[..., Any], name: str, description: str | None) -> None:
        self.name = name
        self.attributes: dict[str, Any] = {semconv.GEN_AI_TOOL_TYPE: "function"}
        if description:
            self.attributes[semconv.GEN_AI_TOOL_DESCRIPTION] = description
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None
        params = list(self.signature.parameters) if self.signature is not None else []
        # A method's receiver is not an argument the model chose.
        self.skip_first = bool(params) and params[0] in ("self", "cls")

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.signature is None:
            return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:
            return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}
        arguments = dict(bound.arguments)
        if self.skip_first and arguments:
            arguments.pop(next(iter(arguments)))
        return arguments


def _start(spec: _ToolSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Open the tool operation (``None`` on an internal error); raises ToolCallBlocked."""
    guard = _state.guard
    if guard is None:
        return None
    try:
        arguments = spec.arguments(args, kwargs)
        call_id = None
        if len(_pending):
            conv = current_frame().conversation
            call_id = _pending.claim(conv.id if conv is not None else None, spec.name, arguments)
        return guard.start_tool(spec.name, call_id=call_id, arguments=arguments,
                                attributes=spec.attributes)
    except ToolCallBlocked:
        raise
    except Exception as exc:
        internal_error("tool decorator start", exc)
        if guard.fails_closed:
            raise ToolCallBlocked(guard.internal_failure_finding(
                "tool start", exc, kind="tool_call", tool=spec.name)) from exc
        return None


def _finish(op: Any, result: Any) -> None:
    verdict = op.end_tool(result)
    if verdict.blocked:
        finding = verdict.blocking_finding()
        if finding is not None:
            raise ToolCallBlocked(finding)


def _decorate(fn: F, name: str | None, description: str | None) -> F:
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"agentguard.tool cannot trace generator function {fn.__qualname__}: "
                        "decorate a function that returns its result")
    if not callable(fn):
        raise TypeError(f"agentguard.tool expects a function, got {fn!r}")
    doc = inspect.getdoc(fn)
    spec = _ToolSpec(fn, name or fn.__name__,
                     description if description is not None else
                     (doc.strip().splitlines()[0] if doc and doc.strip() else None))
    _names.add(spec.name)

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _state.guard is None:
                return await fn(*args, **kwargs)
            op = _start(spec, args, kwargs)
            if op is None:
                return await fn(*args, **kwargs)
            result = await op.acall(fn, *args, **kwargs)
            _finish(op, result)
            return result

        wrapper: Any = async_wrapper
    else:
        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _state.guard is None:
                return fn(*args, **kwargs)
            op = _start(spec, args, kwargs)
            if op is None:
                return fn(*args, **kwargs)
            result = op.call(fn, *args, **kwargs)
            _finish(op, result)
            return result

        wrapper = sync_wrapper
    wrapper.agentguard_tool_name = spec.name
    return wrapper  # type: ignore[no-any-return]


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(fn: Any = None, /, *, name: str | None = None, description: str | None = None) -> Any:
    """Trace a plain or async function as an agent tool: ``@tool`` or ``@tool(name=...)``.

    Each call opens an ``execute_tool {name}`` span and is judged before the body runs; a block
    raises :class:`~agentguard.ToolCallBlocked` and the body never runs. The result is judged
    too, and a block then raises instead of returning it. ``description`` defaults to the first
    line of the docstring.
    """
    if fn is not None:
        return _decorate(fn, name, description)

    def decorator(func: F) -> F:
        return _decorate(func, name, description)

    return decorator
