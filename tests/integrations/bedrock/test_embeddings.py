"""InvokeModel of an embedding model: an ``embeddings`` span, as the GenAI conventions have it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.trace import StatusCode

from tests.bedrock_server import Raw, Reply
from tests.genai import plain

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
COHERE = "cohere.embed-english-v3"
PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/k2x9"


def test_a_titan_embedding_is_an_embeddings_span(guarded: Any, spans: Any, bedrock: Any,
                                                 runtime: Any) -> None:
    """Titan Text Embeddings: span ``embeddings {model}`` with the input, the dimension count
    asked for, the input tokens, and no output, output tokens or finish reasons; the caller
    reads the vector unchanged."""
    seen: list[Any] = []
    guarded(policy=seen.append)
    bedrock.push(Reply(input_tokens=5))
    response = runtime().invoke_model(modelId=TITAN_V2, body=json.dumps(
        {"inputText": "refund policy for damaged goods", "dimensions": 256, "normalize": True,
         "embeddingTypes": ["float", "binary"]}))
    answer = json.loads(response["body"].read())
    assert len(answer["embedding"]) == 256
    assert answer["inputTextTokenCount"] == 5

    span = spans.one(f"embeddings {TITAN_V2}")
    assert span.kind.name == "CLIENT"
    attrs = dict(span.attributes)
    assert plain(attrs.pop("gen_ai.input.messages")) == [
        {"role": "user", "content": "refund policy for damaged goods"}]
    assert attrs.pop("aws.request_id").startswith("req-")
    assert attrs == {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": TITAN_V2, "gen_ai.embeddings.dimension.count": 256,
        "gen_ai.request.encoding_formats": ("float", "binary"),
        "gen_ai.usage.input_tokens": 5, "rpc.system": "aws-api",
        "rpc.service": "Bedrock Runtime", "rpc.method": "InvokeModel",
        "aws.region": "us-east-1", "cloud.region": "us-east-1",
        "http.response.status_code": 200}
    assert spans.named("chat") == []
    [request] = [e for e in seen if e.kind == "model_call"]
    assert request.phase == "request"
    assert [(m.role, m.content) for m in request.messages] == [
        ("user", "refund policy for damaged goods")]


def test_the_dimension_count_comes_from_the_answer_when_the_request_names_none(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """Titan v1 takes no dimensions: the span has the length of the vector it answered with."""
    guarded()
    bedrock.push(Reply(input_tokens=3))
    runtime().invoke_model(modelId=TITAN_V1, body=json.dumps({"inputText": "hello"}))
    span = spans.one(f"embeddings {TITAN_V1}")
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 1536
    assert span.attributes["gen_ai.usage.input_tokens"] == 3


def test_cohere_embed_records_each_text_as_an_input(guarded: Any, spans: Any, bedrock: Any,
                                                    runtime: Any) -> None:
    """Cohere Embed: one input message per text, the encoding formats, the dimension count of
    the vectors answered and the input tokens of the response header."""
    guarded()
    bedrock.push(Reply(input_tokens=9))
    response = runtime().invoke_model(modelId=COHERE, body=json.dumps(
        {"texts": ["first passage", "second passage"], "input_type": "search_document",
         "embedding_types": ["float", "int8"]}))
    answer = json.loads(response["body"].read())
    assert len(answer["embeddings"]["float"]) == 2

    span = spans.one(f"embeddings {COHERE}")
    assert plain(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": "first passage"},
        {"role": "user", "content": "second passage"}]
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 1024
    assert span.attributes["gen_ai.request.encoding_formats"] == ("float", "int8")
    assert span.attributes["gen_ai.usage.input_tokens"] == 9
    assert "gen_ai.output.messages" not in span.attributes


def test_an_embedding_behind_an_inference_profile_is_known_by_its_body(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """An application inference profile ARN names no model; a Titan embedding body (its
    ``dimensions``) still makes the call an embeddings span."""
    guarded()
    bedrock.push(Raw({"embedding": [0.25] * 512, "inputTextTokenCount": 2}))
    body = {"inputText": "hello", "dimensions": 512}
    response = runtime().invoke_model(modelId=PROFILE, body=json.dumps(body))
    assert len(json.loads(response["body"].read())["embedding"]) == 512
    span = spans.one(f"embeddings {PROFILE}")
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 512
    assert span.attributes["gen_ai.usage.input_tokens"] == 2
    assert "gen_ai.output.messages" not in span.attributes


@pytest.mark.parametrize("mode", ["none", "hash"])
def test_embedding_inputs_follow_the_capture_setting(guarded: Any, spans: Any, bedrock: Any,
                                                     runtime: Any, mode: str) -> None:
    """The text sent to an embedding model is content: left out or hashed as the capture
    setting says."""
    guarded(capture_content=mode)
    bedrock.push(Reply())
    runtime().invoke_model(modelId=TITAN_V2, body=json.dumps({"inputText": "private note"}))
    span = spans.one(f"embeddings {TITAN_V2}")
    assert "private note" not in json.dumps(dict(span.attributes))
    assert ("gen_ai.input.messages" in span.attributes) is (mode == "hash")


def test_a_streaming_call_to_an_embedding_model_fails_as_an_embeddings_span(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """Bedrock refuses to stream embeddings: the error reaches the caller and the span is an
    embeddings span with the AWS error code."""
    guarded()
    bedrock.push(Reply())
    with pytest.raises(ClientError, match="ValidationException"):
        runtime().invoke_model_with_response_stream(modelId=TITAN_V2,
                                                     body=json.dumps({"inputText": "x"}))
    span = spans.one(f"embeddings {TITAN_V2}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["rpc.response.status_code"] == "ValidationException"


async def test_async_embeddings_through_aiobotocore(guarded: Any, spans: Any,
                                                    bedrock: Any) -> None:
    """aiobotocore: the same embeddings span, and the caller reads the same vector."""
    from aiobotocore.session import get_session

    from tests.integrations.bedrock.conftest import client_kwargs

    guarded()
    bedrock.push(Reply(input_tokens=4))
    async with get_session().create_client("bedrock-runtime",
                                           **client_kwargs(bedrock.url)) as client:
        response = await client.invoke_model(modelId=COHERE, body=json.dumps(
            {"texts": ["a"], "input_type": "search_query", "output_dimension": 256}))
        answer = json.loads(await response["body"].read())
    assert len(answer["embeddings"][0]) == 256
    span = spans.one(f"embeddings {COHERE}")
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 256
    assert span.attributes["gen_ai.usage.input_tokens"] == 4


def test_a_blocked_embedding_request_is_never_sent(guarded: Any, spans: Any, bedrock: Any,
                                                   runtime: Any) -> None:
    """A policy that refuses the text an agent is about to embed stops the call before it is
    sent: ModelCallBlocked, the embeddings span says block, the server sees nothing."""
    from agentguard import Decision, ModelCallBlocked

    def no_ssn(event: Any) -> Decision | None:
        if event.kind == "model_call" and any("SSN" in m.content for m in event.messages):
            return Decision.block("no SSNs in the vector store", rule_id="no-ssn")
        return None

    guarded(mode="enforce", policy=no_ssn, builtin_rules=False)
    with pytest.raises(ModelCallBlocked):
        runtime().invoke_model(modelId=TITAN_V2,
                               body=json.dumps({"inputText": "SSN 078-05-1120"}))
    assert bedrock.requests == []
    span = spans.one(f"embeddings {TITAN_V2}")
    assert span.attributes["agentguard.decision"] == "block"


def test_langchain_bedrock_embeddings_are_embeddings_spans(guarded: Any, spans: Any,
                                                           bedrock: Any, runtime: Any) -> None:
    """langchain-aws ``BedrockEmbeddings`` (a retriever's indexing and queries): each text is
    one embeddings span, and LangChain gets its vectors."""
    from langchain_aws import BedrockEmbeddings

    guarded()
    bedrock.push(Reply(input_tokens=3), Reply(input_tokens=4), Reply(input_tokens=2))
    embeddings = BedrockEmbeddings(model_id=TITAN_V1, client=runtime(), region_name="us-east-1")
    vectors = embeddings.embed_documents(["refund policy", "shipping times"])
    query = embeddings.embed_query("how long is shipping?")
    assert [len(v) for v in vectors] == [1536, 1536] and len(query) == 1536
    found = spans.named(f"embeddings {TITAN_V1}")
    assert sorted(plain(s.attributes["gen_ai.input.messages"])[0]["content"] for s in found) == [
        "how long is shipping?", "refund policy", "shipping times"]
    assert all(s.attributes["gen_ai.embeddings.dimension.count"] == 1536 for s in found)
    assert spans.named("chat") == []
