"""Scoring: deviations of each kind, their severity, and how maturity decides alert or block."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from agentguard.baseline import ANNOTATION_KEY, Baseline, Learner, Profile, Scorer, Thresholds
from agentguard.events import (
    CloudCall,
    DnsLookup,
    EventContext,
    FileOpen,
    Message,
    ModelCall,
    ModelLoad,
    NetConnect,
    ProcessExec,
    ToolCall,
    Turn,
)


def ctx(tool: str | None = None, conversation: str | None = None, turn: int | None = None
        ) -> EventContext:
    return EventContext(agent="support", tool=tool, conversation_id=conversation, turn=turn)


def _learned(turns: int = 60, seed: int = 7) -> Profile:
    """A support agent: lookup then orders, reports that read one S3 bucket, a web tool."""
    rng = random.Random(seed)
    learner = Learner(Profile(agent="support"))
    for n in range(turns):
        conversation = f"c{n}"
        learner.learn(Turn(context=ctx(conversation=conversation, turn=1), text="help me"))
        learner.learn(ToolCall(context=ctx("lookup", conversation, 1), tool="lookup",
                               arguments={"customer_id": rng.randint(1000, 9999),
                                          "region": rng.choice(["EU", "US"])}))
        learner.learn(ToolCall(context=ctx("lookup"), tool="lookup",
                               result=json.dumps({"id": 1, "name": "Ada"}), phase="result"))
        learner.learn(ToolCall(context=ctx("orders", conversation, 1), tool="orders",
                               arguments={"limit": rng.randint(1, 5), "status": "open"}))
        learner.learn(ToolCall(context=ctx("orders"), tool="orders", phase="result",
                               result=json.dumps([{"id": i} for i in range(rng.randint(1, 5))])))
        learner.learn(ToolCall(context=ctx("notify", conversation, 1), tool="notify",
                               arguments={"to": f"user{n % 4}@corp.example",
                                          "url": "https://status.corp.example/ok"}))
        learner.learn(CloudCall(context=ctx("orders"), service="s3", operation="GetObject",
                                region="eu-west-1", resource={"bucket": "orders-archive"}))
        learner.learn(ProcessExec(context=ctx("orders"), executable="/usr/bin/gzip",
                                  argv=["gzip", "-d", "orders.gz"]))
        learner.learn(NetConnect(context=ctx("notify"), address="10.0.0.5", port=443,
                                 hostname="status.corp.example"))
        learner.learn(DnsLookup(context=ctx("notify"), hostname="status.corp.example"))
        learner.learn(FileOpen(context=ctx("orders"), path="/srv/cache/orders.json", write=True))
        learner.learn(ModelCall(context=ctx(), provider="openai", model="gpt-4o", phase="request"))
        learner.learn(ModelCall(context=ctx(), provider="openai", model="gpt-4o", phase="response",
                                output=[Message(role="assistant", content=json.dumps(
                                    {"decision": rng.choice(["approve"] * 4 + ["deny"])}))],
                                output_tokens=rng.randint(20, 60)))
    learner.flush_turns()
    return learner.profile


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(_learned())


def _rules(deviations: list[Any]) -> dict[str, tuple[str, bool]]:
    return {d.rule: (d.severity, d.mature) for d in deviations}


def test_learned_behaviour_has_no_deviations(scorer: Scorer) -> None:
    """Calls like the learned ones score clean."""
    assert scorer.score(ToolCall(context=ctx("lookup"), tool="lookup",
                                 arguments={"customer_id": 4242, "region": "US"})) == []
    assert scorer.score(ToolCall(context=ctx("orders"), tool="orders", phase="result",
                                 result=json.dumps([{"id": 1}, {"id": 2}]))) == []
    assert scorer.score(CloudCall(context=ctx("orders"), service="s3", operation="GetObject",
                                  region="eu-west-1", resource={"bucket": "orders-archive"})) == []


def test_argument_far_outside_its_range_is_high(scorer: Scorer) -> None:
    """limit=50000 where 1..5 was learned is a high-severity deviation on a mature range."""
    deviations = scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                       arguments={"limit": 50_000, "status": "open"}))
    assert _rules(deviations) == {"argument-range": ("high", True)}
    evidence = deviations[0].to_dict()
    assert evidence["expected"]["min"] == 1 and evidence["expected"]["max"] == 5
    assert evidence["observed"] == 50_000
    # Just beyond the range is within the margin; a few times beyond is medium.
    assert scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                 arguments={"limit": 8, "status": "open"})) == []
    medium = scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                   arguments={"limit": 30, "status": "open"}))
    assert _rules(medium) == {"argument-range": ("medium", True)}
    # A number sent as text is still checked as a number.
    assert "argument-range" in _rules(scorer.score(ToolCall(
        context=ctx("orders"), tool="orders", arguments={"limit": "50000", "status": "open"})))


@pytest.mark.parametrize("limit", [" 50000", "50000\n", "0" * 40 + "50000", "+0050_000",
                                   "\uff15\uff10\uff10\uff10\uff10",
                                   "\u0665\u0660\u0660\u0660\u0660", " " * 300 + "5e4", "0" * 5000 + "50000"])
def test_number_padded_as_int_reads_it_is_still_out_of_range(scorer: Scorer, limit: str) -> None:
    """Text that int() or float() reads as 50000 (spaces, leading zeros, '_', other scripts'
    digits) is the high-severity range deviation, not a mere new shape that only alerts."""
    assert float(limit) == 50_000
    deviations = scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                       arguments={"limit": limit, "status": "open"}))
    assert _rules(deviations)["argument-range"] == ("high", True)
    assert any(d.to_dict()["observed"] == 50_000 for d in deviations)


def test_text_that_is_no_number_is_not_read_as_one(scorer: Scorer) -> None:
    """Words, 'inf', 'nan' and digits with a space between are no number: no range deviation."""
    for value in ("inf", "nan", "12 34", "5 000", "x5", "-", "."):
        rules = _rules(scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                             arguments={"limit": value, "status": "open"})))
        assert "argument-range" not in rules, value


def test_record_count_spike_is_high(scorer: Scorer) -> None:
    """50,000 records from a tool that returned 1-5 is a high-severity deviation."""
    rows = json.dumps([{"id": i} for i in range(50_000)])
    deviations = scorer.score(ToolCall(context=ctx("orders"), tool="orders", phase="result",
                                       result=rows))
    rules = _rules(deviations)
    assert rules["result-records"] == ("high", True)
    assert rules["result-bytes"] == ("high", True)


def test_new_tool_argument_value_and_type(scorer: Scorer) -> None:
    """A new tool is high; a new key, an unseen categorical value or a new type are medium."""
    assert _rules(scorer.score(ToolCall(context=ctx("drop_tables"), tool="drop_tables",
                                        arguments={}))) == {"new-tool": ("high", True)}
    rules = _rules(scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                         arguments={"limit": 2, "status": "all", "dump": True})))
    assert rules == {"new-argument": ("medium", True), "argument-value": ("medium", True)}
    rules = _rules(scorer.score(ToolCall(context=ctx("lookup"), tool="lookup",
                                         arguments={"customer_id": "abc", "region": "EU"})))
    assert rules == {"argument-type": ("medium", True)}


def test_new_host_and_email_domain_in_arguments_are_high(scorer: Scorer) -> None:
    """An argument pointing at an unseen host or addressing an unseen domain is high."""
    rules = _rules(scorer.score(ToolCall(
        context=ctx("notify"), tool="notify",
        arguments={"to": "drop@attacker.example", "url": "https://attacker.example/collect"})))
    assert rules["argument-host"] == ("high", True)
    assert rules["argument-email-domain"] == ("high", True)


@pytest.mark.parametrize("url", ["https://attacker.example\\@status.corp.example/ok",
                                 "https://status.corp.example\\@attacker.example/ok"])
def test_url_clients_read_as_two_hosts_is_checked_for_both(scorer: Scorer, url: str) -> None:
    """A URL that requests reads as one host and httpx as another cannot hide the unseen host
    behind the learned one: the unseen one is the high-severity host deviation."""
    deviations = scorer.score(ToolCall(context=ctx("notify"), tool="notify",
                                       arguments={"to": "ops@corp.example", "url": url}))
    assert _rules(deviations)["argument-host"] == ("high", True)
    assert [d.to_dict()["observed"] for d in deviations
            if d.rule == "argument-host"] == ["attacker.example"]


@pytest.mark.parametrize(("to", "domain"), [
    ("mailto:drop@attacker.example", "attacker.example"),
    ('"drop box"@attacker.example', "attacker.example"),
    ("d\u00fcrer@attacker.example", "attacker.example"),
    ("drop@\uff21TTACKER.example", "attacker.example"),
    ("drop@[203.0.113.9]", "203.0.113.9"),
])
def test_addresses_mail_libraries_send_are_checked(scorer: Scorer, to: str, domain: str) -> None:
    """An address a mail library delivers (after mailto:, quoted, with non-ASCII letters, in
    fullwidth letters or to an address literal) is checked for its domain like a plain one."""
    deviations = scorer.score(ToolCall(context=ctx("notify"), tool="notify",
                                       arguments={"to": to, "url": "https://status.corp.example/ok"}))
    assert _rules(deviations)["argument-email-domain"] == ("high", True)
    assert [d.to_dict()["observed"] for d in deviations
            if d.rule == "argument-email-domain"] == [domain]
    # The user part of a URL is no address.
    assert "argument-email-domain" not in _rules(scorer.score(ToolCall(
        context=ctx("notify"), tool="notify",
        arguments={"to": "user1@corp.example", "url": "https://drop@attacker.example/ok"})))


def test_runtime_activity_outside_the_learned_is_flagged(scorer: Scorer) -> None:
    """A new bucket, a new process, a new destination and a write in a new area are high."""
    assert _rules(scorer.score(CloudCall(context=ctx("orders"), service="s3",
                                         operation="GetObject", region="eu-west-1",
                                         resource={"bucket": "payroll"}))) == {
        "cloud-resource": ("high", True)}
    assert _rules(scorer.score(CloudCall(context=ctx("orders"), service="s3",
                                         operation="DeleteObject", region="eu-west-1",
                                         resource={"bucket": "orders-archive"}))) == {
        "cloud-operation": ("high", True)}
    assert _rules(scorer.score(ProcessExec(context=ctx("orders"), executable="/usr/bin/curl",
                                           argv=["curl", "http://203.0.113.9"]))) == {
        "process": ("high", True)}
    assert _rules(scorer.score(NetConnect(context=ctx("notify"), address="203.0.113.9",
                                          port=4444))) == {"destination": ("high", True)}
    assert _rules(scorer.score(FileOpen(context=ctx("orders"), path="/home/app/.bashrc",
                                        write=True))) == {"file-write": ("high", True)}


def test_a_tool_that_never_used_the_network_is_flagged_when_it_does(scorer: Scorer) -> None:
    """lookup never connected anywhere while learning: its first connection is high."""
    deviations = scorer.score(NetConnect(context=ctx("lookup"), address="10.0.0.5", port=443,
                                         hostname="status.corp.example"))
    assert _rules(deviations) == {"destination": ("high", True)}
    assert deviations[0].state == "empty"


def test_nearby_destinations_and_names_are_lower(scorer: Scorer) -> None:
    """A new port on a known network, or a new name under a known domain, is not high."""
    assert _rules(scorer.score(NetConnect(context=ctx("notify"), address="10.0.0.5", port=8443,
                                          hostname="status.corp.example"))) == {
        "destination": ("medium", True)}
    assert _rules(scorer.score(DnsLookup(context=ctx("notify"),
                                         hostname="api.corp.example"))) == {"dns-name": ("low", True)}


def test_calls_per_turn_and_transitions(scorer: Scorer) -> None:
    """A tool called far more often in one turn than learned, or out of order, is flagged."""
    first = scorer.score(ToolCall(context=ctx("orders", "loop", 1), tool="orders",
                                  arguments={"limit": 2, "status": "open"}))
    assert _rules(first) == {"transition": ("low", True)}
    severities = []
    for _ in range(20):
        deviations = scorer.score(ToolCall(context=ctx("orders", "loop", 1), tool="orders",
                                           arguments={"limit": 2, "status": "open"}))
        severities.append(_rules(deviations).get("calls-per-turn"))
    # Learned: once per turn. The second call is within the margin, the third is medium, and
    # by the twelfth the turn is far outside anything learned.
    assert severities[0] is None
    assert severities[1] == ("medium", True)
    assert severities[-1] == ("high", True)


def test_decision_drift_is_reported_once_per_window(scorer: Scorer) -> None:
    """A model that starts denying everything shifts the decision distribution: one drift alert."""
    drift = []
    for _ in range(120):
        deviations = scorer.score(ModelCall(
            context=ctx(), provider="openai", model="gpt-4o", phase="response",
            output=[Message(role="assistant", content='{"decision": "deny"}')], output_tokens=30))
        drift.extend(d for d in deviations if d.rule == "decision-drift")
    assert 1 <= len(drift) <= 3
    assert drift[0].expected["recent_share"] == 1.0
    assert drift[0].expected["learned_share"] < 0.4
    unseen = scorer.score(ModelCall(
        context=ctx(), provider="openai", model="gpt-4o", phase="response",
        output=[Message(role="assistant", content='{"decision": "escalate"}')]))
    assert _rules(unseen) == {"decision-value": ("medium", True)}


def test_new_model_and_model_artifact(scorer: Scorer) -> None:
    """A model never called, or a model file never loaded, is reported."""
    assert _rules(scorer.score(ModelCall(context=ctx(), provider="openai", model="gpt-x",
                                         phase="request"))) == {"model": ("medium", True)}
    assert _rules(scorer.score(ModelLoad(context=ctx(), path="/tmp/evil.pkl",
                                         sha256="ff"))) == {"model-artifact": ("high", True)}


def test_a_call_of_a_tool_the_agent_does_not_have_says_so(scorer: Scorer) -> None:
    """A call of a tool the framework does not have is an ``unknown-tool`` deviation naming what
    happened, high on a mature profile, also when a tool of that name was learned (the agent
    had one then); its error answer is not compared with anything."""
    for name in ("drop_tables", "orders"):
        [deviation] = scorer.score(ToolCall(context=ctx(name), tool=name, arguments={},
                                            unknown=True))
        assert (deviation.rule, deviation.severity, deviation.mature, deviation.tool) == (
            "unknown-tool", "high", True, name)
        assert deviation.message == (f"the model called {name!r}, a tool the agent does not "
                                     "have (nothing ran)")
        assert "orders" in deviation.expected["learned"]
    assert scorer.score(ToolCall(context=ctx("orders"), tool="orders", phase="result",
                                 result="Error: orders is not a valid tool", unknown=True)) == []


def test_a_call_of_a_tool_the_agent_lacks_is_reported_however_little_was_learned() -> None:
    """Where every tool learned is still new (a new name says nothing yet), a call of a tool the
    agent does not have is still reported, at low severity and not blocking."""
    learner = Learner(Profile(agent="support"))
    for name in ("a", "b", "c", "d"):
        learner.learn(ToolCall(context=ctx(name), tool=name, arguments={}))
    scorer = Scorer(learner.profile)
    assert scorer.score(ToolCall(context=ctx("x"), tool="x", arguments={})) == []
    assert _rules(scorer.score(ToolCall(context=ctx("x"), tool="x", arguments={},
                                        unknown=True))) == {"unknown-tool": ("low", False)}


def test_immature_profile_reports_low_or_not_mature() -> None:
    """Learned from three turns, nothing is mature: deviations are low or marked immature."""
    scorer = Scorer(_learned(turns=3))
    deviations = scorer.score(ToolCall(context=ctx("orders"), tool="orders",
                                       arguments={"limit": 50_000, "status": "all"}))
    assert deviations
    assert all(not d.mature for d in deviations)
    assert _rules(scorer.score(ToolCall(context=ctx("x"), tool="x", arguments={}))) == {
        "new-tool": ("low", False)}


def test_high_cardinality_values_are_not_judged_by_novelty(scorer: Scorer) -> None:
    """customer_id takes thousands of values: a new one is no deviation (its set is open)."""
    profile = _learned(turns=200)
    assert Scorer(profile).score(ToolCall(context=ctx("lookup"), tool="lookup",
                                          arguments={"customer_id": 5555, "region": "EU"})) == []


class _Guard:
    """The parts of the Guard a stage uses (the mode and finding_for)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def finding_for(self, event: Any, decision: Any) -> Any:
        from agentguard.findings import Finding

        action = "alert" if decision.action == "block" and self.mode == "monitor" else \
            decision.action
        return Finding(rule_id=decision.rule_id, category=decision.category,
                       severity=decision.severity, title=decision.reason, action=action,
                       kind=event.kind, evidence=decision.evidence)


def test_stage_annotates_and_blocks_only_high_mature_deviations() -> None:
    """The stage puts deviations in the verdict's annotations, blocks high mature ones in
    enforce mode and alerts on the rest."""
    from agentguard._guard import Verdict

    stage = Baseline(_learned())
    verdict = Verdict()
    stage.process(ToolCall(context=ctx("orders"), tool="orders",
                           arguments={"limit": 50_000, "status": "all"}), verdict,
                  _Guard("enforce"))  # type: ignore[arg-type]
    annotation = verdict.annotations[ANNOTATION_KEY]
    assert sorted(annotation.rules()) == ["argument-range", "argument-value"]
    assert annotation.max_severity == "high"
    actions = {f.rule_id: (f.action, f.category) for f in verdict.findings}
    assert actions == {"baseline-argument-range": ("block", "baseline"),
                       "baseline-argument-value": ("alert", "baseline")}
    assert verdict.blocked

    clean = Verdict()
    stage.process(ToolCall(context=ctx("orders"), tool="orders",
                           arguments={"limit": 3, "status": "open"}), clean,
                  _Guard("enforce"))  # type: ignore[arg-type]
    assert clean.findings == [] and ANNOTATION_KEY not in clean.annotations


def test_block_severity_threshold_is_configurable() -> None:
    """With block_severity=critical nothing the baseline finds blocks."""
    from agentguard._guard import Verdict

    stage = Baseline(_learned(), thresholds=Thresholds(block_severity="critical"))
    verdict = Verdict()
    stage.process(ToolCall(context=ctx("orders"), tool="orders",
                           arguments={"limit": 50_000, "status": "open"}), verdict,
                  _Guard("enforce"))  # type: ignore[arg-type]
    assert [f.action for f in verdict.findings] == ["alert"]
