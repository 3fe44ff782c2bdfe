"""Fixtures for the collector: a real collector on loopback, loopback listeners, the eBPF gate.

eBPF tests need root and Debian's bpftrace. Without them they are skipped with the reason, except
when ``AGENTGUARD_REQUIRE_EBPF=1`` (set by ``.ci/run``): then they fail, so CI cannot silently
lose the kernel half of the suite.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.sensor import ebpf_unavailable_reason
from agentguard.collector.settings import load_settings

PYTHON = sys.executable


def require_ebpf() -> None:
    """Skip (or, under AGENTGUARD_REQUIRE_EBPF=1, fail) when the eBPF sensor cannot run here."""
    reason = ebpf_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("AGENTGUARD_REQUIRE_EBPF") == "1":
        pytest.fail(f"eBPF required (AGENTGUARD_REQUIRE_EBPF=1) but unavailable: {reason}")
    pytest.skip(f"eBPF sensor unavailable: {reason}")


@pytest.fixture
def ebpf() -> None:
    require_ebpf()


class Listener:
    """A loopback TCP server that accepts connections and counts the bytes it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    while chunk := conn.recv(65536):
                        self.received += len(chunk)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def start_collector(tmp: Path, environ: dict[str, str] | None = None, **overrides: Any
                    ) -> Collector:
    """A started collector on ephemeral loopback ports with its database under ``tmp``, its
    settings read as ``run`` reads them (``environ``: the variables it sees)."""
    settings = {"db": str(tmp / "collector.db"), "otlp_grpc": "127.0.0.1:0",
                "otlp_http": "127.0.0.1:0", "discover": False, "hold_seconds": 3.0}
    settings.update(overrides)
    collector = Collector(load_settings(settings, environ=environ or {})).start()
    assert collector.wait_ready(30), "collector sensor did not become ready"
    return collector


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    started: list[Collector] = []

    def make(**overrides: Any) -> Collector:
        collector = start_collector(tmp_path, **overrides)
        started.append(collector)
        return collector

    yield make
    for collector in started:
        collector.stop()


@pytest.fixture(scope="module")
def ebpf_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One eBPF collector shared by a module (bpftrace takes a second or two to attach)."""
    require_ebpf()
    collector = start_collector(tmp_path_factory.mktemp("ebpf"), sensor="ebpf")
    yield collector
    collector.stop()
