"""Scenario 7, model poisoning: a poisoned underwriting model's decisions drift from the learned
distribution, and the baseline reports the drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentguard.demo._scenario import DemoEnv
from agentguard.demo.scenarios.s7_model_poisoning import ModelPoisoning


@pytest.mark.usefixtures("leaves_nothing_behind")
def test_the_poisoned_models_decisions_are_reported_as_drift(tmp_path: Path) -> None:
    """The approval share of the poisoned model is far above the learned one: one
    baseline-decision-drift alert with the learned and recent shares, nothing blocked, no noise
    while learning."""
    scenario = ModelPoisoning()
    outcome = scenario.run(DemoEnv(workdir=tmp_path, output_dir=tmp_path))
    assert outcome.detected and not outcome.blocked
    assert outcome.noise == []
    (drift,) = [f for f in outcome.findings if f.rule_id == "baseline-decision-drift"]
    assert (drift.kind, drift.category, drift.action) == ("model_call", "baseline", "alert")
    assert drift.evidence["dimension"] == "decisions.decision"
    assert drift.evidence["observed"] == "approve"
    expected = drift.evidence["expected"]
    assert expected["window"] == 50
    assert expected["recent_share"] - expected["learned_share"] >= 0.2
    assert expected["z"] >= 4
    learned, decided = scenario.observed["learned"], scenario.observed["decided"]
    assert learned.count("approve") / len(learned) < 0.5 < decided.count("approve") / len(decided)
    assert outcome.control_plane.split()[0] == "bedrock:Converse"


def test_an_unpoisoned_model_on_ordinary_traffic_raises_nothing(tmp_path: Path) -> None:
    """The same agent with the designed model on another batch of ordinary applications stays
    within the learned distribution: no finding at all."""
    scenario = ModelPoisoning(poisoned=False)
    outcome = scenario.run(DemoEnv(workdir=tmp_path, output_dir=tmp_path))
    assert not outcome.detected
    assert outcome.findings == [] and outcome.noise == []
    assert set(scenario.observed["decided"]) == {"approve", "deny"}
