"""The sensor never breaks the agent: contained errors, no recursion, bounded span output."""

from __future__ import annotations

import contextvars
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import wrapt

import agentguard
from agentguard import sensors
from tests.sensors.helpers import Recorder, events, run_tool


def test_malformed_audit_events_never_reach_the_caller(guarded: Any) -> None:
    """An audit event with arguments the sensor does not expect is contained and counted."""
    guarded()
    before = agentguard.stats()["internal_errors"].get("sensor open", 0)
    sys.audit("open", "/tmp/x")
    sys.audit("subprocess.Popen", None)
    assert agentguard.stats()["internal_errors"]["sensor open"] == before + 1


def test_fail_closed_blocks_what_the_sensor_cannot_judge(guarded: Any) -> None:
    """With enforce + fail_closed, an internal error on a spawn event blocks it."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", fail_closed=True, on_finding=findings.append)
    with pytest.raises(PermissionError, match="internal-error"):
        sys.audit("subprocess.Popen", None)
    assert [(f.rule_id, f.action) for f in findings] == [("internal-error", "block")]


def test_what_policies_do_is_not_an_event(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A policy that spawns, writes and connects while judging is neither re-entered nor
    reported: only the tool's own spawn is an event."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        judged: list[str] = []

        def noisy_policy(event: Any) -> None:
            judged.append(event.kind)
            if event.kind == "process_exec":
                subprocess.run(["/bin/true"], check=True)
                (tmp_path / "policy.log").write_text(event.executable)
                socket.create_connection(("127.0.0.1", port)).close()

        guarded(policy=[noisy_policy], builtin_rules=False)

        def spawn() -> str:
            """Spawn a child."""
            subprocess.run(["/bin/true"], check=True)
            return "ok"

        run_tool(spawn)
    assert judged.count("process_exec") == 1
    assert "net_connect" not in judged
    assert "file_open" not in judged
    span = spans.one("execute_tool spawn")
    assert [e.name for e in span.events if e.name != "module.load"] == ["process.exec"]


def test_reinstrumenting_does_not_double_anything(guarded: Any, spans: Any) -> None:
    """After instrumenting three times a spawn is one event and subprocess is wrapped once."""
    recorder = Recorder()
    for _ in range(3):
        guarded(policy=[recorder], builtin_rules=False)
    wrapper = subprocess.Popen.__dict__["_execute_child"]
    assert isinstance(wrapper, wrapt.FunctionWrapper)
    assert not isinstance(wrapper.__wrapped__, wrapt.FunctionWrapper)

    def spawn() -> str:
        """Spawn a child."""
        subprocess.run(["/bin/true"], check=True)
        return "ok"

    run_tool(spawn)
    assert len(recorder.of("process_exec")) == 1
    assert len(events(spans.one("execute_tool spawn"), "process.exec")) == 1
    assert sensors.installed()


def test_span_events_per_tool_are_bounded(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A tool writing 100 files gets 64 file.open events and a count of the rest; the policy
    still sees every write."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def spray() -> str:
        """Write many files."""
        for index in range(100):
            (tmp_path / f"f{index}").write_text("x")
        return "ok"

    run_tool(spray)
    span = spans.one("execute_tool spray")
    assert len(events(span, "file.open")) == 64
    assert span.attributes["agentguard.sensor.events_suppressed"] == 36
    assert len(recorder.of("file_open")) == 100


def test_a_thread_outliving_its_tool_does_not_write_to_the_ended_span(
        guarded: Any, spans: Any) -> None:
    """Work a tool left running after it returned is still judged, but its ended span is not
    changed."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    release = threading.Event()
    done = threading.Event()

    def background() -> str:
        """Start background work and return."""
        context = contextvars.copy_context()

        def later() -> None:
            release.wait(5)
            subprocess.run(["/bin/true"], check=True)
            done.set()

        threading.Thread(target=context.run, args=(later,)).start()
        return "started"

    run_tool(background)
    release.set()
    assert done.wait(5)
    assert events(spans.one("execute_tool background")) == []
    (late,) = recorder.of("process_exec")
    assert late.context.tool == "background"


def test_a_hook_refused_by_an_earlier_hook_is_reported() -> None:
    """When an earlier audit hook refuses new hooks, instrument() warns and installed() is
    False (checked in a fresh interpreter, since hooks cannot be removed)."""
    script = (
        "import sys\n"
        "def refuse(event, args):\n"
        "    if event == 'sys.addaudithook':\n"
        "        raise RuntimeError('no more hooks')\n"
        "sys.addaudithook(refuse)\n"
        "import agentguard\n"
        "from agentguard import sensors\n"
        "agentguard.instrument(exporter='none')\n"
        "print(sensors.installed())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
    assert "the audit hook could not be added" in out.stderr


def test_the_hook_is_installed_once_and_runs() -> None:
    """In a fresh interpreter, instrument() adds a working hook, a second instrument() adds none,
    and uninstrument() leaves it idle."""
    script = (
        "import subprocess, agentguard\n"
        "from agentguard import sensors\n"
        "seen = []\n"
        "agentguard.instrument(exporter='none', policy=[seen.append], builtin_rules=False,\n"
        "                      injection_detection=False)\n"
        "agentguard.instrument(exporter='none', policy=[seen.append], builtin_rules=False,\n"
        "                      injection_detection=False)\n"
        "subprocess.run(['/bin/true'])\n"
        "agentguard.uninstrument()\n"
        "subprocess.run(['/bin/true'])\n"
        "print(sensors.installed(), [e.kind for e in seen if e.kind == 'process_exec'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "True ['process_exec']"
