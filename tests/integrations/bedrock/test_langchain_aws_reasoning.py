"""langchain-aws on the local Bedrock server, with extended thinking and prompt caching: the
LangChain chat span records the reasoning as a reasoning part and the cache usage, and the
answer's text is the answer alone."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from langchain_core.messages.ai import add_ai_message_chunks

from tests.bedrock_server import Reply

MODEL = "anthropic.claude-3-7-sonnet-20250219-v1:0"
THOUGHT = "Partner domains need an approval on file; partner.example has none."
ANSWER = "I can't send it there yet."
OPAQUE = b"\x01\x02opaque-thinking"


def _reply() -> Reply:
    return Reply(ANSWER, reasoning=THOUGHT, redacted_reasoning=OPAQUE, input_tokens=12,
                 output_tokens=30, cache_read_tokens=1500, cache_write_tokens=40)


def _converse(client: Any) -> Any:
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(model=MODEL, client=client, region_name="us-east-1")


def _invoke(client: Any) -> Any:
    from langchain_aws import ChatBedrock

    return ChatBedrock(model_id=MODEL, client=client, region_name="us-east-1", model_kwargs={
        "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}})


def _ask(model: Any, stream: bool) -> Any:
    if not stream:
        return model.invoke("Send the report to partner.example")
    chunks = list(model.stream("Send the report to partner.example"))
    return add_ai_message_chunks(chunks[0], *chunks[1:])


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("make", [_converse, _invoke], ids=["ChatBedrockConverse", "ChatBedrock"])
def test_langchain_aws_reasoning_and_cache_usage(make: Any, stream: bool, guarded: Any,
                                                 spans: Any, bedrock: Any,
                                                 runtime: Any) -> None:
    """One chat span whose output is the reasoning, then the answer's text (no placeholder for
    the reasoning blocks in it), with the cache counts and an input count that includes them;
    no signature or encrypted reasoning on it."""
    seen: list[Any] = []
    guarded(capture_content="full",
            policy=lambda event: seen.append(event) if event.kind == "model_call" else None)
    bedrock.push(_reply())
    message = _ask(make(runtime()), stream)
    assert message.text == ANSWER

    span = spans.one(f"chat {MODEL}")
    assert len(spans.all()) == 1
    output = json.loads(span.attributes["gen_ai.output.messages"])
    # langchain-aws keeps no redacted block of a ChatBedrock (InvokeModel) stream.
    dropped = make is _invoke and stream
    thought = THOUGHT if dropped else THOUGHT + "\n\n<redacted_reasoning>"
    assert output[0]["parts"] == [{"type": "reasoning", "content": thought},
                                  {"type": "text", "content": ANSWER}]
    (response,) = [event for event in seen if event.phase == "response"]
    assert (response.output[0].content, response.output[0].reasoning) == (ANSWER, thought)

    attrs = span.attributes
    assert attrs["gen_ai.usage.input_tokens"] == 12 + 1500 + 40
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1500
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 40
    dumped = json.dumps({k: str(v) for k, v in attrs.items()})
    assert _reply().signature not in dumped
    assert base64.b64encode(OPAQUE).decode() not in dumped and "opaque-thinking" not in dumped
