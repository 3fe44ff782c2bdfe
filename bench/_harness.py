"""What the benchmark scripts share: a span exporter that drops everything, and the driver of
one variant's interpreter (a JSON line per command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["Child", "child_env", "interleave", "noop_exporter", "reply"]


def noop_exporter() -> Any:
    """A span exporter that accepts every batch and keeps nothing but a count."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingNoopExporter(SpanExporter):
        """Accepts every batch and keeps nothing but a count."""

        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return CountingNoopExporter()


def reply(message: dict[str, Any]) -> None:
    """Child side: answer the parent with one JSON line."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def child_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a variant's interpreter: no agentguard, OpenTelemetry or Traceloop
    settings from outside (nor variables starting with ``drop``), and nothing that reaches for
    the network: no OTLP exporter, no third-party telemetry."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGENTGUARD_", "OTEL_", "TRACELOOP_", *drop))}
    env["AGENTGUARD_EXPORTER"] = "none"
    env["TRACELOOP_TELEMETRY"] = "false"
    env["PYTHONHASHSEED"] = "0"
    return env


class Child:
    """One variant's interpreter, answering one JSON line per command."""

    def __init__(self, variant: str, cmd: list[str], env: dict[str, str]) -> None:
        self.variant = variant
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            stderr = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise SystemExit(f"variant {self.variant} failed (exit {self.proc.returncode}):\n"
                             f"{stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    def send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def interleave(children: Sequence[Child], repeats: int) -> tuple[dict[str, list[dict[str, Any]]],
                                                               dict[str, list[dict[str, Any]]]]:
    """Parent side: once every child is ready, ``repeats`` rounds of ``run`` to each, every round
    starting one child later (no interpreter always runs first after the parent's pause), then
    ``stop``. The answers to ``run`` and to ``stop``, grouped by variant (several interpreters
    of one variant pool theirs)."""
    runs: dict[str, list[dict[str, Any]]] = {child.variant: [] for child in children}
    stops: dict[str, list[dict[str, Any]]] = {child.variant: [] for child in children}
    order = list(children)
    for round_index in range(repeats):
        shift = round_index % len(order)
        for child in order[shift:] + order[:shift]:
            runs[child.variant].append(child.send("run"))
    for child in order:
        stops[child.variant].append(child.send("stop"))
    return runs, stops
