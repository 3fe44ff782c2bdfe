"""Rate limits and sequence conditions: what a policy remembers between events, and its bounds."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from agentguard._guard import Verdict
from agentguard.events import ToolCall
from agentguard.findings import Finding
from agentguard.policy import Policy
from agentguard.policy._memory import MAX_TOOLS_PER_CONVERSATION, RateWindow
from tests.policy.conftest import ctx, make_policy, rule_ids

T0 = 1_700_000_000.0


def call(tool: str, at: float, *, conversation: str | None = "c1", turn: int = 1,
         phase: str = "call", **context: Any) -> ToolCall:
    return ToolCall(context=ctx(conversation_id=conversation, turn=turn, tool=tool, **context),
                    tool=tool, arguments={}, phase=phase, timestamp=at,
                    result="done" if phase == "result" else None)


def rate_policy(by: str = "conversation", per: str = "1m", limit: int = 3) -> Policy:
    return make_policy(f"""
        rules:
          - id: RATE
            description: too many searches
            match: {{kind: tool_call, tool: 'search*'}}
            rate_limit: {{max: {limit}, per: {per}, by: {by}}}
    """)


def test_rate_limit_fires_beyond_max_within_the_window() -> None:
    """max: 3 per 1m: the 4th and later calls in a minute fire, with the count as evidence."""
    policy = rate_policy()
    fired = [rule_ids(policy.evaluate(call("search", T0 + i))) for i in range(5)]
    assert fired == [[], [], [], ["RATE"], ["RATE"]]
    [decision] = policy.evaluate(call("search", T0 + 6)) or []
    assert decision.evidence["rate"] == {"count": 4, "max": 3, "per_seconds": 60.0,
                                         "by": {"conversation": "c1"}}


def test_rate_window_slides() -> None:
    """Events older than the window stop counting, so the rate recovers."""
    policy = rate_policy()
    for i in range(3):
        assert policy.evaluate(call("search", T0 + i)) is None
    assert rule_ids(policy.evaluate(call("search", T0 + 30))) == ["RATE"]
    # 61 s after the first three, only the call at +30 and this one are in the window.
    assert policy.evaluate(call("search", T0 + 61)) is None


def test_rate_limit_counts_each_conversation_separately() -> None:
    """by: conversation keeps one window per conversation."""
    policy = rate_policy()
    for i in range(3):
        policy.evaluate(call("search", T0 + i, conversation="a"))
    assert policy.evaluate(call("search", T0 + 4, conversation="b")) is None
    assert rule_ids(policy.evaluate(call("search", T0 + 5, conversation="a"))) == ["RATE"]


def test_rate_limit_by_agent_counts_across_conversations() -> None:
    """by: agent counts every conversation of the agent together."""
    policy = rate_policy(by="agent")
    for i, conversation in enumerate(("a", "b", "c")):
        assert policy.evaluate(call("search", T0 + i, conversation=conversation)) is None
    assert rule_ids(policy.evaluate(call("search", T0 + 4, conversation="d"))) == ["RATE"]


def test_rate_limit_by_user_and_tool() -> None:
    """by: [user, tool] keeps a window per user and tool."""
    policy = rate_policy(by="[user, tool]", limit=1)
    assert policy.evaluate(call("search_a", T0, user="alice")) is None
    assert policy.evaluate(call("search_b", T0 + 1, user="alice")) is None
    assert policy.evaluate(call("search_a", T0 + 2, user="bob")) is None
    assert rule_ids(policy.evaluate(call("search_a", T0 + 3, user="alice"))) == ["RATE"]


def test_events_outside_a_conversation_are_not_rate_limited_per_conversation() -> None:
    """A per-conversation limit ignores events that belong to no conversation."""
    policy = rate_policy(limit=1)
    assert all(policy.evaluate(call("search", T0 + i, conversation=None)) is None
               for i in range(5))


def test_rate_limit_only_counts_events_that_match_the_condition() -> None:
    """Only events that pass match and when are counted."""
    policy = make_policy("""
        rules:
          - id: RATE
            description: too many large exports
            match: {kind: tool_call, tool: export}
            when: {field: arguments.rows, gt: 100}
            rate_limit: {max: 1, per: 1h}
    """)
    small = ToolCall(context=ctx(), tool="export", arguments={"rows": 5}, timestamp=T0)
    large = small.model_copy(update={"arguments": {"rows": 500}})
    for _ in range(5):
        assert policy.evaluate(small) is None
    assert policy.evaluate(large) is None
    assert rule_ids(policy.evaluate(large)) == ["RATE"]


def test_rate_windows_are_bounded_and_count_evictions() -> None:
    """A flood of new keys evicts the least recently used windows, and the evictions are counted."""
    window = RateWindow(limit=5, per=60.0)
    for i in range(window.max_keys + 10):
        window.hit((f"conv-{i}",), T0)
    assert len(window) == window.max_keys
    assert window.evicted == 10
    assert RateWindow(limit=10_000, per=1.0).max_keys < RateWindow(limit=1, per=1.0).max_keys


def test_rate_limit_is_exact_under_concurrent_calls() -> None:
    """Parallel tool calls in one conversation are all counted: exactly the calls beyond max fire."""
    policy = rate_policy(limit=50)
    fired: list[int] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(25):
            if policy.evaluate(call("search", T0 + (offset * 25 + i) * 0.001)):
                with lock:
                    fired.append(1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fired) == 100 - 50


# -- sequences ----------------------------------------------------------------------------------

def sequence_policy(after: str) -> Policy:
    return make_policy(f"""
        rules:
          - id: SEQ
            description: mail sent after reading secrets
            match: {{kind: tool_call, tool: send_email}}
            after: {after}
    """)


def test_tool_after_tool_in_the_same_conversation() -> None:
    """after: {tool: A} fires for B only once A returned in the same conversation."""
    policy = sequence_policy("{tool: 'read_*'}")
    assert policy.evaluate(call("send_email", T0)) is None
    policy.evaluate(call("read_secrets", T0 + 1, phase="result"))
    [decision] = policy.evaluate(call("send_email", T0 + 2)) or []
    assert decision.evidence["after"] == [
        {"after": "tool", "tool": "read_secrets", "seconds_ago": 1.0, "turn": 1}]
    assert policy.evaluate(call("send_email", T0 + 3, conversation="other")) is None


def test_a_blocked_or_unfinished_call_does_not_count_as_earlier() -> None:
    """Only a tool that returned (its result event) counts; its call phase alone does not."""
    policy = sequence_policy("{tool: read_secrets}")
    policy.evaluate(call("read_secrets", T0, phase="call"))
    assert policy.evaluate(call("send_email", T0 + 1)) is None


def test_sequence_within_and_same_turn() -> None:
    """within bounds how long ago A ran; same_turn requires A in the current turn."""
    within = sequence_policy("{tool: read_secrets, within: 10s}")
    within.evaluate(call("read_secrets", T0, phase="result"))
    assert rule_ids(within.evaluate(call("send_email", T0 + 5))) == ["SEQ"]
    assert within.evaluate(call("send_email", T0 + 11)) is None

    turn = sequence_policy("{tool: read_secrets, same_turn: true}")
    turn.evaluate(call("read_secrets", T0, phase="result", turn=1))
    assert rule_ids(turn.evaluate(call("send_email", T0 + 1, turn=1))) == ["SEQ"]
    assert turn.evaluate(call("send_email", T0 + 2, turn=2)) is None


def test_several_sequence_conditions_must_all_hold() -> None:
    """A list under after: every condition must hold."""
    policy = sequence_policy("[{tool: read_secrets}, {tool: 'list_*'}]")
    policy.evaluate(call("read_secrets", T0, phase="result"))
    assert policy.evaluate(call("send_email", T0 + 1)) is None
    policy.evaluate(call("list_contacts", T0 + 2, phase="result"))
    assert rule_ids(policy.evaluate(call("send_email", T0 + 3))) == ["SEQ"]


@dataclass(frozen=True)
class Annotation:
    """Shaped like the injection detector's annotation (attributes, not keys)."""

    flagged: bool = False
    conversation_flagged: bool = False


def verdict_with(annotation: Any = None, *findings: Finding) -> Verdict:
    verdict = Verdict()
    if annotation is not None:
        verdict.annotations["injection"] = annotation
    for finding in findings:
        verdict.add(finding)
    return verdict


def test_after_untrusted_content_reads_the_conversation_flag_of_the_detector() -> None:
    """after: untrusted_content_flagged holds when the detector flags the conversation."""
    policy = sequence_policy("untrusted_content_flagged")
    assert policy.evaluate(call("send_email", T0), verdict_with(Annotation())) is None
    [decision] = policy.evaluate(
        call("send_email", T0 + 1), verdict_with(Annotation(conversation_flagged=True))) or []
    assert decision.evidence["after"][0]["after"] == "untrusted_content_flagged"
    # A dict works as well as an object.
    assert rule_ids(policy.evaluate(call("send_email", T0 + 2),
                                    verdict_with({"conversation_flagged": 1}))) == ["SEQ"]


def test_a_flag_on_earlier_content_is_remembered_for_the_conversation() -> None:
    """Content flagged on one event (a tool result) makes later calls in the conversation match."""
    policy = sequence_policy("untrusted_content_flagged")
    policy.evaluate(call("fetch_page", T0, phase="result"), verdict_with(Annotation(flagged=True)))
    assert rule_ids(policy.evaluate(call("send_email", T0 + 1), verdict_with())) == ["SEQ"]
    assert rule_ids(policy.evaluate(call("send_email", T0 + 2))) == ["SEQ"]
    assert policy.evaluate(call("send_email", T0 + 3, conversation="clean")) is None


def test_injection_and_taint_findings_count_as_flags() -> None:
    """Findings of category injection (earlier) or taint (this call) satisfy the condition."""
    injection = Finding(rule_id="inj", category="injection", title="t", kind="retrieval")
    taint = Finding(rule_id="taint", category="taint", title="t", kind="tool_call")
    policy = sequence_policy("untrusted_content_flagged")
    assert rule_ids(policy.evaluate(call("send_email", T0), verdict_with(None, taint))) == ["SEQ"]
    other = sequence_policy("untrusted_content_flagged")
    other.evaluate(call("search", T0, phase="result"), verdict_with(None, injection))
    assert rule_ids(other.evaluate(call("send_email", T0 + 1))) == ["SEQ"]


def test_a_flag_on_the_current_event_only_counts_for_later_events() -> None:
    """Content flagged on this very event is not 'earlier': the call itself does not match."""
    policy = sequence_policy("untrusted_content_flagged")
    assert policy.evaluate(call("send_email", T0), verdict_with(Annotation(flagged=True))) is None
    assert rule_ids(policy.evaluate(call("send_email", T0 + 1))) == ["SEQ"]


def test_flag_within_a_time_window() -> None:
    """{untrusted_content_flagged: true, within: 5m} forgets flags older than five minutes."""
    policy = sequence_policy("{untrusted_content_flagged: true, within: 5m}")
    policy.evaluate(call("fetch", T0, phase="result"), verdict_with(Annotation(flagged=True)))
    assert rule_ids(policy.evaluate(call("send_email", T0 + 60))) == ["SEQ"]
    assert policy.evaluate(call("send_email", T0 + 301)) is None


def test_a_misbehaving_annotation_is_read_defensively() -> None:
    """An annotation whose attributes raise is treated as no flag, never as an error."""

    class Broken:
        @property
        def conversation_flagged(self) -> bool:
            raise RuntimeError("broken detector")

        flagged = property(lambda self: 1 / 0)

    policy = sequence_policy("untrusted_content_flagged")
    assert policy.evaluate(call("send_email", T0), verdict_with(Broken())) is None


def test_conversation_history_is_bounded() -> None:
    """Per-conversation tool history keeps a bounded number of tools; conversations are bounded."""
    policy = sequence_policy("{tool: '*'}")
    for i in range(MAX_TOOLS_PER_CONVERSATION + 50):
        policy.evaluate(call(f"tool_{i}", T0 + i * 0.001, phase="result"))
    history = policy._history.get("c1")
    assert history is not None
    assert len(history.tools) == MAX_TOOLS_PER_CONVERSATION
    assert history.dropped_tools == 50
    policy._history.max_conversations = 10
    for i in range(20):
        policy.evaluate(call("x", T0, conversation=f"conv-{i}", phase="result"))
    assert len(policy._history) == 10
    assert policy.stats()["conversations_evicted"] >= 10


def test_without_returns_a_policy_with_rules_off_and_fresh_state() -> None:
    """Policy.without(ids) switches rules off in a copy; the original is unchanged."""
    policy = rate_policy(limit=1)
    quiet = policy.without(["RATE"])
    assert quiet.rule_ids == frozenset()
    assert policy.without(["UNKNOWN"]) is policy
    policy.evaluate(call("search", T0))
    assert rule_ids(policy.evaluate(call("search", T0 + 1))) == ["RATE"]
