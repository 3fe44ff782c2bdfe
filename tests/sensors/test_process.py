"""Process spawns inside tool calls: span events, child pids, context propagation, blocking."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import wrapt

import agentguard
from agentguard import sensors
from tests.sensors.helpers import Recorder, events, run_tool

PRINT_ENV = ("import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
             "if k in ('TRACEPARENT', 'TRACESTATE', 'X') or (k.startswith('AGENTGUARD_') "
             "and k != 'AGENTGUARD_REQUIRE_EBPF')}))")


def _ids(span: Any) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def test_a_spawn_in_a_tool_is_a_span_event_with_the_child_pid(guarded: Any, spans: Any) -> None:
    """Running /bin/true in a tool adds a process.exec event with its pid, lists the pid on the
    tool span and gives the policy a ProcessExec carrying the tool call's context."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def spawn() -> str:
        """Spawn /bin/true and return its pid."""
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        return str(child.pid)

    pid = int(run_tool(spawn, call_id="call-true"))
    span = spans.one("execute_tool spawn")
    (event,) = events(span, "process.exec")
    assert event["process.executable.path"] == "/bin/true"
    assert event["process.pid"] == pid
    assert event["process.parent_pid"] == os.getpid()
    assert event["agentguard.process.operation"] == "spawn"
    assert event["process.command_line"] == "/bin/true"
    assert span.attributes["agentguard.process.child_pids"] == (pid,)
    (exec_event,) = recorder.of("process_exec")
    assert exec_event.executable == "/bin/true"
    assert exec_event.argv == ["/bin/true"]
    assert exec_event.context.tool == "spawn"
    assert exec_event.context.tool_call_id == "call-true"
    assert (exec_event.context.trace_id, exec_event.context.span_id) == _ids(span)


def test_every_child_of_a_tool_is_listed_on_its_span(guarded: Any, spans: Any) -> None:
    """Three spawns in one tool call leave three pids on the span, in order."""
    guarded()

    def three() -> str:
        """Spawn three children."""
        pids = []
        for _ in range(3):
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            pids.append(child.pid)
        return json.dumps(pids)

    pids = json.loads(run_tool(three))
    span = spans.one("execute_tool three")
    assert span.attributes["agentguard.process.child_pids"] == tuple(pids)
    assert [e["process.pid"] for e in events(span, "process.exec")] == pids


def test_a_shell_command_is_reported_with_its_command_line(guarded: Any, spans: Any) -> None:
    """``shell=True`` is reported as /bin/sh -c with the command, and bare names are resolved."""
    guarded()

    def shell() -> str:
        """Run a shell pipeline."""
        subprocess.run("echo hi | cat > /dev/null", shell=True, check=True)
        subprocess.run(["true"], check=True)
        return "ok"

    run_tool(shell)
    first, second = events(spans.one("execute_tool shell"), "process.exec")
    assert first["process.executable.path"] == "/bin/sh"
    assert first["process.command_line"] == "/bin/sh -c 'echo hi | cat > /dev/null'"
    assert os.path.isabs(second["process.executable.path"])
    assert second["process.executable.path"].endswith("/true")


def test_secrets_on_a_command_line_are_redacted_in_the_span(guarded: Any, spans: Any) -> None:
    """A token passed on a command line never reaches the span in clear text."""
    guarded()
    token = "ghp_" + "a1B2c3D4" * 5

    def leak() -> str:
        """Pass a token to a child."""
        subprocess.run(["/bin/true", "--token", token], check=True)
        return "ok"

    run_tool(leak)
    (event,) = events(spans.one("execute_tool leak"), "process.exec")
    assert token not in event["process.command_line"]
    assert event["process.command_line"].startswith("/bin/true --token")


def test_a_child_gets_the_tool_trace_context_and_identity(guarded: Any, spans: Any) -> None:
    """A child started in a tool call sees TRACEPARENT of the tool span and the agent identity."""
    guarded(service_name="support-agent")

    def child_env() -> str:
        """Print the child's environment."""
        return subprocess.run([sys.executable, "-c", PRINT_ENV], capture_output=True,
                              text=True, check=True).stdout

    with agentguard.conversation("conv-7"):
        seen = json.loads(run_tool(child_env, call_id="call-env"))
    trace_id, span_id = _ids(spans.one("execute_tool child_env"))
    assert seen == {
        "TRACEPARENT": f"00-{trace_id}-{span_id}-01",
        "AGENTGUARD_AGENT": "support-agent",
        "AGENTGUARD_CONVERSATION_ID": "conv-7",
        "AGENTGUARD_TOOL": "child_env",
        "AGENTGUARD_TOOL_CALL_ID": "call-env",
    }


def test_an_explicit_env_is_extended_on_a_copy(guarded: Any, spans: Any) -> None:
    """An explicit ``env`` keeps its values, loses a stale identity, gains the context, and the
    caller's dict is not changed."""
    guarded()
    env = {"PATH": os.environ["PATH"], "X": "1", "AGENTGUARD_TURN": "99",
           "TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    before = dict(env)

    def explicit() -> str:
        """Run a child with an explicit environment."""
        return subprocess.run([sys.executable, "-c", PRINT_ENV], env=env, capture_output=True,
                              text=True, check=True).stdout

    seen = json.loads(run_tool(explicit))
    trace_id, span_id = _ids(spans.one("execute_tool explicit"))
    assert env == before
    assert seen["X"] == "1"
    assert "AGENTGUARD_TURN" not in seen
    assert seen["TRACEPARENT"] == f"00-{trace_id}-{span_id}-01"


def test_a_bytes_env_gets_bytes_keys(guarded: Any, spans: Any) -> None:
    """An environment given with bytes keys is extended with bytes keys."""
    guarded()

    def as_bytes() -> str:
        """Run a child with a bytes environment."""
        env = {b"PATH": os.environb[b"PATH"], b"X": b"2"}
        return subprocess.run([sys.executable, "-c", PRINT_ENV], env=env, capture_output=True,
                              text=True, check=True).stdout

    seen = json.loads(run_tool(as_bytes))
    trace_id, span_id = _ids(spans.one("execute_tool as_bytes"))
    assert seen["X"] == "2"
    assert seen["TRACEPARENT"] == f"00-{trace_id}-{span_id}-01"


def test_context_propagation_can_be_switched_off(guarded: Any, spans: Any) -> None:
    """With ``propagate_context=False`` children inherit the environment unchanged, and the
    spawn is still reported."""
    guarded(propagate_context=False)

    def plain() -> str:
        """Print the child's environment."""
        return subprocess.run([sys.executable, "-c", PRINT_ENV], capture_output=True,
                              text=True, check=True).stdout

    assert "TRACEPARENT" not in os.environ
    assert json.loads(run_tool(plain)) == {}
    assert len(events(spans.one("execute_tool plain"), "process.exec")) == 1


def test_posix_spawn_is_reported_with_pid_and_context(guarded: Any, spans: Any,
                                                       tmp_path: Path) -> None:
    """``os.posix_spawn`` in a tool is reported with the child's pid and gives it TRACEPARENT."""
    guarded()
    out = tmp_path / "env.json"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ.get('TRACEPARENT', ''))"

    def spawn_posix() -> str:
        """Spawn a child with posix_spawn."""
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", script], dict(os.environ))
        os.waitpid(pid, 0)
        return str(pid)

    pid = int(run_tool(spawn_posix))
    span = spans.one("execute_tool spawn_posix")
    trace_id, span_id = _ids(span)
    assert out.read_text() == f"00-{trace_id}-{span_id}-01"
    (event,) = events(span, "process.exec")
    assert event["process.pid"] == pid
    assert event["agentguard.sensor.audit_event"] == "os.posix_spawn"
    assert span.attributes["agentguard.process.child_pids"] == (pid,)


def test_posix_spawnp_with_the_live_environ_resolves_the_program(guarded: Any,
                                                                  spans: Any) -> None:
    """``os.posix_spawnp`` of a bare name with ``os.environ`` itself is reported with the
    program found on PATH, and ``os.environ`` is left as it was."""
    guarded()
    before = dict(os.environ)

    def spawnp() -> str:
        """Spawn true from PATH."""
        pid = os.posix_spawnp("true", ["true"], os.environ)
        os.waitpid(pid, 0)
        return str(pid)

    pid = int(run_tool(spawnp))
    (event,) = events(spans.one("execute_tool spawnp"), "process.exec")
    assert os.path.isabs(event["process.executable.path"])
    assert event["process.executable.path"].endswith("/true")
    assert event["process.pid"] == pid
    assert dict(os.environ) == before


def test_exec_after_fork_carries_the_context(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A fork in a tool is reported, and ``os.execv`` in the child passes TRACEPARENT on."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    out = tmp_path / "env.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ.get('TRACEPARENT', ''))"

    def fork_exec() -> str:
        """Fork and exec a child."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.execv(sys.executable, [sys.executable, "-c", script])
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return str(os.waitstatus_to_exitcode(status))

    assert run_tool(fork_exec) == "0"
    span = spans.one("execute_tool fork_exec")
    trace_id, span_id = _ids(span)
    assert out.read_text() == f"00-{trace_id}-{span_id}-01"
    forks = [e for e in events(span, "process.exec")
             if e["agentguard.process.operation"] == "fork"]
    assert len(forks) == 1
    assert [e.executable for e in recorder.of("process_exec")] == [sys.executable]


def test_a_fork_of_an_interpreter_installed_under_tmp_is_not_blocked(
        guarded: Any, spans: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In enforce mode, a tool's fork is reported but not taken for a program executed from a
    temporary location when the agent's own interpreter lives under /tmp (a virtualenv there);
    executing a program from /tmp still is."""
    guarded(mode="enforce")
    monkeypatch.setattr(sys, "executable", "/tmp/venv/bin/python")

    def fork() -> str:
        """Fork a child that exits at once."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        return str(os.waitstatus_to_exitcode(status))

    assert run_tool(fork) == "0"
    (event,) = events(spans.one("execute_tool fork"), "process.exec")
    assert event["process.executable.path"] == "/tmp/venv/bin/python"
    assert "agentguard.decision" not in event

    def dropped() -> str:
        """Run a program from /tmp."""
        try:
            subprocess.run(["/tmp/agentguard-no-such-payload"], check=False)
        except PermissionError as blocked:
            return f"blocked: {blocked}"
        return "ran"

    assert "[AG004]" in run_tool(dropped)


def test_os_system_is_reported(guarded: Any, spans: Any) -> None:
    """``os.system`` in a tool is a process.exec event for /bin/sh -c."""
    guarded()

    def system() -> str:
        """Run a command through os.system."""
        return str(os.system("true"))

    assert run_tool(system) == "0"
    (event,) = events(spans.one("execute_tool system"), "process.exec")
    assert event["agentguard.process.operation"] == "system"
    assert event["process.command_line"] == "/bin/sh -c true"


def _system_child(out: Path, command: str = "") -> str:
    """An ``os.system`` command whose child writes its context variables (and ``$0``) to
    ``out``, then runs ``command``."""
    script = PRINT_ENV.replace("print(", "open(os.environ['OUT'], 'w').write(")
    line = f"OUT={out} {sys.executable} -c \"{script}\" && echo \"$0\" > {out}.zero"
    return f"{line}; {command}" if command else line


def test_an_os_system_child_gets_the_tool_trace_context_and_identity(
        guarded: Any, spans: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run with ``os.system`` in a tool call sees TRACEPARENT of the tool span and the
    agent identity, a stale identity in ``os.environ`` is removed for it, ``$0`` and the exit
    status are what ``os.system`` gives, ``os.environ`` is unchanged and the span event shows
    the tool's own command."""
    guarded(service_name="support-agent")
    monkeypatch.setenv("AGENTGUARD_TURN", "99")
    out = tmp_path / "env.json"
    command = _system_child(out, "exit 3")
    before = dict(os.environ)

    def system_env() -> str:
        """Run a child through os.system."""
        return str(os.system(command))

    with agentguard.conversation("conv-9"):
        status = int(run_tool(system_env, call_id="call-system"))
    assert os.waitstatus_to_exitcode(status) == 3
    assert dict(os.environ) == before
    span = spans.one("execute_tool system_env")
    trace_id, span_id = _ids(span)
    assert json.loads(out.read_text()) == {
        "TRACEPARENT": f"00-{trace_id}-{span_id}-01",
        "AGENTGUARD_AGENT": "support-agent",
        "AGENTGUARD_CONVERSATION_ID": "conv-9",
        "AGENTGUARD_TOOL": "system_env",
        "AGENTGUARD_TOOL_CALL_ID": "call-system",
    }
    assert Path(f"{out}.zero").read_text().strip() == "sh"
    (event,) = events(span, "process.exec")
    assert event["agentguard.process.operation"] == "system"
    assert event["process.command_line"] == f"/bin/sh -c {shlex.quote(command)}"


def test_concurrent_os_system_children_each_get_their_own_tool(guarded: Any, spans: Any,
                                                               tmp_path: Path) -> None:
    """Tool calls running ``os.system`` at the same time in a thread pool each hand their own
    tool call's context to their child, and a child started outside any tool gets none."""
    guarded()
    start = threading.Barrier(4)

    def system_env(index: int) -> str:
        """Run a child through os.system after the other tool calls have started."""
        start.wait(10)
        return str(os.system(_system_child(tmp_path / f"{index}.json", "sleep 0.2")))

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(
            lambda i: run_tool(system_env, call_id=f"call-{i}", index=i), range(4)))
    assert statuses == ["0"] * 4
    for index in range(4):
        seen = json.loads((tmp_path / f"{index}.json").read_text())
        assert seen["AGENTGUARD_TOOL_CALL_ID"] == f"call-{index}"
        (span,) = [s for s in spans.named("execute_tool system_env")
                   if s.attributes["gen_ai.tool.call.id"] == f"call-{index}"]
        trace_id, span_id = _ids(span)
        assert seen["TRACEPARENT"] == f"00-{trace_id}-{span_id}-01"
    assert os.system(_system_child(tmp_path / "outside.json")) == 0
    assert json.loads((tmp_path / "outside.json").read_text()) == {}


def test_os_system_propagation_can_be_switched_off(guarded: Any, tmp_path: Path) -> None:
    """With ``propagate_context=False`` an ``os.system`` child gets no context variables."""
    guarded(propagate_context=False)
    out = tmp_path / "env.json"

    def system_env() -> str:
        """Run a child through os.system."""
        return str(os.system(_system_child(out)))

    assert run_tool(system_env) == "0"
    assert json.loads(out.read_text()) == {}


def _blocks_shell(event: Any) -> bool:
    return event.kind == "process_exec" and os.path.basename(event.executable) == "sh"


def test_enforce_blocks_a_spawn_before_the_child_runs(guarded: Any, spans: Any,
                                                      tmp_path: Path) -> None:
    """In enforce mode a blocked spawn raises PermissionError in the tool and the child never
    runs; the finding names the rule and the span event says it was blocked."""
    marker = tmp_path / "ran"
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", policy=[Recorder(block=_blocks_shell, rule_id="NO-SHELL")],
            builtin_rules=False, on_finding=findings.append)

    def shell_out() -> str:
        """Run a shell command."""
        subprocess.run(["sh", "-c", f"touch {marker}"], check=True)
        return "done"

    with pytest.raises(PermissionError) as info:
        run_tool(shell_out, call_id="call-sh")
    assert isinstance(info.value, sensors.OperationBlocked)
    assert "NO-SHELL" in str(info.value)
    assert not marker.exists()
    (finding,) = findings
    assert (finding.rule_id, finding.action, finding.kind) == ("NO-SHELL", "block", "process_exec")
    assert finding.tool == "shell_out"
    assert info.value.finding == finding
    span = spans.one("execute_tool shell_out")
    (event,) = events(span, "process.exec")
    assert event["agentguard.decision"] == "block"
    assert "process.pid" not in event
    assert "agentguard.process.child_pids" not in span.attributes
    assert span.status.status_code.name == "ERROR"


def test_monitor_mode_alerts_and_the_child_runs(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """In monitor mode the same block decision is an alert and the child runs."""
    marker = tmp_path / "ran"
    findings: list[agentguard.Finding] = []
    guarded(mode="monitor", policy=[Recorder(block=_blocks_shell, rule_id="NO-SHELL")],
            builtin_rules=False, on_finding=findings.append)

    def shell_out() -> str:
        """Run a shell command."""
        subprocess.run(["sh", "-c", f"touch {marker}"], check=True)
        return "done"

    assert run_tool(shell_out) == "done"
    assert marker.exists()
    assert [(f.rule_id, f.action) for f in findings] == [("NO-SHELL", "alert")]
    span = spans.one("execute_tool shell_out")
    (event,) = events(span, "process.exec")
    assert event["agentguard.decision"] == "alert"
    assert isinstance(event["process.pid"], int)
    assert [e.name for e in span.events] == ["agentguard.finding", "process.exec"]


def test_a_spawn_outside_any_tool_is_judged_without_context(guarded: Any, spans: Any) -> None:
    """A spawn outside tool calls reaches the policy with no tool context and gets no
    TRACEPARENT."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    out = subprocess.run([sys.executable, "-c", PRINT_ENV], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == {}
    (event,) = [e for e in recorder.of("process_exec") if e.executable == sys.executable]
    assert event.context.tool is None
    assert event.context.span_id is None
    assert spans.all() == []


def test_uninstrumented_nothing_is_reported_and_patches_are_gone(guarded: Any) -> None:
    """After ``uninstrument()`` spawns are not reported and subprocess is unpatched."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)
    assert isinstance(subprocess.Popen.__dict__["_execute_child"], wrapt.FunctionWrapper)
    agentguard.uninstrument()
    before = sensors.stats()["events"]
    subprocess.run(["/bin/true"], check=True)
    assert not isinstance(subprocess.Popen.__dict__["_execute_child"], wrapt.FunctionWrapper)
    assert not isinstance(os.posix_spawn, wrapt.FunctionWrapper)
    assert recorder.seen == []
    assert sensors.stats()["events"] == before


def test_runtime_sensor_off_reports_nothing(guarded: Any, spans: Any) -> None:
    """With ``runtime_sensor=False`` a spawn in a tool is neither judged nor recorded."""
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False, runtime_sensor=False)

    def quiet() -> str:
        """Spawn a child."""
        subprocess.run(["/bin/true"], check=True)
        return "ok"

    run_tool(quiet)
    assert recorder.of("process_exec") == []
    assert events(spans.one("execute_tool quiet")) == []
    assert not isinstance(subprocess.Popen.__dict__["_execute_child"], wrapt.FunctionWrapper)
