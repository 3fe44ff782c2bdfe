"""LangGraph: graph and agent invocations (``invoke_agent`` spans, conversations and turns).

Target: ``Pregel.stream`` / ``Pregel.astream``. Every way of running a compiled graph
(``invoke``, ``ainvoke``, ``batch``, ``stream_events``, ``create_agent`` agents, subgraphs run as
nodes) goes through one of them, so one span per invocation comes out without double counting.
Tool calls of ``ToolNode`` (including parallel ones) are covered by the LangChain integration,
which sees them through ``BaseTool``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from agentguard import _state
from agentguard._errors import internal_error
from agentguard._guard import Guard, Operation
from agentguard.findings import ToolCallBlocked
from agentguard.integrations._base import Integration
from agentguard.integrations._streams import adrive, asked_in, drive, opened_in
from agentguard.integrations.langchain import message_to_dict

__all__ = ["LangGraphIntegration", "turn_text"]


def turn_text(graph_input: Any) -> str | None:
    """The user's text if ``graph_input`` brings a new human message (a new turn), else ``None``."""
    messages: Any = None
    if isinstance(graph_input, str):
        return graph_input
    if isinstance(graph_input, dict):
        messages = graph_input.get("messages")
        if messages is None and isinstance(graph_input.get("input"), str):
            return str(graph_input["input"])
    elif isinstance(graph_input, (list, tuple)) and not (
        isinstance(graph_input, tuple) and len(graph_input) == 2
        and isinstance(graph_input[0], str)
    ):
        messages = graph_input
    elif getattr(graph_input, "type", None) == "human":
        messages = [graph_input]
    if isinstance(messages, (str, tuple)) or getattr(messages, "type", None) is not None:
        messages = [messages]
    if not messages or not isinstance(messages, (list, tuple)):
        return None
    last = message_to_dict(messages[-1])
    return last["content"] if last.get("role") == "user" else None


def _config(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs.get("config", args[1] if len(args) > 1 else None)


def _thread_id(config: Any) -> str | None:
    if isinstance(config, dict):
        configurable = config.get("configurable")
        if isinstance(configurable, dict):
            value = configurable.get("thread_id")
            if value is not None:
                return str(value)
    return None


def _start(guard: Guard, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> Operation | None:
    try:
        graph_input = args[0] if args else kwargs.get("input")
        name = getattr(instance, "name", None) or type(instance).__name__
        return guard.start_agent(
            str(name),
            conversation_id=_thread_id(_config(args, kwargs)),
            turn_text=turn_text(graph_input),
        )
    except ToolCallBlocked:
        raise
    except Exception as exc:
        internal_error("langgraph start", exc)
        return None


def _stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return wrapped(*args, **kwargs)
    return _traced_stream(guard, wrapped, instance, args, kwargs, asked_in())


def _traced_stream(guard: Guard, wrapped: Any, instance: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any], asked: object) -> Iterator[Any]:
    # The span opens when the caller starts iterating, so an unread stream leaves no open span,
    # in the context the stream was asked for in.
    op = opened_in(asked, lambda: _start(guard, instance, args, kwargs))
    if op is None:
        yield from wrapped(*args, **kwargs)
        return
    inner = op.call(wrapped, *args, **kwargs)
    yield from drive(op, inner)


def _astream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return wrapped(*args, **kwargs)

    asked = asked_in()

    def start() -> tuple[Operation | None, AsyncIterator[Any]]:
        # At the first item asked for, as in the sync stream.
        op = opened_in(asked, lambda: _start(guard, instance, args, kwargs))
        if op is None:
            return None, wrapped(*args, **kwargs)
        return op, op.call(wrapped, *args, **kwargs)

    return adrive(start)


class LangGraphIntegration(Integration):
    """Compiled LangGraph graphs (and ``create_agent`` agents built on them)."""

    name = "langgraph"
    targets = ("langgraph.pregel",)

    def patch_module(self, target: str, module: Any) -> None:
        pregel = module.Pregel
        self.wrap(pregel, "stream", _stream)
        self.wrap(pregel, "astream", _astream)
        self.patched_modules.add(target)
