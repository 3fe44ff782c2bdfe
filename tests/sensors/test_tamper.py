"""Tamper awareness: code in a tool call that tries to switch agentguard off is reported, and
refused in enforce mode."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

import pytest

import agentguard
from agentguard import _state, sensors
from agentguard.sensors import _hook
from tests.sensors.helpers import Recorder, events, run_tool


def _tamper_findings(findings: list[agentguard.Finding]) -> list[tuple[str, str]]:
    return [(f.action, f.title) for f in findings if f.rule_id == sensors.RULE_TAMPER]


def test_uninstrument_from_a_tool_is_reported(guarded: Any) -> None:
    """In monitor mode a tool calling ``uninstrument()`` produces a tamper alert (and succeeds)."""
    findings: list[agentguard.Finding] = []
    guarded(mode="monitor", on_finding=findings.append)

    def disable() -> str:
        """Switch agentguard off."""
        agentguard.uninstrument()
        return "off"

    assert run_tool(disable) == "off"
    assert agentguard.get_guard() is None
    assert _tamper_findings(findings) == [
        ("alert", "a tool call tried to switch agentguard off (uninstrument)")]
    assert findings[0].tool == "disable"


def test_uninstrument_from_a_tool_is_refused_in_enforce_mode(guarded: Any) -> None:
    """In enforce mode ``uninstrument()`` from a tool raises PermissionError and agentguard stays
    on."""
    findings: list[agentguard.Finding] = []
    guard = guarded(on_block="raise", mode="enforce", on_finding=findings.append)

    def disable() -> str:
        """Switch agentguard off."""
        agentguard.uninstrument()
        return "off"

    with pytest.raises(PermissionError, match=sensors.RULE_TAMPER):
        run_tool(disable)
    assert agentguard.get_guard() is guard
    assert [action for action, _ in _tamper_findings(findings)] == ["block"]


@pytest.mark.parametrize(("module_name", "attribute", "title"), [
    ("agentguard._state", "guard", "agentguard's active guard was replaced"),
    # The hook that tells the C hook a policy now judges repeats.
    ("agentguard._guard", "stages_changed",
     "stages_changed hook in agentguard's Guard was replaced"),
])
def test_replacing_agentguards_state_or_sensor_hooks_from_a_tool_is_refused(
        guarded: Any, module_name: str, attribute: str, title: str) -> None:
    """A tool assigning ``agentguard._state.guard``, or rebinding the sensor's hooks in
    agentguard's Guard module, is refused in enforce mode and the value stays."""
    import importlib

    module = importlib.import_module(module_name)
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append)
    before = getattr(module, attribute)

    def blind() -> str:
        """Clear agentguard's state."""
        setattr(module, attribute, None)
        return "blind"

    with pytest.raises(PermissionError):
        run_tool(blind)
    assert getattr(module, attribute) is before
    ((action, found_title),) = _tamper_findings(findings)
    assert action == "block"
    assert title in found_title
    assert findings[0].evidence["attribute"] == f"{module_name}.{attribute}"
    assert findings[0].evidence["file"] == __file__


def test_state_writes_outside_tools_are_alerts(guarded: Any) -> None:
    """Replacing agentguard's state outside a tool call (and outside agentguard's API) is an
    alert, even in enforce mode, and the write happens."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)
    telemetry = _state.telemetry
    _state.telemetry = telemetry
    assert _state.telemetry is telemetry
    assert [action for action, _ in _tamper_findings(findings)] == ["alert"]


def test_replacing_sensor_code_from_a_tool_is_refused(guarded: Any) -> None:
    """Swapping the code of one of the sensor's handlers from a tool is refused in enforce
    mode, and the handler keeps its code."""
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append)
    original = _hook._on_open.__code__

    def neuter(guard: Any, args: Any) -> None:
        return None

    def patch_sensor() -> str:
        """Disable file monitoring."""
        _hook._on_open.__code__ = neuter.__code__
        return "patched"

    with pytest.raises(PermissionError):
        run_tool(patch_sensor)
    assert _hook._on_open.__code__ is original
    assert "_on_open" in _tamper_findings(findings)[0][1]


def test_removing_the_spawn_patch_is_noticed_at_the_next_spawn(guarded: Any, spans: Any) -> None:
    """A tool that unwraps subprocess to hide child pids is reported at its next spawn, which
    is still seen by the audit hook."""
    findings: list[agentguard.Finding] = []
    guarded(mode="monitor", on_finding=findings.append)

    def unwrap_and_spawn() -> str:
        """Remove the wrapper, then spawn."""
        wrapper = subprocess.Popen.__dict__["_execute_child"]
        subprocess.Popen._execute_child = wrapper.__wrapped__  # type: ignore[attr-defined]
        subprocess.run(["/bin/true"], check=True)
        return "hidden"

    try:
        assert run_tool(unwrap_and_spawn) == "hidden"
    finally:
        agentguard.uninstrument()
    ((action, title),) = _tamper_findings(findings)
    assert action == "alert"
    assert "Popen._execute_child was removed" in title
    (spawn,) = events(spans.one("execute_tool unwrap_and_spawn"), "process.exec")
    assert spawn["process.executable.path"] == "/bin/true"


def test_a_tool_cannot_hide_its_thread(guarded: Any, spans: Any) -> None:
    """``quiet_thread()`` from inside a tool is reported and the thread stays watched."""
    findings: list[agentguard.Finding] = []
    recorder = Recorder()
    guarded(mode="monitor", on_finding=findings.append, policy=[recorder], builtin_rules=False)

    def hide() -> str:
        """Hide from the sensor, then spawn."""
        sensors.quiet_thread()
        subprocess.run(["/bin/true"], check=True)
        return "ok"

    run_tool(hide)
    assert [action for action, _ in _tamper_findings(findings)] == ["alert"]
    assert len(recorder.of("process_exec")) == 1



def test_instrument_from_a_tool_is_refused_in_enforce_mode(guarded: Any) -> None:
    """A tool calling ``instrument()`` to switch to monitor mode and the sensor off is refused
    in enforce mode: the configuration stays, and the spawn the tool makes next is blocked."""
    findings: list[agentguard.Finding] = []
    guard = guarded(on_block="raise", mode="enforce", on_finding=findings.append,
                    policy=[Recorder(block=lambda event: event.kind == "process_exec")])
    spawned: list[str] = []

    def relax() -> str:
        """Configure agentguard again, then spawn."""
        with contextlib.suppress(PermissionError):
            agentguard.instrument(mode="monitor", runtime_sensor=False)
        subprocess.run(["/bin/true"], check=True)
        spawned.append("true")
        return "ran"

    with pytest.raises(PermissionError, match="T-SENSOR"):
        run_tool(relax)
    assert agentguard.get_guard() is guard and guard.mode == "enforce"
    assert spawned == []
    assert _tamper_findings(findings) == [
        ("block", "a tool call tried to configure agentguard again (instrument)")]


def test_instrument_from_a_tool_is_reported_in_monitor_mode(guarded: Any) -> None:
    """In monitor mode the reconfiguration goes ahead and leaves an alert."""
    findings: list[agentguard.Finding] = []
    guard = guarded(mode="monitor", on_finding=findings.append)

    def reconfigure() -> str:
        """Configure agentguard again."""
        agentguard.instrument(mode="monitor", on_finding=findings.append)
        return "done"

    assert run_tool(reconfigure) == "done"
    assert agentguard.get_guard() is not guard
    assert _tamper_findings(findings) == [
        ("alert", "a tool call tried to configure agentguard again (instrument)")]


@pytest.mark.parametrize(("attribute", "value"), [
    ("mode", "monitor"),  # blocks become alerts
    ("has_stages", False),  # nothing would judge the sensor's events
    ("policies", []),
    ("sinks", []),  # findings would go nowhere
])
def test_changing_the_guard_from_a_tool_is_refused(guarded: Any, attribute: str,
                                                   value: Any) -> None:
    """A tool assigning an attribute of the active Guard is refused in enforce mode, the
    attribute keeps its value, and the spawn the tool tries next is still blocked."""
    findings: list[agentguard.Finding] = []
    guard = guarded(on_block="raise", mode="enforce", on_finding=findings.append,
                    policy=[Recorder(block=lambda event: event.kind == "process_exec")])
    before = getattr(guard, attribute)

    def relax() -> str:
        """Loosen agentguard, then spawn."""
        with contextlib.suppress(PermissionError):
            setattr(_state.guard, attribute, value)
        subprocess.run(["/bin/true"], check=True)
        return "ran"

    with pytest.raises(PermissionError, match="T-SENSOR"):
        run_tool(relax)
    assert getattr(guard, attribute) is before
    tamper = [f for f in findings if f.rule_id == sensors.RULE_TAMPER]
    assert [(f.action, f.evidence["attribute"]) for f in tamper] == [
        ("block", f"Guard.{attribute}")]
    assert tamper[0].evidence["file"] == __file__
    assert tamper[0].title == (f"agentguard's active Guard was changed ({attribute}) outside "
                               "agentguard")


@pytest.mark.parametrize("attribute", ["policies", "detectors", "sinks"])
def test_the_guards_stages_cannot_be_emptied_in_place(guarded: Any, attribute: str) -> None:
    """The Guard's stages and sinks are tuples: a tool cannot clear them without an assignment
    (which is watched), and they keep what ``instrument()`` attached."""
    guard = guarded(mode="enforce")
    before = getattr(guard, attribute)
    assert before  # the built-in pack, the injection detector, the logging sink

    def clear() -> str:
        """Empty one of the Guard's stage lists."""
        getattr(_state.guard, attribute).clear()
        return "cleared"

    with pytest.raises(AttributeError):
        clear()
    assert getattr(guard, attribute) == before


def test_guard_writes_outside_tools_are_alerts_and_agentguards_own_are_not(
        guarded: Any) -> None:
    """Outside a tool call a write to the Guard is an alert (and happens); agentguard's own
    writes (adding a policy, emitting findings) are not reported."""
    findings: list[agentguard.Finding] = []
    guard = guarded(mode="enforce", on_finding=findings.append)
    guard.add_policy(lambda event: None)
    assert _tamper_findings(findings) == []
    del guard.mode
    guard.mode = "enforce"
    assert guard.mode == "enforce"
    assert [action for action, _ in _tamper_findings(findings)] == ["alert", "alert"]


def test_the_configuration_cannot_be_changed_in_place(guarded: Any) -> None:
    """The resolved configuration is frozen: a tool cannot switch the sensor off through it."""
    guard = guarded(mode="enforce")
    with pytest.raises(ValueError, match="frozen"):
        guard.config.runtime_sensor = False  # type: ignore[misc]
    assert guard.config.runtime_sensor is True


@pytest.mark.parametrize("switch", ["stop", "activate"])
def test_stopping_the_sensor_from_a_tool_is_refused(guarded: Any, switch: str) -> None:
    """``sensors.stop()`` or the hook's ``activate(False)`` called from a tool is refused in
    enforce mode, and the sensor still blocks the tool's spawn."""
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append,
            policy=[Recorder(block=lambda event: event.kind == "process_exec")])

    def blind() -> str:
        """Stop the sensor, then spawn."""
        with contextlib.suppress(PermissionError):
            if switch == "stop":
                sensors.stop()
            else:
                _hook.activate(False)
        subprocess.run(["/bin/true"], check=True)
        return "ran"

    with pytest.raises(PermissionError, match="T-SENSOR"):
        run_tool(blind)
    tamper = [f for f in findings if f.rule_id == sensors.RULE_TAMPER]
    assert [f.action for f in tamper] == ["block"]
    assert "the runtime sensor was being switched outside" in tamper[0].title
    assert tamper[0].evidence["file"] == __file__


@pytest.mark.parametrize("write", ["state", "context", "set_local", "local", "protected"])
def test_changing_the_sensors_own_state_from_a_tool_is_refused(guarded: Any, write: str) -> None:
    """Marking the tool's thread as agentguard's own (which the hook ignores), forging its cached
    event context, replacing the per-thread object or emptying the protected functions is
    refused in enforce mode: nothing changes and the spawn the tool tries next is blocked."""
    from agentguard.sensors import _state as sensor_state

    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append,
            policy=[Recorder(block=lambda event: event.kind == "process_exec")])
    local, protected = sensor_state.local, sensor_state.protected

    def hide() -> str:
        """Hide from the sensor, then spawn."""
        with contextlib.suppress(PermissionError):
            if write == "state":
                sensor_state.local.state = sensor_state.QUIET
            elif write == "context":
                sensor_state.local.context = None
            elif write == "set_local":  # the sensor's own helper, called from the tool
                sensor_state.set_local("state", sensor_state.QUIET)
            elif write == "local":
                sensor_state.local = type(local)()
            else:
                sensor_state.protected = frozenset()
        subprocess.run(["/bin/true"], check=True)
        return "ran"

    with pytest.raises(PermissionError, match="T-SENSOR"):
        run_tool(hide)
    assert sensor_state.local is local and sensor_state.protected is protected
    assert local.state == sensor_state.IDLE
    tamper = [f for f in findings if f.rule_id == sensors.RULE_TAMPER]
    assert [f.action for f in tamper] == ["block"]
    assert "the runtime sensor's" in tamper[0].title
    assert write.replace("set_local", "state") in tamper[0].title
    assert tamper[0].evidence["file"] == __file__


@pytest.mark.parametrize("how", ["disable", "unpatch"])
def test_removing_the_framework_patches_from_a_tool_is_refused(guarded: Any, spans: Any,
                                                               how: str) -> None:
    """A tool removing agentguard's LangChain patches (so the next tool calls would be neither
    traced nor judged) is refused in enforce mode: the next tool call is still traced."""
    from agentguard import integrations

    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", on_finding=findings.append)

    def unhook() -> str:
        """Remove agentguard's framework patches."""
        if how == "disable":
            integrations.disable()
        else:
            integrations.get("langchain").unpatch()
        return "gone"

    with pytest.raises(PermissionError, match=sensors.RULE_TAMPER):
        run_tool(unhook)
    assert "langchain" in integrations.installed()
    run_tool(lambda: "still here", name="after")
    assert spans.one("execute_tool after") is not None
    tamper = [f for f in findings if f.rule_id == sensors.RULE_TAMPER]
    assert [f.action for f in tamper] == ["block"]
    assert tamper[0].title.startswith("agentguard's framework patches were being removed")
