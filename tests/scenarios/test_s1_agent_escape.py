"""Scenario 1, agent escape: a prompt-steered diagnostics tool spawns curl with the context window;
agentguard blocks the spawn before curl exists, and the attacker's listener gets nothing."""

from __future__ import annotations

import pytest

from agentguard import semconv
from agentguard.demo._scenario import DemoEnv
from agentguard.demo.scenarios.s1_agent_escape import (
    ATTACK_CALL_ID,
    ATTACK_CONVERSATION,
    SCENARIO,
    AgentEscape,
)
from tests.conftest import Spans

pytestmark = pytest.mark.usefixtures("leaves_nothing_behind")


def test_curl_is_blocked_before_it_runs_and_the_finding_names_the_tool_call(
        demo_env: DemoEnv, spans: Spans) -> None:
    """In enforce the curl spawn is refused by AG002, nothing reaches the attacker, the benign
    phase raised nothing, and the finding names the conversation, turn and tool call's span."""
    outcome = SCENARIO.run(demo_env)

    assert outcome.detected and outcome.blocked
    assert outcome.noise == []
    assert outcome.effects["attacker_bytes"] == 0
    assert outcome.effects["attacker_connections"] == 0
    block = next(f for f in outcome.findings if f.rule_id == "AG002")
    assert block.action == "block" and block.kind == "process_exec"
    assert block.evidence or block.title.endswith("runs a network or remote-copy tool")
    assert (block.conversation_id, block.tool) == (ATTACK_CONVERSATION, "run_diagnostics")
    assert "baseline-process" in {f.rule_id for f in outcome.findings}
    assert block.trace_id in outcome.trace_ids

    # The finding's span is the tool call the model asked for, inside the attack's turn.
    tool_span = next(s for s in spans.named("execute_tool run_diagnostics")
                     if s.context.span_id == int(block.span_id or "0", 16))
    assert (tool_span.attributes or {})[semconv.GEN_AI_TOOL_CALL_ID] == ATTACK_CALL_ID
    assert any(e.name == semconv.EVENT_FINDING for e in tool_span.events)
    turn_span = next(s for s in spans.named("invoke_agent")
                     if s.context.trace_id == tool_span.context.trace_id)
    attributes = turn_span.attributes or {}
    assert attributes[semconv.GEN_AI_CONVERSATION_ID] == ATTACK_CONVERSATION
    assert block.turn is not None and attributes[semconv.AG_TURN_INDEX] == block.turn


def test_in_monitor_mode_the_same_attack_reaches_the_listener(demo_env: DemoEnv) -> None:
    """Without enforcement curl really runs and posts the context window to the listener, so the
    enforce test above measures a real side effect."""
    outcome = AgentEscape(attack_mode="monitor").run(demo_env)

    assert outcome.detected and not outcome.blocked
    assert {f.action for f in outcome.findings if f.rule_id == "AG002"} == {"alert"}
    assert outcome.effects["attacker_bytes"] > 0
    assert b"acct-7731" in outcome.effects["attacker_data"]
