"""Agents that come and go for weeks: what the collector keeps per agent pid stays within its
bounds once they are gone, a pid handed out again never brings a new process an old agent's
events, and looking agents up in /proc has a budget a flood of made-up pids cannot exceed.

Real collectors (no kernel sensor: the kernel events are handed to the collector as a sensor
hands them) and real short-lived processes."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.collector import daemon
from agentguard.collector.daemon import Collector
from agentguard.collector.model import CONNECT, EXIT, KernelEvent
from tests.collector.helpers import start_on_pid, stored_events, wait_for
from tests.collector.test_receiver import post

MS = 1_000_000


def _request(pid: int, name: str, operation: str, start: int, end: int, *,
             tid: int | None = None) -> bytes:
    attributes = [KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value=operation))]
    if tid is not None:
        attributes.append(KeyValue(key="agentguard.thread.native_id",
                                   value=AnyValue(int_value=tid)))
    span = trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=name,
                          start_time_unix_nano=start, end_time_unix_nano=end,
                          attributes=attributes)
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=f"job-{pid}")),
            KeyValue(key="process.pid", value=AnyValue(int_value=pid))]),
        scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]).SerializeToString()


def _connect(pid: int, ts_ns: int) -> KernelEvent:
    return KernelEvent(CONNECT, ts_ns, pid, pid, {"address": "203.0.113.9", "port": 443,
                                                  "result": 0})


def _pids_in(value: Any) -> set[int]:
    """The integers a table's keys or members name (negated ones too)."""
    found: set[int] = set()
    items = value.keys() if isinstance(value, dict) else value
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            if isinstance(part, int) and not isinstance(part, bool):
                found.add(abs(part))
    return found


def test_what_the_collector_keeps_per_agent_pid_is_bounded_after_they_are_gone(
        collector_factory: Callable[..., Collector], monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty agents send spans, have events that find no tool span, and exit: once the hold
    window has passed, no table of the collector keeps more of their pids than its bound."""
    monkeypatch.setattr(daemon, "_MAX_AGENT_PIDS", 8)
    collector = collector_factory(sensor="none", hold_seconds=0.2)
    gone: set[int] = set()
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                                   stdin=subprocess.PIPE)
        now = time.time_ns()
        assert post(collector, _request(process.pid, "invoke_agent job", "invoke_agent",
                                        now - 10 * MS, now + 10 * MS))[0] == 200
        assert collector.sync()
        # An act outside every tool call: stored once the hold window ends, without a tool.
        collector._on_kernel_event(_connect(process.pid, now))
        process.communicate(b"\n", timeout=10)
        collector._on_kernel_event(KernelEvent(EXIT, time.time_ns(), process.pid, process.pid,
                                               {"exit_code": 0}))
        gone.add(process.pid)
    time.sleep(0.5)
    wait_for(lambda: collector.sync() and collector.snapshot()["agents"] == 0
             and collector.snapshot()["pending"] == 0)
    assert len([e for e in stored_events(collector, kind="net.connect")
                if e["pid"] in gone]) == 20
    # The correlator's span index is bounded by count (max_spans), not per agent.
    tables = [(f"collector.{name}", value) for name, value in vars(collector).items()
              if name != "counters"] + \
        [(f"correlator.{name}", value) for name, value in vars(collector.correlator).items()
         if name not in ("counters", "spans")]
    kept = {name: len(_pids_in(value) & gone) for name, value in tables
            if isinstance(value, (dict, set, collections.deque))}
    assert max(kept.values()) <= 8, kept


def _on_pid(pid: int) -> subprocess.Popen[bytes]:
    """A process started on ``pid`` (the kernel is told the last pid it handed out)."""
    return start_on_pid(pid, [sys.executable, "-c", "import sys; sys.stdin.readline()"],
                        stdin=subprocess.PIPE)


def test_a_new_process_on_an_old_agents_pid_does_not_get_its_events(
        collector_factory: Callable[..., Collector]) -> None:
    """An agent's act found no tool span and the agent exited. A new process on its pid claims a
    tool span over the old act's time: only its own act, not the old agent's, is re-attributed
    to that span."""
    if os.geteuid() != 0:
        pytest.skip("reusing a pid needs root (ns_last_pid)")
    collector = collector_factory(sensor="none", hold_seconds=0.3)
    old = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                           stdin=subprocess.PIPE)
    pid = old.pid
    old_act = time.time_ns()
    assert post(collector, _request(pid, "invoke_agent old", "invoke_agent", old_act - MS,
                                    old_act + MS))[0] == 200
    assert collector.sync()
    collector._on_kernel_event(_connect(pid, old_act))
    old.communicate(b"\n", timeout=10)
    wait_for(lambda: collector.sync() and
             [e for e in stored_events(collector, kind="net.connect") if e["pid"] == pid])

    new = _on_pid(pid)
    try:
        new_act = time.time_ns()
        assert post(collector, _request(pid, "invoke_agent new", "invoke_agent", new_act - MS,
                                        new_act + MS))[0] == 200
        assert collector.sync()
        collector._on_kernel_event(_connect(pid, new_act))
        time.sleep(0.5)
        wait_for(lambda: collector.sync() and len(
            [e for e in stored_events(collector, kind="net.connect") if e["pid"] == pid]) == 2)
        # The new process's tool span, claiming a time that covers both acts.
        assert post(collector, _request(pid, "execute_tool claim", "execute_tool",
                                        old_act - 50 * MS, new_act + 50 * MS, tid=pid))[0] == 200
        assert collector.sync()
        acts = {e["ts_ns"]: e for e in stored_events(collector, kind="net.connect")
                if e["pid"] == pid}
        assert acts[new_act]["span_name"] == "execute_tool claim"
        assert acts[old_act]["span_name"] != "execute_tool claim"
    finally:
        new.communicate(b"\n", timeout=10)


def test_made_up_pids_cannot_keep_the_core_walking_proc(
        collector_factory: Callable[..., Collector]) -> None:
    """A sender naming thousands of pids that exist nowhere costs the core a bounded share of
    its time: lookups beyond the budget are put off and counted, and every span is stored."""
    collector = collector_factory(sensor="none")
    request = trace_service_pb2.ExportTraceServiceRequest()
    now = time.time_ns()
    for n in range(3000):
        resource = request.resource_spans.add()
        resource.resource.attributes.append(
            KeyValue(key="process.pid", value=AnyValue(int_value=4_000_000 + n)))
        resource.scope_spans.add().spans.add(trace_id=os.urandom(16), span_id=os.urandom(8),
                                             name=f"made-up {n}", start_time_unix_nano=now,
                                             end_time_unix_nano=now)
    assert post(collector, request.SerializeToString())[0] == 200
    assert collector.sync(timeout=60)
    snapshot = collector.snapshot()
    assert snapshot["spans_received"] == 3000
    assert snapshot["agent_lookups_deferred"] > 0
    # Every span is stored, joined or not.
    assert snapshot["agents_not_found"] + snapshot["agent_lookups_deferred"] == 3000
