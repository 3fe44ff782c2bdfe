"""Scenario 2, multi-turn indirect injection: an instruction split over three knowledge-base
articles is caught across turns, and the tainted e-mail to the attacker is blocked."""

from __future__ import annotations

import pytest

from agentguard import semconv
from agentguard.demo._scenario import DemoEnv
from agentguard.demo.scenarios.s2_indirect_injection import (
    ATTACK_CONVERSATION,
    ATTACKER_ADDRESS,
    SCENARIO,
    IndirectInjection,
)
from tests.conftest import Spans

pytestmark = pytest.mark.usefixtures("leaves_nothing_behind")


def attack_turns(spans: Spans) -> list[int]:
    """The turn numbers of the attack conversation, as agentguard counted them."""
    return sorted(int((s.attributes or {})[semconv.AG_TURN_INDEX])
                  for s in spans.named("invoke_agent")
                  if (s.attributes or {}).get(semconv.GEN_AI_CONVERSATION_ID) == ATTACK_CONVERSATION)


def test_split_instruction_is_joined_and_the_tainted_email_is_blocked(demo_env: DemoEnv,
                                                                      spans: Spans) -> None:
    """The pieces are flagged as fragments across turns, the address from the article taints
    send_email in turn 3, the call is blocked, and the benign conversations raised nothing."""
    outcome = SCENARIO.run(demo_env)
    first, _, third = attack_turns(spans)

    assert outcome.detected and outcome.blocked
    assert outcome.noise == []
    assert outcome.effects["emails_to_attacker"] == 0
    by_rule = {f.rule_id: f for f in outcome.findings}
    fragments = by_rule["injection-fragments"]
    assert fragments.category == "injection" and fragments.turn is not None
    assert first <= fragments.turn < third
    taint = by_rule["taint-argument"]
    assert (taint.action, taint.tool, taint.turn, taint.conversation_id) == (
        "block", "send_email", third, ATTACK_CONVERSATION)
    assert "kb-invoices" in taint.title
    assert "injection-escalation" in by_rule
    assert {f.conversation_id for f in outcome.findings} == {ATTACK_CONVERSATION}


def test_in_monitor_mode_the_email_reaches_the_attacker(demo_env: DemoEnv) -> None:
    """Without enforcement the same conversation sends the customer record to the attacker's
    address, with the same findings as alerts."""
    outcome = IndirectInjection(attack_mode="monitor").run(demo_env)

    assert outcome.detected and not outcome.blocked
    assert outcome.effects["emails_to_attacker"] == 1
    assert ATTACKER_ADDRESS in " ".join(outcome.details)
    assert {f.action for f in outcome.findings} == {"alert"}
