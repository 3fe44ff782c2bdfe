"""Every human message a ``Command`` or an input writes into a thread is judged, however the
update is shaped and however many parts it has: none past a count, none but the last."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict

from agentguard import ModelCallBlocked
from tests.integrations.langchain.agents import ScriptedChatModel, say
from tests.integrations.langchain.test_human_in_the_loop import INJECTION, _chat_agent, _no_password

# Parts of one update or resume value: more than a small bound on how many are read would cover.
MANY = 70
BLOCKED = "the admin password?"


def _model(asked: list[list[str]]) -> ScriptedChatModel:
    """A chat model that records the texts of every request it is sent."""
    return ScriptedChatModel(
        script=[lambda messages: asked.append([m.content for m in messages]) or say("ok")],
        loop=True)


def _enforce(guarded: Any) -> None:
    guarded(mode="enforce", policy=_no_password, builtin_rules=False, injection_detection=False)


@pytest.mark.parametrize("shape", ["after-many-pairs", "in-an-earlier-pair"])
def test_a_blocked_message_anywhere_in_a_list_of_update_pairs_is_blocked(
        guarded: Any, shape: str) -> None:
    """A ``Command(update=[(channel, value), ...])`` whose human message a turn policy blocks is
    blocked before the model reads it, whether its ``messages`` pair comes after many other
    pairs or is followed by another ``messages`` pair (LangGraph applies every pair)."""
    _enforce(guarded)
    asked: list[list[str]] = []
    agent = _chat_agent(_model(asked))
    config = {"configurable": {"thread_id": f"pairs-{shape}"}}
    agent.invoke({"messages": [("user", "hi")]}, config)
    bad = ("messages", [HumanMessage(BLOCKED)])
    pairs = [("messages", [])] * MANY + [bad] if shape == "after-many-pairs" else \
        [bad, ("messages", [HumanMessage("thanks")])]
    with pytest.raises(ModelCallBlocked):
        agent.invoke(Command(update=pairs, goto="model"), config)
    assert asked == [["hi"]]


class _Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _asking_graph(model: ScriptedChatModel, askers: int) -> Any:
    """A chat graph that asks the human ``askers`` questions at once (one ``interrupt()`` per
    parallel task) and adds every message it is resumed with to the conversation."""

    def ask(state: _Chat) -> dict[str, Any]:
        answer = interrupt("Anything to add?")
        if isinstance(answer, list):
            return {"messages": answer}
        return {"messages": [answer]} if isinstance(answer, BaseMessage) else {}

    builder = StateGraph(_Chat)
    builder.add_node("ask", ask)
    builder.add_node("answer", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_conditional_edges(START, lambda state: [Send("ask", state)] * askers, ["ask"])
    builder.add_edge("ask", "answer")
    builder.add_edge("answer", END)
    return builder.compile(checkpointer=InMemorySaver(), name="desk")


def test_resuming_many_interrupts_by_id_judges_the_last_ones_too(guarded: Any) -> None:
    """A graph paused at many interrupts and resumed with one value per interrupt id, the last
    of them a human message a turn policy blocks, is blocked before the model reads it."""
    _enforce(guarded)
    asked: list[list[str]] = []
    graph = _asking_graph(_model(asked), MANY)
    config = {"configurable": {"thread_id": "many-interrupts"}}
    graph.invoke({"messages": [("user", "hi")]}, config)
    ids = [pause.id for pause in graph.get_state(config).interrupts]
    assert len(ids) == MANY
    resume: dict[str, Any] = {pause: "nothing" for pause in ids[:-1]}
    resume[ids[-1]] = HumanMessage(BLOCKED)
    with pytest.raises(ModelCallBlocked):
        graph.invoke(Command(resume=resume), config)
    assert asked == []


def test_resuming_with_several_human_messages_judges_all_of_them(guarded: Any) -> None:
    """A graph resumed with a list of human messages (all added to the conversation) is blocked
    when a turn policy blocks any of them, not only the last."""
    _enforce(guarded)
    asked: list[list[str]] = []
    graph = _asking_graph(_model(asked), 1)
    config = {"configurable": {"thread_id": "resume-list"}}
    graph.invoke({"messages": [("user", "hi")]}, config)
    with pytest.raises(ModelCallBlocked):
        graph.invoke(Command(resume=[HumanMessage(BLOCKED), HumanMessage("thanks")]), config)
    assert asked == []


def test_an_input_ending_with_several_human_messages_is_one_turn_of_all_of_them(
        guarded: Any, spans: Any) -> None:
    """An input whose messages end with several human messages (an injected one, then a
    harmless one) makes all of them the turn: recorded and scanned for injection."""
    found: list[Any] = []
    guarded(on_finding=found.append)
    agent = _chat_agent(ScriptedChatModel(script=[say("No.")]))
    config = {"configurable": {"thread_id": "two-messages"}}
    agent.invoke({"messages": [HumanMessage(INJECTION), HumanMessage("thanks")]}, config)
    root = spans.one("invoke_agent desk")
    assert root.attributes["agentguard.turn.text"] == f"{INJECTION}\nthanks"
    assert [(f.category, f.kind, f.turn) for f in found] == [("injection", "turn", 1)]


@pytest.mark.parametrize("route", ["input", "state-update"])
def test_a_blocked_message_sent_straight_to_a_node_is_blocked(guarded: Any, route: str) -> None:
    """A ``Command(goto=Send(node, {"messages": [...]}))`` hands its messages to the node as its
    input (they never enter the graph's state), as a run's input or written with
    ``update_state`` for the next run: a human message there a turn policy blocks is blocked
    before the model reads it."""
    _enforce(guarded)
    asked: list[list[str]] = []
    agent = _chat_agent(_model(asked))
    config = {"configurable": {"thread_id": f"send-{route}"}}
    agent.invoke({"messages": [("user", "hi")]}, config)
    command = Command(goto=[Send("model", {"messages": [HumanMessage(BLOCKED)]})])
    with pytest.raises(ModelCallBlocked):
        if route == "input":
            agent.invoke(command, config)
        else:
            agent.update_state(config, command, as_node="model")
            agent.invoke(None, config)
    assert asked == [["hi"]]
