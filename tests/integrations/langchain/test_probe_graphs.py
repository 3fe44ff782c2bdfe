"""LangGraph and LangChain run the ways real applications run them: concurrent invocations, streams
handed to a web server, cancelled tasks, tools answering through ``Command`` or reporting their own
errors."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, StructuredTool, ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import START, StateGraph
from langgraph.types import Command
from opentelemetry import trace
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags
from typing_extensions import TypedDict

import agentguard
from tests.integrations.langchain.agents import ScriptedChatModel, call, say, tools

# More records than the built-in bulk-data rule (AG018) lets through in a tool result.
_RECORDS = [{"id": i, "email": f"user{i}@corp.example"} for i in range(1500)]


@tool
def export_command(table: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
    """Export a table, answering through a state update."""
    return Command(update={"messages": [ToolMessage(_RECORDS, tool_call_id=tool_call_id)],
                           "exported": table})


@tool
def export_list(table: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> list[Any]:
    """Export a table, answering with a list of state updates."""
    return [Command(update={"messages": [ToolMessage(_RECORDS, tool_call_id=tool_call_id)]})]


@pytest.mark.parametrize("export", [export_command, export_list], ids=["command", "list"])
def test_a_tool_answering_through_a_command_is_judged_on_what_the_model_would_read(
        guarded: Any, spans: Any, export: Any) -> None:
    """A tool whose answer is the tool message of a LangGraph ``Command`` has that message's
    content recorded and judged as its result: bulk data in it is blocked in enforce mode as it is
    for a tool returning the records, and the model reads the block instead of the records."""
    found: list[Any] = []
    guarded(mode="enforce", on_finding=found.append)
    agent = create_agent(ScriptedChatModel(script=[say("", call(export.name, table="users")),
                                                   say("ok")]), [export], name="exporter")
    result = agent.invoke({"messages": [("user", "export users")]})
    (answer,) = [m for m in result["messages"] if m.type == "tool"]
    assert answer.status == "error"
    assert "[AG018]" in answer.content and "user1@corp.example" not in str(answer.content)
    assert [f.rule_id for f in found] == ["AG018"]
    span = spans.one(f"execute_tool {export.name}")
    assert span.attributes["gen_ai.tool.call.result"].startswith(
        '[{"id":0,"email":"user0@corp.example"},')


def test_a_command_result_is_recorded_as_the_tool_message_content(guarded: Any, spans: Any
                                                                    ) -> None:
    """The recorded result of a ``Command``-returning tool is the text the model reads, not the
    serialised ``Command``."""

    @tool
    def rename(who: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
        """Rename the user."""
        return Command(update={"messages": [ToolMessage(f"renamed to {who}",
                                                        tool_call_id=tool_call_id)]})

    guarded()
    agent = create_agent(ScriptedChatModel(script=[say("", call("rename", who="bob")),
                                                   say("done")]), [rename])
    agent.invoke({"messages": [("user", "call me bob")]})
    span = spans.one("execute_tool rename")
    assert span.attributes["gen_ai.tool.call.result"] == "renamed to bob"
    assert span.status.status_code is StatusCode.UNSET


def _refuse(order: str) -> str:
    raise ToolException(f"order {order} is locked")


def test_a_tool_error_langchain_hands_to_the_model_marks_the_tool_span_failed(
        guarded: Any, spans: Any) -> None:
    """A ``ToolException`` the tool's ``handle_tool_error`` turns into an error message for the
    model leaves the tool span with the exception's error status and type and the message as its
    result, while the agent carries on."""
    refund = StructuredTool.from_function(_refuse, name="refund", description="Refund an order.",
                                          handle_tool_error=True)
    guarded()
    agent = create_agent(ScriptedChatModel(script=[say("", call("refund", order="A7")),
                                                   say("Sorry.")]), [refund])
    result = agent.invoke({"messages": [("user", "refund A7")]})
    assert result["messages"][-1].content == "Sorry."
    span = spans.one("execute_tool refund")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ToolException: order A7 is locked"
    assert span.attributes["error.type"] == "ToolException"
    assert span.attributes["gen_ai.tool.call.result"] == "order A7 is locked"
    assert spans.one("invoke_agent LangGraph").status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_asked_for_in_a_conversation_and_read_after_it_stays_in_it(
        guarded: Any, spans: Any, mode: str) -> None:
    """A graph stream asked for inside ``agentguard.conversation()`` and a request span, and read
    after both ended (a web handler returning a streaming response), is that conversation's turn
    and a child of the request span."""
    guarded()
    agent = create_agent(ScriptedChatModel(script=[say("", call("get_weather", city="Oslo")),
                                                   say("Sunny.")]), tools, name="support")
    # The web framework's request span, as a remote caller's traceparent makes it.
    request = trace.NonRecordingSpan(SpanContext(0x5EB, 0xAB, is_remote=True,
                                                 trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    with trace.use_span(request), agentguard.conversation("ticket-5", user="alice"):
        if mode == "sync":
            stream: Any = agent.stream({"messages": [("user", "weather?")]},
                                       stream_mode="updates")
        else:
            stream = agent.astream({"messages": [("user", "weather?")]}, stream_mode="updates")
    if mode == "sync":
        chunks = list(stream)
    else:
        async def read() -> list[Any]:
            return [chunk async for chunk in stream]
        chunks = asyncio.run(read())
    assert chunks
    root = spans.one("invoke_agent support")
    assert (root.context.trace_id, root.parent.span_id) == (0x5EB, 0xAB)
    for span in spans.all():
        if span.name.startswith(("invoke_agent", "chat", "execute_tool")):
            assert span.attributes["gen_ai.conversation.id"] == "ticket-5"
            assert span.attributes["agentguard.turn.index"] == 1
    assert root.attributes["agentguard.conversation.user"] == "alice"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_chat_stream_asked_for_in_a_conversation_and_read_after_it_stays_in_it(
        guarded: Any, spans: Any, mode: str) -> None:
    """A chat model stream asked for inside ``agentguard.conversation()`` and read after the block
    starts that conversation's turn, as a stream read inside the block does."""
    guarded()
    model = ScriptedChatModel(script=[say("Hello there.")])
    with agentguard.conversation("chat-3"):
        stream: Any = model.stream("hi") if mode == "sync" else model.astream("hi")
    if mode == "sync":
        text = "".join(str(c.content) for c in stream)
    else:
        async def read() -> str:
            return "".join([str(c.content) async for c in stream])
        text = asyncio.run(read())
    assert text == "Hello there."
    span = spans.one("chat scripted-1")
    assert span.attributes["gen_ai.conversation.id"] == "chat-3"
    assert span.attributes["agentguard.turn.index"] == 1
    assert span.attributes["agentguard.turn.text"] == "hi"


async def test_a_cancelled_ainvoke_ends_the_agent_span_abandoned_not_failed(
        guarded: Any, spans: Any) -> None:
    """An ``ainvoke`` whose task is cancelled while the graph runs (a timeout, a client that went
    away) raises ``CancelledError`` unchanged and ends the agent span once, abandoned, without an
    error status."""
    started = asyncio.Event()

    @tool
    async def slow_lookup(city: str) -> str:
        """A lookup that takes a long time."""
        started.set()
        await asyncio.sleep(60)
        return city

    guarded()
    agent = create_agent(ScriptedChatModel(script=[say("", call("slow_lookup", city="Oslo")),
                                                   say("late")]), [slow_lookup], name="slow")
    task = asyncio.create_task(agent.ainvoke({"messages": [("user", "go")]}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    root = spans.one("invoke_agent slow")
    assert root.attributes["agentguard.stream.abandoned"] is True
    assert root.status.status_code is StatusCode.UNSET
    assert not any(e.name == "exception" for e in root.events)
    tool_span = spans.one("execute_tool slow_lookup")
    assert tool_span.end_time is not None
    # The tool was cancelled with its agent: marked so, not counted as a tool failure.
    assert tool_span.attributes["agentguard.cancelled"] is True
    assert tool_span.status.status_code is StatusCode.UNSET


def _by_user_text(messages: list[BaseMessage]) -> Any:
    text = str(messages[0].content)
    if messages[-1].type == "human":
        return say("", call("get_weather", city=text), call("lookup_customer", customer_id=7))
    return say(f"done {text}")


def _check_no_cross_talk(spans: Any, expected: int) -> None:
    everything = spans.all()
    by_id = {s.context.span_id: s for s in everything}
    roots = [s for s in everything if s.name.startswith("invoke_agent")]
    assert len(roots) == expected
    assert all(root.parent is None for root in roots)
    for span in everything:
        if span in roots:
            continue
        root = by_id[span.parent.span_id]
        conversation = root.attributes["gen_ai.conversation.id"]
        assert span.attributes["gen_ai.conversation.id"] == conversation
        assert span.attributes["agentguard.turn.index"] == 1
        if span.name == "execute_tool get_weather":
            city = json.loads(span.attributes["gen_ai.tool.call.arguments"])["city"]
            assert conversation == f"thread-{city}"


def test_concurrent_invocations_in_threads_keep_their_own_spans_and_threads(
        guarded: Any, spans: Any) -> None:
    """Invocations of one agent on many threads at once, each running tools in parallel, keep
    every span under its own invocation and in its own thread id's conversation."""
    guarded()
    agent = create_agent(ScriptedChatModel(script=[_by_user_text], loop=True), tools,
                         checkpointer=InMemorySaver())

    def run(i: int) -> None:
        agent.invoke({"messages": [("user", f"c{i}")]},
                     {"configurable": {"thread_id": f"thread-c{i}"}})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(run, range(12)))
    _check_no_cross_talk(spans, 12)


async def test_concurrent_ainvokes_keep_their_own_spans_and_threads(guarded: Any, spans: Any
                                                                     ) -> None:
    """``asyncio.gather`` of many ``ainvoke`` calls, and ``abatch``, keep every span under its own
    invocation and in its own thread id's conversation."""
    guarded()
    agent = create_agent(ScriptedChatModel(script=[_by_user_text], loop=True), tools,
                         checkpointer=InMemorySaver())
    await asyncio.gather(*[
        agent.ainvoke({"messages": [("user", f"c{i}")]},
                      {"configurable": {"thread_id": f"thread-c{i}"}}) for i in range(10)])
    await agent.abatch([{"messages": [("user", f"c{i}")]} for i in range(10, 14)],
                       [{"configurable": {"thread_id": f"thread-c{i}"}} for i in range(10, 14)])
    _check_no_cross_talk(spans, 14)


class _Loop(TypedDict):
    steps: int


def test_a_recursion_limit_error_propagates_unchanged_and_fails_the_span(
        guarded: Any, spans: Any) -> None:
    """A graph that hits its recursion limit raises LangGraph's own ``GraphRecursionError`` and
    its span ends once with that error."""
    builder = StateGraph(_Loop)
    builder.add_node("again", lambda state: {"steps": state["steps"] + 1})
    builder.add_edge(START, "again")
    builder.add_edge("again", "again")
    graph = builder.compile(name="looping")
    guarded()
    with pytest.raises(GraphRecursionError):
        graph.invoke({"steps": 0}, {"recursion_limit": 3})
    span = spans.one("invoke_agent looping")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "GraphRecursionError"
