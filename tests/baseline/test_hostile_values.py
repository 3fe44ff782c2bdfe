"""Hostile values: numbers too large for a float in events, profile files with counts or times
beyond any real learning run, and malformed trace files for ``agentguard profile learn``."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import agentguard
from agentguard._errors import internal_error_counts
from agentguard.baseline import (
    Learner,
    Profile,
    ProfileError,
    Scorer,
    load_profile,
    save_profile,
)
from agentguard.baseline._summaries import MAX_COUNT
from agentguard.baseline.otlp import OtlpStats, learn_otlp_files
from agentguard.cli import main
from agentguard.events import CloudCall, EventContext, Message, ModelCall, ToolCall
from agentguard.policy import Policy

# What a model's JSON can carry: valid JSON, a valid Python int, too large for a float.
HUGE = json.loads('{"limit": 1' + "0" * 400 + "}")["limit"]


def _ctx(tool: str | None = None) -> EventContext:
    return EventContext(agent="svc", tool=tool)


def _learned(calls: int = 40) -> Profile:
    """An agent whose export tool took ``limit`` 1..5, whose cloud scans asked for 10..50 items,
    and whose model scored 0.1..0.9."""
    learner = Learner(Profile(agent="svc"))
    for n in range(calls):
        learner.learn(ToolCall(context=_ctx("export_rows"), tool="export_rows",
                               arguments={"limit": n % 5 + 1, "page": str(n % 3 + 1)}))
        learner.learn(ToolCall(context=_ctx("export_rows"), tool="export_rows", phase="result",
                               result=[{"id": i} for i in range(n % 4 + 1)]))
        learner.learn(CloudCall(context=_ctx("export_rows"), service="dynamodb",
                                operation="Scan", parameters={"Limit": 10 * (n % 5 + 1)}))
        learner.learn(ModelCall(context=_ctx(), provider="openai", model="gpt-4o",
                                phase="response", output_tokens=100 + n,
                                output=[Message(role="assistant", content=json.dumps(
                                    {"decision": "approve", "score": 0.1 + (n % 9) / 10}))]))
    return learner.profile


def _profile_file(tmp_path: Path, name: str = "svc.json") -> Path:
    path = tmp_path / name
    save_profile(_learned(), path)
    return path


# -- numbers too large for a float ---------------------------------------------------------------

def test_a_json_integer_too_large_for_a_float_is_blocked_as_out_of_range(guarded: Any,
                                                                          tmp_path: Path) -> None:
    """In enforce mode a 401-digit integer argument is blocked like any value beyond the learned
    range, with a message that names its size, instead of slipping through as an internal error."""
    path = tmp_path / "svc.json"

    @agentguard.tool
    def export_rows(limit: int) -> str:
        return "rows"

    guarded(mode="learn", profile=str(path), service_name="svc", runtime_sensor=False,
            builtin_rules=False, injection_detection=False)
    for n in range(40):
        export_rows(limit=n % 5 + 1)
    agentguard.uninstrument()
    findings: list[Any] = []
    guarded(mode="enforce", profile=str(path), service_name="svc", runtime_sensor=False,
            builtin_rules=False, injection_detection=False, on_finding=findings.append)
    errors = internal_error_counts().get("baseline", 0)
    assert export_rows(limit=3) == "rows"
    with pytest.raises(agentguard.ToolCallBlocked) as info:
        export_rows(limit=HUGE)
    assert info.value.finding.rule_id == "baseline-argument-range"
    assert "(401-digit integer) is outside the learned range 1..5" in info.value.finding.title
    assert info.value.finding.evidence["observed"] == "(401-digit integer)"
    assert [f.rule_id for f in findings] == ["baseline-argument-range"]
    assert internal_error_counts().get("baseline", 0) == errors


def test_huge_numbers_anywhere_in_an_event_are_scored_not_raised() -> None:
    """Cloud parameters, model scores, token counts and numeric strings too large for a float are
    reported as out of range; scoring never raises on them."""
    scorer = Scorer(_learned())
    cases = [
        (CloudCall(context=_ctx("export_rows"), service="dynamodb", operation="Scan",
                   parameters={"Limit": HUGE}), "cloud-parameter"),
        (ModelCall(context=_ctx(), provider="openai", model="gpt-4o", phase="response",
                   output_tokens=120, output=[Message(role="assistant", content=json.dumps(
                       {"decision": "approve", "score": HUGE}))]), "decision-score"),
        (ModelCall(context=_ctx(), provider="openai", model="gpt-4o", phase="response",
                   output_tokens=HUGE), "output-tokens"),
        (ToolCall(context=_ctx("export_rows"), tool="export_rows",
                  arguments={"limit": 2, "page": "1e400"}), "argument-range"),
        (ToolCall(context=_ctx("export_rows"), tool="export_rows",
                  arguments={"limit": -HUGE, "page": "1"}), "argument-range"),
    ]
    for event, rule in cases:
        deviations = scorer.score(event)
        assert rule in [d.rule for d in deviations], (event, deviations)
        found = next(d for d in deviations if d.rule == rule)
        assert found.severity in ("medium", "high")
        json.dumps(found.to_dict())
    result = ToolCall(context=_ctx("export_rows"), tool="export_rows", phase="result",
                      result=10 ** 5000)
    assert [(d.rule, d.observed) for d in scorer.score(result)] == [("result-bytes", 5001)]


def test_learning_huge_numbers_neither_raises_nor_widens_the_learned_range() -> None:
    """Learning integers too large for a float (as arguments, results and model scores) counts
    them as non-finite: the learned ranges stay as they were and the profile saves and loads."""
    learner = Learner(_learned())
    learner.learn(ToolCall(context=_ctx("export_rows"), tool="export_rows",
                           arguments={"limit": HUGE, "page": "1e400"}))
    learner.learn(ToolCall(context=_ctx("export_rows"), tool="export_rows", phase="result",
                           result=10 ** 5000))
    learner.learn(ModelCall(context=_ctx(), provider="openai", model="gpt-4o", phase="response",
                            output=[Message(role="assistant",
                                            content=json.dumps({"score": HUGE}))]))
    profile = learner.profile
    limit = profile.tools["export_rows"].args["limit"].numbers
    assert limit is not None and (limit.min, limit.max, limit.nonfinite) == (1.0, 5.0, 1)
    page = profile.tools["export_rows"].args["page"].numbers
    assert page is not None and (page.max, page.nonfinite) == (3.0, 1)
    sizes = profile.tools["export_rows"].result_bytes
    assert sizes is not None and sizes.max == 5001.0
    score = profile.agent_activity.scores["score"]
    assert score.nonfinite == 1 and score.max is not None and score.max < 1
    assert Profile.from_json(profile.to_json()) == profile


# -- to-policy -------------------------------------------------------------------------------

def test_to_policy_leaves_out_a_bound_beyond_the_largest_float(tmp_path: Path) -> None:
    """A range learned up to 1e308 gives a policy with only its lower bound (the upper one, with
    the margin, is beyond every float) and says so in the header; a range with no finite bound
    on either side gives no rule."""
    learner = Learner(Profile(agent="svc"))
    for n in range(30):
        learner.learn(ToolCall(context=_ctx("convert"), tool="convert",
                               arguments={"amount": n + 1, "delta": (-1) ** n * 1.7e308}))
    learner.learn(ToolCall(context=_ctx("convert"), tool="convert",
                           arguments={"amount": 1e308, "delta": 0}))
    path = tmp_path / "svc.json"
    save_profile(learner.profile, path)
    out = tmp_path / "policy.yaml"
    assert main(["profile", "to-policy", str(path), "-o", str(out)]) == 0
    text = out.read_text()
    assert "#   convert.amount: learned up to 1e+308, no finite bound above it (no rule)" in text
    assert "#   convert.delta: learned -1.7e+308..1.7e+308, no finite bound (no rule)" in text
    rules = [r for r in yaml.safe_load(text)["rules"]
             if "amount" in json.dumps(r.get("when")) or "delta" in json.dumps(r.get("when"))]
    assert [r["when"] for r in rules] == [{"field": "arguments.amount", "lt": 0}]
    assert rules[0]["description"] == "convert called with amount below 0"
    policy = Policy.from_file(out)
    fired = [d.rule_id for d in policy.evaluate(ToolCall(
        context=_ctx("convert"), tool="convert", arguments={"amount": -5})) or []]
    assert rules[0]["id"] in fired


# -- profile files with impossible counts --------------------------------------------------------

def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _limit(data: dict[str, Any]) -> dict[str, Any]:
    numbers: dict[str, Any] = data["tools"]["export_rows"]["args"]["limit"]["numbers"]
    return numbers


def _set_huge_histogram(data: dict[str, Any]) -> None:
    numbers = _limit(data)
    numbers.update(count=10 ** 400, min=1.0, max=1.0, positive={"0": 10 ** 400})


def _set_huge_value_count(data: dict[str, Any]) -> None:
    data["tools"]["export_rows"]["args"]["page"]["values"]["values"]["1"] = 10 ** 400


def _set_huge_calls(data: dict[str, Any]) -> None:
    data["tools"]["export_rows"]["calls"] = MAX_COUNT + 1


def _set_huge_bucket_index(data: dict[str, Any]) -> None:
    numbers = _limit(data)
    count = sum(numbers["positive"].values())
    numbers["positive"] = {str(10 ** 300): count}


@pytest.mark.parametrize(("change", "where"), [
    (_set_huge_histogram, "tools.export_rows.args.limit.numbers.count"),
    (_set_huge_value_count, "tools.export_rows.args.page.values.values.1"),
    (_set_huge_calls, "tools.export_rows.calls"),
    (_set_huge_bucket_index, "tools.export_rows.args.limit.numbers.positive.100000"),
])
def test_a_profile_with_an_impossible_count_is_refused_naming_the_file(
        guarded: Any, tmp_path: Path, capsys: Any, change: Any, where: str) -> None:
    """A count beyond 2**53 (or a bucket no float falls in) is corruption: the loader refuses the
    file, instrument() fails with a ConfigError naming it, and the CLI exits 2 saying why."""
    path = _profile_file(tmp_path)
    _edit(path, change)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and where in str(info.value)
    with pytest.raises(agentguard.ConfigError) as config:
        guarded(mode="enforce", profile=str(path), service_name="svc", runtime_sensor=False)
    assert str(path) in str(config.value) and where in str(config.value)
    for command in (["status", str(path)], ["show", str(path)],
                    ["to-policy", str(path), "-o", str(tmp_path / "p.yaml")]):
        assert main(["profile", *command]) == 2
        assert f"{path}: invalid profile: {where}" in capsys.readouterr().err


def test_a_profile_at_the_count_bound_is_scored_and_cannot_be_merged_past_it(
        guarded: Any, tmp_path: Path, capsys: Any) -> None:
    """Counts up to 2**53 load and score as usual; merging two profiles whose counts add up to
    more fails with an error, not a traceback, and writes nothing."""
    path = _profile_file(tmp_path)

    def at_bound(data: dict[str, Any]) -> None:
        numbers = _limit(data)
        index, count = next(iter(numbers["positive"].items()))
        numbers["positive"][index] = count + MAX_COUNT - numbers["count"]
        numbers["count"] = MAX_COUNT

    _edit(path, at_bound)
    assert load_profile(path).tools["export_rows"].args["limit"].numbers is not None
    errors = internal_error_counts().get("baseline", 0)

    @agentguard.tool
    def export_rows(limit: int, page: str = "1") -> str:
        return "rows"

    guarded(mode="enforce", profile=str(path), service_name="svc", runtime_sensor=False,
            builtin_rules=False, injection_detection=False)
    with pytest.raises(agentguard.ToolCallBlocked):
        export_rows(limit=50_000)
    assert internal_error_counts().get("baseline", 0) == errors
    out = tmp_path / "merged.json"
    assert main(["profile", "merge", str(path), str(path), "-o", str(out)]) == 2
    assert "cannot merge the profiles of agent 'svc'" in capsys.readouterr().err
    assert not out.exists()


def test_status_show_and_to_policy_survive_times_no_calendar_holds(tmp_path: Path,
                                                                   capsys: Any) -> None:
    """A profile whose first and last times are beyond any calendar date is still shown and
    turned into a policy, with the times as numbers."""
    path = _profile_file(tmp_path)
    _edit(path, lambda data: data.update(first_seen=-1e300, last_seen=1e300))
    assert main(["profile", "status", str(path)]) == 0
    assert main(["profile", "show", str(path)]) == 0
    assert "1e+300" in capsys.readouterr().out
    out = tmp_path / "p.yaml"
    assert main(["profile", "to-policy", str(path), "-o", str(out)]) == 0
    assert "-1e+300 to 1e+300" in out.read_text()


# -- malformed trace files -----------------------------------------------------------------------

_SPAN = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
         "name": "execute_tool lookup", "startTimeUnixNano": "1700000000000000000",
         "endTimeUnixNano": "1700000001000000000",
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                        {"key": "gen_ai.tool.name", "value": {"stringValue": "lookup"}}]}


def _export(*spans: dict[str, Any]) -> str:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "agentguard"}, "spans": list(spans)}]}]})


def _corrupt_gzip() -> bytes:
    data = bytearray(gzip.compress((_export(_SPAN) + "\n").encode()))
    data[12:20] = b"\xff" * 8  # inside the deflate stream
    return bytes(data)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("deep.jsonl", ("[" * 100_000 + "]" * 100_000 + "\n").encode(), "nested too deeply"),
    ("wrong-type.jsonl", b'{"resourceSpans": 5}\n',
     ":1: not OTLP/JSON (resourceSpans is a JSON number, not an array)"),
    ("array.json", b'[1, 2]\n', ":1: not OTLP/JSON (a JSON array, not an object)"),
    ("cut.jsonl.gz", gzip.compress(b'{"resourceSpans": []}\n')[:15],
     "not OTLP/JSON (compressed data cut short or corrupt"),
    ("corrupt.jsonl.gz", _corrupt_gzip(), "not OTLP/JSON (compressed data cut short or corrupt"),
], ids=["deep", "wrong-type", "array", "cut-gzip", "corrupt-gzip"])
def test_learn_reports_a_malformed_trace_file_and_learns_the_others(
        tmp_path: Path, capsys: Any, name: str, content: bytes, reason: str) -> None:
    """A trace file that is not OTLP/JSON is reported by name (no traceback), the other files
    are still learned, and an existing output profile keeps everything it held."""
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.jsonl"
    good.write_text(_export(_SPAN) + "\n")
    out = _profile_file(tmp_path)
    before = load_profile(out)
    assert main(["profile", "learn", "--no-progress", "--from", str(bad), str(good),
                 "-o", str(out), "--agent", "svc"]) == 0
    err = capsys.readouterr().err
    assert f"agentguard profile learn: {bad}" in err and reason in err
    after = load_profile(out)
    assert after.tools["lookup"].calls == 1
    assert after.tools["export_rows"] == before.tools["export_rows"]
    original = out.read_bytes()
    assert main(["profile", "learn", "--no-progress", "--from", str(bad), "-o", str(out),
                 "--agent", "svc"]) == 2
    assert reason in capsys.readouterr().err
    assert out.read_bytes() == original


@pytest.mark.parametrize("agent", [[], ["--agent", "svc"]], ids=["no-agent", "agent"])
def test_learning_only_unreadable_traces_names_them_and_writes_nothing(
        tmp_path: Path, capsys: Any, agent: list[str]) -> None:
    """When every trace file given is unreadable, each is named with its reason (with or without
    --agent), the command exits 2 and no profile file is created."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"resourceSpans": 5}\n')
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b'{"resourceSpans": []}\n')[:15])
    out = tmp_path / "new.json"
    assert main(["profile", "learn", "--no-progress", "--from", str(bad), str(cut),
                 "-o", str(out), *agent]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: not OTLP/JSON (resourceSpans is a JSON number" in err
    assert f"{cut}: not OTLP/JSON (compressed data cut short or corrupt" in err
    assert "no span could be read" in err
    assert not out.exists()


def test_a_line_or_document_over_the_size_bound_is_reported_and_the_rest_learned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace line (or a pretty-printed document) larger than the bound is read through and
    reported by line, never held whole; the spans on the lines around it are learned."""
    from agentguard.baseline import otlp

    monkeypatch.setattr(otlp, "_MAX_DOCUMENT", 4096)
    first = dict(_SPAN, spanId="a7ad6b7169203331")
    huge = dict(_SPAN, spanId="b7ad6b7169203332", name="x" * 200_000)
    last = dict(_SPAN, spanId="c7ad6b7169203333")
    lines = tmp_path / "spans.jsonl"
    lines.write_text("\n".join(_export(span) for span in (first, huge, last)) + "\n")
    learner = Learner(Profile(agent="svc"))
    stats = learn_otlp_files([str(lines)], learner)
    assert stats.errors == [f"{lines}:2: not read: a line longer than 4096 bytes"]
    assert learner.profile.tools["lookup"].calls == 2
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps(json.loads(_export(huge)), indent=2))
    stats = learn_otlp_files([str(pretty)], Learner(Profile(agent="svc")))
    assert stats.errors == [f"{pretty}: not read: a document larger than 4096 bytes"]


def test_wrong_types_inside_a_trace_document_are_skipped_not_raised(tmp_path: Path) -> None:
    """Spans, events, attribute values and times of the wrong type or size inside an otherwise
    valid document are skipped; the well-formed span beside them is learned."""
    odd = copy.deepcopy(_SPAN)
    odd.update(spanId="c7ad6b7169203332", events=7, startTimeUnixNano="9" * 400,
               endTimeUnixNano=1e400)
    odd["attributes"] = [*_SPAN["attributes"],
                         {"key": "agentguard.turn.index", "value": {"stringValue": "²"}},
                         {"key": "x.list", "value": {"arrayValue": [1, 2]}},
                         {"key": "x.map", "value": {"kvlistValue": "nope"}}]
    # A model span whose token count and message index are digits int() refuses.
    model = {**_SPAN, "spanId": "d7ad6b7169203333", "name": "chat", "attributes": [
        {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
        {"key": "llm.token_count.completion", "value": {"stringValue": "9" * 5000}},
        {"key": "llm.output_messages.².message.content", "value": {"stringValue": "hi"}}]}
    document = json.loads(_export(_SPAN, odd, model, "not a span"))
    document["resourceSpans"].extend([5, {"scopeSpans": 5}, {"scopeSpans": [7, {"spans": {}}]},
                                      {"resource": [], "scopeSpans": [{"scope": 3, "spans": []}]}])
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps(document).replace("Infinity", "1e400") + "\n")
    learner = Learner(Profile(agent="svc"))
    stats: OtlpStats = learn_otlp_files([str(path)], learner)
    assert stats.errors == []
    assert stats.spans == 3 and learner.profile.tools["lookup"].calls == 2
    assert learner.profile.agent_activity.events["model_call"] == 2
    assert stats.skipped["malformed_span"] == 1
    assert stats.skipped["malformed_resource_spans"] == 1
    assert stats.skipped["malformed_scope_spans"] == 1


def test_a_tool_span_without_a_tool_name_is_skipped_not_raised(tmp_path: Path) -> None:
    """A tool span that names no tool is counted as not learned; the named tool beside it is."""
    unnamed = {**_SPAN, "spanId": "e7ad6b7169203334", "name": "",
               "attributes": [_SPAN["attributes"][0]]}
    path = tmp_path / "unnamed.jsonl"
    path.write_text(_export(_SPAN, unnamed) + "\n")
    learner = Learner(Profile(agent="svc"))
    stats = learn_otlp_files([str(path)], learner)
    assert stats.errors == [] and stats.spans == 2
    assert list(learner.profile.tools) == ["lookup"]
    assert learner.profile.skipped == {"unnamed_tool": 1}


def test_learning_traces_into_a_profile_at_the_count_bound_fails_cleanly(
        tmp_path: Path, capsys: Any) -> None:
    """profile learn into a profile whose counts cannot grow any more exits 2 saying why (no
    traceback) and leaves the profile as it was."""
    path = _profile_file(tmp_path)
    _edit(path, lambda data: data.update(events=MAX_COUNT))
    original = path.read_bytes()
    traces = tmp_path / "traces.jsonl"
    traces.write_text(_export(_SPAN) + "\n")
    assert main(["profile", "learn", "--no-progress", "--from", str(traces), "-o", str(path),
                 "--agent", "svc"]) == 2
    err = capsys.readouterr().err
    assert "cannot merge the profiles of agent 'svc': events:" in err
    assert f"{path} not changed" in err
    assert path.read_bytes() == original
