"""A model asking for a tool the agent does not have: LangGraph's ``ToolNode`` answers it with an
error message and runs nothing, and agentguard reports the attempt as the tool call it is."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from opentelemetry.trace import StatusCode
from typing_extensions import TypedDict

import agentguard
from agentguard.findings import Finding
from tests.integrations.langchain.agents import Recorder, ScriptedChatModel, call, get_weather, say

# What ToolNode answers a call of an unknown tool with (its own wording).
NOT_A_TOOL = "Error: delete_everything is not a valid tool, try one of [get_weather]."

POLICY = """
rules:
  - id: NO-DELETE
    description: Deleting everything is not allowed
    severity: high
    action: block
    match: {kind: tool_call, tool: delete_everything}
"""
QUIET = {"runtime_sensor": False, "injection_detection": False}


class _Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _graph(model: ScriptedChatModel) -> Any:
    """A hand-built ReAct graph: a model node, and a ToolNode when the model asks for tools."""
    bound = model.bind_tools([get_weather])

    def think(state: _Chat) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(_Chat)
    builder.add_node("model", think)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(name="support")


def _agent(script: list[Any], kind: str = "create_agent") -> Any:
    model = ScriptedChatModel(script=script)
    if kind == "create_agent":
        return create_agent(model, [get_weather], name="support")
    return _graph(model)


def _run(agent: Any, way: str) -> None:
    graph_input = {"messages": [("user", "clean up")]}
    if way == "invoke":
        agent.invoke(graph_input)
    elif way == "ainvoke":
        asyncio.run(agent.ainvoke(graph_input))
    else:
        for _ in agent.stream(graph_input, stream_mode="updates"):
            pass


@pytest.mark.parametrize("kind", ["create_agent", "tool-node"])
@pytest.mark.parametrize("way", ["invoke", "ainvoke", "stream"])
def test_a_call_of_a_tool_the_agent_lacks_is_a_failed_tool_span(guarded: Any, spans: Any,
                                                                  kind: str, way: str) -> None:
    """The model's call of a tool that does not exist gets an ``execute_tool`` span under the
    agent, with the requested name, call id and arguments, error status, and as its result the
    error message ToolNode tells the model, which the model gets unchanged."""
    guarded()
    recorder = Recorder()
    _run(_agent([say("", call("delete_everything", "d1", path="/", force=True)), recorder],
                kind), way)
    [message] = recorder.tool_messages()
    assert (message.content, message.status, message.tool_call_id) == (NOT_A_TOOL, "error", "d1")
    span = spans.one("execute_tool delete_everything")
    assert span.parent.span_id == spans.one("invoke_agent support").context.span_id
    assert span.attributes["gen_ai.tool.name"] == "delete_everything"
    assert span.attributes["gen_ai.tool.call.id"] == "d1"
    assert json.loads(span.attributes["gen_ai.tool.call.arguments"]) == {"path": "/",
                                                                         "force": True}
    assert span.attributes["gen_ai.tool.call.result"] == NOT_A_TOOL
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"tool error: {NOT_A_TOOL}"
    assert span.attributes["error.type"] == "_OTHER"


def test_known_and_unknown_calls_in_one_step_each_get_their_own_span(guarded: Any,
                                                                     spans: Any) -> None:
    """Of parallel calls in one step, the known tool runs and succeeds while the unknown one is
    a failed span of its own; neither is reported twice."""
    guarded()
    recorder = Recorder()
    _agent([say("", call("get_weather", "w1", city="Oslo"),
                call("delete_everything", "d1", path="/")), recorder]).invoke(
        {"messages": [("user", "go")]})
    statuses = {m.tool_call_id: m.status for m in recorder.tool_messages()}
    assert statuses == {"w1": "success", "d1": "error"}
    tools = sorted(spans.named("execute_tool"), key=lambda s: s.name)
    assert [(s.name, s.status.status_code) for s in tools] == [
        ("execute_tool delete_everything", StatusCode.ERROR),
        ("execute_tool get_weather", StatusCode.UNSET)]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_a_policy_denying_the_name_blocks_the_attempt_with_a_finding(
        guarded: Any, spans: Any, policy_file: Path) -> None:
    """In enforce mode a rule denying the tool by name blocks the call of a tool that does not
    exist like any other: a block finding, the span marked blocked, and the model told which
    rule refused it (the agent carries on)."""
    seen: list[Finding] = []
    guarded(mode="enforce", policy=str(policy_file), on_finding=seen.append, **QUIET)
    recorder = Recorder()
    result = _agent([say("", call("delete_everything", "d1", path="/")), recorder]).invoke(
        {"messages": [("user", "clean up")]})
    assert result["messages"][-1].content == "done"
    [message] = recorder.tool_messages()
    assert message.status == "error" and message.tool_call_id == "d1"
    assert "NO-DELETE" in str(message.content)
    assert [(f.rule_id, f.action, f.tool) for f in seen] == [
        ("NO-DELETE", "block", "delete_everything")]
    span = spans.one("execute_tool delete_everything")
    assert span.attributes["agentguard.decision"] == "block"
    assert span.status.status_code is StatusCode.ERROR


def test_in_monitor_mode_the_attempt_alerts_and_the_model_gets_langgraphs_answer(
        guarded: Any, policy_file: Path) -> None:
    """In monitor mode the same rule alerts, and the model reads ToolNode's own error."""
    seen: list[Finding] = []
    guarded(mode="monitor", policy=str(policy_file), on_finding=seen.append, **QUIET)
    recorder = Recorder()
    _agent([say("", call("delete_everything", "d1", path="/")), recorder]).invoke(
        {"messages": [("user", "clean up")]})
    assert [m.content for m in recorder.tool_messages()] == [NOT_A_TOOL]
    assert [(f.rule_id, f.action) for f in seen] == [("NO-DELETE", "alert")]


@pytest.mark.parametrize("way", ["invoke", "ainvoke"])
def test_with_on_block_raise_the_blocked_attempt_propagates(guarded: Any, policy_file: Path,
                                                            way: str) -> None:
    """With ``on_block="raise"`` a blocked call of an unknown tool stops the agent with
    ``ToolCallBlocked``, as a blocked call of a known one does."""
    guarded(mode="enforce", on_block="raise", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        _run(_agent([say("", call("delete_everything", path="/")), say("unreachable")],
                    "tool-node"), way)
    assert info.value.finding.rule_id == "NO-DELETE"


def test_built_in_rules_judge_the_arguments_of_an_unknown_tool(guarded: Any, spans: Any) -> None:
    """With no policy file, the built-in pack judges the arguments of a call to a tool the agent
    lacks as it would a real one (here a URL aimed at the cloud metadata service)."""
    seen: list[Finding] = []
    guarded(mode="enforce", on_finding=seen.append, **QUIET)
    recorder = Recorder()
    _agent([say("", call("fetch_url", "f1", url="http://169.254.169.254/latest/meta-data/")),
            recorder]).invoke({"messages": [("user", "read it")]})
    [message] = recorder.tool_messages()
    assert message.status == "error" and "AG009" in str(message.content)
    assert [(f.rule_id, f.tool) for f in seen] == [("AG009", "fetch_url")]


def test_uninstrumented_an_unknown_tool_call_is_left_to_langgraph(guarded: Any,
                                                                  spans: Any) -> None:
    """After uninstrument() the call is answered by ToolNode alone and nothing is traced."""
    guarded()
    agentguard.uninstrument()
    recorder = Recorder()
    _agent([say("", call("delete_everything", "d1")), recorder], "tool-node").invoke(
        {"messages": [("user", "clean up")]})
    assert [m.content for m in recorder.tool_messages()] == [NOT_A_TOOL]
    assert spans.all() == []


def test_the_span_says_the_tool_is_unknown_and_a_real_tools_span_does_not(guarded: Any,
                                                                        spans: Any) -> None:
    """The span of a call of a tool the agent lacks carries ``agentguard.tool.unknown``, so
    whoever reads the traces can tell it from a tool that ran; a real tool's span has no such
    attribute."""
    guarded()
    _agent([say("", call("get_weather", "w1", city="Oslo"),
                call("delete_everything", "d1", path="/")), say("done")]).invoke(
        {"messages": [("user", "go")]})
    assert spans.one("execute_tool delete_everything").attributes[
        "agentguard.tool.unknown"] is True
    assert "agentguard.tool.unknown" not in spans.one("execute_tool get_weather").attributes


# One rule for every call of a tool the agent does not have, whatever name the model made up.
UNKNOWN_TOOLS_POLICY = """
rules:
  - id: NO-MADE-UP-TOOLS
    description: The model called a tool the agent does not have
    severity: medium
    action: alert
    match: {kind: tool_call, phase: call}
    when: {field: unknown, equals: true}
"""


def test_a_policy_rule_can_match_every_call_of_a_tool_the_agent_lacks(
        guarded: Any, tmp_path: Path) -> None:
    """The ``unknown`` field of the tool call event lets one rule catch calls of any tool the
    agent does not have, whatever name the model made up, and leave real tools alone."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(UNKNOWN_TOOLS_POLICY)
    seen: list[Finding] = []
    guarded(mode="monitor", policy=str(policy), on_finding=seen.append, **QUIET)
    _agent([say("", call("get_weather", "w1", city="Oslo"), call("wipe_disk", "x1"),
                call("transfer_funds", "t1", amount=5)), say("done")]).invoke(
        {"messages": [("user", "go")]})
    assert sorted((f.rule_id, f.tool) for f in seen) == [
        ("NO-MADE-UP-TOOLS", "transfer_funds"), ("NO-MADE-UP-TOOLS", "wipe_disk")]


def _learn_turns(guarded: Any, profile: Path, turns: int) -> None:
    """Learn ``turns`` turns of an agent that calls its weather tool and, each time, also a
    tool it does not have."""
    guarded(service_name="support", mode="learn", profile=str(profile), **QUIET)
    for n in range(turns):
        with agentguard.conversation(f"c{n}"):
            _agent([say("", call("get_weather", f"w{n}", city="Oslo"),
                        call("delete_everything", f"d{n}", path="/")), say("done")],
                   "tool-node").invoke({"messages": [("user", "weather please")]})
    agentguard.uninstrument()


@pytest.mark.parametrize("way", ["invoke", "ainvoke", "stream"])
def test_learning_leaves_a_tool_the_agent_lacks_out_of_the_profile(guarded: Any,
                                                                    tmp_path: Path,
                                                                    way: str) -> None:
    """A real agent learned in ``learn`` mode: its own tool is in the profile, the tool the model
    asked for but the agent does not have is not (nothing ran), and the profile counts those
    calls as not learned."""
    from agentguard.baseline import load_profile

    profile = tmp_path / "support.json"
    guarded(service_name="support", mode="learn", profile=str(profile), **QUIET)
    with agentguard.conversation("c1"):
        _run(_agent([say("", call("delete_everything", "d1", path="/")),
                     say("", call("get_weather", "w1", city="Oslo")), say("done")],
                    "tool-node"), way)
    agentguard.uninstrument()
    learned = load_profile(str(profile))
    assert sorted(learned.tools) == ["get_weather"]
    assert learned.tools["get_weather"].calls == 1
    assert learned.skipped["unknown_tool"] >= 1
    # Nor is the made-up call a step of the turn: the weather tool is its first call.
    predecessors = learned.tools["get_weather"].predecessors
    assert predecessors is not None and predecessors.values == {"^": 1}


@pytest.mark.parametrize("mode", ["monitor", "enforce"])
def test_after_learning_a_call_of_the_tool_the_agent_lacks_is_a_finding(
        guarded: Any, spans: Any, tmp_path: Path, mode: str) -> None:
    """Against a profile learned from turns that included the same made-up call, calling it
    again is a baseline finding that says what happened (a tool the agent does not have, nothing
    ran): an alert in monitor mode, a block in enforce mode once the tools are mature, answered
    to the model as a block; the agent's own tool passes."""
    profile = tmp_path / "support.json"
    _learn_turns(guarded, profile, 25)
    seen: list[Finding] = []
    guarded(service_name="support", mode=mode, profile=str(profile), on_finding=seen.append,
            **QUIET)
    recorder = Recorder()
    with agentguard.conversation("later"):
        _agent([say("", call("get_weather", "w1", city="Oslo"),
                    call("delete_everything", "d1", path="/")), recorder],
               "tool-node").invoke({"messages": [("user", "weather please")]})
    action = "block" if mode == "enforce" else "alert"
    assert [(f.rule_id, f.action, f.severity, f.tool, f.title) for f in seen] == [
        ("baseline-unknown-tool", action, "high", "delete_everything",
         "the model called 'delete_everything', a tool the agent does not have (nothing ran)")]
    statuses = {m.tool_call_id: m.status for m in recorder.tool_messages()}
    assert statuses == {"w1": "success", "d1": "error"}
    [answer] = [m for m in recorder.tool_messages() if m.tool_call_id == "d1"]
    if mode == "enforce":
        assert "baseline-unknown-tool" in str(answer.content)
    else:
        assert answer.content == NOT_A_TOOL
