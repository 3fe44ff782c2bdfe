"""The environment a child process started inside a tool call gets: trace context and identity.

``TRACEPARENT`` / ``TRACESTATE`` follow the OpenTelemetry convention for carrying W3C trace
context in environment variables, so an instrumented child continues the tool's trace and the
collector can attribute a whole process subtree by reading ``/proc/<pid>/environ``. The
``AGENTGUARD_*`` variables name the agent, conversation, turn and tool call. Values that do not
apply are removed, so a child never inherits a stale identity from further up the tree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentguard import semconv

if TYPE_CHECKING:
    from agentguard._guard import Guard, Operation

__all__ = [
    "ENV_AGENT",
    "ENV_CONVERSATION_ID",
    "ENV_TOOL",
    "ENV_TOOL_CALL_ID",
    "ENV_TRACEPARENT",
    "ENV_TRACESTATE",
    "ENV_TURN",
    "child_environment",
    "identity",
]

ENV_TRACEPARENT = "TRACEPARENT"
ENV_TRACESTATE = "TRACESTATE"
ENV_AGENT = "AGENTGUARD_AGENT"
ENV_CONVERSATION_ID = "AGENTGUARD_CONVERSATION_ID"
ENV_TURN = "AGENTGUARD_TURN"
ENV_TOOL = "AGENTGUARD_TOOL"
ENV_TOOL_CALL_ID = "AGENTGUARD_TOOL_CALL_ID"


def _tool_call_id(op: Operation) -> str | None:
    event = op.event
    call_id = getattr(event, "call_id", None) if event is not None else None
    if call_id is None:
        # Without pipeline stages the tool's event is not built; the span still has the id.
        attributes = getattr(op.span, "attributes", None)
        if attributes is not None:
            call_id = attributes.get(semconv.GEN_AI_TOOL_CALL_ID)
    return str(call_id) if call_id is not None else None


def identity(guard: Guard, op: Operation) -> dict[str, str | None]:
    """The variables for a child of tool operation ``op`` (``None``: remove the variable)."""
    context = op.span.get_span_context()
    traceparent = tracestate = None
    if context.is_valid:
        traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-" \
                      f"{int(context.trace_flags):02x}"
        state = context.trace_state
        if state:
            tracestate = state.to_header()
    frame = op.frame
    conversation = frame.conversation
    return {
        ENV_TRACEPARENT: traceparent,
        ENV_TRACESTATE: tracestate,
        ENV_AGENT: guard.config.service_name,
        ENV_CONVERSATION_ID: conversation.id if conversation is not None else None,
        ENV_TURN: str(frame.turn) if frame.turn is not None else None,
        ENV_TOOL: op.name,
        ENV_TOOL_CALL_ID: _tool_call_id(op),
    }


def child_environment(guard: Guard, op: Operation, env: Mapping[Any, Any] | None
                      ) -> dict[Any, Any]:
    """A copy of ``env`` (``os.environ`` when ``None``) carrying ``op``'s context.

    The caller's mapping is never changed. A mapping with bytes keys gets bytes keys.
    """
    base: Mapping[Any, Any] = os.environ if env is None else env
    result: dict[Any, Any] = dict(base)
    as_bytes = env is not None and any(isinstance(key, bytes) for key in result)
    for name, value in identity(guard, op).items():
        key: Any = os.fsencode(name) if as_bytes else name
        if value is None:
            result.pop(key, None)
        else:
            result[key] = os.fsencode(value) if as_bytes else value
    return result
