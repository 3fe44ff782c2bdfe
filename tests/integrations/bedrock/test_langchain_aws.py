"""langchain-aws on the local Bedrock server: one chat span per model call, never two."""

from __future__ import annotations

import json
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

import agentguard
from tests.bedrock_server import Reply, tool_use

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@tool
def order_status(order_id: str) -> str:
    """Status of an order."""
    return f"order {order_id} shipped"


def _converse_model(client: Any) -> Any:
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(model=MODEL, client=client, region_name="us-east-1",
                               temperature=0.1, max_tokens=200)


def test_create_agent_on_chat_bedrock_converse_has_one_chat_span_per_call(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A LangChain agent on ChatBedrockConverse: invoke_agent → chat, execute_tool, chat; the
    boto3 Converse calls underneath add no chat spans of their own."""
    guarded()
    bedrock.push(Reply("", [tool_use("order_status", {"order_id": "A-1"}, "tu-lc")]),
                 Reply("Order A-1 has shipped."))
    agent = create_agent(_converse_model(runtime()), [order_status], name="shop")
    with agentguard.conversation("lc-1"):
        result = agent.invoke({"messages": [("user", "where is order A-1?")]})
    assert result["messages"][-1].content == "Order A-1 has shipped."

    ordered = sorted(spans.all(), key=lambda s: s.start_time)
    assert [s.name for s in ordered] == ["invoke_agent shop", f"chat {MODEL}",
                                         "execute_tool order_status", f"chat {MODEL}"]
    chat = ordered[1]
    assert chat.attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert chat.attributes["aws.request_id"].startswith("req-")  # from the boto3 call under it
    assert "rpc.method" not in chat.attributes
    tool_span = ordered[2]
    assert tool_span.attributes["gen_ai.tool.call.id"] == "tu-lc"
    # The Converse request really carried the tool spec and, the second time, the tool result.
    second = bedrock.requests[1].json()
    assert second["toolConfig"]["tools"][0]["toolSpec"]["name"] == "order_status"
    assert second["messages"][-1]["content"][0]["toolResult"]["toolUseId"] == "tu-lc"


def test_streaming_chat_bedrock_converse_is_one_span(guarded: Any, spans: Any, bedrock: Any,
                                                     runtime: Any) -> None:
    """``model.stream()`` over ConverseStream is one chat span, the LangChain one."""
    guarded()
    bedrock.push(Reply("streamed from bedrock"))
    chunks = list(_converse_model(runtime()).stream("hello"))
    assert "".join(chunk.text for chunk in chunks) == "streamed from bedrock"
    chat = spans.one(f"chat {MODEL}")
    assert chat.attributes["agentguard.stream"] is True
    assert len(spans.all()) == 1


def test_chat_bedrock_invoke_model_is_one_span(guarded: Any, spans: Any, bedrock: Any,
                                               runtime: Any) -> None:
    """ChatBedrock (InvokeModel with an Anthropic body) also yields a single chat span."""
    from langchain_aws import ChatBedrock

    guarded()
    bedrock.push(Reply("invoked through ChatBedrock"))
    model = ChatBedrock(model_id=MODEL, client=runtime(), region_name="us-east-1",
                        model_kwargs={"max_tokens": 50})
    assert model.invoke("hi").content == "invoked through ChatBedrock"
    assert [s.name for s in spans.all()] == [f"chat {MODEL}"]
    body = json.loads(bedrock.requests[0].body)
    assert body["messages"][0]["role"] == "user"


def test_aws_calls_inside_a_langchain_chat_are_still_cloud_calls(guarded: Any, spans: Any,
                                                                 aws: Any) -> None:
    """Chat suppression silences only Bedrock model calls: other AWS calls stay visible."""
    from agentguard.demo.scripted import ScriptedChatModel, say

    s3 = aws("s3")

    def answer(messages: Any) -> Any:
        s3.list_buckets()  # e.g. a model wrapper that fetches context from S3
        return say("ok")

    guarded()
    ScriptedChatModel(script=[answer]).invoke("hi")
    chat = spans.one("chat scripted-1")
    listed = spans.one("aws.s3.ListBuckets")
    assert listed.parent.span_id == chat.context.span_id
