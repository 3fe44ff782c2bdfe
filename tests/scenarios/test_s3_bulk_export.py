"""Scenario 3, tool/API misuse: the customer-records tool returns 50,000 records instead of 1-5;
the result is blocked before it reaches the model."""

from __future__ import annotations

import pytest

from agentguard.demo._scenario import DemoEnv
from agentguard.demo.scenarios.s3_bulk_export import (
    ATTACK_CONVERSATION,
    SCENARIO,
    TABLE_ROWS,
    BulkExport,
)

pytestmark = pytest.mark.usefixtures("leaves_nothing_behind")


def test_bulk_result_is_blocked_by_the_rule_and_the_baseline(demo_env: DemoEnv) -> None:
    """The built-in bulk-data rule and the learned record count both block the 50,000-record
    result, the model gets none of it, and the 24 benign tickets raised nothing."""
    outcome = SCENARIO.run(demo_env)

    assert outcome.detected and outcome.blocked
    assert outcome.noise == []
    assert outcome.effects["records_to_model"] == 0
    by_rule = {f.rule_id: f for f in outcome.findings}
    assert by_rule["AG018"].action == "block"
    records = by_rule["baseline-result-records"]
    assert (records.action, records.category, records.tool, records.conversation_id) == (
        "block", "baseline", "find_customers", ATTACK_CONVERSATION)
    assert "50000" in records.title


def test_in_monitor_mode_the_model_receives_every_record(demo_env: DemoEnv) -> None:
    """Without enforcement the whole table reaches the model, and the findings are alerts."""
    outcome = BulkExport(attack_mode="monitor").run(demo_env)

    assert outcome.detected and not outcome.blocked
    assert outcome.effects["records_to_model"] == TABLE_ROWS
    assert {f.action for f in outcome.findings} == {"alert"}
