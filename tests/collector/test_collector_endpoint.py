"""``AGENTGUARD_COLLECTOR_ENDPOINT`` / ``instrument(collector_endpoint=...)``: the library sends its
spans to the node's collector (alone, or beside an OTLP backend), and the collector registers and
attributes the agent by them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import agentguard
from agentguard._telemetry import build_telemetry
from agentguard.collector.daemon import Collector
from agentguard.collector.store import Store
from agentguard.config import ConfigError, collector_target, resolve_config
from tests.collector.conftest import Listener, require_ebpf
from tests.collector.helpers import run_agent_script, tree_events, wait_for
from tests.otlp_receiver import OtlpReceiver


def _clean_environment(**extra: str) -> dict[str, str]:
    """This environment without any agentguard or OTLP exporter setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGENTGUARD_", "OTEL_EXPORTER_OTLP", "OTEL_TRACES_EXPORTER"))}
    env.update(extra)
    return env


def _run_agent(collector: Collector, env: dict[str, str], listener: Listener, *,
               watch: bool) -> dict[str, Any]:
    """Run the test agent configured by ``env`` alone; returns its pid and tool span ids."""

    def watched(pid: int) -> bool:
        if watch:
            # (Discovery may have found it by its marker first.)
            return collector.watch(pid, "test agent") or pid in collector.watches.snapshot()
        # Nobody tells the collector: it finds the agent by its environment marker.
        return bool(wait_for(lambda: pid in collector.watches.snapshot(), timeout=15))

    pid, out = run_agent_script(collector, ["env", "-", str(listener.port)], env=env,
                                watch=watched)
    return {"pid": pid, "spans": json.loads(out.strip().splitlines()[-1])}


def _shell_events_joined(collector: Collector, run: dict[str, Any]) -> list[dict[str, Any]]:
    shell = run["spans"]["run_shell"]

    def joined() -> list[dict[str, Any]]:
        collector.sync()
        return [e for e in tree_events(collector, run["pid"], "process.exec")
                if e["span_id"] == shell["span_id"]]
    events: list[dict[str, Any]] = wait_for(joined, timeout=20)
    return events


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """An eBPF collector that discovers agents by their environment (both OTLP listeners)."""
    require_ebpf()
    from tests.collector.conftest import start_collector

    started = start_collector(tmp_path_factory.mktemp("endpoint"), sensor="ebpf", discover=True,
                              discover_interval=0.2)
    yield started
    started.stop()


def test_agent_with_only_the_collector_endpoint_is_attributed(collector: Collector,
                                                              listener: Listener) -> None:
    """An agent given nothing but AGENTGUARD_COLLECTOR_ENDPOINT is found, registered by its
    spans and has its tool's processes joined to the tool span."""
    endpoint = "http://" + collector.endpoints()["otlp_http"]
    run = _run_agent(collector, _clean_environment(AGENTGUARD_COLLECTOR_ENDPOINT=endpoint),
                     listener, watch=False)
    shell = run["spans"]["run_shell"]
    events = _shell_events_joined(collector, run)
    assert all(e["trace_id"] == shell["trace_id"] and e["tool"] == "run_shell"
               and e["conversation_id"] == "conv-kernel" for e in events)
    assert {e["attribution"] for e in events} <= {"child_pid", "thread", "traceparent",
                                                   "inherited"}
    agent = collector.correlator.agents[run["pid"]]
    assert agent.service == "kernel-test-agent"


def test_collector_over_grpc_beside_an_otlp_backend_gets_the_same_spans(
        collector: Collector, listener: Listener) -> None:
    """With an OTLP endpoint as well, the backend and the collector (over gRPC, chosen by the
    grpc:// URL) both receive the agent's spans."""
    with OtlpReceiver() as backend:
        env = _clean_environment(
            AGENTGUARD_COLLECTOR_ENDPOINT="grpc://" + collector.endpoints()["otlp_grpc"],
            AGENTGUARD_OTLP_ENDPOINT=backend.http_endpoint)
        run = _run_agent(collector, env, listener, watch=True)
        shell = run["spans"]["run_shell"]
        got = backend.wait_for(lambda spans: any(s.span_id == shell["span_id"] for s in spans), 15)
    span = next(s for s in got if s.span_id == shell["span_id"])
    assert span.resource["process.pid"] == run["pid"]
    assert span.transport == "http/protobuf"
    # The collector only listens for gRPC on that port: it got the span over gRPC and joined it.
    assert _shell_events_joined(collector, run)
    store = Store(collector.settings.db, readonly=True)
    try:
        assert shell["span_id"] in {s["span_id"] for s in store.spans()}
    finally:
        store.close()


def test_collector_endpoint_picks_the_protocol_from_the_url() -> None:
    """grpc:// and port 4317 mean OTLP/gRPC; other URLs OTLP/HTTP with /v1/traces; bad ones are
    refused naming the variable."""
    assert collector_target("grpc://10.0.0.5:9000") == ("grpc", "http://10.0.0.5:9000", False)
    assert collector_target("http://127.0.0.1:4317") == ("grpc", "http://127.0.0.1:4317", False)
    assert collector_target("127.0.0.1:4318") == \
        ("http/protobuf", "http://127.0.0.1:4318/v1/traces", False)
    assert collector_target("https://collector.local") == \
        ("http/protobuf", "https://collector.local:4318/v1/traces", True)
    assert collector_target("http://node:8080/otlp/v1/traces")[1] == \
        "http://node:8080/otlp/v1/traces"
    with pytest.raises(ConfigError, match="AGENTGUARD_COLLECTOR_ENDPOINT"):
        resolve_config({}, {"AGENTGUARD_COLLECTOR_ENDPOINT": "ftp://node:21"})
    with pytest.raises(ConfigError, match="collector_endpoint"):
        resolve_config({"collector_endpoint": "http://:4318"}, {})


@pytest.mark.parametrize(("otlp_endpoint", "pipelines"), [
    (None, ["collector"]),
    ("http://127.0.0.1:4318", ["collector"]),
    ("http://backend.example:4318", ["otlp", "collector"]),
])
def test_the_collector_is_the_exporter_unless_another_endpoint_is_configured(
        otlp_endpoint: str | None, pipelines: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an OTLP endpoint (or with the collector's own) spans go to the collector only;
    with another one they go to both, each through its own bounded queue."""
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    config = resolve_config({"collector_endpoint": "http://127.0.0.1:4318",
                             "otlp_endpoint": otlp_endpoint}, {})
    telemetry = build_telemetry(config)
    try:
        endpoints = []
        for processor in (telemetry.processor, telemetry.collector):
            if processor is not None:
                endpoints.append(processor.exporter._endpoint)
        expected = {"collector": "http://127.0.0.1:4318/v1/traces",
                    "otlp": "http://backend.example:4318/v1/traces"}
        assert endpoints == [expected[name] for name in pipelines]
    finally:
        telemetry.shutdown(timeout=0.2)


def test_spans_of_an_application_provider_reach_the_collector_with_the_pid() -> None:
    """On the application's own tracer provider, agentguard's spans still reach the collector
    with process.pid on their resource, and the application's resource stays untouched."""
    resource = Resource.create({"service.name": "app-owned"})
    provider = TracerProvider(resource=resource)
    with OtlpReceiver() as collector:
        agentguard.instrument(collector_endpoint=collector.http_endpoint, exporter="none",
                              tracer_provider=provider)

        @agentguard.tool
        def lookup(city: str) -> str:
            """Look a city up."""
            return city.upper()

        lookup("paris")
        agentguard.flush()
        spans = collector.wait_for(lambda got: any("lookup" in s.name for s in got), 10)
    span = next(s for s in spans if "lookup" in s.name)
    assert span.resource["process.pid"] == os.getpid()
    assert span.resource["service.name"] == "app-owned"
    assert "process.pid" not in resource.attributes


def test_agentguard_run_sends_to_the_collector_endpoint_option(tmp_path: Any) -> None:
    """``agentguard run --collector-endpoint URL`` sends an unmodified program's spans there."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import os\nimport agentguard\n\n"
        "@agentguard.tool\ndef lookup(city: str) -> str:\n    return city.upper()\n\n"
        "lookup('oslo')\nagentguard.flush()\nprint(os.getpid())\n")
    with OtlpReceiver() as collector:
        done = subprocess.run(
            [sys.executable, "-m", "agentguard.cli", "run", "--collector-endpoint",
             collector.http_endpoint, "--", sys.executable, str(script)],
            capture_output=True, text=True, timeout=60, env=_clean_environment())
        assert done.returncode == 0, done.stderr[-2000:]
        spans = collector.wait_for(lambda got: any("lookup" in s.name for s in got), 10)
    span = next(s for s in spans if "lookup" in s.name)
    assert span.resource["process.pid"] == int(done.stdout.split()[-1])
