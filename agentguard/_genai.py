"""Chat messages in the shape the OpenTelemetry GenAI conventions give ``gen_ai.input.messages``
and ``gen_ai.output.messages``: each message a ``role`` and a list of typed ``parts``.

Integrations describe messages as plain dicts (``role``, ``content``, ``tool_calls``,
``tool_call_id``, ``name``, ``reasoning``), which is also what the Guard's events hold; this
turns them into the exported form just before they are captured:

* the model's reasoning (thinking) is a ``{"type": "reasoning", "content": ...}`` part, before
  the text, as the model wrote it; reasoning the provider returned encrypted or redacted is
  :data:`REDACTED_REASONING` (its opaque bytes and the signatures of reasoning are never kept);
* text content is a ``{"type": "text", "content": ...}`` part;
* each requested tool call is a ``{"type": "tool_call", "id", "name", "arguments"}`` part;
* a tool message (``role`` ``tool`` with a ``tool_call_id``) is a
  ``{"type": "tool_call_response", "id", "response"}`` part;
* an output message carries ``finish_reason``, the provider's reason in the conventions' words
  (``stop``, ``length``, ``content_filter``, ``tool_call``, ``error``; another reason as it is),
  or, when the provider gave none, ``tool_call`` for a message that asks for tools and ``stop``
  otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["REDACTED_REASONING", "finish_reason", "input_messages", "output_messages"]

# The reasoning recorded for a block of reasoning the provider returned only as opaque bytes
# (Bedrock ``redactedContent``, Anthropic ``redacted_thinking``, encrypted reasoning).
REDACTED_REASONING = "<redacted_reasoning>"

# Provider finish reasons (Bedrock Converse and Anthropic stop reasons, OpenAI-style reasons that
# LangChain passes on) in the conventions' words.
_FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "stop": "stop", "complete": "stop",
    "finish": "stop", "eos": "stop", "end": "stop",
    "max_tokens": "length", "length": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_call", "tool_calls": "tool_call", "function_call": "tool_call",
    "tool_call": "tool_call",
    "content_filtered": "content_filter", "content_filter": "content_filter",
    "guardrail_intervened": "content_filter", "safety": "content_filter",
    "error": "error",
}


def _message(message: Any) -> dict[str, Any]:
    if type(message) is not dict:
        if not isinstance(message, dict):
            return {"role": "user", "parts": [{"type": "text", "content": str(message)}]}
        message = dict(message)
    role = message.get("role") or "user"
    content = message.get("content")
    if len(message) <= 2 and type(content) is str and "reasoning" not in message:
        # The common message: a role and its text.
        return {"role": role, "parts": [{"type": "text", "content": content}] if content else []}
    parts: list[dict[str, Any]] = []
    reasoning = message.get("reasoning")
    if reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    call_id = message.get("tool_call_id")
    if role == "tool" and call_id is not None:
        parts.append({"type": "tool_call_response", "id": call_id, "response": content})
    elif content is not None and content != "":
        parts.append({"type": "text", "content": content})
    calls = message.get("tool_calls")
    if isinstance(calls, (list, tuple)):
        for call in calls:
            if isinstance(call, dict):
                parts.append({"type": "tool_call", "id": call.get("id"),
                              "name": call.get("name"), "arguments": call.get("arguments")})
    out: dict[str, Any] = {"role": str(role), "parts": parts}
    if message.get("name"):
        out["name"] = message["name"]
    return out


def input_messages(messages: Iterable[Any]) -> list[dict[str, Any]]:
    """The messages sent to a model, as ``gen_ai.input.messages`` holds them."""
    return [_message(message) for message in messages]


def finish_reason(reason: str | None, asks_for_tools: bool) -> str:
    """A provider's finish reason in the conventions' words (unknown ones as they are)."""
    if reason:
        return _FINISH_REASONS.get(reason.lower(), reason)
    return "tool_call" if asks_for_tools else "stop"


def output_messages(messages: Iterable[Any], finish_reasons: Sequence[str] = (),
                    unfinished: str | None = None) -> list[dict[str, Any]]:
    """A model's answer, as ``gen_ai.output.messages`` holds it; the n-th message finished for
    the n-th reason (the last reason serves the messages after it). ``unfinished``: the reason
    of an answer the caller did not get whole (``error``: its stream failed, ``abandoned``: the
    caller stopped reading) when the provider gave none, instead of the ``stop`` of a complete
    one."""
    out = []
    for index, message in enumerate(messages):
        item = _message(message)
        if not (isinstance(message, dict) and message.get("role")):
            item["role"] = "assistant"  # what a model writes, unless it says otherwise
        reason = finish_reasons[min(index, len(finish_reasons) - 1)] if finish_reasons else \
            unfinished
        item["finish_reason"] = finish_reason(
            reason, any(part["type"] == "tool_call" for part in item["parts"]))
        out.append(item)
    return out
