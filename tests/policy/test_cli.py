"""`agentguard policy check` and `agentguard policy explain`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentguard.cli import main

POLICY = """\
lists:
  sql_tools: [run_sql, query_db]
rules:
  - id: ACME-001
    description: Large SQL limit
    severity: high
    action: block
    match: {kind: tool_call, tool: sql_tools}
    when: {field: arguments.limit, gt: 1000}
  - id: ACME-002
    description: Mail after reading the inbox
    match: {kind: tool_call, tool: send_email}
    after: {tool: read_inbox, within: 10m}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(POLICY)
    return path


def write_events(tmp_path: Path, events: Any, name: str = "events.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(events))
    return path


def test_check_lists_the_rules_of_a_valid_file(policy: Path, capsys: Any,
                                              monkeypatch: Any) -> None:
    """check prints every rule (id, action, severity, events, tools, where, and a rule's
    sequence or rate condition, which looks like markup and must not be swallowed as such) and
    exits 0."""
    monkeypatch.chdir(policy.parent)
    assert main(["policy", "check", policy.name]) == 0
    out = capsys.readouterr().out
    assert "ACME-001" in out and "ACME-002" in out
    assert "run_sql, query_db" in out
    assert f"{policy.name}:4" in out
    assert "Mail after reading the inbox [after tool read_inbox within 600s]" in out
    assert f"OK: {policy.name} valid (2 rule(s) enabled)" in out


def test_check_reports_problems_and_exits_1(tmp_path: Path, capsys: Any) -> None:
    """check exits 1 and prints file:line:column, field, message and hint for each problem."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: X1\n    description: d\n    severty: high\n")
    assert main(["policy", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:5: rules[0].severty: unknown field 'severty' " \
           "(hint: did you mean 'severity'?)" in err


def test_check_can_list_the_builtin_rules(capsys: Any) -> None:
    """check --builtin lists the built-in pack."""
    assert main(["policy", "check", "--builtin"]) == 0
    out = capsys.readouterr().out
    for rule_id in ("AG001", "AG009", "AG024"):
        assert rule_id in out


def test_check_needs_a_file(capsys: Any) -> None:
    """check without a file or --builtin is a usage error (exit 2)."""
    assert main(["policy", "check"]) == 2


def test_explain_shows_matching_rules_and_why(policy: Path, tmp_path: Path, capsys: Any) -> None:
    """explain names each matching rule, its action and the evidence that made it match."""
    events = write_events(tmp_path, {"kind": "tool_call", "tool": "run_sql",
                                     "arguments": {"limit": 5000}})
    assert main(["policy", "explain", str(policy), "--event", str(events)]) == 0
    out = capsys.readouterr().out
    assert "event 1: tool_call run_sql (call): 1 rule(s) matched" in out
    assert "ACME-001" in out and "arguments.limit = 5000: > 1000" in out
    assert "decision: block" in out
    assert "other rule(s) did not match; --verbose shows why" in out


def test_explain_verbose_gives_the_first_failing_check(policy: Path, tmp_path: Path,
                                                       capsys: Any) -> None:
    """--verbose lists the rules that did not match with the check that failed."""
    events = write_events(tmp_path, {"kind": "tool_call", "tool": "run_sql",
                                     "arguments": {"limit": 10}})
    assert main(["policy", "explain", str(policy), "--event", str(events), "-v"]) == 0
    out = capsys.readouterr().out
    assert "no rule matched (decision: allow)" in out
    assert "ACME-001 │ condition not met: arguments.limit = 10: not > 1000" in out
    assert "ACME-002 │ tool 'run_sql' does not match send_email" in out
    assert "AG001    │ event kind is tool_call, the rule looks at process_exec events" in out
    assert "AG018    │ phase is call, the rule looks at the result phase" in out


def test_explain_replays_event_lists_for_sequences(policy: Path, tmp_path: Path) -> None:
    """A list of events is replayed in order, so sequence conditions and flags carry over."""
    events = write_events(tmp_path, [
        {"kind": "tool_call", "tool": "read_inbox", "phase": "result", "result": "hello",
         "context": {"conversation_id": "c1"}},
        {"event": {"kind": "tool_call", "tool": "fetch_page", "phase": "result",
                   "context": {"conversation_id": "c1"}},
         "annotations": {"injection": {"flagged": True}}},
        {"kind": "tool_call", "tool": "send_email", "arguments": {"to": "x@evil.io"},
         "context": {"conversation_id": "c1"}},
    ])
    output = subprocess.run(
        [sys.executable, "-m", "agentguard", "policy", "explain", str(policy), "--event",
         str(events), "--json"], capture_output=True, text=True, check=True).stdout
    results = json.loads(output)
    assert [r["event"] for r in results] == [1, 2, 3]
    assert [m["rule_id"] for m in results[2]["matched"]] == ["AG019", "ACME-002"]
    acme = next(m for m in results[2]["matched"] if m["rule_id"] == "ACME-002")
    assert acme["evidence"]["after"][0]["tool"] == "read_inbox"


def test_explain_without_builtin_rules(policy: Path, tmp_path: Path) -> None:
    """--no-builtin leaves the built-in pack out."""
    events = write_events(tmp_path, {"kind": "process_exec", "executable": "/bin/sh",
                                     "context": {"tool": "t"}})
    with_builtin = subprocess.run(
        [sys.executable, "-m", "agentguard", "policy", "explain", str(policy), "--event",
         str(events), "--json"], capture_output=True, text=True, check=True).stdout
    without = subprocess.run(
        [sys.executable, "-m", "agentguard", "policy", "explain", str(policy), "--event",
         str(events), "--json", "--no-builtin"], capture_output=True, text=True,
        check=True).stdout
    assert [m["rule_id"] for m in json.loads(with_builtin)[0]["matched"]] == ["AG001"]
    assert json.loads(without)[0]["matched"] == []
    assert {r["rule_id"] for r in json.loads(without)[0]["not_matched"]} == {"ACME-001",
                                                                            "ACME-002"}


def test_explain_reads_json_lines(policy: Path, tmp_path: Path, capsys: Any) -> None:
    """Events may be JSON lines, one event per line."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "dns_lookup", "hostname": "x.oast.fun"}\n'
                    '{"kind": "dns_lookup", "hostname": "example.com"}\n')
    assert main(["policy", "explain", "--event", str(path)]) == 0
    out = capsys.readouterr().out
    assert "event 1: dns_lookup: 1 rule(s) matched" in out and "AG016" in out
    assert "event 2: dns_lookup: no rule matched" in out


def test_explain_rejects_bad_events(policy: Path, tmp_path: Path, capsys: Any) -> None:
    """An event that is not a valid event names its position and the problem (exit 1)."""
    events = write_events(tmp_path, [{"kind": "tool_call", "tool": "a"}, {"kind": "nope"}])
    assert main(["policy", "explain", str(policy), "--event", str(events)]) == 1
    assert "event 2:" in capsys.readouterr().err
    assert main(["policy", "explain", str(policy), "--event", str(tmp_path / "none.json")]) == 1


def test_explain_with_an_invalid_policy_exits_1(tmp_path: Path, capsys: Any) -> None:
    """explain validates the policy first."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [{id: X, description: d, match: {kind: nope}}]\n")
    events = write_events(tmp_path, {"kind": "tool_call", "tool": "a"})
    assert main(["policy", "explain", str(bad), "--event", str(events)]) == 1
    assert "unknown event kind 'nope'" in capsys.readouterr().err


def test_explain_can_disable_rules(tmp_path: Path, capsys: Any) -> None:
    """--disable switches a rule off for the explanation; unknown ids are refused."""
    events = write_events(tmp_path, {"kind": "process_exec", "executable": "/bin/sh",
                                     "context": {"tool": "t"}})
    assert main(["policy", "explain", "--event", str(events), "--disable", "AG001"]) == 0
    assert "no rule matched" in capsys.readouterr().out
    assert main(["policy", "explain", "--event", str(events), "--disable", "AG999"]) == 1


def test_run_refuses_a_bad_policy_file_before_starting_the_program(tmp_path: Path,
                                                                   capsys: Any) -> None:
    """`agentguard run --` with AGENTGUARD_POLICY naming a bad file exits 2 with file and line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: X1\n    description: d\n    actoin: block\n")
    script = tmp_path / "never.py"
    script.write_text("raise SystemExit('the program must not start')\n")
    result = subprocess.run(
        [sys.executable, "-m", "agentguard", "run", "--", str(script)], capture_output=True,
        text=True, env={**os.environ, "AGENTGUARD_POLICY": str(bad)})
    assert result.returncode == 2
    assert f"{bad}:4:5: rules[0].actoin: unknown field 'actoin'" in result.stderr
    assert "must not start" not in result.stderr


_TERMINAL = "\x1b\x07\x9b\u202e"


def test_check_and_explain_print_markup_and_controls_as_written(tmp_path: Path,
                                                               capsys: Any) -> None:
    """Rule descriptions and tool names (a policy generated from learned names) and event
    values (captured traffic) are printed as text: '[/]' is not taken for markup, which made the
    command fail with a traceback, and terminal controls (an 8-bit CSI U+009B, ESC, bidi
    overrides) are shown as escapes instead of reaching the terminal."""
    policy = tmp_path / "generated.yaml"
    policy.write_text(
        "rules:\n"
        "  - id: GEN-001\n"
        "    description: \"[/bold] called \\x9b2J\\e[8m [link=http://x]here[/link]\"\n"
        "    match: {kind: tool_call, tool: \"send*\\x9b\\u202e\"}\n"
        "    when: {field: arguments.to, contains: evil}\n"
        "    message: 'send to {arguments.to}'\n")
    assert main(["policy", "check", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "[/bold] called \\x9b2J\\x1b[8m [link=http://x]here[/link]" in out
    assert "send*\\x9b\\u202e" in out and not any(c in out for c in _TERMINAL)
    events = write_events(tmp_path, {"kind": "tool_call", "tool": "send[/]\x9b\u202e",
                                     "arguments": {"to": "evil[/]\x9b\x07\x1b[2J"}})
    assert main(["policy", "explain", str(policy), "--event", str(events), "-v"]) == 0
    out = capsys.readouterr().out
    assert "event 1: tool_call send[/]\\x9b\\u202e (call): 1 rule(s) matched" in out
    assert "send to evil[/]\\x9b\\x07\\x1b[2J" in out and not any(c in out for c in _TERMINAL)
