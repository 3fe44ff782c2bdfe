"""What a demo scenario is: one of the seed's threats, run on benign traffic in ``learn`` and then
under attack in ``enforce``, and what it reports back to the demo's runner.

A scenario is a module under :mod:`agentguard.demo.scenarios` exposing ``SCENARIO``, an object
with ``number``, ``key``, ``title``, ``threat`` and ``run(env) -> Outcome``. The same ``run`` is
called by ``agentguard demo`` and asserted by ``tests/scenarios/``. Scenarios instrument through
:meth:`DemoEnv.instrument`, so every phase exports to the demo's collector (when one runs) and
its findings are collected without the scenario wiring sinks itself.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opentelemetry.sdk.trace.export import SpanExporter

import agentguard
from agentguard.findings import Finding

__all__ = ["DemoEnv", "LoopbackSink", "Outcome", "Phase", "Scenario", "outcome_of"]


@dataclass
class Outcome:
    """What one scenario showed: the control plane's view beside agentguard's."""

    #: The single line a control-plane / API log records for the attack ("authorized, 200").
    control_plane: str
    #: True when agentguard raised at least one finding that names the attack.
    detected: bool
    #: True when the attack was stopped (tool call, process, connection or load blocked).
    blocked: bool
    #: One line: what agentguard showed (rule ids and what they found).
    summary: str
    #: Findings of the attack phase (benign-phase findings are false positives: see ``noise``).
    findings: list[Finding] = field(default_factory=list)
    #: Findings raised while the agent ran benign traffic (should be empty).
    noise: list[Finding] = field(default_factory=list)
    #: Trace ids (32 hex digits) of the attack phase, used to find the collector's incident.
    trace_ids: list[str] = field(default_factory=list)
    #: Extra lines worth printing (what the agent did, what was blocked and where).
    details: list[str] = field(default_factory=list)
    #: The HTML report written for this scenario, filled in by the runner.
    report: Path | None = None
    #: The attack's side effect as the scenario measured it (bytes the attacker's listener
    #: received, e-mails that left, records handed to the model): zero when the block held.
    effects: dict[str, Any] = field(default_factory=dict)


class Scenario(Protocol):
    """One seed threat, end to end."""

    number: int
    key: str
    title: str
    threat: str

    def run(self, env: DemoEnv) -> Outcome:
        """Run the benign (learn) and attack (enforce) phases and report what was seen."""
        ...


@dataclass
class Phase:
    """The findings of one instrumented phase, filled while it runs."""

    mode: str
    findings: list[Finding] = field(default_factory=list)
    guard: Any = None

    def rule_ids(self) -> set[str]:
        """The ids of the rules that fired in this phase."""
        return {f.rule_id for f in self.findings}


@dataclass
class DemoEnv:
    """Where a scenario runs: its scratch directory, the output directory and the collector."""

    #: Scratch directory of this scenario (profiles, files the tools touch); empty at start.
    workdir: Path
    #: Where reports go (``demo-output/`` by default).
    output_dir: Path
    #: OTLP/HTTP traces endpoint of the demo's collector (``http://127.0.0.1:PORT/v1/traces``),
    #: or None when no collector runs (tests of a single scenario may run without one).
    collector_endpoint: str | None = None
    #: Extra span exporter (e.g. an in-memory one in tests) used when no collector runs.
    exporter: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def instrument(self, *, mode: str, service_name: str,
                   on_finding: Callable[[Finding], Any] | None = None,
                   **settings: Any) -> Iterator[Phase]:
        """``agentguard.instrument(mode=..., ...)`` for one phase, uninstrumented on exit.

        Spans go to the demo's collector (OTLP/HTTP) when one runs, else to ``exporter`` (or
        nowhere); every finding lands in the returned :class:`Phase`. Other keyword arguments are
        passed to :func:`agentguard.instrument` unchanged.
        """
        phase = Phase(mode=mode)

        def collect(finding: Finding) -> None:
            with self._lock:
                phase.findings.append(finding)
            if on_finding is not None:
                on_finding(finding)

        if self.collector_endpoint is not None:
            settings.setdefault("otlp_endpoint", self.collector_endpoint)
            settings.setdefault("otlp_protocol", "http/protobuf")
        elif self.exporter is not None:
            settings.setdefault("exporter", _KeepOpen(self.exporter))
        else:
            settings.setdefault("exporter", "none")
        phase.guard = agentguard.instrument(mode=mode, service_name=service_name,
                                            on_finding=collect, **settings)
        try:
            yield phase
        finally:
            agentguard.flush()
            agentguard.uninstrument()


class _KeepOpen(SpanExporter):
    """Hands spans to a span exporter shared by several phases, without shutting it down.

    ``uninstrument()`` shuts its exporter down, and an SDK exporter refuses spans after that; the
    environment's exporter must outlive each phase.
    """

    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter

    def export(self, spans: Any) -> Any:
        return self._exporter.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self._exporter, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True

    def shutdown(self) -> None:
        """Ends this phase's use of the exporter, not the exporter."""


class LoopbackSink:
    """A loopback HTTP listener standing in for the attacker's host: it records what reaches it.

    It answers every request with ``200 OK`` (so a client never hangs waiting), keeps at most
    ``max_bytes`` of what it received and counts connections and bytes. Use it as a context
    manager: its socket and thread are gone when the block ends.
    """

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self.max_bytes = max_bytes
        self.connections = 0
        self.received = 0
        self.data = bytearray()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="demo-loopback-sink", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/upload"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        buffer = b""
        expected: int | None = None
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.received += len(chunk)
                if len(self.data) < self.max_bytes:
                    self.data += chunk[: self.max_bytes - len(self.data)]
                buffer = (buffer + chunk)[-(self.max_bytes):]
                head, sep, body = buffer.partition(b"\r\n\r\n")
                if sep and expected is None:
                    expected = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length" and value.strip().isdigit():
                            expected = int(value.strip())
                if expected is not None and len(body) >= expected:
                    break
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting and release the socket and the thread."""
        self._stop.set()
        self._sock.close()
        self._thread.join(2.0)

    def __enter__(self) -> LoopbackSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def outcome_of(findings: list[Finding], *, expected: set[str]) -> tuple[bool, bool, list[str]]:
    """(detected, blocked, trace ids) of an attack phase: findings of the ``expected`` rules."""
    relevant = [f for f in findings if f.rule_id in expected]
    traces = sorted({f.trace_id for f in findings if f.trace_id})
    return bool(relevant), any(f.action == "block" for f in relevant), traces
