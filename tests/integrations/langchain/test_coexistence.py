"""agentguard next to OpenInference's and OpenLLMetry's LangChain instrumentors, in one process.

Every instrumentor patches process-global state (and OpenLLMetry cannot be fully undone), so each
scenario runs in its own interpreter: a script drives a real ``create_agent`` agent with the
scripted chat model and prints what the agent answered and which spans each side exported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCENARIO = r'''
import asyncio
import json
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentguard

peer, order = sys.argv[1], sys.argv[2]
ours = InMemorySpanExporter()
theirs = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(theirs))

if peer == "openinference":
    from openinference.instrumentation.langchain import LangChainInstrumentor as Peer
elif peer == "openllmetry":
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor as Peer
else:
    Peer = None
instrumentor = Peer() if Peer is not None else None


def instrument_agentguard():
    agentguard.instrument(service_name="support-agent", exporter=ours)


def instrument_peer():
    instrumentor.instrument(tracer_provider=provider)


if order == "agentguard-first":
    instrument_agentguard()
    instrument_peer()
    teardown = [("peer", instrumentor.uninstrument), ("agentguard", agentguard.uninstrument)]
elif order == "peer-first":
    instrument_peer()
    instrument_agentguard()
    teardown = [("agentguard", agentguard.uninstrument), ("peer", instrumentor.uninstrument)]
else:
    teardown = []

# Looked up only now, after every instrumentor had its chance to patch them.
import langchain.agents as agents
from langchain_core.tools import tool

from agentguard.demo.scripted import ScriptedChatModel, call, say


@tool
def lookup_customer(customer_id: int) -> dict:
    """Look up a customer record."""
    return {"id": customer_id, "name": "Ada Lovelace", "tier": "gold"}


def spans(exporter):
    out = []
    for s in exporter.get_finished_spans():
        out.append({
            "name": s.name,
            "scope": s.instrumentation_scope.name if s.instrumentation_scope else None,
            "trace_id": format(s.context.trace_id, "032x"),
            "span_id": format(s.context.span_id, "016x"),
            "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
            "start": s.start_time,
            "end": s.end_time,
            "status": s.status.status_code.name,
            "attributes": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in s.attributes.items()},
        })
    return out


def transcript(messages):
    return [
        [m.type, m.content, getattr(m, "tool_call_id", None),
         [[c["name"], c["args"], c["id"]] for c in getattr(m, "tool_calls", None) or []]]
        for m in messages
    ]


def run(conversation, asynchronous=False):
    model = ScriptedChatModel(script=[
        say("", call("lookup_customer", "call_42", customer_id=42)),
        say("Ada Lovelace is a gold customer."),
    ])
    agent = agents.create_agent(model, [lookup_customer], name="support")
    agentguard.flush()
    ours.clear()
    theirs.clear()
    question = {"messages": [("user", "Who is customer 42?")]}
    with agentguard.conversation(conversation, user="alice"):
        if asynchronous:
            result = asyncio.run(agent.ainvoke(question))
        else:
            result = agent.invoke(question)
    agentguard.flush()
    return {
        "answer": result["messages"][-1].content,
        "transcript": transcript(result["messages"]),
        "agentguard": spans(ours),
        "peer": spans(theirs),
    }


runs = {"sync": run("ticket-sync"), "async": run("ticket-async", asynchronous=True)}
stats = agentguard.stats()
for (_, uninstrument), label in zip(teardown, ("first removed", "both removed")):
    uninstrument()
    runs[label] = run("ticket-" + label.replace(" ", "-"))
print(json.dumps({"runs": runs, "removed_first": teardown[0][0] if teardown else None,
                  "internal_errors": stats.get("internal_errors", {}),
                  "spans_dropped": stats.get("spans_dropped", 0)}))
'''

PEERS = {
    "openinference": "openinference.instrumentation.langchain",
    "openllmetry": "opentelemetry.instrumentation.langchain",
}
ORDERS = ("agentguard-first", "peer-first")
SCENARIOS = [(peer, order) for peer in PEERS for order in ORDERS]

ANSWER = "Ada Lovelace is a gold customer."
AGENTGUARD_SPANS = ["chat scripted-1", "chat scripted-1", "execute_tool lookup_customer",
                    "invoke_agent support"]


def _available(peer: str) -> bool:
    try:
        return importlib.util.find_spec(PEERS[peer]) is not None
    except ModuleNotFoundError:
        return False


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGENTGUARD_", "OTEL_", "TRACELOOP_"))}
    env["TRACELOOP_TELEMETRY"] = "false"
    return env


class _Scenarios:
    """Starts every scenario's interpreter at once and collects each result on first use."""

    def __init__(self, directory: Path) -> None:
        script = directory / "scenario.py"
        script.write_text(SCENARIO, encoding="utf-8")
        self.results: dict[tuple[str, str], dict[str, Any]] = {}
        self.procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
        for key in [("none", "plain"), *SCENARIOS]:
            if key[0] != "none" and not _available(key[0]):
                continue
            self.procs[key] = subprocess.Popen(
                [sys.executable, str(script), *key], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=_env(), cwd=directory,
            )

    def get(self, peer: str, order: str) -> dict[str, Any]:
        key = (peer, order)
        if key not in self.results:
            proc = self.procs[key]
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"scenario {key} failed:\n{stderr}"
            result = json.loads(stdout.strip().splitlines()[-1])
            result["stderr"] = stderr
            self.results[key] = result
        return self.results[key]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Scenarios]:
    runner = _Scenarios(tmp_path_factory.mktemp("coexistence"))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def plain(scenarios: _Scenarios) -> dict[str, Any]:
    return scenarios.get("none", "plain")


@pytest.fixture(params=SCENARIOS, ids=[f"{peer}-{order}" for peer, order in SCENARIOS])
def scenario(request: pytest.FixtureRequest, scenarios: _Scenarios) -> dict[str, Any]:
    peer, order = request.param
    if not _available(peer):
        pytest.skip(f"{PEERS[peer]} is not installed")
    return {"peer": peer, "order": order, **scenarios.get(peer, order)}


# -- helpers -----------------------------------------------------------------------------------------

def _names(spans: list[dict[str, Any]]) -> list[str]:
    return sorted(s["name"] for s in spans)


def _one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, f"expected one {name!r}, got {_names(spans)}"
    return found[0]


def _assert_agentguard_complete(run: dict[str, Any], conversation: str) -> None:
    spans = run["agentguard"]
    assert _names(spans) == AGENTGUARD_SPANS
    assert {s["scope"] for s in spans} == {"agentguard"}
    assert len({s["trace_id"] for s in spans}) == 1
    for span in spans:
        assert span["status"] != "ERROR", span
        assert span["end"] >= span["start"]
        assert span["attributes"]["gen_ai.conversation.id"] == conversation
        assert span["attributes"]["agentguard.turn.index"] == 1
    tool = _one(spans, "execute_tool lookup_customer")
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call_42"
    assert tool["attributes"]["gen_ai.tool.call.arguments"] == '{"customer_id":42}'
    assert json.loads(tool["attributes"]["gen_ai.tool.call.result"]) == {
        "id": 42, "name": "Ada Lovelace", "tier": "gold"}
    chats = [s for s in spans if s["name"] == "chat scripted-1"]
    assert sorted(c["attributes"]["gen_ai.response.finish_reasons"][0] for c in chats) == [
        "stop", "tool_calls"]


def _assert_nested_in_combined_trace(run: dict[str, Any]) -> None:
    ours = run["agentguard"]
    combined = {s["span_id"]: s for s in [*ours, *run["peer"]]}
    agent = _one(ours, "invoke_agent support")
    for span in ours:
        assert span["parent_id"] is None or span["parent_id"] in combined, (
            f"{span['name']} has a parent no exporter saw")
        if span is agent:
            continue
        ancestors = []
        parent = span["parent_id"]
        while parent is not None:
            ancestors.append(parent)
            parent = combined[parent]["parent_id"] if parent in combined else None
        assert agent["span_id"] in ancestors, f"{span['name']} is outside invoke_agent"
        assert agent["start"] <= span["start"] <= span["end"] <= agent["end"]


def _assert_peer_traced(run: dict[str, Any]) -> None:
    theirs = run["peer"]
    assert theirs, "the other instrumentor exported no spans"
    assert "agentguard" not in {s["scope"] for s in theirs}
    tools = [s for s in theirs
             if "lookup_customer" in (s["attributes"].get("tool.name"),
                                      s["attributes"].get("gen_ai.tool.name"))]
    assert len(tools) == 1, _names(theirs)
    assert "Ada Lovelace" in json.dumps(tools[0]["attributes"])
    chats = [s for s in theirs
             if s["attributes"].get("openinference.span.kind") == "LLM"
             or s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 2, _names(theirs)


# -- tests -------------------------------------------------------------------------------------------

def test_agent_answers_the_same_as_without_instrumentation(
    scenario: dict[str, Any], plain: dict[str, Any]
) -> None:
    """With both instrumentors on, the agent's messages and final answer are exactly as without."""
    assert plain["runs"]["sync"]["answer"] == ANSWER
    assert plain["runs"]["sync"]["agentguard"] == plain["runs"]["sync"]["peer"] == []
    for mode in ("sync", "async"):
        assert scenario["runs"][mode]["answer"] == ANSWER
        assert scenario["runs"][mode]["transcript"] == plain["runs"][mode]["transcript"]


def test_agentguard_spans_are_complete(scenario: dict[str, Any]) -> None:
    """agentguard still exports its invoke_agent, both chat and the execute_tool span, fully tagged."""
    _assert_agentguard_complete(scenario["runs"]["sync"], "ticket-sync")
    _assert_agentguard_complete(scenario["runs"]["async"], "ticket-async")


def test_agentguard_spans_nest_under_its_agent_span(scenario: dict[str, Any]) -> None:
    """Every agentguard chat and tool span lies inside agentguard's invoke_agent span, in one trace."""
    for mode in ("sync", "async"):
        _assert_nested_in_combined_trace(scenario["runs"][mode])


def test_agentguard_export_alone_forms_a_tree(scenario: dict[str, Any]) -> None:
    """agentguard's own spans name agentguard's invoke_agent span as the parent of its children."""
    for mode in ("sync", "async"):
        spans = scenario["runs"][mode]["agentguard"]
        agent = _one(spans, "invoke_agent support")
        for span in spans:
            if span is not agent:
                assert span["parent_id"] == agent["span_id"], span["name"]


def test_other_instrumentor_still_traces(scenario: dict[str, Any]) -> None:
    """The other instrumentor still exports its own tool and model spans, in agentguard's trace."""
    for mode in ("sync", "async"):
        run = scenario["runs"][mode]
        _assert_peer_traced(run)
        traces = {s["trace_id"] for s in run["peer"]} | {s["trace_id"] for s in run["agentguard"]}
        assert len(traces) == 1


def test_removing_one_instrumentor_leaves_the_other_working(scenario: dict[str, Any]) -> None:
    """Uninstrumenting the last one added leaves the first one tracing and the agent unchanged."""
    run = scenario["runs"]["first removed"]
    assert run["answer"] == ANSWER
    if scenario["removed_first"] == "peer":
        _assert_agentguard_complete(run, "ticket-first-removed")
    else:
        assert run["agentguard"] == []
        _assert_peer_traced(run)


def test_removing_both_stops_agentguard_and_keeps_the_agent_working(
    scenario: dict[str, Any]
) -> None:
    """After both are uninstrumented the agent still answers and agentguard exports nothing."""
    run = scenario["runs"]["both removed"]
    assert run["answer"] == ANSWER
    assert run["transcript"] == scenario["runs"]["sync"]["transcript"]
    assert run["agentguard"] == []


def test_no_internal_errors_or_context_warnings(scenario: dict[str, Any]) -> None:
    """Side by side, agentguard contains no internal error, drops no span and unbalances no context."""
    assert scenario["internal_errors"] == {}
    assert scenario["spans_dropped"] == 0
    assert "Failed to detach context" not in scenario["stderr"]
    assert "Traceback" not in scenario["stderr"]
