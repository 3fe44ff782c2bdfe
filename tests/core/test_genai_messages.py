"""Captured messages follow the OpenTelemetry GenAI conventions' shape: a role and typed parts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentguard._genai import finish_reason, input_messages, output_messages


def test_input_messages_have_text_tool_call_and_tool_response_parts() -> None:
    """Text is a text part, a requested tool call a tool_call part, and a tool message a
    tool_call_response part holding the result under its call id."""
    messages = [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "tu-1", "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "content": "rainy, 7 C", "tool_call_id": "tu-1"},
        {"role": "document", "name": "q3", "content": "[document q3 (txt)]\nrevenue grew"},
    ]
    assert input_messages(messages) == [
        {"role": "system", "parts": [{"type": "text", "content": "You are a support agent."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "tu-1",
                                         "name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "tu-1",
                                    "response": "rainy, 7 C"}]},
        {"role": "document", "name": "q3",
         "parts": [{"type": "text", "content": "[document q3 (txt)]\nrevenue grew"}]},
    ]


def test_output_messages_say_why_the_model_stopped() -> None:
    """Every output message has a finish_reason in the conventions' words: the provider's reason
    translated, or inferred from whether the message asks for tools."""
    answer = [{"role": "assistant", "content": "Let me check.",
               "tool_calls": [{"id": "tu-1", "name": "lookup", "arguments": {}}]}]
    assert output_messages(answer, ["tool_use"]) == [{
        "role": "assistant",
        "parts": [{"type": "text", "content": "Let me check."},
                  {"type": "tool_call", "id": "tu-1", "name": "lookup", "arguments": {}}],
        "finish_reason": "tool_call"}]
    assert output_messages(answer)[0]["finish_reason"] == "tool_call"
    assert output_messages([{"content": "done"}]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "done"}],
         "finish_reason": "stop"}]


@pytest.mark.parametrize(("reason", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_call"), ("tool_calls", "tool_call"), ("guardrail_intervened",
                                                              "content_filter"),
    ("content_filtered", "content_filter"), ("STOP", "stop"), ("recitation", "recitation"),
])
def test_provider_finish_reasons_are_translated(reason: str, expected: str) -> None:
    assert finish_reason(reason, False) == expected


def test_odd_messages_still_have_the_shape() -> None:
    """A message that is not a dict, or has no role or content, still reads as role and parts."""
    assert input_messages(["hi", {"content": None}]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]},
        {"role": "user", "parts": []}]


def test_a_chat_span_exports_the_conventions_shape(guarded: Any, spans: Any) -> None:
    """A model call through the Guard records its request and answer in that shape."""
    guard = guarded()
    op = guard.start_chat(provider="aws.bedrock", model="m", messages=[
        {"role": "user", "content": "Weather in Oslo?"}])
    op.end_chat([{"role": "assistant", "content": "Sunny."}], finish_reasons=["end_turn"])
    span = spans.one("chat m")
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]}]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}],
         "finish_reason": "stop"}]
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
