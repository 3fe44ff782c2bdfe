"""LangGraph: graph and agent invocations (``invoke_agent`` spans, conversations and turns).

Target: ``Pregel.stream`` / ``Pregel.astream``. Every way of running a compiled graph
(``invoke``, ``ainvoke``, ``batch``, ``stream_events``, ``create_agent`` agents, subgraphs run as
nodes) goes through one of them, so one span per invocation comes out without double counting.
Tool calls of ``ToolNode`` (including parallel ones) are covered by the LangChain integration,
which sees them through ``BaseTool``; a call of a tool the ``ToolNode`` does not have runs no
``BaseTool`` and is seen here, where ``ToolNode._validate_tool_call`` answers it with an error.

A human message can reach a thread between runs, through ``update_state`` or
``bulk_update_state``: it is the turn of the thread's next top-level run.

A graph that pauses for a human (``interrupt()``, ``interrupt_before`` / ``interrupt_after``)
ends its stream normally at the top level: LangGraph's run loop swallows the interrupt on its way
out (``SyncPregelLoop.__exit__`` / ``AsyncPregelLoop.__aexit__``), which is where the pause is
seen and the invocation marked ``agentguard.interrupted``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from agentguard import _state, semconv
from agentguard._context import current_frame
from agentguard._errors import internal_error
from agentguard._guard import Guard, Operation, langgraph_pause
from agentguard.findings import ToolCallBlocked
from agentguard.integrations._base import Integration
from agentguard.integrations._streams import adrive, asked_in, drive, opened_in
from agentguard.integrations.langchain import message_to_dict, unknown_tool_call

__all__ = ["LangGraphIntegration", "turn_text"]


def turn_text(graph_input: Any) -> str | None:
    """The user's text if ``graph_input`` brings a new human message (a new turn), else ``None``.

    A ``Command`` brings one in its state update (``Command(update={"messages": [...]})``) or as
    the value a paused graph is resumed with (``Command(resume=HumanMessage(...))``); a resume
    value that is not a human message (an approval, an edited tool call) is no turn.
    """
    if _is_command(graph_input):
        texts = [text for text in (_update_text(getattr(graph_input, "update", None)),
                                   _resume_text(getattr(graph_input, "resume", None)))
                 if text is not None]
        return "\n".join(texts) if texts else None
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
    elif _is_human(graph_input):
        messages = [graph_input]
    return _last_user_text(messages)


# Items of a Command's update or resume value looked at for a human message.
_MAX_ITEMS = 64


def _is_command(value: Any) -> bool:
    # Recognised by its shape, so nothing of LangGraph is imported to look at an input.
    return type(value).__name__ == "Command" and hasattr(value, "resume") and \
        hasattr(value, "update")


def _is_human(value: Any) -> bool:
    return getattr(value, "type", None) == "human" and hasattr(value, "content")


def _message_list(messages: Any) -> list[Any] | tuple[Any, ...] | None:
    """``messages`` as a sequence: one message (a string, a ``(role, text)`` pair, a message
    object) as a list of it; ``None`` for nothing or no messages."""
    if isinstance(messages, (str, tuple)) or getattr(messages, "type", None) is not None:
        messages = [messages]
    if not messages or not isinstance(messages, (list, tuple)):
        return None
    return messages


def _last_user_text(messages: Any) -> str | None:
    found = _message_list(messages)
    if found is None:
        return None
    last = message_to_dict(found[-1])
    return last["content"] if last.get("role") == "user" else None


def _update_text(update: Any) -> str | None:
    """The user's text if a ``Command``'s state update ends its messages with human messages:
    the update is a dict of channels, a list of ``(channel, value)`` pairs or a state object."""
    if update is None:
        return None
    if isinstance(update, dict):
        messages = update.get("messages")
    elif isinstance(update, (list, tuple)):
        found = [pair[1] for pair in update[:_MAX_ITEMS]
                 if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == "messages"]
        messages = found[-1] if found else None
    else:
        messages = getattr(update, "messages", None)
    return _new_user_text(messages) if messages is not None else None


def _new_user_text(messages: Any) -> str | None:
    """The user's text of the human messages that end ``messages`` (a state update's, each new
    to the thread and not answered yet, so all of them are the turn), one per line.

    All of them, however many: the model reads every one, so a cap would let harmless messages
    written after an injected one push it out unjudged (the work is that of writing them)."""
    found = _message_list(messages)
    if found is None:
        return None
    texts: list[str] = []
    for message in reversed(found):
        item = message_to_dict(message)
        if item.get("role") != "user":
            break
        texts.append(item["content"])
    return "\n".join(reversed(texts)) if texts else None


def _resume_text(resume: Any) -> str | None:
    """The user's text if a graph is resumed with a human message: the value itself, the last of
    a list of messages, or (resuming several interrupts by id) one of a mapping's values."""
    if isinstance(resume, dict):
        if "messages" in resume:
            return _update_text(resume)
        texts = [text for value in list(resume.values())[:_MAX_ITEMS]
                 if (text := _human_text(value)) is not None]
        return "\n".join(texts) if texts else None
    return _human_text(resume)


def _human_text(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    return _last_user_text([value]) if _is_human(value) else None


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


# Thread id → the user's texts of the human messages state updates (``update_state``,
# ``bulk_update_state``) added to that thread, until the next top-level run on the thread, which
# answers them: they are the run's turn (judged before the model reads them), as if they had
# come in the run's input.
_pending: dict[str, list[str]] = {}
_pending_lock = threading.Lock()
_PENDING_LIMIT = 1024

# Set while a state update runs, so that only the outermost one is noted: ``update_state`` goes
# through ``bulk_update_state``, which calls itself again for a subgraph's namespace.
_updating: ContextVar[bool] = ContextVar("agentguard_langgraph_updating", default=False)


def _note(thread: str, texts: list[str], *, first: bool = False) -> None:
    """Add ``texts`` to the thread's pending turn (before what is there if ``first``).

    Past ``_MAX_ITEMS`` updates the oldest texts are joined into one, never dropped: each is in
    the thread's state and reaches the model with the rest."""
    with _pending_lock:
        kept = _pending.pop(thread, [])
        kept = [*texts, *kept] if first else [*kept, *texts]
        if len(kept) > _MAX_ITEMS:
            kept = ["\n".join(kept[:-_MAX_ITEMS + 1]), *kept[-_MAX_ITEMS + 1:]]
        _pending[thread] = kept
        while len(_pending) > _PENDING_LIMIT:
            del _pending[next(iter(_pending))]


# What a state-update method wrote: the values of its updates, in order, from its arguments.
_Notes = Callable[[tuple[Any, ...], dict[str, Any]], list[Any]]
_Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def _updated(notes: _Notes, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Note the human messages that the state updates of a call (``notes(args, kwargs)``: the
    values each wrote, in order) brought to its thread (see ``_pending``)."""
    try:
        thread = _thread_id(args[0] if args else kwargs.get("config"))
        if thread is None:
            return
        texts = [text for values in notes(args, kwargs)
                 if (text := _values_text(values)) is not None]
        if texts:
            _note(thread, texts)
    except Exception as exc:
        internal_error("langgraph state update", exc)


def _values_text(values: Any) -> str | None:
    """The user's text a state update's values bring: a dict of channels, a state object, or a
    ``Command`` whose update they are (written as if a node had returned it)."""
    if _is_command(values):
        values = getattr(values, "update", None)
    return _update_text(values)


def _one_update(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The values ``update_state(config, values, ...)`` writes."""
    return [args[1] if len(args) > 1 else kwargs.get("values")]


def _bulk_updates(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The values ``bulk_update_state(config, supersteps)`` writes, in order: each superstep is
    a list of ``StateUpdate(values, as_node, task_id)``; one that copies the checkpoint
    (``as_node="__copy__"``) holds the updates to apply to the copy as its values."""
    supersteps = args[1] if len(args) > 1 else kwargs.get("supersteps")
    found: list[Any] = []
    # Every one, as LangGraph applies every one: a cap would drop the first (an injection).
    for superstep in list(supersteps or ()):
        for update in list(superstep or ()):
            values, as_node = _update_parts(update)
            if as_node == _COPY and isinstance(values, (list, tuple)):
                found.extend(_update_parts(item)[0] for item in values)
            else:
                found.append(values)
    return found


# The ``as_node`` of a bulk update that copies the checkpoint before applying its values.
_COPY = "__copy__"


def _update_parts(update: Any) -> tuple[Any, Any]:
    """``(values, as_node)`` of one ``StateUpdate`` (or a plain tuple of the same shape)."""
    if isinstance(update, (list, tuple)) and update:
        return update[0], update[1] if len(update) > 1 else None
    return None, None


def _state_update(notes: _Notes) -> tuple[_Wrapper, _Wrapper]:
    """A wrapper for a ``Pregel`` method that writes state updates: after the outermost one
    succeeds, the human messages they wrote (``notes(args, kwargs)``) wait for the next run."""

    def sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _state.guard is None or _updating.get():
            return wrapped(*args, **kwargs)
        token = _updating.set(True)
        try:
            result = wrapped(*args, **kwargs)
        finally:
            _updating.reset(token)
        if _state.guard is not None:
            _updated(notes, args, kwargs)
        return result

    async def asynchronous(wrapped: Any, instance: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> Any:
        if _state.guard is None or _updating.get():
            return await wrapped(*args, **kwargs)
        token = _updating.set(True)
        try:
            result = await wrapped(*args, **kwargs)
        finally:
            _updating.reset(token)
        if _state.guard is not None:
            _updated(notes, args, kwargs)
        return result

    return sync, asynchronous


_update_state, _aupdate_state = _state_update(_one_update)
_bulk_update_state, _abulk_update_state = _state_update(_bulk_updates)


def _pending_turn(config: Any) -> str | None:
    thread = _thread_id(config)
    if thread is None or not _pending:
        return None
    with _pending_lock:
        texts = _pending.pop(thread, None)
    return "\n".join(texts) if texts else None


def _unknown_tool(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> Any:
    answer = wrapped(*args, **kwargs)
    guard = _state.guard
    if guard is None or answer is None:
        return answer
    call = args[0] if args else kwargs.get("call")
    if not isinstance(call, dict):
        return answer
    return unknown_tool_call(guard, call, answer)


def _start(guard: Guard, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> Operation | None:
    pending = config = None
    try:
        graph_input = args[0] if args else kwargs.get("input")
        name = getattr(instance, "name", None) or type(instance).__name__
        config = _config(args, kwargs)
        text = turn_text(graph_input)
        if current_frame().agent is None:
            pending = _pending_turn(config)
            if pending is not None:
                text = pending if text is None else f"{pending}\n{text}"
        return guard.start_agent(
            str(name),
            conversation_id=_thread_id(config),
            turn_text=text,
        )
    except ToolCallBlocked:
        thread = _thread_id(config)
        if pending is not None and thread is not None:
            # The messages stay in the thread's state: the next run must not let them through.
            _note(thread, [pending], first=True)
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


def _mark_paused(exc: Any) -> None:
    """Mark the invocation whose run loop swallowed ``exc`` as paused, when ``exc`` is an
    interrupt: the loop exits inside the graph's stream, so that invocation is current."""
    try:
        # An interrupt (GraphInterrupt and its subclasses), not any flow control.
        pause = langgraph_pause(exc, "GraphInterrupt")
        if pause is None:
            return
        op = current_frame().agent
        if op is not None and not op.ended:
            op.span.set_attribute(semconv.AG_INTERRUPTED, pause)
    except Exception as err:
        internal_error("langgraph interrupt", err)


def _exited(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("exc_value")


def _loop_exit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> Any:
    suppressed = wrapped(*args, **kwargs)
    if suppressed and _state.guard is not None:
        _mark_paused(_exited(args, kwargs))
    return suppressed


async def _loop_aexit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                      ) -> Any:
    suppressed = await wrapped(*args, **kwargs)
    if suppressed and _state.guard is not None:
        _mark_paused(_exited(args, kwargs))
    return suppressed


# ToolNode's module (langgraph-prebuilt; ``create_agent`` and ``create_react_agent`` use it).
_TOOL_NODE = "langgraph.prebuilt.tool_node"


class LangGraphIntegration(Integration):
    """Compiled LangGraph graphs (and ``create_agent`` agents built on them)."""

    name = "langgraph"
    # The run loop's module: ``langgraph.pregel._loop`` (``langgraph.pregel.loop`` before 1.0).
    targets = ("langgraph.pregel", "langgraph.pregel._loop", "langgraph.pregel.loop",
               _TOOL_NODE)

    def patch_module(self, target: str, module: Any) -> None:
        if target == "langgraph.pregel":
            pregel = module.Pregel
            self.wrap(pregel, "stream", _stream)
            self.wrap(pregel, "astream", _astream)
            # A human message can also enter a thread through a state update between runs.
            # ``update_state`` goes through ``bulk_update_state`` (LangGraph >= 0.3) in current
            # versions; both are wrapped, and the outermost call is the one noted.
            self.wrap(pregel, "update_state", _update_state)
            self.wrap(pregel, "aupdate_state", _aupdate_state)
            if hasattr(pregel, "bulk_update_state"):
                self.wrap(pregel, "bulk_update_state", _bulk_update_state)
                self.wrap(pregel, "abulk_update_state", _abulk_update_state)
        elif target == _TOOL_NODE:
            # The check ToolNode makes of a call before running it, which answers a call of a
            # tool it does not have with an error message: the only place such a call is seen
            # (no BaseTool runs for it).
            tool_node = getattr(module, "ToolNode", None)
            if tool_node is None or not callable(getattr(tool_node, "_validate_tool_call", None)):
                return
            self.wrap(tool_node, "_validate_tool_call", _unknown_tool)
        else:
            # The loop's context-manager exit is where a top-level graph's interrupt is swallowed
            # (the stream then ends as if the run had completed); nested graphs let it propagate
            # and their spans are marked by Operation.fail.
            sync_loop = getattr(module, "SyncPregelLoop", None)
            async_loop = getattr(module, "AsyncPregelLoop", None)
            if sync_loop is None or async_loop is None:
                return
            self.wrap(sync_loop, "__exit__", _loop_exit)
            self.wrap(async_loop, "__aexit__", _loop_aexit)
        self.patched_modules.add(target)
