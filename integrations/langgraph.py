"""LangGraph: graph and agent invocations (``invoke_agent`` spans, conversations and turns).

Target: ``Pregel.stream`` / ``Pregel.astream``. Every way of running a compiled graph
(``invoke``, ``ainvoke``, ``batch``, ``stream_events``, ``create_agent`` agents, subgraphs run as
nodes) goes through one of them, so one span per invocation comes out without double counting.
Tool calls of ``ToolNode`` (including parallel ones) are covered by the LangChain integration,
which sees them through ``BaseTool``; a call of a tool the ``ToolNode`` does not have runs no
``BaseTool`` and is seen here, where ``ToolNode._validate_tool_call`` answers it with an error,
and so is a call an agent middleware (``wrap_tool_call``) answers itself, without the node's
handler (``ToolNode._run_one`` / ``_arun_one``).

A human message can reach a thread between runs, through ``update_state`` or
``bulk_update_state``: it is the turn of the thread's next top-level run, and judged as a turn by
a run nested in another (which goes on in the enclosing run's turn). Past 1,024 threads waiting,
the oldest thread's messages are judged at once instead (``stats()``, ``_evict``).

A graph that pauses for a human (``interrupt()``, ``interrupt_before`` / ``interrupt_after``)
ends its stream normally at the top level: LangGraph's run loop swallows the interrupt on its way
out (``SyncPregelLoop.__exit__`` / ``AsyncPregelLoop.__aexit__``), which is where the pause is
seen and the invocation marked ``agentguard.interrupted``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from agentguard import _state, semconv
from agentguard._context import current_frame, current_pid, current_tid
from agentguard._errors import internal_error
from agentguard._guard import Guard, Operation, Verdict, langgraph_pause
from agentguard.events import EventContext, Turn
from agentguard.findings import ToolCallBlocked
from agentguard.integrations._base import Integration
from agentguard.integrations._streams import adrive, asked_in, drive, opened_in
from agentguard.integrations.langchain import answered_tool_call, message_to_dict

__all__ = ["LangGraphIntegration", "stats", "turn_text"]

logger = logging.getLogger("agentguard")


def turn_text(graph_input: Any) -> str | None:
    """The user's text if ``graph_input`` brings a new human message (a new turn), else ``None``.

    A ``Command`` brings one in its state update (``Command(update={"messages": [...]})``), in
    the input of a node it sends to (``Command(goto=Send(node, {"messages": [...]}))``) or as
    the value a paused graph is resumed with (``Command(resume=HumanMessage(...))``); a resume
    value that is not a human message (an approval, an edited tool call) is no turn.
    """
    if _is_command(graph_input):
        return _command_text(graph_input, resume=True)
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
    # Every human message that ends the input, not only the last: an input of two (an injected
    # one, then a harmless one) gives the model both.
    return _new_user_text(messages)


def _is_command(value: Any) -> bool:
    # Recognised by its shape, so nothing of LangGraph is imported to look at an input.
    return type(value).__name__ == "Command" and hasattr(value, "resume") and \
        hasattr(value, "update")


def _command_text(command: Any, *, resume: bool) -> str | None:
    """The user's text of the human messages a ``Command`` brings: in its state update, in the
    input of each node it sends to, and (``resume``: the graph's input) in its resume value."""
    parts = [_update_text(getattr(command, "update", None)),
             *(_update_text(send.arg) for send in _sends(getattr(command, "goto", None)))]
    if resume:
        parts.append(_resume_text(getattr(command, "resume", None)))
    texts = [text for text in parts if text is not None]
    return "\n".join(texts) if texts else None


def _sends(goto: Any) -> list[Any]:
    """The ``Send`` packets of a ``Command``'s ``goto`` (one, or a list of node names and
    packets): each runs its node on its own input, which the graph's state does not hold."""
    items = goto if isinstance(goto, (list, tuple)) else (goto,)
    return [item for item in items if type(item).__name__ == "Send" and hasattr(item, "arg")]


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


def _update_text(update: Any) -> str | None:
    """The user's text if a state update (or a node's input) ends its messages with human
    messages: a dict of channels, a list of ``(channel, value)`` pairs or a state object."""
    if update is None:
        return None
    if isinstance(update, dict):
        messages = update.get("messages")
    elif isinstance(update, (list, tuple)):
        # Every pair, in order: LangGraph applies every one (``add_messages`` appends each pair's
        # messages), so neither a cap nor the last pair alone may stand for the update.
        found: list[Any] = []
        for pair in update:
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == "messages":
                found.extend(_message_list(pair[1]) or ())
        messages = found or None
    else:
        messages = getattr(update, "messages", None)
    return _new_user_text(messages) if messages is not None else None


def _new_user_text(messages: Any) -> str | None:
    """The user's text of the human messages that end ``messages`` (an input's or a state
    update's, each new to the thread and not answered yet, so all of them are the turn), one
    per line.

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
    """The user's text if a graph is resumed with a human message: the value itself, the human
    messages that end a list of messages, or (resuming several interrupts by id) those of each
    of a mapping's values.

    Every value of the mapping, however many: each interrupt is resumed with its own, so a cap
    would let the ones past it reach the model unjudged (the work is that of writing them)."""
    if isinstance(resume, dict):
        if "messages" in resume:
            return _update_text(resume)
        texts = [text for value in list(resume.values())
                 if (text := _human_text(value)) is not None]
        return "\n".join(texts) if texts else None
    return _human_text(resume)


def _human_text(value: Any) -> str | None:
    """The user's text of ``value`` if it is a human message object, or of the human message
    objects that end it if it is a list (anything else, such as an approval, is no message)."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    texts: list[str] = []
    for item in reversed(items):
        if not _is_human(item):
            break
        texts.append(message_to_dict(item)["content"])
    return "\n".join(reversed(texts)) if texts else None


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
# ``bulk_update_state``) added to that thread, until the next run on the thread, which answers
# them: they are the turn of a top-level run (judged before the model reads them), as if they had
# come in the run's input, and judged as a turn inside a nested one. A thread's texts are
# replaced by a new list at each change, never changed in place (see ``_evict``).
_pending: dict[str, list[str]] = {}
_pending_lock = threading.Lock()
_PENDING_LIMIT = 1024
# Texts of one thread kept apart; past it the oldest are joined into one, never dropped.
_MAX_TEXTS = 64
# Threads whose pending texts a turn policy blocks (found when they were the eviction's first
# choice): kept while any other thread can go instead (see ``_evict``).
_blocking: set[str] = set()
# Threads whose pending texts were judged at eviction instead of at their next run.
_evicted = 0
_warned = False

# Set while a state update runs, so that only the outermost one is noted: ``update_state`` goes
# through ``bulk_update_state``, which calls itself again for a subgraph's namespace.
_updating: ContextVar[bool] = ContextVar("agentguard_langgraph_updating", default=False)


def stats() -> dict[str, int]:
    """Counters: threads with human messages waiting for their next run, and threads whose
    waiting messages were judged when more than 1,024 threads had some (see ``_evict``)."""
    return {"pending_threads": len(_pending), "pending_evicted": _evicted}


def _note(thread: str, texts: list[str], *, first: bool = False) -> None:
    """Add ``texts`` to the thread's pending turn (before what is there if ``first``).

    Past ``_MAX_TEXTS`` updates the oldest texts are joined into one, never dropped: each is in
    the thread's state and reaches the model with the rest."""
    with _pending_lock:
        kept = _pending.pop(thread, [])
        kept = [*texts, *kept] if first else [*kept, *texts]
        if len(kept) > _MAX_TEXTS:
            kept = ["\n".join(kept[:-_MAX_TEXTS + 1]), *kept[-_MAX_TEXTS + 1:]]
        _pending[thread] = kept
        # Changed texts are judged afresh before they are kept in preference to others.
        _blocking.discard(thread)
        full = len(_pending) > _PENDING_LIMIT
    if full:
        _evict()


def _evict() -> None:
    """Bring ``_pending`` back to its limit, judging each thread's texts as they leave.

    The messages stay in the thread's state, and nothing would judge them at the thread's next
    run: forgetting them would hand an injected message to the model unseen, and keeping them
    all would make memory grow with every thread ever written to. So the thread that leaves is
    judged now, as the turn it would have been (numbered in its conversation, so that the run
    which answers it continues that turn), and its findings go to the sinks as alerts: there is
    no run to stop yet. Judging never blocks a state update of another thread. A thread whose
    texts a policy blocks (enforce mode) stays, and another leaves in its place: its run must
    still be blocked. Only when every thread waiting is one of those does the oldest leave all
    the same, reported and counted (``stats()["pending_evicted"]``) like every eviction.
    """
    global _evicted, _warned
    try:
        while True:
            with _pending_lock:
                if len(_pending) <= _PENDING_LIMIT:
                    return
                # The oldest thread not known to block; else the oldest.
                thread = next((t for t in _pending if t not in _blocking), None)
                keep_blocked = thread is not None
                if thread is None:
                    thread = next(iter(_pending))
                texts = _pending[thread]
            guard = _state.guard
            verdict = _judge_pending(guard, thread, texts) if guard is not None else None
            with _pending_lock:
                if _pending.get(thread) is not texts:
                    # A run took them (and judged them), or an update added to them (judged
                    # afresh on the next pass): this judgment is not theirs any more.
                    continue
                if keep_blocked and verdict is not None and verdict.blocked:
                    _blocking.add(thread)
                    continue
                del _pending[thread]
                _blocking.discard(thread)
                _evicted += 1
                warn = not _warned
                _warned = True
            if warn:
                logger.warning(
                    "agentguard: more than %d LangGraph threads have human messages waiting for "
                    "their next run; the oldest thread's are judged now and reported as alerts "
                    "(counted in agentguard.integrations.langgraph.stats()['pending_evicted'])",
                    _PENDING_LIMIT)
            if guard is not None and verdict is not None:
                _report_evicted(guard, thread, verdict)
    except Exception as exc:
        internal_error("langgraph pending eviction", exc)


def _judge_pending(guard: Guard, thread: str, texts: list[str]) -> Verdict:
    """The verdict on a thread's pending texts as the next turn of its conversation, judged in
    a context of their own (nothing of the operation running here is theirs)."""
    conv = guard.conversations.get(thread)
    event = Turn.model_construct(
        context=EventContext.model_construct(
            agent=guard.agent_name, conversation_id=conv.id, user=conv.user,
            turn=conv.turns + 1, trace_id=None, span_id=None, tool=None, tool_call_id=None,
            pid=current_pid(), tid=current_tid()),
        text="\n".join(texts))
    return contextvars.Context().run(guard.evaluate, event)


def _report_evicted(guard: Guard, thread: str, verdict: Verdict) -> None:
    """Number the turn an evicted thread's texts start and send its findings to the sinks, as
    alerts (marked ``pending_evicted`` in their evidence)."""
    turn = guard.conversations.get(thread).next_turn()
    if not verdict.findings:
        return
    report = Verdict()
    for finding in verdict.findings:
        report.add(finding.model_copy(update={
            "action": "alert", "turn": turn,
            "evidence": {**finding.evidence, "pending_evicted": True}}))
    guard.emit(report, None)


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
    ``Command`` (written as if a node had returned it: its update, and the inputs of the nodes
    it sends to, which the next run runs)."""
    if _is_command(values):
        return _command_text(values, resume=False)
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


def _pending_turn(thread: str | None) -> str | None:
    if thread is None or not _pending:
        return None
    with _pending_lock:
        texts = _pending.pop(thread, None)
        _blocking.discard(thread)
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
    return answered_tool_call(guard, call, answer, unknown=True)


# -- agent middleware (``wrap_tool_call``) --------------------------------------------------------
#
# ToolNode runs each call through the ``wrap_tool_call`` / ``awrap_tool_call`` chain it was given
# (LangChain's agent middleware, composed by ``create_agent``), whose innermost handler is
# ``ToolNode._execute_tool_sync`` / ``_execute_tool_async``: the handler runs the tool
# (``BaseTool.run``, traced there) or refuses a tool the node lacks (``_validate_tool_call``,
# traced there). A middleware may also answer the call itself, never calling the handler: a
# cached or emulated answer, a tool it serves that the agent does not list, a reviewer's
# rejection. Nothing would trace such a call, and the model would read an answer no stage
# judged, so ToolNode's per-call entry (``_run_one`` / ``_arun_one``) notes whether the handler
# ran, and a call whose chain answered without it is reported when the answer is ready:
#
# * as the call the model asked for (its name, call id and arguments; there is no other), with
#   the chain's answer as its result, judged in both phases. A block keeps the answer from the
#   model, which gets agentguard's error message as for any blocked tool call. The middleware's
#   own code has run by then: judging every call before the chain runs would judge (and count,
#   in rate limits and baselines) each call the chain passes on twice, and could not say yet
#   whether the call is of a tool the agent has.
# * not as a call of a tool the agent lacks (``unknown``), even when ToolNode does not list it:
#   something served it (LangChain documents serving tools from ``wrap_tool_call``), while an
#   ``unknown`` call is one nothing ran, never learned and always flagged by baselines, which
#   would turn a middleware's tool into a standing finding.
#
# A call the handler ran is left to what traced it there, with the arguments it ran with (a
# middleware's rewrite of the model's is what runs). An exception out of the chain (an interrupt
# for a reviewer, an error nothing answered) gave the model no answer and propagates unchanged.


class _Chain:
    """One call going through a ToolNode's ``wrap_tool_call`` chain: the node, and whether the
    node's handler ran for it."""

    __slots__ = ("node", "reached")

    def __init__(self, node: Any) -> None:
        self.node = node
        self.reached = False


# The chain of the call being answered in this context. A holder object, so a handler running
# in a context copied from it (a task, a thread of a pool that copies contexts) marks the same.
_chain: ContextVar[_Chain | None] = ContextVar("agentguard_tool_chain", default=None)


def _handler_ran(instance: Any) -> None:
    chain = _chain.get()
    # Only the node's own handler: an agent the middleware runs has ToolNodes of its own.
    if chain is not None and chain.node is instance:
        chain.reached = True


def _handler(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _handler_ran(instance)
    return wrapped(*args, **kwargs)


async def _ahandler(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> Any:
    # Marked when the handler's coroutine runs: one created and never awaited ran nothing.
    _handler_ran(instance)
    return await wrapped(*args, **kwargs)


def _chain_answer(chain: _Chain, args: tuple[Any, ...], kwargs: dict[str, Any],
                  answer: Any) -> Any:
    """What the model gets for a call the chain answered: ``answer``, traced and judged when
    the middleware answered it without the node's handler."""
    guard = _state.guard
    if chain.reached or guard is None or answer is None:
        return answer
    call = args[0] if args else kwargs.get("call")
    if not isinstance(call, dict) or "name" not in call:
        return answer
    return answered_tool_call(guard, call, answer, unknown=False)


def _run_one(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _state.guard is None or getattr(instance, "_wrap_tool_call", None) is None:
        return wrapped(*args, **kwargs)
    chain = _Chain(instance)
    token = _chain.set(chain)
    try:
        answer = wrapped(*args, **kwargs)
    finally:
        _chain.reset(token)
    return _chain_answer(chain, args, kwargs, answer)


async def _arun_one(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> Any:
    if _state.guard is None or (getattr(instance, "_awrap_tool_call", None) is None and
                                getattr(instance, "_wrap_tool_call", None) is None):
        return await wrapped(*args, **kwargs)
    chain = _Chain(instance)
    token = _chain.set(chain)
    try:
        answer = await wrapped(*args, **kwargs)
    finally:
        _chain.reset(token)
    return _chain_answer(chain, args, kwargs, answer)


def _start(guard: Guard, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> Operation | None:
    pending = thread = None
    try:
        graph_input = args[0] if args else kwargs.get("input")
        name = getattr(instance, "name", None) or type(instance).__name__
        thread = _thread_id(_config(args, kwargs))
        text = turn_text(graph_input)
        # Any run on the thread answers what state updates wrote into it, a graph run from a
        # node or a tool of another (an agent delegating to one with a thread of its own) too.
        pending = _pending_turn(thread)
        if current_frame().agent is None:
            if pending is not None:
                text = pending if text is None else f"{pending}\n{text}"
            return guard.start_agent(str(name), conversation_id=thread, turn_text=text)
        # Nested: the enclosing run's turn goes on (its input is no turn of its own), but the
        # messages it reads from its thread are the user's, judged as such before its model
        # reads them.
        op = guard.start_agent(str(name), conversation_id=thread, turn_text=text)
        if pending is not None and guard.has_stages:
            guard.judge_turn(op, pending)
        return op
    except ToolCallBlocked:
        if pending is not None and thread is not None:
            # The messages stay in the thread's state: the next run must not let them through.
            _note(thread, [pending], first=True)
        raise
    except Exception as exc:
        internal_error("langgraph start", exc)
        if pending is not None and thread is not None:
            # Nothing judged them, and they stay in the thread's state: the next run will.
            _note(thread, [pending], first=True)
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
# ToolNode's per-call entries and its handler (langgraph-prebuilt >= 1.0, with wrap_tool_call).
_CHAIN_METHODS = ("_run_one", "_arun_one", "_execute_tool_sync", "_execute_tool_async")


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
            tool_node = getattr(module, "ToolNode", None)
            validates = callable(getattr(tool_node, "_validate_tool_call", None))
            chains = all(callable(getattr(tool_node, name, None)) for name in _CHAIN_METHODS)
            if not (validates or chains):
                return
            # The check ToolNode makes of a call before running it, which answers a call of a
            # tool it does not have with an error message: the only place such a call is seen
            # (no BaseTool runs for it).
            if validates:
                self.wrap(tool_node, "_validate_tool_call", _unknown_tool)
            # The per-call entry that runs the wrap_tool_call chain (agent middleware), and the
            # handler at its end: the only place a call the middleware answers itself is seen.
            # Class methods, unlike the chain ToolNode keeps per instance, so agents built
            # before instrument() are covered too.
            if chains:
                self.wrap(tool_node, "_run_one", _run_one)
                self.wrap(tool_node, "_arun_one", _arun_one)
                self.wrap(tool_node, "_execute_tool_sync", _handler)
                self.wrap(tool_node, "_execute_tool_async", _ahandler)
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
