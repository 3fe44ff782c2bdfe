"""What a demo scenario is: one of the seed's threats, run on benign traffic in ``learn`` and then
under attack in ``enforce``, and what it reports back to the demo's runner.

A scenario is a module under :mod:`agentguard.demo.scenarios` exposing ``SCENARIO``, an object
with ``number``, ``key``, ``title``, ``threat`` and ``run(env) -> Outcome``. The same ``run`` is
called by ``agentguard demo`` and asserted by ``tests/scenarios/``. Scenarios instrument through
:meth:`DemoEnv.instrument`, so every phase exports to the demo's collector (when one runs) and
its findings are collected without the scenario wiring sinks itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import agentguard
from agentguard.findings import Finding

__all__ = ["DemoEnv", "Outcome", "Phase", "Scenario"]


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
            settings.setdefault("exporter", self.exporter)
        else:
            settings.setdefault("exporter", "none")
        phase.guard = agentguard.instrument(mode=mode, service_name=service_name,
                                            on_finding=collect, **settings)
        try:
            yield phase
        finally:
            agentguard.flush()
            agentguard.uninstrument()
