"""The LangChain / LangGraph patches beyond the entry points: undone by uninstrument(), applied
once however often instrument() runs, and whether the framework is imported before or after."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import agentguard

ROOT = Path(__file__).resolve().parents[3]


def _patched() -> dict[str, Any]:
    from langchain_core.tools import base
    from langgraph.prebuilt.tool_node import ToolNode
    from langgraph.pregel import Pregel, _loop

    return {
        "SyncPregelLoop.__exit__": _loop.SyncPregelLoop.__dict__["__exit__"],
        "AsyncPregelLoop.__aexit__": _loop.AsyncPregelLoop.__dict__["__aexit__"],
        "Pregel.update_state": Pregel.__dict__["update_state"],
        "Pregel.aupdate_state": Pregel.__dict__["aupdate_state"],
        "Pregel.bulk_update_state": Pregel.__dict__["bulk_update_state"],
        "Pregel.abulk_update_state": Pregel.__dict__["abulk_update_state"],
        "ToolNode._validate_tool_call": ToolNode.__dict__["_validate_tool_call"],
        "ToolNode._run_one": ToolNode.__dict__["_run_one"],
        "ToolNode._arun_one": ToolNode.__dict__["_arun_one"],
        "ToolNode._execute_tool_sync": ToolNode.__dict__["_execute_tool_sync"],
        "ToolNode._execute_tool_async": ToolNode.__dict__["_execute_tool_async"],
        "_handle_tool_error": base.__dict__["_handle_tool_error"],
        "_handle_validation_error": base.__dict__["_handle_validation_error"],
    }


def test_uninstrument_restores_the_loop_exits_error_handlers_state_updates_and_tool_node(
        guarded: Any) -> None:
    """instrument() twice wraps each of these once, directly around the original, and
    uninstrument() puts every original back."""
    originals = _patched()
    guarded()
    guarded()
    for name, wrapper in _patched().items():
        assert wrapper is not originals[name], name
        assert wrapper.__wrapped__ is originals[name], name
    agentguard.uninstrument()
    assert _patched() == originals


_SCRIPT = """
import agentguard
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
agentguard.instrument(exporter=exporter)
from typing_extensions import TypedDict
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import interrupt

class State(TypedDict):
    answer: str

builder = StateGraph(State)
builder.add_node("ask", lambda state: {"answer": interrupt("approve?")})
builder.add_edge(START, "ask")
graph = builder.compile(checkpointer=InMemorySaver(), name="approval")
graph.invoke({"answer": ""}, {"configurable": {"thread_id": "t"}})
agentguard.flush()
print([s.attributes.get("agentguard.interrupted") for s in exporter.get_finished_spans()])
"""


def test_instrument_before_langgraph_is_imported_marks_a_paused_graph() -> None:
    """instrument() run before LangGraph is imported still marks a graph paused by
    ``interrupt()`` as interrupted (the run loop is patched when LangGraph is imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_SCRIPT)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['GraphInterrupt']"


_UNKNOWN_TOOL_SCRIPT = """
import agentguard
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
agentguard.instrument(exporter=exporter)
from tests.integrations.langchain.agents import call, make_agent, say

make_agent([say("", call("delete_everything")), say("ok")]).invoke({"messages": [("user", "go")]})
agentguard.flush()
print(sorted(s.name for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")))
"""


def test_instrument_before_langgraph_is_imported_traces_unknown_tool_calls() -> None:
    """instrument() run before LangGraph is imported still traces a ToolNode's answer to a call
    of a tool it does not have (ToolNode's module is patched when it is imported)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_UNKNOWN_TOOL_SCRIPT)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['execute_tool delete_everything']"


_MIDDLEWARE_SCRIPT = """
import agentguard
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
agentguard.instrument(exporter=exporter)
from langchain.agents.middleware import wrap_tool_call
from langchain_core.messages import ToolMessage
from tests.integrations.langchain.agents import call, make_agent, say

@wrap_tool_call
def serve(request, handler):
    return ToolMessage("served", tool_call_id=request.tool_call["id"])

make_agent([say("", call("secret_tool")), say("ok")], middleware=[serve]).invoke(
    {"messages": [("user", "go")]})
agentguard.flush()
print(sorted(s.name for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")))
"""


def test_instrument_before_langgraph_is_imported_traces_calls_middleware_answers() -> None:
    """instrument() run before LangGraph is imported still traces a call an agent middleware
    answers without running a tool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_MIDDLEWARE_SCRIPT)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['execute_tool secret_tool']"
