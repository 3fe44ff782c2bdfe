"""A watched tree that fills the kernel program's watch map cannot hide what comes next: the
processes it could not watch are reported (``sensor.unwatched``), counted, and judged as a finding
of the tool call that made them (``AGK006``).

A real eBPF collector with a small watch map, a real instrumented agent whose tool keeps many
processes alive."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.collector.conftest import require_ebpf, start_collector
from tests.collector.helpers import run_agent_script, stored_findings, tree_events, wait_for

# A tool that keeps children alive at once (each blocked on a pipe), then lets them go.
AGENT = r'''
import json, os, sys

import agentguard


def main():
    agentguard.instrument(service_name="forker", exporter="otlp", otlp_endpoint=sys.argv[1],
                          otlp_protocol="http/protobuf")
    from langchain_core.tools import tool
    from opentelemetry import trace

    seen = {}

    @tool
    def fill_the_map(count: int) -> str:
        """Start processes that stay alive until the tool returns."""
        context = trace.get_current_span().get_span_context()
        seen["fill_the_map"] = {"trace_id": format(context.trace_id, "032x"),
                                "span_id": format(context.span_id, "016x")}
        read, write = os.pipe()
        children = []
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                os.close(write)
                os.read(read, 1)
                os._exit(0)
            children.append(pid)
        os.close(read)
        os.close(write)
        for pid in children:
            os.waitpid(pid, 0)
        return "done"

    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    with agentguard.conversation("conv-fill"):
        fill_the_map.invoke({"count": 80})
    agentguard.flush()
    print(json.dumps(seen), flush=True)
    agentguard.uninstrument()
    return 0


sys.exit(main())
'''


def test_a_tree_that_fills_the_watch_map_is_reported(tmp_path: Path) -> None:
    """With a watch map of 64 processes, a tool keeping 80 children alive leaves some unwatched:
    each is a ``sensor.unwatched`` event naming the child, the status counts them, and the tool
    call gets one high ``AGK006`` finding."""
    require_ebpf()
    script = tmp_path / "forker.py"
    script.write_text(AGENT)
    collector = start_collector(tmp_path, sensor="ebpf", watch_map_size=64)
    try:
        endpoint = "http://" + collector.endpoints()["otlp_http"]
        pid, out = run_agent_script(collector, [endpoint], script=str(script),
                                    env={**os.environ})
        spans: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        span_id = spans["fill_the_map"]["span_id"]

        def unwatched() -> list[dict[str, Any]]:
            collector.sync()
            return tree_events(collector, pid, "sensor.unwatched")

        events = wait_for(lambda: len(unwatched()) >= 10 and unwatched(), timeout=20)
        forks = {e["data"]["child_pid"] for e in tree_events(collector, pid, "process.fork")}
        assert {e["data"]["child_pid"] for e in events} <= forks
        assert all(e["data"]["map_keys"] == 64 for e in events)
        assert collector.snapshot()["unwatched_processes"] >= len(events)

        (finding,) = wait_for(lambda: stored_findings(collector, "AGK006"), timeout=20)
        assert (finding.severity, finding.span_id, finding.conversation_id, finding.tool) == \
            ("high", span_id, "conv-fill", "fill_the_map")
        assert "watch map is full (64 processes)" in finding.title
    finally:
        collector.stop()
