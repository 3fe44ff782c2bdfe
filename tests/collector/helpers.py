"""Helpers for the collector tests: watched driver processes and waiting on the store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentguard.collector.daemon import Collector
from agentguard.collector.store import Store


def run_watched(collector: Collector, code: str, *, timeout: float = 20.0,
                args: list[str] | None = None) -> int:
    """Run Python ``code`` in a process the collector watches from its first act; returns its pid.

    The process waits for a line on stdin before running ``code``, so the watch is in place in
    the kernel before anything happens.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", f"import sys\nsys.stdin.readline()\n{code}", *(args or [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert collector.watch(process.pid, "test", agent=False)
        assert collector.sync()
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"watched process failed: {err[-2000:]}"
    assert collector.sync()
    return process.pid


AGENT_SCRIPT = str(Path(__file__).with_name("agent_script.py"))


def run_agent_script(collector: Collector, args: Sequence[str], *,
                     env: dict[str, str] | None = None, launcher: Sequence[str] = (),
                     watch: Callable[[int], Any] | None = None,
                     timeout: float = 60.0, script: str = AGENT_SCRIPT) -> tuple[int, str]:
    """Run the instrumented test agent (``agent_script.py args``, or another ``script`` that
    speaks the same protocol, under ``launcher`` when given)
    through its protocol: once it says it is ready, the collector watches it (``watch(pid)``,
    which must return something true; by default it is watched as "test agent"), catches up,
    and the agent is let go. Returns the pid of the
    process started and the agent's output."""
    process = subprocess.Popen([*launcher, sys.executable, script, *args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None and process.stdin is not None
        assert json.loads(process.stdout.readline()) == {"ready": True}
        if watch is None:
            assert collector.watch(process.pid, "test agent")
        else:
            assert watch(process.pid)
        assert collector.sync()
        process.stdin.write("go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    return process.pid, out


def stored_events(collector: Collector, **query: Any) -> list[dict[str, Any]]:
    store = Store(collector.settings.db, readonly=True)
    try:
        return store.events(limit=10_000, **query)
    finally:
        store.close()


def stored_findings(collector: Collector, rule_id: str | None = None) -> list[Any]:
    """The findings stored so far (of ``rule_id`` when given), after the collector caught up."""
    collector.sync()
    store = Store(collector.settings.db, readonly=True)
    try:
        return [f for f in store.findings() if rule_id is None or f.rule_id == rule_id]
    finally:
        store.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def tree_events(collector: Collector, root: int, kind: str | None = None) -> list[dict[str, Any]]:
    """Stored events of ``root`` and every process it started (through fork events, or the
    parent pid of exec events when the sensor saw no forks)."""
    events = stored_events(collector)
    pids = {root}
    for event in events:
        if event["kind"] == "process.fork" and event["pid"] in pids:
            pids.add(int(event["data"]["child_pid"]))
        elif event["kind"] == "process.exec" and event["data"].get("ppid") in pids:
            pids.add(event["pid"])
    return [e for e in events if e["pid"] in pids and (kind is None or e["kind"] == kind)]


def load_json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
