"""Which tool results a policy needs to see, and the Guard skipping the ones nobody judges."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import agentguard
from agentguard.events import ToolCall
from agentguard.policy import Policy
from tests.policy.conftest import ctx, make_policy, rule_ids


def test_builtin_pack_only_needs_results_that_can_hold_bulk_data() -> None:
    """The built-in pack looks at results only for bulk data (over 1000 records), so a text
    result shorter than 1001 characters can never make it fire."""
    assert Policy.builtin().result_floor("lookup_customer", "agent") == 1001


def test_floor_is_a_necessary_condition_of_every_result_rule() -> None:
    """A count bound inside ``all`` sets the floor; a rule that can fire on any result (regex,
    a count inside ``any`` with another test, a rate limit on results) sets it to zero; rules
    of the call phase set none."""
    counted = make_policy("""
        rules:
          - id: BIG
            description: big result with a marker
            match: {kind: tool_call}
            when:
              all:
                - {field: result, count: {gte: 50}}
                - {field: result, contains: [marker]}
    """)
    assert counted.result_floor("any_tool", "a") == 50
    either = make_policy("""
        rules:
          - id: EITHER
            description: big or marked
            match: {kind: tool_call}
            when:
              any:
                - {field: result, count: {gt: 10}}
                - {field: result, contains: [marker]}
    """)
    assert either.result_floor("any_tool", "a") == 0
    rated = make_policy("""
        rules:
          - id: RATE
            description: too many calls
            match: {kind: tool_call, tool: search_*, phase: result}
            rate_limit: {max: 5, per: 1m}
    """)
    assert rated.result_floor("search_kb", "a") == 0
    assert rated.result_floor("lookup", "a") == math.inf
    calls_only = make_policy("""
        rules:
          - id: CALLS
            description: too many calls (counted before they run)
            match: {kind: tool_call}
            rate_limit: {max: 5, per: 1m}
    """)
    assert calls_only.result_floor("search_kb", "a") == math.inf


def test_sequence_rules_see_every_result_of_the_tools_they_follow() -> None:
    """A tool named in ``after`` must be seen returning, whatever its result, for the sequence
    to be recorded; other tools keep the built-in floor."""
    policy = make_policy("""
        rules:
          - id: SEQ
            description: send after fetch
            match: {kind: tool_call, tool: send_mail}
            after: [{tool: fetch_*}]
    """, builtin_rules=True)
    assert policy.result_floor("fetch_page", "a") == 0
    assert policy.result_floor("lookup", "a") == 1001


def test_policy_without_tool_rules_needs_no_result() -> None:
    """A policy with only process rules has nothing to say about any tool result."""
    policy = make_policy("""
        rules:
          - id: P1
            description: no curl
            match: {kind: process_exec}
            when: {field: executable, endswith: /curl}
    """)
    assert policy.result_floor("lookup", "a") == math.inf


def test_floor_never_hides_a_bulk_result() -> None:
    """A text result at the floor is still judged by the rule the floor comes from."""
    pack = Policy.builtin()
    rows = json.dumps([{"id": i} for i in range(1001)])
    event = ToolCall(context=ctx(tool="export"), tool="export", arguments={}, result=rows,
                     phase="result")
    assert len(rows) >= pack.result_floor("export", "test-agent")
    assert rule_ids(pack.evaluate(event)) == ["AG018"]


class CountingStage:
    """A policy stage that needs no result shorter than ``floor`` and records what it saw."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.phases: list[str] = []

    def result_floor(self, tool: Any, agent: Any) -> float:
        return self.floor

    def evaluate(self, event: Any, verdict: Any) -> None:
        self.phases.append(event.phase)


@pytest.fixture
def lookup() -> Any:
    @agentguard.tool
    def lookup(size: int) -> str:
        """Rows as JSON text."""
        return json.dumps([{"id": i} for i in range(size)])
    return lookup


def test_guard_skips_small_results_no_stage_judges(guarded: Any, lookup: Any) -> None:
    """When every stage says a short text result is of no interest, the call is judged and the
    result is not; a longer one is."""
    stage = CountingStage(floor=100)
    guarded(policy=[stage], builtin_rules=False, injection_detection=False,
            runtime_sensor=False)
    lookup(size=1)
    assert stage.phases == ["call"]
    lookup(size=50)
    assert stage.phases == ["call", "call", "result"]


def test_a_stage_without_a_floor_sees_every_result(guarded: Any, lookup: Any) -> None:
    """A plain callback next to a stage with a floor still receives every result."""
    stage = CountingStage(floor=math.inf)
    seen: list[str] = []
    guarded(policy=[stage, lambda event: seen.append(event.phase)], builtin_rules=False,
            injection_detection=False, runtime_sensor=False)
    lookup(size=1)
    assert stage.phases == ["call", "result"]
    assert seen == ["call", "result"]


def test_enforce_still_blocks_bulk_text_results(guarded: Any, lookup: Any) -> None:
    """With the built-in pack in enforce mode, a short result passes untouched and a text
    result of 2000 records is blocked by AG018."""
    guarded(mode="enforce", injection_detection=False, runtime_sensor=False)
    assert json.loads(lookup(size=3)) == [{"id": 0}, {"id": 1}, {"id": 2}]
    with pytest.raises(agentguard.ToolCallBlocked) as blocked:
        lookup(size=2000)
    assert blocked.value.finding.rule_id == "AG018"


def test_guard_skips_small_list_and_dict_results_and_judges_large_ones(guarded: Any) -> None:
    """A list or dict result is sized by its records: fewer than the floor is not judged, a dict
    whose list reaches it is, and results of other types always are."""
    stage = CountingStage(floor=100)
    guarded(policy=[stage], builtin_rules=False, injection_detection=False,
            runtime_sensor=False)

    @agentguard.tool
    def rows(shape: str, size: int) -> Any:
        """Rows in several shapes."""
        items = [{"id": i} for i in range(size)]
        if shape == "list":
            return items
        if shape == "dict":
            return {"total": size, "items": items, "note": "x" * 500}
        return {1, 2}  # neither text nor a list or dict

    rows(shape="list", size=99)
    rows(shape="dict", size=99)
    assert stage.phases == ["call", "call"]
    rows(shape="list", size=100)
    rows(shape="dict", size=100)
    rows(shape="set", size=0)
    assert stage.phases == ["call", "call", "call", "result", "call", "result", "call", "result"]


def test_builtin_pack_still_blocks_a_bulk_dict_result(guarded: Any) -> None:
    """A dict carrying 1001 records is judged and reported by the bulk-data rule; one with ten
    records is not."""
    found: list[Any] = []
    guarded(on_finding=found.append, injection_detection=False, runtime_sensor=False)

    @agentguard.tool
    def export(size: int) -> dict[str, Any]:
        """Export customers."""
        return {"count": size, "rows": [{"id": i} for i in range(size)]}

    export(size=10)
    assert found == []
    export(size=1001)
    assert [f.rule_id for f in found] == ["AG018"]
