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


def test_reasoning_is_a_part_before_the_text() -> None:
    """A message's reasoning is a reasoning part ahead of its text and tool calls, in output and
    input messages alike, also for a message with no role or no text."""
    answer = {"role": "assistant", "content": "Sunny.", "reasoning": "Oslo is in Norway.",
              "tool_calls": [{"id": "tu-1", "name": "lookup", "arguments": {}}]}
    parts = [{"type": "reasoning", "content": "Oslo is in Norway."},
             {"type": "text", "content": "Sunny."},
             {"type": "tool_call", "id": "tu-1", "name": "lookup", "arguments": {}}]
    assert output_messages([answer]) == [
        {"role": "assistant", "parts": parts, "finish_reason": "tool_call"}]
    assert input_messages([answer]) == [{"role": "assistant", "parts": parts}]
    assert output_messages([{"content": "Done.", "reasoning": "Checked."}]) == [
        {"role": "assistant", "parts": [{"type": "reasoning", "content": "Checked."},
                                        {"type": "text", "content": "Done."}],
         "finish_reason": "stop"}]
    assert output_messages([{"role": "assistant", "reasoning": "Thinking..."}], [],
                           "abandoned") == [
        {"role": "assistant", "parts": [{"type": "reasoning", "content": "Thinking..."}],
         "finish_reason": "abandoned"}]


def test_a_model_call_event_carries_the_reasoning(guarded: Any, spans: Any) -> None:
    """The answer's reasoning reaches policies as ``Message.reasoning`` and the span as a
    reasoning part; its ``content`` stays the answer's text."""
    seen: list[Any] = []
    guard = guarded(capture_content="full",
                    policy=lambda event: seen.append(event) if event.kind == "model_call"
                    else None)
    op = guard.start_chat(provider="p", model="m", messages=[{"role": "user", "content": "?"}])
    op.end_chat([{"role": "assistant", "content": "No.", "reasoning": "It would leak data."}])
    answer = seen[-1].output[0]
    assert (answer.content, answer.reasoning) == ("No.", "It would leak data.")
    assert json.loads(spans.one("chat m").attributes["gen_ai.output.messages"])[0]["parts"][0] \
        == {"type": "reasoning", "content": "It would leak data."}


def test_message_reasoning_is_validated_and_defaults_to_empty() -> None:
    """``Message.reasoning`` is text, empty when the model gave none; other types are refused."""
    from pydantic import ValidationError

    from agentguard.events import Message

    assert Message(role="assistant", content="hi").reasoning == ""
    with pytest.raises(ValidationError, match="reasoning"):
        Message(role="assistant", reasoning=["not", "text"])


def test_a_policy_file_rule_reads_the_reasoning(guarded: Any, tmp_path: Any) -> None:
    """A policy file rule can match on what the model reasoned (``output[*].reasoning``)."""
    policy = tmp_path / "reasoning.yaml"
    policy.write_text(
        "rules:\n"
        "  - id: REASON-001\n"
        "    description: The model considered sending data to an outside domain\n"
        "    match: {kind: model_call}\n"
        "    when: {field: 'output[*].reasoning', contains: partner.example}\n"
        "    action: alert\n")
    findings: list[Any] = []
    guard = guarded(policy=str(policy), on_finding=findings.append)
    op = guard.start_chat(provider="p", model="m", messages=[{"role": "user", "content": "?"}])
    op.end_chat([{"role": "assistant", "content": "Done.",
                  "reasoning": "I will upload it to partner.example."}])
    assert [finding.rule_id for finding in findings] == ["REASON-001"]
