"""Supervision of bpftrace: killed mid-run it comes back, re-watches, reports the gap and the
processes that started while it was blind; one that cannot start gives way to the /proc sensor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.ebpf import BpftraceSensor
from agentguard.collector.settings import load_settings
from tests.collector.helpers import stored_events, wait_for

pytestmark = pytest.mark.usefixtures("ebpf")


def test_killed_bpftrace_restarts_with_a_gap_event(
        collector_factory: Callable[..., Collector]) -> None:
    """SIGKILL on bpftrace: a gap event, a restart, the watch restored, gap children rescanned."""
    collector = collector_factory(sensor="ebpf")
    sensor = collector.sensor
    assert isinstance(sensor, BpftraceSensor)
    driver = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys\n"
                               "for line in sys.stdin:\n"
                               "    subprocess.Popen(['sleep', line.strip()])\n"],
        stdin=subprocess.PIPE, text=True)
    try:
        assert collector.watch(driver.pid, "test", agent=False)
        assert collector.sync()
        assert driver.stdin is not None
        old = sensor.process_pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not sensor.healthy, timeout=5, interval=0.01)
        # Started while bpftrace is down: no kernel event will ever report this child.
        driver.stdin.write("30\n")
        driver.stdin.flush()
        assert sensor.wait_attached(30)
        assert sensor.process_pid not in (None, old)
        assert collector.sync()
        # After the restart the driver is watched again in the kernel.
        driver.stdin.write("0.1\n")
        driver.stdin.flush()

        def execs() -> list[dict[str, object]]:
            collector.sync()
            return [e for e in stored_events(collector, kind="process.exec")
                    if e["data"].get("ppid") == driver.pid]
        seen = wait_for(lambda: len(execs()) == 2 and execs(), timeout=10)
    finally:
        children = psutil.Process(driver.pid).children()
        driver.kill()
        driver.wait()
        for child in children:
            child.kill()
    by_source = {e["source"]: e for e in seen}
    assert set(by_source) == {"rescan", "ebpf"}
    assert by_source["rescan"]["data"]["argv"] == ["sleep", "30"]
    assert by_source["ebpf"]["data"]["argv"] == ["sleep", "0.1"]
    (gap,) = stored_events(collector, kind="sensor.gap")
    assert "SIGKILL" in gap["data"]["reason"]
    assert 0 < gap["data"]["seconds"] < 30
    snapshot = collector.snapshot()
    assert snapshot["sensor_restarts"] == 1 and snapshot["sensor_gaps"] == 1


def test_bpftrace_that_cannot_start_gives_way_to_the_proc_sensor(tmp_path: Path) -> None:
    """In auto mode a bpftrace that never attaches is replaced by the /proc sensor, with reason."""
    collector = Collector(load_settings(
        {"db": str(tmp_path / "c.db"), "otlp_grpc": "off", "otlp_http": "127.0.0.1:0",
         "sensor": "auto", "bpftrace": "/bin/false", "discover": False}, environ={})).start()
    try:
        wait_for(lambda: collector.sensor.name == "procfs", timeout=15)
        assert collector._fallback_reason is not None
        assert "bpftrace failed to start" in collector._fallback_reason
        assert collector.wait_ready(5)
    finally:
        collector.stop()
