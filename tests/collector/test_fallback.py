"""The /proc polling sensor used when eBPF is unavailable: what it sees and that it says what not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.fallback import ProcSensor, is_sensitive_path
from agentguard.collector.store import Store
from tests.collector.conftest import Listener
from tests.collector.helpers import run_watched, tree_events


def test_fallback_sees_lasting_processes_connections_and_credential_files(
        collector_factory: Callable[..., Collector], listener: Listener, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Children, their open connections and credential files held open are reported by polling."""
    caplog.set_level(logging.WARNING, logger="agentguard.collector")
    collector = collector_factory(sensor="procfs", poll_interval=0.05)
    assert isinstance(collector.sensor, ProcSensor)
    assert "cannot see" in caplog.text and "DNS queries" in caplog.text
    secret = tmp_path / ".ssh" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    code = f"""
import subprocess, sys
child = '''
import socket, time
held = open({str(secret)!r})
s = socket.create_connection(("127.0.0.1", {listener.port}))
time.sleep(0.6)
'''
subprocess.run([sys.executable, "-c", child], check=True)
"""
    pid = run_watched(collector, code)
    events = tree_events(collector, pid)
    execs = [e for e in events if e["kind"] == "process.exec"]
    assert len(execs) == 1
    child = execs[0]
    assert child["source"] == "procfs" and child["data"]["ppid"] == pid
    assert child["data"]["argv"][1] == "-c"
    connects = [e for e in events if e["kind"] == "net.connect"]
    assert [(e["pid"], e["data"]["address"], e["data"]["port"]) for e in connects] == \
        [(child["pid"], "127.0.0.1", listener.port)]
    opens = [e for e in events if e["kind"] == "file.open"]
    assert [(e["pid"], e["data"]["path"]) for e in opens] == [(child["pid"], str(secret))]
    assert sorted(e["pid"] for e in events if e["kind"] == "process.exit") == \
        sorted([child["pid"], pid])
    store = Store(collector.settings.db, readonly=True)
    try:
        status = store.status()["collector"]["value"]
    finally:
        store.close()
    assert status["sensor"] == "procfs"
    assert any("DNS" in item for item in status["blind_spots"])


def test_auto_mode_without_ebpf_falls_back_and_says_why(
        collector_factory: Callable[..., Collector], caplog: pytest.LogCaptureFixture) -> None:
    """With no usable bpftrace, ``sensor=auto`` runs the /proc sensor and records the reason."""
    caplog.set_level(logging.WARNING, logger="agentguard.collector")
    collector = collector_factory(sensor="auto", bpftrace="/nonexistent/bpftrace")
    assert collector.sensor.name == "procfs"
    assert collector._fallback_reason is not None
    assert "eBPF sensor unavailable" in caplog.text


def test_sensitive_path_rule_matches_the_kernel_program() -> None:
    """Credential files are recognised by name or directory, wherever they live."""
    for path in ("/root/.ssh/id_rsa", "/home/a/.aws/credentials", ".env", "/etc/shadow",
                 "/proc/1/environ", "/var/run/secrets/kubernetes.io/serviceaccount/token"):
        assert is_sensitive_path(path), path
    for path in ("/usr/lib/python3.11/os.py", "/etc/hosts", "/home/a/notes.txt"):
        assert not is_sensitive_path(path), path
