"""``agentguard collector``: the daemon as a real process (SIGTERM, restart on an existing
database), the read commands, and settings from options, environment and YAML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector import cli
from agentguard.collector.daemon import Collector
from agentguard.collector.sensor import ebpf_unavailable_reason
from agentguard.collector.settings import SettingsError, load_settings
from agentguard.collector.store import Store, StoreError
from tests.collector.helpers import wait_for
from tests.collector.test_receiver import export_request

COLLECTOR = [sys.executable, "-m", "agentguard.cli", "collector"]


def status_of(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``agentguard collector status --json`` (run in this process: it only reads the file)."""
    capsys.readouterr()
    code = cli.main(["status", "--db", str(db), "--json"])
    status: dict[str, Any] = json.loads(capsys.readouterr().out)
    status["exit_code"] = code
    return status


def start_daemon(db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COLLECTOR, "run", "--db", str(db), "--otlp-grpc", "127.0.0.1:0", "--otlp-http",
         "127.0.0.1:0", "--no-discover", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def running_status(db: Path, daemon: subprocess.Popen[str]) -> dict[str, Any]:
    """The daemon's status once it is up (endpoints bound, sensor attached)."""
    def ready() -> dict[str, Any] | None:
        assert daemon.poll() is None, daemon.communicate()[1][-2000:]
        if not db.exists():
            return None
        try:
            store = Store(str(db), readonly=True)
        except StoreError:  # the file exists, its schema is not written yet
            return None
        try:
            status: dict[str, Any] = store.status().get("collector", {}).get("value", {})
        finally:
            store.close()
        up = status.get("state") == "running" and status.get("sensor_healthy") and \
            status.get("endpoints", {}).get("otlp_http")
        return status if up else None
    result: dict[str, Any] = wait_for(ready, timeout=30, interval=0.1)
    return result


def post_spans(endpoint: str, *names: str, pid: int = 4242) -> None:
    import http.client

    host, port = endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", "/v1/traces", export_request(*names, pid=pid).SerializeToString(),
                       {"Content-Type": "application/x-protobuf"})
    assert connection.getresponse().status == 200
    connection.close()


def test_sigterm_stops_the_daemon_cleanly(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM stops the daemon with status 0, its sensor gone and its state saved as stopped."""
    db = tmp_path / "c.db"
    daemon = start_daemon(db)
    try:
        running_status(db, daemon)
        status = status_of(db, capsys)
        assert status["state"] == "running" and status["alive"] and status["exit_code"] == 0
        expected = "ebpf" if ebpf_unavailable_reason() is None else "procfs"
        assert status["sensor"] == expected
        children = _children(daemon.pid)
        post_spans(status["endpoints"]["otlp_http"], "before_stop")
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err[-2000:]
    assert time.monotonic() - started < 10
    assert "stopping" in err
    for child in children:
        assert not os.path.exists(f"/proc/{child}") or _is_zombie(child), f"child {child} left behind"
    final = status_of(db, capsys)
    assert final["state"] == "stopped" and final["alive"] is False and final["exit_code"] == 3
    assert final["stored"]["spans"] == 1


def _counters(db: Path) -> dict[str, Any]:
    store = Store(str(db), readonly=True)
    try:
        counters: dict[str, Any] = store.status()["collector"]["value"]["counters"]
        return counters
    finally:
        store.close()


def _children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_restart_keeps_the_existing_database(tmp_path: Path) -> None:
    """A collector restarted on the same database keeps what it had and adds to it."""
    db = tmp_path / "c.db"
    for round_name in ("first", "second"):
        collector = Collector(load_settings({"db": str(db), "otlp_grpc": "off",
                                             "otlp_http": "127.0.0.1:0", "sensor": "none",
                                             "discover": False}, environ={})).start()
        try:
            post_spans(collector.endpoints()["otlp_http"], round_name)
            wait_for(lambda c=collector: c.sync() and c.snapshot()["spans_received"] == 1)
        finally:
            collector.stop()
    store = Store(str(db), readonly=True)
    try:
        names = {span["name"] for span in store.spans()}
        state = store.status()["collector"]["value"]["state"]
    finally:
        store.close()
    assert names == {"execute_tool first", "execute_tool second"}
    assert state == "stopped"


def test_read_commands_on_a_missing_database_say_so(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Status, events and incidents on a missing database explain the problem and exit 2."""
    for command in ("status", "events", "incidents"):
        assert cli.main([command, "--db", str(tmp_path / "nothing.db")]) == 2
        assert "no collector database" in capsys.readouterr().err


def test_bad_settings_name_their_source(tmp_path: Path) -> None:
    """A bad value is reported with the option, variable or YAML file and line it came from."""
    config = tmp_path / "collector.yaml"
    config.write_text("db: /tmp/x.db\nhold_seconds: -3\nsensor: ebpf\n")
    with pytest.raises(SettingsError, match=rf"hold_seconds \(from {config}:2\)"):
        load_settings({}, environ={}, config_file=str(config))
    with pytest.raises(SettingsError, match="AGENTGUARD_COLLECTOR_OTLP_HTTP"):
        load_settings({}, environ={"AGENTGUARD_COLLECTOR_OTLP_HTTP": "nonsense"})
    with pytest.raises(SettingsError, match="unknown setting"):
        config.write_text("forwrad: http://x\n")
        load_settings({}, environ={}, config_file=str(config))
    done = subprocess.run([*COLLECTOR, "run", "--forward", "ftp://x", "--db", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "forward (from option --forward)" in done.stderr


def test_settings_precedence_options_over_environment_over_yaml(tmp_path: Path) -> None:
    """Options beat AGENTGUARD_COLLECTOR_* variables, which beat the YAML file."""
    config = tmp_path / "collector.yaml"
    config.write_text("db: /from/yaml.db\nhold_seconds: 5\nwatch_pids: [11, 12]\nsensor: procfs\n")
    environ = {"AGENTGUARD_COLLECTOR_CONFIG": str(config),
               "AGENTGUARD_COLLECTOR_HOLD_SECONDS": "7", "AGENTGUARD_COLLECTOR_WATCH_PIDS": "13,14"}
    settings = load_settings({"watch_pids": [15]}, environ=environ)
    assert settings.db == "/from/yaml.db"
    assert settings.hold_seconds == 7
    assert settings.watch_pids == [15]
    assert settings.sensor == "procfs"


def test_console_script_runs_the_same_commands(tmp_path: Path) -> None:
    """``agentguard-collector`` is installed and offers run, status, events and incidents."""
    script = Path(sys.executable).with_name("agentguard-collector")
    command = [str(script)] if script.exists() else \
        [sys.executable, "-m", "agentguard.collector.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for name in ("run", "status", "events", "incidents"):
        assert name in done.stdout
