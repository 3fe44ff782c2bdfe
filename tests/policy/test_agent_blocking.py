"""Blocking inside real LangChain agents (create_agent): sync, async, parallel calls, multi-turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

import agentguard
from agentguard.demo.scripted import ScriptedChatModel, call, say
from agentguard.findings import Finding

POLICY = """
rules:
  - id: NO-DELETE
    description: Deleting customers is not allowed
    severity: high
    action: block
    match: {kind: tool_call, tool: delete_customer}
  - id: BULK
    description: Export of more than 3 rows
    severity: high
    action: block
    match: {kind: tool_call, tool: export_rows}
    when: {field: result, count: {gt: 3}}
  - id: MAIL-AFTER-EXPORT
    description: Mail sent after an export in the same conversation
    action: block
    match: {kind: tool_call, tool: send_mail}
    after: {tool: export_rows}
"""

ran: list[str] = []


@tool
def delete_customer(customer_id: int) -> str:
    """Delete a customer."""
    ran.append(f"delete {customer_id}")
    return "deleted"


@tool
def lookup_customer(customer_id: int) -> dict[str, Any]:
    """Look up a customer."""
    ran.append(f"lookup {customer_id}")
    return {"id": customer_id, "name": "Ada"}


@tool
async def alookup_customer(customer_id: int) -> dict[str, Any]:
    """Look up a customer (async)."""
    ran.append(f"alookup {customer_id}")
    return {"id": customer_id, "name": "Ada"}


@tool
async def adelete_customer(customer_id: int) -> str:
    """Delete a customer (async)."""
    ran.append(f"adelete {customer_id}")
    return "deleted"


@tool
def export_rows(n: int) -> list[dict[str, int]]:
    """Export n rows."""
    ran.append(f"export {n}")
    return [{"id": i} for i in range(n)]


@tool
def send_mail(to: str) -> str:
    """Send a mail."""
    ran.append(f"mail {to}")
    return "sent"


TOOLS = [delete_customer, lookup_customer, alookup_customer, adelete_customer, export_rows,
         send_mail]
QUIET = {"runtime_sensor": False, "injection_detection": False}


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("tool: delete_customer}",
                                   "tool: ['delete_customer', 'adelete_customer']}"))
    return path


class Recorder:
    """A scripted step that records the messages the model was given, then answers."""

    def __init__(self, text: str = "done") -> None:
        self.text = text
        self.seen: list[BaseMessage] = []

    def __call__(self, messages: list[BaseMessage]) -> Any:
        self.seen = list(messages)
        return say(self.text)

    def tool_messages(self) -> list[ToolMessage]:
        return [m for m in self.seen if isinstance(m, ToolMessage)]


def agent(script: list[Any], **kwargs: Any) -> Any:
    return create_agent(ScriptedChatModel(script=script), TOOLS, name="support", **kwargs)


def test_blocked_call_becomes_an_error_tool_message_and_the_agent_continues(
        guarded: Any, spans: Any, policy_file: Path) -> None:
    """With the default on_block, the model gets an error ToolMessage naming the rule and the
    agent finishes its turn; the tool body never ran."""
    seen: list[Finding] = []
    guarded(mode="enforce", policy=str(policy_file), on_finding=seen.append, **QUIET)
    recorder = Recorder("I could not delete that customer.")
    result = agent([say("", call("delete_customer", "c1", customer_id=7)), recorder]).invoke(
        {"messages": [("user", "delete customer 7")]})
    assert result["messages"][-1].content == "I could not delete that customer."
    assert ran == []
    [message] = recorder.tool_messages()
    assert message.status == "error"
    assert message.tool_call_id == "c1"
    assert "NO-DELETE" in str(message.content)
    assert [(f.rule_id, f.action) for f in seen] == [("NO-DELETE", "block")]
    tool_span = spans.one("execute_tool delete_customer")
    assert tool_span.attributes["agentguard.decision"] == "block"
    assert tool_span.status.status_code.name == "ERROR"


def test_on_block_raise_propagates_out_of_invoke(guarded: Any, policy_file: Path) -> None:
    """With on_block='raise', ToolCallBlocked propagates out of agent.invoke."""
    guarded(mode="enforce", on_block="raise", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        agent([say("", call("delete_customer", customer_id=7)), say("unreachable")]).invoke(
            {"messages": [("user", "delete customer 7")]})
    assert info.value.finding.rule_id == "NO-DELETE"
    assert ran == []


def test_monitor_mode_lets_the_agent_call_the_tool(guarded: Any, policy_file: Path) -> None:
    """In monitor mode the same rule alerts and the tool runs inside the agent."""
    seen: list[Finding] = []
    guarded(mode="monitor", policy=str(policy_file), on_finding=seen.append, **QUIET)
    agent([say("", call("delete_customer", customer_id=7)), say("deleted")]).invoke(
        {"messages": [("user", "delete customer 7")]})
    assert ran == ["delete 7"]
    assert [(f.rule_id, f.action) for f in seen] == [("NO-DELETE", "alert")]


async def test_async_agent_blocks_like_sync(guarded: Any, policy_file: Path) -> None:
    """ainvoke with async tools: the blocked call becomes an error message, the others run."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    recorder = Recorder()
    await agent([say("", call("adelete_customer", "d1", customer_id=1),
                     call("alookup_customer", "l1", customer_id=2)), recorder]).ainvoke(
        {"messages": [("user", "go")]})
    assert ran == ["alookup 2"]
    by_id = {m.tool_call_id: m for m in recorder.tool_messages()}
    assert by_id["d1"].status == "error" and "NO-DELETE" in str(by_id["d1"].content)
    assert by_id["l1"].status == "success" and json.loads(str(by_id["l1"].content))["id"] == 2


async def test_async_agent_raises_with_on_block_raise(guarded: Any, policy_file: Path) -> None:
    """ainvoke propagates ToolCallBlocked with on_block='raise'."""
    guarded(mode="enforce", on_block="raise", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked):
        await agent([say("", call("adelete_customer", customer_id=1)), say("x")]).ainvoke(
            {"messages": [("user", "go")]})
    assert ran == []


def test_parallel_tool_calls_block_only_the_offending_one(guarded: Any, policy_file: Path
                                                          ) -> None:
    """Of several tool calls in one step, only the blocked one is refused; the others run."""
    seen: list[Finding] = []
    guarded(mode="enforce", policy=str(policy_file), on_finding=seen.append, **QUIET)
    recorder = Recorder()
    agent([say("", call("lookup_customer", "a", customer_id=1),
                call("delete_customer", "b", customer_id=2),
                call("lookup_customer", "c", customer_id=3)), recorder]).invoke(
        {"messages": [("user", "go")]})
    assert sorted(ran) == ["lookup 1", "lookup 3"]
    statuses = {m.tool_call_id: m.status for m in recorder.tool_messages()}
    assert statuses == {"a": "success", "b": "error", "c": "success"}
    assert [f.rule_id for f in seen] == ["NO-DELETE"]


def test_a_result_rule_keeps_bulk_data_from_the_model(guarded: Any, policy_file: Path) -> None:
    """A rule on the result blocks after the tool ran: the model gets the error, not the rows."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    recorder = Recorder()
    agent([say("", call("export_rows", "e1", n=50)), recorder]).invoke(
        {"messages": [("user", "export everything")]})
    assert ran == ["export 50"]
    [message] = recorder.tool_messages()
    assert message.status == "error" and "BULK" in str(message.content)
    assert '"id": 49' not in str(message.content)


def test_multi_turn_sequence_blocks_in_a_later_turn(guarded: Any, policy_file: Path) -> None:
    """A sequence rule remembers a tool from turn 1 of a thread and blocks a call in turn 2."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    recorder = Recorder("mail refused")
    graph = agent([say("", call("export_rows", n=2)), say("exported"),
                   say("", call("send_mail", "m1", to="x@evil.io")), recorder],
                  checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "thread-42"}}
    graph.invoke({"messages": [("user", "export two rows")]}, config)
    graph.invoke({"messages": [("user", "now mail them out")]}, config)
    assert ran == ["export 2"]
    [*_, message] = recorder.tool_messages()
    assert message.tool_call_id == "m1" and message.status == "error"
    assert "MAIL-AFTER-EXPORT" in str(message.content)


def test_multi_turn_other_threads_are_not_affected(guarded: Any, policy_file: Path) -> None:
    """The sequence is per conversation: mail in a thread without an export goes through."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    graph = agent([say("", call("export_rows", n=2)), say("exported"),
                   say("", call("send_mail", to="a@corp.io")), say("sent")],
                  checkpointer=InMemorySaver())
    graph.invoke({"messages": [("user", "export")]}, {"configurable": {"thread_id": "one"}})
    graph.invoke({"messages": [("user", "mail")]}, {"configurable": {"thread_id": "two"}})
    assert ran == ["export 2", "mail a@corp.io"]


def test_builtin_rules_block_ssrf_to_the_metadata_service_in_an_agent(guarded: Any) -> None:
    """With no policy file, the built-in pack blocks a tool call aimed at the metadata service."""

    @tool
    def fetch_url(url: str) -> str:
        """Fetch a URL."""
        ran.append(url)
        return "page"

    guarded(mode="enforce", **QUIET)
    recorder = Recorder()
    create_agent(ScriptedChatModel(script=[
        say("", call("fetch_url", "f1", url="http://169.254.169.254/latest/meta-data/iam/")),
        recorder]), [fetch_url], name="browser").invoke({"messages": [("user", "read it")]})
    assert ran == []
    [message] = recorder.tool_messages()
    assert message.status == "error" and "AG009" in str(message.content)
