"""The C entry point of the audit hook: same behaviour as the pure-Python hook, and really used
when it is built."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import sensors
from agentguard.sensors import _state as sensor_state
from tests.sensors.helpers import events, make_tool, run_tool

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("hook_scenario.py")
BUILT = importlib.util.find_spec("agentguard.sensors._fasthook") is not None

EXPECTED_EVENTS = [
    ["process.exec", {"process.executable.path": "/bin/true"}],
    ["agentguard.finding", {"agentguard.finding.rule_id": "NO-FALSE"}],
    ["process.exec", {"process.executable.path": "/bin/false", "agentguard.decision": "block"}],
    ["file.open", {"file.path": "<folder>/.env", "agentguard.file.write": False,
                   "agentguard.file.category": "credential"}],
    ["file.open", {"file.path": "<folder>/out.txt", "agentguard.file.write": True}],
    ["dns.lookup", {"dns.question.name": "localhost"}],
    ["net.connect", {"network.peer.port": "listener"}],
    ["net.connect", {"network.peer.port": "blocked", "agentguard.decision": "block"}],
    ["agentguard.finding", {"agentguard.finding.rule_id": "NO-PORT"}],
    ["module.load", {"agentguard.module.name": "wave"}],
    ["agentguard.finding", {"agentguard.finding.rule_id": "sensor-tamper"}],
    ["process.exec", {"process.executable.path": "/bin/sh"}],
]


def _run_scenario(hook: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    env["AGENTGUARD_EXPORTER"] = "none"
    env["PYTHONPATH"] = str(ROOT)
    if hook == "python":
        env["AGENTGUARD_SENSOR_HOOK"] = "python"
    out = subprocess.run([sys.executable, str(SCENARIO)], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("hook", ["native", "python"])
def test_both_hooks_observe_block_and_attribute_alike(hook: str) -> None:
    """With the C hook and with the pure-Python hook, a fresh agent process sees the same span
    events (spawns, credential read, write, lookup, connections, first import, tamper), refuses
    the same spawn, connection and tampering with PermissionError, gives an os.system child its
    tool call, and reports nothing once uninstrumented."""
    if hook == "native" and not BUILT:
        pytest.skip("the C extension is not built here (no compiler at install time)")
    result = _run_scenario(hook)
    assert result["hook"] == hook
    assert result["blocked_spawn"] == "13 OperationBlocked"
    assert result["blocked_connect"] == "13 OperationBlocked"
    assert result["blocked_tamper"] == "13 OperationBlocked"
    assert result["system_child"] == "call-1"
    assert result["events_after_uninstrument"] == 0
    # Module loads the lookup of "localhost" causes (codecs) depend on the interpreter.
    observed = [[name, {k: v for k, v in attributes.items() if k != "file.path"}]
                if name == "module.load" else [name, attributes]
                for name, attributes in result["events"]
                if name != "module.load" or attributes["agentguard.module.name"] == "wave"]
    assert observed == EXPECTED_EVENTS


def _compiler_available() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return bool(compiler) and shutil.which(compiler[0]) is not None and headers.exists()


@pytest.mark.skipif(not _compiler_available(), reason="no C compiler or Python headers")
def test_the_extension_is_built_where_a_compiler_exists() -> None:
    """An install on a machine with a C compiler and Python headers has the C hook (a failed
    build would silently fall back to the slower pure-Python hook)."""
    assert BUILT, "agentguard.sensors._fasthook is missing: reinstall with `pip install -e .`"


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_the_c_hook_is_the_one_in_use_and_settles_events_itself(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """With the extension built the sensor is entered from C: repeated ordinary reads are settled
    there, a credential read is passed to Python and reported on the tool span."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    guarded()
    assert sensors.hook_kind() == "native"
    ordinary = tmp_path / "notes.txt"
    ordinary.write_text("x")
    secret = tmp_path / ".npmrc"
    secret.write_text("//registry/:_authToken=x")

    def read_files() -> str:
        """Read an ordinary file five times, then a credential file."""
        before = sensors.stats()
        for _ in range(5):
            ordinary.read_text()
        middle = sensors.stats()
        secret.read_text()
        after = sensors.stats()
        return json.dumps([middle["native_filtered"] - before["native_filtered"],
                           after["native_forwarded"] - middle["native_forwarded"]])

    filtered, forwarded = json.loads(run_tool(read_files))
    assert filtered >= 4  # the first read is classified in Python, the rest settled in C
    assert forwarded == 1
    (event,) = [e for e in spans.one("execute_tool read_files").events if e.name == "file.open"]
    assert event.attributes["file.path"] == str(secret)


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_switching_the_c_hook_off_from_a_tool_is_refused_as_tampering(guarded: Any) -> None:
    """A tool call that switches the C hook off is refused in enforce mode with a sensor-tamper
    finding (the model gets an error message), and the hook stays on until uninstrument()."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    from agentguard.sensors import _fasthook

    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append, builtin_rules=False)

    def switch_off() -> str:
        """Switch the sensor's C hook off."""
        _fasthook.set_active(False)
        return "off"

    # The tool fails with the PermissionError; the model is told with an error message.
    reply = run_tool(switch_off)
    assert reply.startswith("Error: agentguard blocked this call to switch_off [sensor-tamper]")
    assert [f.rule_id for f in findings] == ["sensor-tamper"]
    assert _fasthook.stats()["active"] is True
    agentguard.uninstrument()
    assert _fasthook.stats()["active"] is False


def _repeat_rounds(guarded: Any, spans: Any, tmp_path: Path,
                   mark: Callable[[int], int]) -> list[int]:
    """One tool call that rewrites a file and connects to one address five times, then adds a
    policy and does it five times more; ``mark(n)`` runs in the tool before each half (n = 0, 1)
    and after the second (n = 2), and its answers are returned. Checks what every hook must show:
    one span event per kind, the other 18 occurrences counted, all 10 after the policy judged."""
    import socket

    guard = guarded(builtin_rules=False, injection_detection=False)
    assert not guard.has_stages
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    target = tmp_path / "out.txt"
    seen: list[str] = []

    def policy(event: Any) -> None:
        seen.append(event.kind)

    def repeat_rounds() -> str:
        marks = []
        for round_ in range(2):
            marks.append(mark(round_))
            if round_:
                guard.add_policy(policy)
            for _ in range(5):
                target.write_text("x")
                with socket.create_connection(listener.getsockname()):
                    pass
        marks.append(mark(2))
        return json.dumps(marks)

    try:
        marks: list[int] = json.loads(run_tool(repeat_rounds))
    finally:
        listener.close()
    span = spans.one("execute_tool repeat_rounds")
    names = [e.name for e in span.events]
    assert names.count("file.open") == 1 and names.count("net.connect") == 1
    # Counted on the span all the same: 10 writes and 10 connects, one span event each.
    assert span.attributes["agentguard.sensor.events_suppressed"] == 18
    assert seen.count("file_open") == 5 and seen.count("net_connect") == 5
    return marks


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_repeats_are_settled_in_c_and_still_judged_under_a_policy(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """With the C hook, a file rewritten and an address connected to again and again in one tool
    call are counted on the span without entering the Python hook from the second time on; once
    a policy is attached, every occurrence reaches Python and is judged."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    assert sensors.hook_kind() == "native"
    counts = _repeat_rounds(guarded, spans, tmp_path,
                            lambda _: sensors.stats()["native_repeats"])
    settled = [after - before for before, after in itertools.pairwise(counts)]
    # First time: span event, and the handler fills the table; then C.
    assert settled == [8, 0]


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_pointing_the_c_hook_at_another_repeat_table_from_a_tool_is_refused(
        guarded: Any) -> None:
    """A tool call that hands the C hook a forged repeat table (to have its connections only
    counted, never judged) is refused in enforce mode with a sensor-tamper finding."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    import contextvars
    import types

    from agentguard.sensors import _fasthook

    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append, builtin_rules=False)

    def forge() -> str:
        """Replace the sensor's repeat table with one that matches everything."""
        _fasthook.repeats(types.SimpleNamespace(state=0, repeats=None), types.ModuleType("x"),
                          contextvars.ContextVar("x"), lambda *args: None)
        return "forged"

    reply = run_tool(forge)
    assert reply.startswith("Error: agentguard blocked this call to forge [sensor-tamper]")
    assert [f.rule_id for f in findings] == ["sensor-tamper"]


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_telling_the_c_hook_that_nothing_judges_from_a_tool_is_refused(
        guarded: Any, tmp_path: Path) -> None:
    """A tool whose rewrites are already settled in C, once a policy arrives, tells the C hook
    that nothing judges events (so they would stay only counted): refused with a sensor-tamper
    finding, and every later rewrite is still judged by the policy."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    from agentguard.sensors import _fasthook

    findings: list[agentguard.Finding] = []
    judged: list[str] = []
    guard = guarded(mode="enforce", on_finding=findings.append, builtin_rules=False,
                    injection_detection=False)
    target = tmp_path / "out.txt"

    def unjudge() -> str:
        """Rewrite a file, switch judging off in the C hook once a policy is there, rewrite."""
        for _ in range(3):
            target.write_text("x")
        before = _fasthook.stats()["repeats"]
        guard.add_policy(lambda event: judged.append(event.kind))
        with contextlib.suppress(PermissionError):
            _fasthook.set_judged(guard, False)
        for _ in range(4):
            target.write_text("x")
        return str(_fasthook.stats()["repeats"] - before)

    assert run_tool(unjudge) == "0"
    assert [(f.rule_id, f.action) for f in findings] == [("sensor-tamper", "block")]
    assert judged.count("file_open") == 4


def test_the_hook_can_be_forced_to_pure_python() -> None:
    """``AGENTGUARD_SENSOR_HOOK=python`` makes a fresh process use the pure-Python hook."""
    code = ("import agentguard; from agentguard import sensors; "
            "agentguard.instrument(exporter=None, service_name='x'); print(sensors.hook_kind())")
    env = {**os.environ, "AGENTGUARD_SENSOR_HOOK": "python", "AGENTGUARD_EXPORTER": "none",
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True)
    assert out.stdout.split() == ["python"], shlex.quote(out.stderr)


def test_repeats_are_counted_and_judged_again_once_a_policy_arrives(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """Writing one file and connecting to one address again and again in a tool call writes one
    span event each and counts the rest; once a policy is added mid-call, every repeat is shown
    to it (repeats settled early never skip a judge)."""
    def mark(half: int) -> int:
        if half == 1:
            # The repeats were settled by the hook itself until now.
            assert len(sensor_state.local.repeats[2]) == 2
        return half

    assert _repeat_rounds(guarded, spans, tmp_path, mark) == [0, 1, 2]


def test_a_read_of_a_file_the_tool_keeps_rewriting_is_still_reported(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A credential file a tool rewrites three times and then reads is shown twice on the span,
    once written and once read: a repeat is only a repeat with the same open flags."""
    guarded(builtin_rules=False, injection_detection=False)
    secret = tmp_path / ".aws" / "credentials"
    secret.parent.mkdir()

    def rotate_key() -> str:
        for _ in range(3):
            secret.write_text("[default]\naws_secret_access_key = x\n")
        secret.read_text()
        secret.write_text("[default]\naws_secret_access_key = y\n")
        return "rotated"

    assert run_tool(rotate_key) == "rotated"
    span = spans.one("execute_tool rotate_key")
    opens = [(e["agentguard.file.write"], e["agentguard.file.category"])
             for e in events(span, "file.open")]
    assert opens == [(True, "credential"), (False, "credential")]
    assert span.attributes["agentguard.sensor.events_suppressed"] == 3


def test_connections_to_two_ports_of_one_host_are_two_destinations(
        guarded: Any, spans: Any) -> None:
    """A tool alternating between two ports of one host shows both connections on its span
    and counts the other four: a repeat is only a repeat to the same port."""
    import socket

    guarded(builtin_rules=False, injection_detection=False)
    listeners = [socket.socket(), socket.socket()]
    for listener in listeners:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
    ports = [listener.getsockname()[1] for listener in listeners]

    def poll_both() -> str:
        for _ in range(3):
            for port in ports:
                with socket.create_connection(("127.0.0.1", port)):
                    pass
        return "polled"

    try:
        assert run_tool(poll_both) == "polled"
    finally:
        for listener in listeners:
            listener.close()
    span = spans.one("execute_tool poll_both")
    assert sorted(e["network.peer.port"] for e in events(span, "net.connect")) == sorted(ports)
    assert span.attributes["agentguard.sensor.events_suppressed"] == 4


def _dial(host: str, port: int) -> int:
    """An ordinary-looking function a pickle payload reaches a connection through."""
    import socket

    with socket.create_connection((host, port)):
        return port


class _Dialer:
    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return _dial, self.address


def test_a_repeat_during_a_model_load_is_judged_as_part_of_the_load(guarded: Any) -> None:
    """A connection a tool already made twice (so settled as a repeat) is refused when a pickle
    makes it again while it is being deserialised: the load starts the judging afresh."""
    import pickle
    import socket

    findings: list[agentguard.Finding] = []
    guard = guarded(mode="enforce", on_block="raise", builtin_rules=False,
                    injection_detection=False, on_finding=findings.append)
    assert not guard.has_stages
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    host, port = listener.getsockname()
    blob = pickle.dumps(_Dialer(host, port))

    def fetch_then_load() -> str:
        """Connect twice, then unpickle a payload that connects to the same address."""
        for _ in range(2):
            with socket.create_connection((host, port)):
                pass
        assert list(sensor_state.local.repeats[2]) == [host]
        pickle.loads(blob)
        return "loaded"

    try:
        with pytest.raises(PermissionError, match=sensors.RULE_LOAD_SPAWN):
            run_tool(fetch_then_load)
    finally:
        listener.close()
    assert [f.rule_id for f in findings] == [sensors.RULE_LOAD_SPAWN]


def _own_install_arguments() -> tuple[Any, ...]:
    """The configuration the sensor gives the C hook (the callback and events it installs)."""
    from agentguard.sensors import _hook, _tamper

    return (_hook.HOOK, tuple(_hook._ALL_HANDLERS), (_hook.PROBE_EVENT, _hook.CONTROL_EVENT),
            sensor_state.ordinary_reads, sensor_state.modules_seen, _tamper.CODE_ATTRIBUTES,
            _hook._WRITE_FLAGS)


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_reinstalling_the_c_hook_from_a_tool_is_refused_as_tampering(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A tool call that installs the C hook again with a callback of its own (to blind the
    sensor) is refused in enforce mode with a sensor-tamper finding, and the next tool call's
    credential read is still reported."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    from agentguard.sensors import _fasthook

    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append, builtin_rules=False)
    secret = tmp_path / ".netrc"
    secret.write_text("machine example.com password hunter2")

    def blind() -> str:
        """Reinstall the sensor's C hook with a callback that ignores everything."""
        _fasthook.install(lambda event, args: None, ["open", "subprocess.Popen"], [], set(),
                          set(), frozenset(), 0)
        return "blind"

    def read_secret() -> str:
        """Read a credential file."""
        return secret.read_text()

    reply = run_tool(blind)
    assert reply.startswith("Error: agentguard blocked this call to blind [sensor-tamper]")
    assert [(f.rule_id, f.evidence["call"]) for f in findings] == [
        ("sensor-tamper", "agentguard.sensors._fasthook.install")]
    assert run_tool(read_secret).startswith("machine")
    (event,) = events(spans.one("execute_tool read_secret"), "file.open")
    assert event["file.path"] == str(secret)


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_a_second_install_is_reported_even_with_agentguards_own_configuration(
        guarded: Any) -> None:
    """In monitor mode a tool calling the C hook's install() again is a tamper alert, even when
    it passes exactly the sensor's own configuration; the call goes through (the hook was
    already added, so it only replaces the configuration)."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    from agentguard.sensors import _fasthook

    findings: list[agentguard.Finding] = []
    guarded(mode="monitor", on_finding=findings.append, builtin_rules=False)
    arguments = _own_install_arguments()

    def reinstall() -> str:
        """Install the sensor's C hook a second time."""
        return repr(_fasthook.install(*arguments))

    assert run_tool(reinstall) == "False"
    assert [(f.action, f.rule_id) for f in findings] == [("alert", "sensor-tamper")]
    assert findings[0].tool == "reinstall"


@pytest.mark.skipif(not BUILT, reason="the C extension is not built")
def test_repeats_counted_in_c_reach_the_span_of_a_tool_that_fails(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """Repeats the C hook counted land on the tool span before it ends, also when the tool
    raises, and nothing is left waiting once the span has ended."""
    if os.environ.get("AGENTGUARD_SENSOR_HOOK", "").lower() == "python":
        pytest.skip("AGENTGUARD_SENSOR_HOOK=python asks for the pure-Python hook")
    from agentguard.sensors import _fasthook

    guarded(builtin_rules=False, injection_detection=False)
    target = tmp_path / "out.txt"
    counted: list[int] = []

    def rewrite_then_fail() -> str:
        """Rewrite one file seven times, then fail."""
        before = _fasthook.stats()["repeats"]
        for _ in range(7):
            target.write_text("x")
        counted.append(_fasthook.stats()["repeats"] - before)
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        make_tool(rewrite_then_fail).invoke({"name": "rewrite_then_fail", "args": {},
                                             "id": "call-fail", "type": "tool_call"})
    # First write: span event, and the handler fills the table; then C.
    assert counted == [6]
    span = spans.one("execute_tool rewrite_then_fail")
    assert [e.name for e in span.events].count("file.open") == 1
    assert span.attributes["agentguard.sensor.events_suppressed"] == 6
    assert _fasthook.stats()["pending"] == 0
