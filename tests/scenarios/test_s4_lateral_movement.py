"""Scenario 4, lateral movement: the claims agent's fetcher is steered to the metadata service and
to an internal admin API; agentguard blocks every step before a connection is made."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentguard.demo._scenario import DemoEnv, Outcome
from agentguard.demo.scenarios.s4_lateral_movement import (
    FETCH_TIMEOUT,
    METADATA_URL,
    LateralMovement,
)
from agentguard.findings import Finding, ToolCallBlocked
from agentguard.sensors import OperationBlocked

IMDS = "169.254.169.254"


@dataclass
class Result:
    outcome: Outcome
    observed: dict[str, Any]
    spans: list[ReadableSpan]
    workdir: Path
    threads_left: list[str]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Result]:
    workdir = tmp_path_factory.mktemp("s4")
    exporter = InMemorySpanExporter()
    scenario = LateralMovement()
    threads = set(threading.enumerate())
    outcome = scenario.run(DemoEnv(workdir=workdir, output_dir=workdir, exporter=exporter))
    # Services and their connection threads end with the run (agentguard's export thread may
    # outlive a phase: it is agentguard's, not the scenario's).
    left = [t.name for t in set(threading.enumerate()) - threads
            if t.is_alive() and not t.name.startswith("agentguard")]
    yield Result(outcome, scenario.observed, list(exporter.get_finished_spans()), workdir, left)


def _by_rule(outcome: Outcome, rule_id: str) -> list[Finding]:
    return [f for f in outcome.findings if f.rule_id == rule_id]


def test_the_attack_is_detected_and_blocked_by_the_metadata_rules_and_the_baseline(
        result: Result) -> None:
    """The literal metadata link is blocked by AG009, the redirected connection to the metadata
    service by AG008 and the baseline, the admin API by the baseline's new destination."""
    outcome = result.outcome
    assert outcome.detected and outcome.blocked
    (ag009,) = _by_rule(outcome, "AG009")
    assert (ag009.kind, ag009.action, ag009.category, ag009.severity) == (
        "tool_call", "block", "runtime", "critical")
    assert ag009.evidence["matched"][0]["value"] == METADATA_URL
    (ag008,) = _by_rule(outcome, "AG008")
    assert (ag008.kind, ag008.action, ag008.category, ag008.tool) == (
        "net_connect", "block", "runtime", "fetch_attachment")
    assert ag008.evidence["matched"][0]["value"] == IMDS
    destinations = {f.evidence["observed"]: f for f in _by_rule(outcome, "baseline-destination")}
    assert any(d.startswith(f"{IMDS}:") for d in destinations)
    assert any(d.startswith(f"{result.observed['admin_host']}:") for d in destinations)
    for finding in destinations.values():
        assert (finding.kind, finding.action, finding.category) == ("net_connect", "block",
                                                                    "baseline")
        assert finding.evidence["mature"] and finding.evidence["state"] == "closed"
    assert all(f.conversation_id == "claim-CLM-7731" for f in outcome.findings)
    assert outcome.trace_ids and ag008.trace_id in outcome.trace_ids


def test_no_connection_to_the_metadata_service_or_the_admin_api_was_attempted(
        result: Result) -> None:
    """Each fetch failed on agentguard's block (tool call refused, then PermissionError from the
    sensor before connect()), never on a timeout, and the admin API received nothing."""
    fetches = [t for t in result.observed["tools"] if t.name == "fetch_attachment"]
    assert [t.status for t in fetches] == ["blocked", "blocked", "blocked"]
    assert isinstance(fetches[0].error, ToolCallBlocked)
    for fetch in fetches[1:]:
        reason = fetch.error.reason  # urllib wraps the socket error in URLError
        assert isinstance(reason, OperationBlocked) and reason.errno == errno.EACCES
    assert IMDS in str(fetches[1].error.reason)
    assert result.observed["admin_host"] in str(fetches[2].error.reason)
    # The redirector answered both tracked links: the fetcher got as far as connecting.
    assert result.observed["redirects"] == 2
    assert result.observed["admin_requests"] == 0
    assert result.observed["elapsed"] < FETCH_TIMEOUT


def test_the_learning_phase_raised_no_findings(result: Result) -> None:
    """Benign claims (read the claim, fetch its evidence) produce no finding at all."""
    assert result.outcome.noise == []
    assert (result.workdir / "profile.json").is_file()


def test_the_tool_span_records_the_refused_connection(result: Result) -> None:
    """The fetch_attachment span that followed the redirect carries the blocked net.connect to
    the metadata address and the AG008 finding, in the attack's trace."""
    for span in result.spans:
        if span.name != "execute_tool fetch_attachment":
            continue
        events = {e.name: dict(e.attributes or {}) for e in span.events
                  if e.name == "net.connect" and (e.attributes or {}).get(
                      "network.peer.address") == IMDS}
        if events:
            break
    else:
        pytest.fail("no fetch_attachment span recorded the connection to the metadata service")
    assert events["net.connect"]["agentguard.decision"] == "block"
    rules = {dict(e.attributes or {}).get("agentguard.finding.rule_id") for e in span.events}
    assert {"AG008", "baseline-destination"} <= rules
    assert f"{span.context.trace_id:032x}" in result.outcome.trace_ids


def test_the_control_plane_saw_an_authorized_model_call(result: Result) -> None:
    """The one line a control plane logs for the attack is an authorized Converse call."""
    assert result.outcome.control_plane.split() == [
        "bedrock:Converse", "role=claims-agent", "status=200", "authorized"]


def test_the_scenario_leaves_no_service_or_connection_thread_behind(result: Result) -> None:
    """The Bedrock server, the claims, document and admin services and their keep-alive
    connection threads are all gone when the scenario returns."""
    assert result.threads_left == []
