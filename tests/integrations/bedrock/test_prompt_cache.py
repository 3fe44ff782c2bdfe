"""Prompt-cache token usage through real botocore: ``gen_ai.usage.cache_read.input_tokens`` and
``gen_ai.usage.cache_creation.input_tokens``, and an input count that includes them, as the
GenAI conventions count it (Bedrock's and Anthropic's own input count leaves them out)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bedrock_server import Body, Reply

CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-lite-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
USER = [{"role": "user", "content": [{"text": "Summarise the handbook."},
                                     {"cachePoint": {"type": "default"}}]}]
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
                             "messages": [{"role": "user", "content": "Summarise the handbook."}]})
NOVA_BODY = json.dumps({"schemaVersion": "messages-v1", "messages": USER})
USAGE = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
         "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens")


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


CALLS = {
    "converse": lambda client, model: client.converse(modelId=model, messages=USER),
    "converse_stream": lambda client, model: _drain(
        client.converse_stream(modelId=model, messages=USER)["stream"]),
    "invoke_model": lambda client, model: client.invoke_model(
        modelId=model, body=ANTHROPIC_BODY if model == CLAUDE else NOVA_BODY)["body"].read(),
    "invoke_model_stream": lambda client, model: _drain(
        client.invoke_model_with_response_stream(
            modelId=model, body=ANTHROPIC_BODY if model == CLAUDE else NOVA_BODY)["body"]),
}


def _usage(span: Any) -> dict[str, Any]:
    return {key: span.attributes[key] for key in USAGE if key in span.attributes}


@pytest.mark.parametrize("model", [CLAUDE, NOVA])
@pytest.mark.parametrize("api", sorted(CALLS))
def test_cache_reads_and_writes_are_recorded_and_counted_in(
        api: str, model: str, guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """Tokens read from and written to the prompt cache are recorded apart and included in the
    input count, whichever call and body shape reported them."""
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event) if event.kind == "model_call" else None)
    bedrock.push(Reply("The handbook says...", input_tokens=12, output_tokens=40,
                       cache_read_tokens=2048, cache_write_tokens=300))
    CALLS[api](runtime(), model)
    assert _usage(spans.one(f"chat {model}")) == {
        "gen_ai.usage.input_tokens": 12 + 2048 + 300, "gen_ai.usage.output_tokens": 40,
        "gen_ai.usage.cache_read.input_tokens": 2048,
        "gen_ai.usage.cache_creation.input_tokens": 300}
    (response,) = [event for event in seen if event.phase == "response"]
    assert response.input_tokens == 12 + 2048 + 300


@pytest.mark.parametrize("api", sorted(CALLS))
def test_no_cache_attributes_without_caching(api: str, guarded: Any, spans: Any, bedrock: Any,
                                             runtime: Any) -> None:
    """A call that used no prompt cache has no cache attributes and its input count as is."""
    guarded()
    bedrock.push(Reply("ok", input_tokens=12, output_tokens=3))
    CALLS[api](runtime(), CLAUDE)
    assert _usage(spans.one(f"chat {CLAUDE}")) == {"gen_ai.usage.input_tokens": 12,
                                                   "gen_ai.usage.output_tokens": 3}


def test_a_cache_hit_with_no_new_input(guarded: Any, spans: Any, bedrock: Any,
                                       runtime: Any) -> None:
    """A request read whole from the cache (no uncached input) counts its cached tokens."""
    guarded()
    bedrock.push(Reply("ok", input_tokens=0, output_tokens=3, cache_read_tokens=900))
    CALLS["converse"](runtime(), CLAUDE)
    assert _usage(spans.one(f"chat {CLAUDE}")) == {
        "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 3,
        "gen_ai.usage.cache_read.input_tokens": 900,
        "gen_ai.usage.cache_creation.input_tokens": 0}


def test_cache_counts_from_invoke_model_headers(guarded: Any, spans: Any, bedrock: Any,
                                                runtime: Any) -> None:
    """A body that carries no usage: the counts come from InvokeModel's headers, cache ones
    included."""
    guarded()
    bedrock.push(Body(json.dumps({"outputs": [{"text": "ok", "stop_reason": "stop"}]}).encode(),
                      headers={"X-Amzn-Bedrock-Input-Token-Count": "5",
                               "X-Amzn-Bedrock-Output-Token-Count": "2",
                               "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": "700",
                               "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": "60"}))
    runtime().invoke_model(modelId=MISTRAL, body=json.dumps({"prompt": "<s>[INST] hi [/INST]"})
                           )["body"].read()
    assert _usage(spans.one(f"chat {MISTRAL}")) == {
        "gen_ai.usage.input_tokens": 765, "gen_ai.usage.output_tokens": 2,
        "gen_ai.usage.cache_read.input_tokens": 700,
        "gen_ai.usage.cache_creation.input_tokens": 60}


def test_cache_counts_that_are_not_counts_are_left_out(guarded: Any, spans: Any, bedrock: Any,
                                                      runtime: Any) -> None:
    """Cache counts of the wrong type, or beyond what a span can carry, in an InvokeModel body
    are neither recorded nor added to the input count."""
    guarded()
    bedrock.push(Body(json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE,
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 1, "cache_read_input_tokens": "lots",
                  "cache_creation_input_tokens": 2**70}}).encode()))
    runtime().invoke_model(modelId=CLAUDE, body=ANTHROPIC_BODY)["body"].read()
    assert _usage(spans.one(f"chat {CLAUDE}")) == {"gen_ai.usage.input_tokens": 4,
                                                   "gen_ai.usage.output_tokens": 1}
