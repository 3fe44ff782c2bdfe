"""Learning profiles from exported traces made by OpenInference, OpenLLMetry and agentguard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool

import agentguard
from agentguard.baseline import Scorer, load_profile
from agentguard.cli import main
from agentguard.demo.scripted import ScriptedChatModel, call, say
from agentguard.events import EventContext, ToolCall
from tests.baseline.traces import write_otlp

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trace_files(tmp_path_factory: Any) -> Path:
    """Trace files made by OpenInference and OpenLLMetry instrumenting a real LangChain agent
    (in a child process: instrumentors patch LangChain process-wide)."""
    directory = tmp_path_factory.mktemp("traces")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-m", "tests.baseline.make_traces", str(directory)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return directory


def _learn(*args: str) -> int:
    return main(["profile", "learn", "--no-progress", *args])


def _spans(path: Path) -> list[dict[str, Any]]:
    return [span for line in path.read_text().splitlines() if line.strip()
            for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"]
            for span in ss["spans"]]


def _attribute(span: dict[str, Any], key: str) -> Any:
    for item in span.get("attributes", []):
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None


def test_learning_from_an_openinference_trace_file(trace_files: Path, tmp_path: Path,
                                                   capsys: Any) -> None:
    """Spans made by OpenInference's LangChain instrumentation of a real agent, exported as
    OTLP/JSON, give a profile with the agent's tools, arguments and results."""
    traces = trace_files / "openinference.jsonl"
    spans = _spans(traces)
    assert any(_attribute(s, "openinference.span.kind") == "TOOL" for s in spans)
    out = tmp_path / "profile.json"
    assert _learn("--from", str(traces), "-o", str(out)) == 0
    assert "openinference" in capsys.readouterr().out

    profile = load_profile(out)
    assert profile.agent == "support"
    assert set(profile.tools) <= {"lookup_customer", "query_customers", "search_orders",
                                  "fetch_doc", "send_email"}
    lookup = profile.tools["lookup_customer"]
    assert lookup.calls == lookup.results > 10
    ids = lookup.args["customer_id"].numbers
    assert ids is not None and ids.min is not None and ids.min >= 1000
    query = profile.tools["query_customers"]
    records = query.result_records
    assert records is not None and records.min is not None and records.max is not None
    assert 1 <= records.min <= records.max <= 5
    assert query.calls_per_turn is not None
    assert profile.turns == len({s["traceId"] for s in spans})
    models = profile.agent_activity.models
    assert models is not None and "scripted/scripted-1" in models.values
    send = profile.tools["send_email"].args["to"].domains
    assert send is not None and set(send.values) <= {"example.com", "example.org",
                                                     "mail.example.net"}
    # The learned profile judges like one learned live.
    deviations = Scorer(profile).score(ToolCall(
        context=EventContext(agent="support", tool="query_customers"), tool="query_customers",
        arguments={"query": "city = Lyon and tier = gold", "limit": 50_000}))
    assert "argument-range" in {d.rule for d in deviations}


def test_learning_from_an_openllmetry_trace_file(trace_files: Path, tmp_path: Path) -> None:
    """Spans made by OpenLLMetry's LangChain instrumentation (traceloop.* attributes, tool input
    as a Python literal, serialised tool messages; hex ids as the Collector writes them) give the
    same tools and arguments."""
    traces = trace_files / "openllmetry.jsonl"
    assert any(_attribute(s, "traceloop.span.kind") == "tool" for s in _spans(traces))
    out = tmp_path / "profile.json"
    assert _learn("--from", str(traces), "-o", str(out), "--agent", "support") == 0
    profile = load_profile(out)
    lookup = profile.tools["lookup_customer"]
    assert lookup.calls > 3
    assert set(lookup.args) == {"customer_id"}
    assert lookup.args["customer_id"].types == {"int": lookup.calls}
    assert lookup.result_records is not None and lookup.result_records.max == 1


# The S3 client the archive tool uploads with (a boto3 client on the moto server).
S3: list[Any] = []


@tool
def archive(report: str) -> str:
    """Archive a report: compress it with a child process and upload it to S3."""
    subprocess.run(["true", report], check=True)
    S3[0].put_object(Bucket="reports-archive", Key=f"r/{report}.gz", Body=b"x")
    return json.dumps([{"row": i} for i in range(300)])


def test_learning_from_agentguard_traces_in_collector_format(guarded: Any, spans: Any,
                                                              tmp_path: Path, aws: Any) -> None:
    """agentguard's own spans (gzip, hex ids, integer enums as the Collector writes them) give
    tool calls with what ran inside them: processes and cloud resources per tool; results cut
    at capture are learned at their full size."""
    S3[:] = [aws("s3")]
    S3[0].create_bucket(Bucket="reports-archive")
    guarded(service_name="reports", max_content_length=256)
    for n in range(5):
        agent = create_agent(ScriptedChatModel(script=[
            say("", call("archive", f"a{n}", report=f"weekly-{n}")), say("Archived.")]),
            [archive], name="reports")
        with agentguard.conversation(f"c{n}"):
            agent.invoke({"messages": [("user", "archive the weekly report")]})
    finished = spans.all()
    traces = write_otlp(finished, tmp_path / "traces.jsonl.gz", collector=True, compress=True)
    first = json.loads(__import__("gzip").decompress(traces.read_bytes()).splitlines()[0])
    assert len(first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]) == 32
    out = tmp_path / "profile.json"
    assert _learn("--from", str(traces), "-o", str(out)) == 0
    profile = load_profile(out)
    assert profile.agent == "reports"
    tool_profile = profile.tools["archive"]
    assert tool_profile.calls == 5
    activity = tool_profile.activity
    assert activity.cloud_resources["s3.bucket"].values == {"reports-archive": 5}
    assert any(path.endswith("/true") for path in activity.processes)
    # The result was cut at 256 characters; its size and records come from the marker.
    records = tool_profile.result_records
    assert records is not None and records.min is not None and 200 <= records.min <= 400
    size = tool_profile.result_bytes
    assert size is not None and size.min is not None and size.min > 3000
    assert profile.turns == 5


def test_blocked_calls_in_traces_are_not_learned(guarded: Any, spans: Any,
                                                 tmp_path: Path) -> None:
    """A tool call agentguard blocked is left out of a profile learned from the traces."""
    guard = guarded(service_name="support", mode="enforce")

    @guard.policy
    def no_deletes(event: Any) -> Any:
        if getattr(event, "tool", None) == "delete_all":
            return agentguard.Decision.block("no deletes", rule_id="no-deletes")
        return None

    agent = create_agent(ScriptedChatModel(script=[
        say("", call("delete_all", "d1", confirm=True)), say("ok")]), [_delete_all],
        name="support")
    with agentguard.conversation("c1"):
        agent.invoke({"messages": [("user", "delete everything")]})
    traces = write_otlp(spans.all(), tmp_path / "t.jsonl")
    out = tmp_path / "p.json"
    assert _learn("--from", str(traces), "-o", str(out)) == 0
    profile = load_profile(out)
    assert "delete_all" not in profile.tools


@tool("delete_all")
def _delete_all(confirm: bool) -> str:
    """Delete every record."""
    return "deleted"


def test_calls_of_tools_the_agent_lacks_in_traces_are_not_learned(guarded: Any, spans: Any,
                                                                    tmp_path: Path,
                                                                    capsys: Any) -> None:
    """A call the model made of a tool the agent does not have is in the traces as a failed
    tool span marked ``agentguard.tool.unknown``; learning from them leaves it out of the
    profile and says so, while the agent's real tool is learned."""
    guarded(service_name="support")
    for n in range(2):
        agent = create_agent(ScriptedChatModel(script=[
            say("", call("format_disk", f"f{n}", device="/dev/sda")),
            say("", call("delete_all", f"d{n}", confirm=False)), say("ok")]), [_delete_all],
            name="support")
        with agentguard.conversation(f"c{n}"):
            agent.invoke({"messages": [("user", "tidy up")]})
    traces = write_otlp(spans.all(), tmp_path / "t.jsonl")
    assert [_attribute(span, "agentguard.tool.unknown") for span in _spans(traces)
            if span["name"] == "execute_tool format_disk"] == [True, True]
    out = tmp_path / "p.json"
    capsys.readouterr()
    assert _learn("--from", str(traces), "-o", str(out)) == 0
    assert "unknown_tool 2" in capsys.readouterr().out
    profile = load_profile(out)
    assert sorted(profile.tools) == ["delete_all"]
    predecessors = profile.tools["delete_all"].predecessors
    assert predecessors is not None and predecessors.values == {"^": 2}


def test_learn_extends_an_existing_profile_and_refuses_a_corrupt_one(
        trace_files: Path, tmp_path: Path, capsys: Any) -> None:
    """Learning into an existing profile adds to it; a corrupt output file is not overwritten."""
    traces = trace_files / "openinference.jsonl"
    out = tmp_path / "p.json"
    assert _learn("--from", str(traces), "-o", str(out), "--agent", "support") == 0
    once = load_profile(out).events
    assert _learn("--from", str(traces), "-o", str(out), "--agent", "support") == 0
    assert load_profile(out).events == 2 * once
    out.write_text("not json")
    capsys.readouterr()
    assert _learn("--from", str(traces), "-o", str(out), "--agent", "support") == 2
    assert "not overwritten" in capsys.readouterr().err
    assert out.read_text() == "not json"
    assert _learn("--from", str(tmp_path / "missing.jsonl"), "-o", str(out)) == 2


def test_progress_bar_and_pretty_printed_documents(trace_files: Path, tmp_path: Path,
                                                   capsys: Any) -> None:
    """A single pretty-printed OTLP document is read too, with the progress bar on."""
    out = tmp_path / "p.json"
    assert main(["profile", "learn", "--from", str(trace_files / "openinference-pretty.json"),
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "learning" in captured.err
    assert load_profile(out).tools


def test_embedding_calls_in_traces_are_learned_as_model_calls(guarded: Any, spans: Any,
                                                              tmp_path: Path) -> None:
    """An ``embeddings {model}`` span (a Bedrock embedding model) is a model the agent calls,
    learned from traces as it is learned live: a profile from traces would otherwise flag the
    embedding model as never seen."""
    guard = guarded(service_name="search")
    with agentguard.conversation("c1"):
        for model, operation in (("amazon.titan-embed-text-v2:0", "embeddings"),
                                 ("anthropic.claude-3-haiku", "chat")):
            op = guard.start_chat(provider="aws.bedrock", model=model,
                                  messages=[{"role": "user", "content": "refund policy"}],
                                  operation=operation)
            op.end_chat(None if operation == "embeddings" else
                        [{"role": "assistant", "content": "ok"}], input_tokens=3)
    assert {s.name for s in spans.all()} == {"embeddings amazon.titan-embed-text-v2:0",
                                             "chat anthropic.claude-3-haiku"}
    traces = write_otlp(spans.all(), tmp_path / "traces.jsonl")
    out = tmp_path / "profile.json"
    assert _learn("--from", str(traces), "-o", str(out)) == 0
    models = load_profile(out).agent_activity.models
    assert models is not None
    assert set(models.values) == {"aws.bedrock/amazon.titan-embed-text-v2:0",
                                  "aws.bedrock/anthropic.claude-3-haiku"}
