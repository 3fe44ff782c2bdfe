"""Fixtures for the threat scenarios: a ``DemoEnv`` on ``tmp_path`` with an in-memory exporter,
and a check that a scenario leaves no thread, socket or child process behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentguard.demo._scenario import DemoEnv


@pytest.fixture
def demo_env(tmp_path: Path, exporter: InMemorySpanExporter) -> DemoEnv:
    """The environment the demo gives a scenario, without a collector: spans stay in memory."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    return DemoEnv(workdir=workdir, output_dir=tmp_path / "out", exporter=exporter)


def _loopback_listeners() -> set[int]:
    me = psutil.Process()
    return {c.laddr.port for c in me.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.ip == "127.0.0.1"}


@pytest.fixture
def leaves_nothing_behind() -> Iterator[None]:
    """Fail the test when the scenario left a thread, a listening socket or a child process."""
    threads = {t.ident for t in threading.enumerate()}
    listeners = _loopback_listeners()
    # Children that were there before (multiprocessing's resource tracker, started by whatever
    # ran earlier in this process and kept for its lifetime) are not the scenario's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    # agentguard's own export thread and the LangGraph executor's idle workers may outlive a
    # phase; what a scenario starts itself (its loopback "attacker") must not.
    left = [t.name for t in threading.enumerate()
            if t.ident not in threads and t.name.startswith("demo-")]
    assert not left, f"threads left behind: {left}"
    assert _loopback_listeners() <= listeners, "a loopback listener was left open"
    children = [p for p in psutil.Process().children(recursive=True) if p.pid not in before
                and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not children, f"child processes left behind: {[p.cmdline() for p in children]}"
