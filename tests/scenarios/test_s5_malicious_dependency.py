"""Scenario 5, malicious dependency: an undeclared adapter model runs a payload while it loads;
the AI-BOM reports the artifact, the sensor ties the spawn to the load, and the spawn is blocked."""

from __future__ import annotations

import pytest

from agentguard.demo._scenario import DemoEnv
from agentguard.demo.scenarios.s5_malicious_dependency import (
    ATTACK_CONVERSATION,
    SCENARIO,
    MaliciousDependency,
)

pytestmark = pytest.mark.usefixtures("leaves_nothing_behind")


def test_undeclared_adapter_is_reported_and_its_payload_blocked(demo_env: DemoEnv) -> None:
    """BOM002 and AG021 report the adapter, sensor-model-load-activity attributes the shell to the
    load in classify_ticket and blocks it, nothing reaches the attacker, and loading the declared
    classifier in the benign phase raised nothing."""
    outcome = SCENARIO.run(demo_env)

    assert outcome.detected and outcome.blocked
    assert outcome.noise == []
    assert outcome.effects["attacker_bytes"] == 0
    by_rule = {f.rule_id: f for f in outcome.findings}
    assert by_rule["BOM002"].category == "supply-chain"
    assert "sentiment-lora.joblib" in by_rule["BOM002"].title
    assert "AG021" in by_rule
    load = by_rule["sensor-model-load-activity"]
    assert (load.action, load.severity, load.tool, load.conversation_id, load.turn) == (
        "block", "critical", "classify_ticket", ATTACK_CONVERSATION, 1)
    assert "sentiment-lora.joblib" in load.title
    assert "ticket-classifier" not in " ".join(f.title for f in outcome.findings)


def test_in_monitor_mode_the_payload_runs_during_the_load(demo_env: DemoEnv) -> None:
    """Without enforcement the payload's shell really runs curl and the attacker's listener
    receives its beacon, while the same findings are raised as alerts."""
    outcome = MaliciousDependency(attack_mode="monitor").run(demo_env)

    assert outcome.detected and not outcome.blocked
    assert b"adapter weights loaded" in outcome.effects["attacker_data"]
    assert {f.action for f in outcome.findings
            if f.rule_id == "sensor-model-load-activity"} == {"alert"}
