"""The demo's collector: ``agentguard collector run`` in a subprocess on loopback, and its incidents.

The demo runs the real daemon, not an in-process imitation: a child process with its own
database in the demo's scratch directory, OTLP/HTTP on an ephemeral loopback port, the eBPF
sensor when this machine can run it (root, bpftrace, tracefs) and the ``/proc`` fallback
otherwise. The agent (the demo's own process) is watched as soon as its first spans arrive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DemoCollector", "DemoCollectorError"]

# bpftrace needs a second or two to compile and attach; on a loaded machine more.
_START_TIMEOUT = 45.0
_STOP_TIMEOUT = 15.0


class DemoCollectorError(RuntimeError):
    """The collector could not be started (the message says why, with its stderr)."""


class DemoCollector:
    """One ``agentguard collector run`` child process and read access to its database."""

    def __init__(self, workdir: Path, *, sensor: str = "auto", forward: str | None = None,
                 hold_seconds: float = 2.0) -> None:
        self.workdir = workdir
        self.db = workdir / "collector.db"
        self.log = workdir / "collector.log"
        self.sensor_option = sensor
        self.forward = forward
        self.hold_seconds = hold_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self.status: dict[str, Any] = {}
        self.exit_code: int | None = None
        self._log_handle: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line of the daemon."""
        command = [sys.executable, "-m", "agentguard.cli", "collector", "run", "--db", str(self.db),
                   "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "off", "--no-discover",
                   "--sensor", self.sensor_option, "--hold-seconds", str(self.hold_seconds),
                   "--log-level", "warning"]
        if self.forward:
            command += ["--forward", self.forward]
        return command

    def start(self) -> None:
        """Start the daemon; returns at once (see :meth:`wait_ready`). Raises
        :class:`DemoCollectorError` when it cannot be started."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AGENTGUARD_COLLECTOR_", "OTEL_"))}
        # The daemon must not instrument itself or be mistaken for an agent.
        env.pop("AGENTGUARD_AUTO_INSTRUMENT", None)
        try:
            self.process = subprocess.Popen(self.command(), stdout=self._log_handle,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)
        except OSError as exc:
            self._log_handle.close()
            self._log_handle = None
            raise DemoCollectorError(f"cannot start {self.command()[0]}: {exc}") from None

    def wait_ready(self, timeout: float = _START_TIMEOUT,
                   tick: Callable[[], None] | None = None) -> dict[str, Any]:
        """Wait until the daemon listens and its sensor is attached; returns its status row."""
        from agentguard.collector.store import Store, StoreError

        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.exit_code = self.process.returncode
                raise DemoCollectorError(f"the collector exited with status {self.exit_code}: "
                                         f"{self.log_tail()}")
            if self.db.exists():
                try:
                    store = Store(str(self.db), readonly=True)
                except StoreError:
                    store = None
                if store is not None:
                    try:
                        status: dict[str, Any] = store.status().get("collector", {}).get(
                            "value", {})
                    finally:
                        store.close()
                    if status.get("state") == "running" and status.get("sensor_healthy") and \
                            status.get("endpoints", {}).get("otlp_http"):
                        self.status = status
                        return status
            if tick is not None:
                tick()
            time.sleep(0.1)
        self.stop()
        raise DemoCollectorError(f"the collector was not ready after {timeout:.0f} s: "
                                 f"{self.log_tail()}")

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP traces URL agents export to."""
        return f"http://{self.status['endpoints']['otlp_http']}/v1/traces"

    @property
    def sensor(self) -> str:
        return str(self.status.get("sensor", "none"))

    @property
    def blind_spots(self) -> list[str]:
        return [str(item) for item in self.status.get("blind_spots", [])]

    @property
    def fallback_reason(self) -> str | None:
        reason = self.status.get("fallback_reason")
        return str(reason) if reason else None

    def stop(self) -> int | None:
        """SIGTERM, wait for the clean shutdown (SIGKILL after a timeout); returns the status."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process is not None:
            self.exit_code = process.returncode
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return self.exit_code

    def log_tail(self, limit: int = 1500) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-limit:].strip()

    # -- incidents ---------------------------------------------------------------------------

    def incidents_for(self, conversations: Sequence[str], trace_ids: Sequence[str],
                      *, expected: int = 1, timeout: float = 4.0) -> list[Any]:
        """The incidents of the given conversations / traces, once their findings are stored.

        Spans reach the daemon asynchronously: wait until ``expected`` findings are filed under
        matching incidents, or their number has stopped growing for half a second, or
        ``timeout``.
        """
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        ids: list[str] = []
        while True:
            ids, count = self._matching(conversations, trace_ids)
            now = time.monotonic()
            if count != last:
                last, stable_since = count, now
            if count >= expected or now >= deadline or (count > 0 and now - stable_since > 0.5):
                break
            time.sleep(0.1)
        return self.build(ids)

    def _matching(self, conversations: Sequence[str],
                  trace_ids: Sequence[str]) -> tuple[list[str], int]:
        from agentguard.collector.store import Store, StoreError

        if not self.db.exists():
            return [], 0
        try:
            store = Store(str(self.db), readonly=True)
        except StoreError:
            return [], 0
        try:
            wanted_conversations, wanted_traces = set(conversations), set(trace_ids)
            ids = [row["id"] for row in store.incidents(limit=500)
                   if row.get("conversation_id") in wanted_conversations
                   or row.get("trace_id") in wanted_traces]
            count = sum(int(row.get("findings") or 0) for row in store.incidents(limit=500)
                        if row["id"] in ids)
        finally:
            store.close()
        return ids, count

    def build(self, incident_ids: Sequence[str]) -> list[Any]:
        """The assembled incidents (attack stories) of these ids, in order of first finding."""
        from agentguard.collector.incidents import build_incident
        from agentguard.collector.store import Store, StoreError

        if not incident_ids:
            return []
        try:
            store = Store(str(self.db), readonly=True)
        except StoreError:
            return []
        try:
            built = [build_incident(store, incident_id) for incident_id in incident_ids]
        finally:
            store.close()
        return sorted((i for i in built if i is not None), key=lambda i: i.first_ns)
