"""The name of a tool the agent lacks is the model's to choose: however long a name it makes up,
the span and findings carry a bounded one, and a name of ordinary length is kept as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentguard.findings import Finding
from tests.integrations.langchain.agents import call, say
from tests.integrations.langchain.test_unknown_tools import (
    QUIET,
    UNKNOWN_TOOLS_POLICY,
    Recorder,
    _agent,
)

HUGE = "x" * 1_000_000



def test_a_made_up_tool_name_of_any_length_is_bounded_in_spans_and_findings(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A call of a megabyte-long made-up tool name gets an ``execute_tool`` span whose name and
    ``gen_ai.tool.name`` are cut to a bounded length (an oversized span would be refused by an
    OTLP collector, taking the batch with it), as is the finding a rule for unknown tools
    makes; the model still gets LangGraph's answer."""
    seen: list[Finding] = []
    policy = tmp_path / "policy.yaml"
    policy.write_text(UNKNOWN_TOOLS_POLICY)
    guarded(mode="monitor", policy=str(policy), on_finding=seen.append, **QUIET)
    recorder = Recorder()
    _agent([say("", call(HUGE, "h1")), recorder]).invoke({"messages": [("user", "go")]})
    [message] = recorder.tool_messages()
    assert message.status == "error" and message.tool_call_id == "h1"
    [span] = spans.named("execute_tool")
    name = span.attributes["gen_ai.tool.name"]
    assert 0 < len(name) <= 300 and name.startswith("x" * 200)
    assert len(span.name) <= 320
    assert span.attributes["agentguard.tool.unknown"] is True
    assert [(f.rule_id, f.tool) for f in seen] == [("NO-MADE-UP-TOOLS", name)]


def test_a_made_up_tool_name_of_ordinary_length_is_kept_whole(guarded: Any, spans: Any) -> None:
    """A made-up name of a usual length (64 characters, the most providers allow) is the span's
    name unchanged."""
    guarded(**QUIET)
    name = "t" * 64
    _agent([say("", call(name, "n1")), say("done")]).invoke({"messages": [("user", "go")]})
    assert spans.one(f"execute_tool {name}").attributes["gen_ai.tool.name"] == name
