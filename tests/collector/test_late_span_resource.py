"""Kernel events that follow their tool span as child spans carry the agent's whole OTLP resource,
so backends file them with the agent (same service, host, pid, deployment, project)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector.daemon import Collector
from agentguard.collector.forward import AgentResources
from tests.collector.conftest import Listener, require_ebpf, start_collector
from tests.collector.helpers import run_agent_script, wait_for
from tests.otlp_receiver import OtlpReceiver

# What a deployment puts on an agent's resource besides service.name and process.pid.
RESOURCE_ATTRIBUTES = {
    "host.name": "agent-node-7",
    "deployment.environment": "staging",
    "openinference.project.name": "support-bot",
}


@pytest.fixture(scope="module")
def downstream() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory,
              downstream: OtlpReceiver) -> Iterator[Collector]:
    """An eBPF collector forwarding enriched spans to a real OTLP receiver."""
    require_ebpf()
    collector = start_collector(tmp_path_factory.mktemp("late"), sensor="ebpf",
                                forward=downstream.http_endpoint)
    yield collector
    collector.stop()


def test_late_child_span_keeps_the_agents_resource(collector: Collector,
                                                   downstream: OtlpReceiver) -> None:
    """A connection made after its tool span went out is forwarded as a child span under exactly
    the resource the agent sent its own spans with."""
    listener = Listener()
    endpoint = "http://" + collector.endpoints()["otlp_http"]
    attributes = ",".join(f"{key}={value}" for key, value in RESOURCE_ATTRIBUTES.items())
    try:
        pid, out = run_agent_script(collector, [endpoint, "http/protobuf", str(listener.port)],
                                    env={**os.environ, "AGENTGUARD_RUNTIME_SENSOR": "true",
                                         "OTEL_RESOURCE_ATTRIBUTES": attributes})
    finally:
        listener.close()
    background = json.loads(out.strip().splitlines()[-1])["background"]

    def late_and_parent() -> tuple[object, object] | None:
        spans = downstream.spans
        late = [s for s in spans if s.parent_span_id == background["span_id"]
                and s.name.startswith("agentguard.kernel.net.connect")]
        parent = [s for s in spans if s.span_id == background["span_id"]]
        return (late[0], parent[0]) if late and parent else None

    late, parent = wait_for(late_and_parent, timeout=20)
    assert late.trace_id == background["trace_id"]
    assert late.attributes["network.peer.port"] == listener.port
    assert late.resource == parent.resource
    assert late.resource["process.pid"] == pid
    assert late.resource["service.name"] == "kernel-test-agent"
    for key, value in RESOURCE_ATTRIBUTES.items():
        assert late.resource[key] == value
    assert collector.snapshot()["late_spans_resource_lost"] == 0


def _resource_spans(pid: int, service: str, **extra: str) -> trace_pb2.ResourceSpans:
    pairs = {"service.name": AnyValue(string_value=service), "process.pid": AnyValue(int_value=pid)}
    pairs.update({key: AnyValue(string_value=value) for key, value in extra.items()})
    return trace_pb2.ResourceSpans(
        resource=Resource(attributes=[KeyValue(key=k, value=v) for k, v in pairs.items()]),
        schema_url="https://opentelemetry.io/schemas/1.26.0")


def test_agent_resources_are_bounded_per_agent_and_follow_the_newest() -> None:
    """Resources are remembered once per agent (newest wins), within a bound that evicts the
    agent heard from least recently and counts it."""
    resources = AgentResources(max_agents=2)
    first = resources.remember(_resource_spans(10, "a", **{"deployment.environment": "dev"}))
    again = resources.remember(_resource_spans(10, "a", **{"deployment.environment": "prod"}))
    assert again is first and len(resources) == 1
    resources.remember(_resource_spans(11, "b"))
    resources.remember(_resource_spans(10, "a"))  # a is now the most recent
    resources.remember(_resource_spans(12, "c"))  # evicts b
    assert len(resources) == 2 and resources.counters["resources_evicted"] == 1

    late = trace_pb2.ResourceSpans(resource=Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value="a"))]))
    assert resources.apply(late, first)
    assert {kv.key: kv.value.int_value or kv.value.string_value
            for kv in late.resource.attributes} == {"service.name": "a", "process.pid": 10}
    assert late.schema_url == "https://opentelemetry.io/schemas/1.26.0"
    assert not resources.apply(late, (11, "b", None))


def test_resource_memory_does_not_grow_with_spans() -> None:
    """Many spans of one agent share one remembered resource and one key object."""
    resources = AgentResources()
    keys = {id(resources.remember(_resource_spans(42, "agent", **{"host.name": "n1"})))
            for _ in range(1000)}
    assert len(keys) == 1 and len(resources) == 1


def test_an_oversized_resource_is_cut_to_its_leading_attributes() -> None:
    """A sender's huge resource is kept within the per-agent byte bound: the identifying
    attributes first in it survive, the rest are counted as dropped."""
    resources = AgentResources()
    huge = _resource_spans(7, "big", **{f"junk.{i}": "x" * 1000 for i in range(100)})
    key = resources.remember(huge)
    late = trace_pb2.ResourceSpans()
    assert resources.apply(late, key)
    kept = {kv.key for kv in late.resource.attributes}
    assert {"service.name", "process.pid"} <= kept and len(kept) < 20
    assert late.resource.dropped_attributes_count == 102 - len(kept)
    assert late.resource.ByteSize() <= 16 * 1024
    assert resources.counters["resources_trimmed"] == 1
