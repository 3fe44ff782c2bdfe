"""Conversation, turn and enclosing-operation context, carried in the OpenTelemetry context.

One immutable :class:`Frame` per operation lives under a single context key, so entering a span
costs one context copy, and threads and asyncio tasks inherit it the way they inherit spans.
"""

from __future__ import annotations

import contextvars
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentguard._guard import Operation

__all__ = [
    "ConversationRegistry",
    "ConversationState",
    "Frame",
    "conversation",
    "current_frame",
]

FRAME_KEY = otel_context.create_key("agentguard-frame")


def runtime_variable() -> contextvars.ContextVar[otel_context.Context] | None:
    """The context variable holding OpenTelemetry's current context, when the runtime context is
    the standard contextvars one (else ``None``: use the public API)."""
    try:
        from opentelemetry.context import _RUNTIME_CONTEXT
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        if type(_RUNTIME_CONTEXT) is ContextVarsRuntimeContext:
            variable = _RUNTIME_CONTEXT._current_context
            if isinstance(variable, contextvars.ContextVar):
                return variable
    except Exception:
        pass
    return None


# Every operation reads the current context, enters one and leaves it: on the agent's hot path,
# the context variable itself instead of three calls through the context API each time.
_VARIABLE = runtime_variable()
current_context = _VARIABLE.get if _VARIABLE is not None else otel_context.get_current
attach_context = _VARIABLE.set if _VARIABLE is not None else otel_context.attach
detach_context = _VARIABLE.reset if _VARIABLE is not None else otel_context.detach


class ConversationState:
    """A conversation's identity and its turn counter (shared by every invocation in it)."""

    __slots__ = ("_last_request", "_lock", "id", "turns", "user")

    def __init__(self, conversation_id: str, user: str | None = None) -> None:
        self.id = conversation_id
        self.user = user
        self.turns = 0
        self._last_request: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def next_turn(self) -> int:
        with self._lock:
            self.turns += 1
            return self.turns

    def loop_turn(self, text: str, position: int) -> tuple[int, bool]:
        """The turn of a model request that ends with the user message ``text`` at ``position``
        in its history, and whether it starts a new one: the same request again (a retry)
        stays in the turn it started."""
        with self._lock:
            key = (position, hash(text))
            if key == self._last_request and self.turns:
                return self.turns, False
            self._last_request = key
            self.turns += 1
            return self.turns, True


class ConversationRegistry:
    """Conversations by id, least recently used dropped first, so turn counters survive between calls."""

    def __init__(self, max_size: int = 10_000) -> None:
        self._items: OrderedDict[str, ConversationState] = OrderedDict()
        self._lock = threading.Lock()
        self.max_size = max_size
        self.evicted = 0

    def get(self, conversation_id: str, user: str | None = None) -> ConversationState:
        with self._lock:
            state = self._items.get(conversation_id)
            if state is None:
                state = ConversationState(conversation_id, user)
                self._items[conversation_id] = state
                if len(self._items) > self.max_size:
                    self._items.popitem(last=False)
                    self.evicted += 1
            else:
                self._items.move_to_end(conversation_id)
                if user is not None:
                    state.user = user
            return state

    def new(self) -> ConversationState:
        """A conversation for one top-level invocation that named none; not kept in the registry."""
        return ConversationState(uuid.uuid4().hex)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Frame:
    """What encloses the code running now: conversation, turn, agent and tool operations, and
    the innermost agentguard span (``span``), the parent of the next one agentguard opens."""

    __slots__ = ("agent", "conversation", "span", "suppressed", "tool", "turn")

    def __init__(
        self,
        conversation: ConversationState | None = None,
        turn: int | None = None,
        agent: Operation | None = None,
        tool: Operation | None = None,
        suppressed: frozenset[str] = frozenset(),
        span: Span | None = None,
    ) -> None:
        self.conversation = conversation
        self.turn = turn
        self.agent = agent
        self.tool = tool
        self.suppressed = suppressed
        self.span = span

    def replace(self, **changes: Any) -> Frame:
        frame = Frame(self.conversation, self.turn, self.agent, self.tool, self.suppressed,
                      self.span)
        for name, value in changes.items():
            setattr(frame, name, value)
        return frame


EMPTY_FRAME = Frame()


# The process id and each thread's native id, read once: both are system calls, and they are on
# the path of every judged event. The pid is refreshed in a forked child.
_process = [os.getpid()]
_thread = threading.local()


def _after_fork() -> None:
    _process[0] = os.getpid()
    _thread.__dict__.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def current_pid() -> int:
    """This process's id (cached; refreshed after ``fork``)."""
    return _process[0]


def current_tid() -> int:
    """The native id of the running thread (cached per thread)."""
    try:
        return _thread.tid  # type: ignore[no-any-return]
    except AttributeError:
        tid = _thread.tid = threading.get_native_id()
        return tid


def current_frame() -> Frame:
    """The frame of the running code (an empty one outside any conversation or operation)."""
    frame = current_context().get(FRAME_KEY)
    return frame if isinstance(frame, Frame) else EMPTY_FRAME


@contextmanager
def conversation(conversation_id: str, user: str | None = None) -> Iterator[ConversationState]:
    """Attribute everything inside the block to conversation ``conversation_id`` (and ``user``).

    Turn numbering continues across blocks with the same id, so each ``with`` can be one turn of
    a longer conversation.
    """
    from agentguard import _state

    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError("conversation id must be a non-empty string")
    state = _state.conversations.get(conversation_id, user)
    # A block that continues a conversation (the next request of a tool loop that a web app
    # serves one request at a time) is in its latest turn until a new user message starts one.
    frame = current_frame().replace(conversation=state, turn=state.turns or None)
    token = otel_context.attach(otel_context.set_value(FRAME_KEY, frame))
    try:
        yield state
    finally:
        otel_context.detach(token)
