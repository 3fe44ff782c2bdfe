"""Helpers for the collector tests: watched driver processes, processes that send their own
OTLP requests, and waiting on the store."""

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


# A process that does what it is told, a line at a time, and answers each with a JSON line:
# ``http HEX`` posts the OTLP body over its one kept-alive HTTP connection (``status``); ``grpc
# HEX`` exports it over its gRPC channel (``status`` 200 when accepted); ``last HEX`` posts it on
# a connection of its own and exits at once, as an exporter's last flush does; ``connect PORT``
# connects to a loopback port (``tid`` and the times around it).
_SENDER = """
import http.client, json, os, socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=10)
channel = None
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command in ("http", "last"):
        if command == "last":
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", "/v1/traces", bytes.fromhex(argument),
                           {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        response.read()
        print(json.dumps({"status": response.status}), flush=True)
        if command == "last":
            os._exit(0)
    elif command == "grpc":
        import grpc
        if channel is None:
            channel = grpc.insecure_channel(sys.argv[2])
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(bytes.fromhex(argument), timeout=10)
        print(json.dumps({"status": 200}), flush=True)
    elif command == "connect":
        start = time.time_ns()
        socket.create_connection(("127.0.0.1", int(argument))).close()
        end = time.time_ns()
        print(json.dumps({"tid": threading.get_native_id(), "start": start, "end": end}),
              flush=True)
"""


def start_on_pid(pid: int, argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """``argv`` started as process ``pid`` (the kernel is told the last pid it handed out; root
    only)."""
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
            handle.write(str(pid - 1))
        process = subprocess.Popen(argv, **options)
        if process.pid == pid:
            return process
        process.kill()
        process.wait()
    raise AssertionError(f"pid {pid} could not be had again")


class SendingProcess:
    """A process of its own that sends OTLP requests to ``collector`` itself (so the collector
    sees it, not the test, holding the connection), and makes connections when told. ``pid``:
    start it on that pid (see :func:`start_on_pid`); ``launcher``: run it under that command
    (``ip netns exec NAME``); ``endpoint``: the OTLP/HTTP address to send to."""

    def __init__(self, collector: Collector, *, pid: int | None = None,
                 launcher: Sequence[str] = (), endpoint: str | None = None) -> None:
        endpoints = collector.endpoints()
        self.collector = collector
        argv = [*launcher, sys.executable, "-c", _SENDER, endpoint or endpoints["otlp_http"],
                endpoints["otlp_grpc"]]
        options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE,
                                   "text": True}
        self.process = subprocess.Popen(argv, **options) if pid is None else \
            start_on_pid(pid, argv, **options)
        self.pid = self.process.pid
        assert self._answer() == {"ready": True}

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"sending process {self.pid} ended"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _tell(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def send(self, body: bytes, *, via: str = "http") -> None:
        """Send ``body`` (``via`` ``http``, ``grpc``, or ``last``: then exit) and wait until the
        collector stored it."""
        assert self._tell(f"{via} {body.hex()}") == {"status": 200}
        if via == "last":
            self.process.wait(10)
        assert self.collector.sync(30)

    def connect(self, port: int) -> dict[str, Any]:
        """Connect to loopback ``port``; the acting thread and the times around the connect."""
        return self._tell(f"connect {port}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
