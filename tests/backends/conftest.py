"""Fixtures for the trace-backend tests: a local Phoenix, the collector forwarding to it, and an
agent process reporting to the collector.

The three are started together, once per module, because their start-ups overlap: Phoenix takes
many seconds to import and migrate its database, and the agent process and the collector start in
that time. Every wait is bounded and every process is ended at teardown.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from agentguard.collector.store import Store, StoreError
from tests.backends.phoenix import PhoenixServer, free_port, phoenix_version, wait_for
from tests.collector.conftest import Listener

AGENT_SCRIPT = str(Path(__file__).with_name("collector_agent.py"))
# The Phoenix project the collector test's agent names in its resource (see docs/backends.md).
COLLECTOR_PROJECT = "agentguard-collector"
COLLECTOR_CONVERSATION = "conv-phoenix-collector"
# Bounds: Phoenix's start-up (imports and database migrations) is by far the slowest part; on a
# loaded 2-core machine it has taken close to a minute.
PHOENIX_START_TIMEOUT = 150.0
PROCESS_TIMEOUT = 60.0


def require_phoenix() -> str:
    """The installed Phoenix version; skip when Phoenix is not installed."""
    version = phoenix_version()
    if version is None:
        pytest.skip("arize-phoenix is not installed (pip install -e '.[dev]' installs it)")
    return version


@dataclass
class Stack:
    """Phoenix, the collector forwarding to it, and the waiting agent process, all running."""

    phoenix: PhoenixServer
    collector: subprocess.Popen[bytes]
    collector_db: Path
    collector_log: Path
    collector_http: str
    agent: subprocess.Popen[str]
    agent_log: Path
    listener: Listener

    def collector_status(self) -> dict[str, Any]:
        if not self.collector_db.exists():
            return {}
        try:
            store = Store(str(self.collector_db), readonly=True)
        except StoreError:  # the file exists, its schema is not written yet
            return {}
        try:
            status: dict[str, Any] = store.status().get("collector", {}).get("value", {})
        finally:
            store.close()
        return status

    def collector_log_tail(self, chars: int = 3000) -> str:
        return self.collector_log.read_text(errors="replace")[-chars:]

    def agent_log_tail(self, chars: int = 3000) -> str:
        return self.agent_log.read_text(errors="replace")[-chars:]


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's stdout, waiting at most ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output within {timeout:.0f}s")
    return stream.readline()


def _terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AGENTGUARD_", "OTEL_", "PHOENIX_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A running Phoenix, a collector forwarding to it, and an agent waiting for ``go``."""
    require_phoenix()
    workdir = tmp_path_factory.mktemp("backends")
    phoenix = PhoenixServer(workdir / "phoenix").start()
    assert phoenix.process is not None
    phoenix_pid = phoenix.process.pid
    started: list[subprocess.Popen[Any]] = []
    listener = Listener()
    try:
        collector_http = f"127.0.0.1:{free_port()}"
        agent_log = workdir / "agent.log"
        with agent_log.open("w") as log:
            agent = subprocess.Popen(
                [sys.executable, AGENT_SCRIPT, str(listener.port), COLLECTOR_CONVERSATION],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=_clean_environment(
                    AGENTGUARD_COLLECTOR_ENDPOINT=f"http://{collector_http}",
                    OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={COLLECTOR_PROJECT}"))
        started.append(agent)
        assert agent.stdout is not None
        line = _read_line(agent.stdout, PROCESS_TIMEOUT)
        assert json.loads(line or "{}") == {"ready": True}, agent_log.read_text()[-3000:]
        # The collector watches the agent from before its first act (its pid on the command
        # line), and Phoenix too (to show it stays on loopback), and forwards what it receives
        # to Phoenix's OTLP/HTTP endpoint.
        collector_db = workdir / "collector.db"
        collector_log = workdir / "collector.log"
        with collector_log.open("wb") as collector_out:
            collector = subprocess.Popen(
                [sys.executable, "-m", "agentguard.cli", "collector", "run",
                 "--db", str(collector_db), "--otlp-http", collector_http, "--otlp-grpc", "off",
                 "--forward", phoenix.otlp_http_endpoint, "--watch-pid", str(agent.pid),
                 "--watch-pid", str(phoenix_pid), "--no-discover", "--hold-seconds", "5"],
                stdin=subprocess.DEVNULL, stdout=collector_out, stderr=subprocess.STDOUT,
                env=_clean_environment())
        started.append(collector)
        result = Stack(phoenix, collector, collector_db, collector_log, collector_http, agent,
                       agent_log, listener)

        def collector_up() -> bool:
            assert collector.poll() is None, result.collector_log_tail()
            status = result.collector_status()
            watched = set(status.get("watched_roots", []))
            return bool(status.get("state") == "running" and status.get("sensor_healthy")
                        and {agent.pid, phoenix_pid} <= watched)

        wait_for(collector_up, timeout=PROCESS_TIMEOUT, what="collector running and watching")
        phoenix.wait_ready(PHOENIX_START_TIMEOUT)
        yield result
    finally:
        for process in reversed(started):
            _terminate(process)
        phoenix.stop()
        listener.close()


@pytest.fixture(scope="module")
def phoenix(stack: Stack) -> PhoenixServer:
    """The module's running Phoenix server."""
    return stack.phoenix
