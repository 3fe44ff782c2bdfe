"""Loading large policies: compiled rules shared between policies of the same files, literal
name matching, and problems in large files reported with their hints."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentguard
from agentguard.events import ProcessExec, ToolCall
from agentguard.policy import Policy, PolicyError
from tests.policy.conftest import ctx, rule_ids

POLICY = """\
lists:
  api_hosts: [api.example.com, '${BENCH_API_HOST}']
rules:
  - id: ACME-RATE
    description: More than two lookups a minute
    match: {kind: tool_call, tool: lookup}
    rate_limit: {max: 2, per: 1m}
  - id: ACME-HOST
    description: Fetch outside the API hosts
    match: {kind: tool_call, tool: [fetch, 'http_*']}
    when: {field: arguments.url, transform: url_host, not_in: api_hosts}
  - id: ACME-SEQ
    description: Mail after a lookup
    match: {kind: tool_call, tool: send_mail}
    after: {tool: lookup}
"""


def _call(tool: str, conversation: str = "c1", **arguments: Any) -> ToolCall:
    return ToolCall(context=ctx(tool=tool, conversation_id=conversation), tool=tool,
                    arguments=arguments, timestamp=1_000.0)


def _stream() -> list[Any]:
    return [_call("lookup", customer=1), _call("lookup", customer=2), _call("lookup", customer=3),
            ToolCall(context=ctx(tool="lookup"), tool="lookup", arguments={}, result="ok",
                     phase="result", timestamp=1_000.0),
            _call("send_mail", to="a@b.example"),
            _call("fetch", url="https://api.example.com/v1"),
            _call("http_get", url="http://evil.test\\@api.example.com/"),
            _call("fetch", url="https://internal.example/"),
            ProcessExec(context=ctx(tool="lookup"), executable="/bin/sh", argv=["sh", "-c", "x"])]


def _decisions(policy: Policy) -> list[list[str]]:
    return [rule_ids(policy.evaluate(event)) for event in _stream()]


def test_a_policy_merged_with_the_built_in_rules_decides_as_one_compiled_afresh(
        tmp_path: Path) -> None:
    """instrument() loads policy files and then merges the built-in rules in (and switches
    rules off): the merged policy takes the rules compiled for the files instead of compiling
    them again, and decides exactly as a policy compiled from scratch, with rate limits and
    sequences of its own (the first policy's counts do not leak into it)."""
    path = tmp_path / "acme.yaml"
    path.write_text(POLICY)
    environ = {"BENCH_API_HOST": "internal.example"}
    loaded = Policy.from_files([path], environ=environ)
    assert rule_ids(loaded.evaluate(_call("lookup"))) == []
    assert rule_ids(loaded.evaluate(_call("lookup"))) == []
    merged = loaded.with_builtin()
    fresh = Policy.from_files([path], builtin_rules=True, environ=environ)
    expected = _decisions(fresh)
    assert expected[2] == ["ACME-RATE"] and expected[4] == ["ACME-SEQ"]
    assert "AG001" in expected[-1] and expected[6] == ["ACME-HOST"] and expected[7] == []
    assert _decisions(merged) == expected
    # The first policy keeps its own count: its third lookup is over the limit.
    assert rule_ids(loaded.evaluate(_call("lookup"))) == ["ACME-RATE"]
    without = merged.without(["ACME-SEQ", "AG001"])
    assert _decisions(without) == [[r for r in ids if r not in ("ACME-SEQ", "AG001")]
                                   for ids in expected]


def test_lists_read_from_the_environment_are_read_again_when_merging(tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    """A policy compiled again after an environment variable its lists name changed uses the
    new value (its rules are compiled anew, not taken from the earlier policy)."""
    path = tmp_path / "acme.yaml"
    path.write_text(POLICY)
    monkeypatch.setenv("BENCH_API_HOST", "internal.example")
    loaded = Policy.from_files([path])
    event = _call("fetch", url="https://internal.example/")
    assert rule_ids(loaded.evaluate(event)) == []
    monkeypatch.setenv("BENCH_API_HOST", "other.example")
    assert rule_ids(loaded.with_builtin().evaluate(event)) == ["ACME-HOST"]


def test_tool_names_with_and_without_patterns_match_as_globs_do() -> None:
    """match.tool holding plain names is an exact, case-sensitive comparison (no regular
    expression is built for it), and one with a pattern character matches as a glob."""
    policy = Policy.from_dict({"rules": [
        {"id": "EXACT", "description": "d", "match": {"kind": "tool_call",
                                                      "tool": ["run_sql", "a.b"]}},
        {"id": "GLOB", "description": "d", "match": {"kind": "tool_call",
                                                     "tool": ["db_?", "run_[xy]*"]}},
        {"id": "AFTER", "description": "d", "match": {"kind": "tool_call", "tool": "mail"},
         "after": {"tool": ["run_sql"]}},
    ]})
    fired = {tool: rule_ids(policy.evaluate(_call(tool, conversation=tool)))
             for tool in ("run_sql", "RUN_SQL", "run_sql2", "a.b", "aXb", "db_1", "run_xq")}
    assert fired == {"run_sql": ["EXACT"], "RUN_SQL": [], "run_sql2": [], "a.b": ["EXACT"],
                     "aXb": [], "db_1": ["GLOB"], "run_xq": ["GLOB"]}
    policy.evaluate(ToolCall(context=ctx(tool="run_sql", conversation_id="s"), tool="run_sql",
                             arguments={}, result="rows", phase="result", timestamp=1_000.0))
    assert rule_ids(policy.evaluate(_call("mail", conversation="s"))) == ["AFTER"]


def test_thousands_of_misspelt_names_are_refused_with_the_first_problems_and_hints() -> None:
    """A policy of 2000 rules that each name a list that does not exist (one letter off a
    defined one) is refused listing the first problems, each with its did-you-mean, and
    counting the rest (the hints are worked out only for the problems listed)."""
    count = 2000
    document = {
        "lists": {f"hosts_{n}": [f"h{n}.example"] for n in range(count)},
        "rules": [{"id": f"R{n}", "description": "d", "match": {"kind": "tool_call"},
                   "when": {"field": "arguments.host", "in": f"host_{n}"}}
                  for n in range(count)],
    }
    try:
        Policy.from_dict(document)
    except PolicyError as exc:
        error = exc
    else:
        raise AssertionError("the policy was accepted")
    assert len(error.issues) == 20 and error.omitted == count - 20
    assert error.issues[0].message == "'host_0' is not a defined list"
    assert error.issues[0].hint == "did you mean 'hosts_0'?"
    assert all(issue.hint and issue.hint.startswith("did you mean") for issue in error.issues)


def test_a_policy_of_thousands_of_rules_in_several_files_loads_with_instrument(
        tmp_path: Path, guarded: Any) -> None:
    """instrument(policy=[...]) loads 3000 rules from three files (each file within the value
    budget) and enforces the last one."""
    paths = []
    for part in range(3):
        rules = [{"id": f"T{part}-{n}", "description": f"tool {n} argument",
                  "match": {"kind": "tool_call", "tool": f"tool_{part}_{n}"},
                  "when": {"field": "arguments.limit", "gt": 100}, "action": "block"}
                 for n in range(1000)]
        path = tmp_path / f"rules-{part}.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
        paths.append(path)
    guard = guarded(mode="enforce", policy=[str(p) for p in paths], runtime_sensor=False,
                    injection_detection=False)
    guard.start_tool("tool_2_999", arguments={"limit": 5}).end_tool("ok")
    try:
        guard.start_tool("tool_2_999", arguments={"limit": 500})
    except agentguard.ToolCallBlocked as exc:
        assert exc.finding.rule_id == "T2-999"
    else:
        raise AssertionError("not blocked")


def test_a_rate_limit_is_kept_when_merging_before_any_event(tmp_path: Path) -> None:
    """A policy merged with the built-in rules before it saw any event keeps its rate limits:
    the limit fires once it is passed, not on every call (an empty window must not be taken for
    no window)."""
    path = tmp_path / "acme.yaml"
    path.write_text(POLICY)
    merged = Policy.from_files([path], environ={"BENCH_API_HOST": "internal.example"}
                               ).with_builtin()
    fired = ["ACME-RATE" in rule_ids(merged.evaluate(_call("lookup", customer=n)))
             for n in range(4)]
    assert fired == [False, False, True, True]


def test_a_condition_on_an_empty_list_holds_for_no_value(monkeypatch: Any) -> None:
    """A list left empty (its only item an environment variable that is not set) matches no
    value with every operator: a glob or regex over it no longer matches everything, which
    made 'not: {glob: allowed}' an allow-list that allowed all."""
    monkeypatch.delenv("AGENTGUARD_TEST_UNSET", raising=False)
    fired = {}
    for op in ("in", "contains", "startswith", "glob", "regex", "cidr", "not_in"):
        policy = Policy.from_dict({
            "lists": {"configured": ["${AGENTGUARD_TEST_UNSET}"]},
            "rules": [{"id": "R1", "description": "d", "match": {"kind": "tool_call"},
                       "when": {"field": "arguments.x", op: "configured"}},
                      {"id": "R2", "description": "d", "match": {"kind": "tool_call"},
                       "when": {"not": {"field": "arguments.x", op: "configured"}}}]})
        fired[op] = rule_ids(policy.evaluate(_call("t", x="10.0.0.1")))
    assert fired == {"in": ["R2"], "contains": ["R2"], "startswith": ["R2"], "glob": ["R2"],
                     "regex": ["R2"], "cidr": ["R2"], "not_in": ["R1"]}


def test_lists_including_lists_are_written_out_once_and_bounded() -> None:
    """A list that names another list several times includes it once, and lists whose values,
    with the lists they include written out, add up past 500 000 are refused naming the list
    (a file of a few thousand names could otherwise ask for hundreds of millions)."""
    base = [f"h{i}.example" for i in range(5000)]
    policy = Policy.from_dict({"lists": {"base": base, "again": ["base"] * 5000 + ["x"]},
                               "rules": []})
    assert policy.lists["again"] == (*base, "x")
    lists: dict[str, Any] = {"base": base}
    lists.update({f"copy_{n}": ["base", f"own_{n}"] for n in range(120)})
    try:
        Policy.from_dict({"lists": lists, "rules": []})
    except PolicyError as exc:
        assert "the lists hold more than 500,000 values with the lists they include written " \
               "out" in str(exc) and "lists.copy_" in str(exc)
    else:
        raise AssertionError("accepted")


def _rule_files(tmp_path: Path, parts: int = 3, count: int = 1000) -> list[Path]:
    """``parts`` YAML files of ``count`` rules each (ids T<part>-<n>)."""
    paths = []
    for part in range(parts):
        rules = [{"id": f"T{part}-{n}", "description": f"tool {n} argument",
                  "match": {"kind": "tool_call", "tool": f"tool_{part}_{n}"},
                  "when": {"field": "arguments.limit", "gt": 100}}
                 for n in range(count)]
        path = tmp_path / f"rules-{part}.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False))
        paths.append(path)
    return paths


def _line_of(path: Path, text: str, after: int = 0) -> int:
    """The number of the first line of ``path`` from line ``after`` on that holds ``text``."""
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if n >= after and text in line)


def _refusal(paths: list[Path]) -> PolicyError:
    try:
        Policy.from_files(paths)
    except PolicyError as exc:
        return exc
    raise AssertionError("the policy was accepted")


def test_problems_deep_in_large_files_are_reported_at_their_file_line_and_field(
        tmp_path: Path) -> None:
    """In three files of 1000 rules, a rule id used again in another file, a value that is not
    allowed and a key given twice are each reported at the file and line where they are, with
    the field path; the repeated id names where it was first defined."""
    paths = _rule_files(tmp_path)
    text = paths[2].read_text()
    paths[2].write_text(text.replace("- id: T2-500\n", "- id: T0-10\n"))
    error = _refusal(paths)
    [issue] = error.issues
    assert (issue.file, issue.line, issue.field) == (
        str(paths[2]), _line_of(paths[2], "- id: T0-10"), "rules[500].id")
    assert f"first defined at {paths[0]}:{_line_of(paths[0], '- id: T0-10')}" in issue.message

    paths = _rule_files(tmp_path)
    start = _line_of(paths[1], "- id: T1-999")
    lines = paths[1].read_text().splitlines(keepends=True)
    lines.insert(start, "  severity: hihg\n")
    paths[1].write_text("".join(lines))
    [issue] = _refusal(paths).issues
    assert (issue.file, issue.line, issue.column, issue.field) == (
        str(paths[1]), start + 1, 13, "rules[999].severity")
    assert issue.hint == "did you mean 'high'?"

    paths = _rule_files(tmp_path)
    start = _line_of(paths[0], "- id: T0-700")
    lines = paths[0].read_text().splitlines(keepends=True)
    lines.insert(start + 1, "  description: again\n")
    paths[0].write_text("".join(lines))
    [issue] = _refusal(paths).issues
    assert (issue.file, issue.line, issue.field) == (str(paths[0]), start + 2,
                                                     "rules[700].description")
    assert issue.message == f"duplicate key 'description' (first at line {start + 1})"


def test_a_large_load_runs_no_garbage_collection_and_leaves_the_collector_as_it_was(
        tmp_path: Path) -> None:
    """Loading 3000 rules runs no collection of the cyclic garbage collector while it runs
    (everything loading builds stays alive, so each would free nothing, and their number and
    cost grew with the rule count); afterwards the collector runs again, or stays off when it
    was off, also after a load that failed."""
    paths = _rule_files(tmp_path)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    assert gc.isenabled()
    gc.collect()
    gc.callbacks.append(count)
    try:
        policy = Policy.from_files(paths).with_builtin()
    finally:
        gc.callbacks.remove(count)
    # Each of the two loads is followed by one young collection, which looks at what it built
    # once; none runs while they run (hundreds did).
    assert len(collections) <= 2 and len(policy.rules) > 3000
    assert gc.isenabled()
    with pytest.raises(PolicyError):
        Policy.from_yaml("rules: [{id: R1}]")
    assert gc.isenabled()
    gc.disable()
    try:
        Policy.from_files(paths[:1])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_loads_that_overlap_in_threads_resume_the_collector_after_the_last() -> None:
    """Two loads in two threads that overlap (the first ends while the second runs) keep the
    collector paused until the second ends, then resume it: it is neither left off nor
    resumed under a load still running."""
    from agentguard.policy._policy import _collector_paused

    first, second = _collector_paused(), _collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
