"""Which pickle globals the sensor refuses: judged by what a name resolves to, not its spelling."""

from __future__ import annotations

import datetime
import decimal
import http
import http.cookiejar
import multiprocessing
import os
import pickle
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import sensors
from agentguard.sensors._models import unsafe_global
from tests.sensors.helpers import Recorder

# Tasks and results of a pool must be found by name in the worker (a forked copy of this module).
POOL_TIMEOUT = 20


def _square(value: int) -> int:
    return value * value


def _fail(value: int) -> int:
    raise ValueError(f"bad input {value}")


def _calling(module: str, name: str, argument: str | bytes | None = None, *,
             protocol: int = 4) -> bytes:
    """A pickle stream naming ``module``/``name`` (a dotted name from protocol 4) and, with an
    argument, calling it: what a booby-trapped file contains, spelled any way the unpickler
    accepts."""
    stream = bytes([0x80, protocol]) + b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    if argument is None:
        return stream + b"."
    data = argument.encode() if isinstance(argument, str) else argument
    opcode = b"X" if isinstance(argument, str) else b"B"  # BINUNICODE / BINBYTES
    return stream + b"(" + opcode + len(data).to_bytes(4, "little") + data + b"tR."


def _pickle_findings(findings: list[agentguard.Finding]) -> list[tuple[str, str, str]]:
    return [(f.action, f"{f.evidence['module']}.{f.evidence['name']}", f.evidence["capability"])
            for f in findings if f.rule_id == sensors.RULE_UNSAFE_PICKLE]


def _cookie() -> http.cookiejar.Cookie:
    return http.cookiejar.Cookie(0, "sid", "abc", None, False, "example.com", True, False, "/",
                                 True, True, None, False, None, None, {})


@pytest.mark.parametrize("value", [
    urllib.parse.urlsplit("https://example.com/a?b=1"),
    http.HTTPStatus.OK,
    os.stat("/"),
    socket.AF_INET,
    OrderedDict(a=1),
    datetime.datetime(2024, 5, 1, 12, 30),
    decimal.Decimal("1.25"),
], ids=lambda value: type(value).__name__)
def test_benign_data_of_network_and_os_modules_loads_in_enforce_mode(
        guarded: Any, value: Any) -> None:
    """A URL, an HTTP status, a stat result or an address family read back with pickle loads
    without a finding, although their modules also hold functions that spawn or connect."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)
    assert pickle.loads(pickle.dumps(value)) == value
    assert _pickle_findings(findings) == []


def test_an_http_sessions_saved_cookies_load_in_enforce_mode(guarded: Any) -> None:
    """Cookies an agent persisted between runs (``http.cookiejar.Cookie``) load without a
    finding."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)
    (cookie,) = pickle.loads(pickle.dumps([_cookie()]))
    assert vars(cookie) == vars(_cookie())
    assert _pickle_findings(findings) == []


def test_a_numpy_array_loads_in_enforce_mode(guarded: Any) -> None:
    """An array pickle (the stuff of model files) loads without a finding."""
    numpy = pytest.importorskip("numpy")
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)
    array = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    for protocol in (2, 4, 5):
        assert (pickle.loads(pickle.dumps(array, protocol=protocol)) == array).all()
    assert _pickle_findings(findings) == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_array_pickled_by_numpy_1_loads_in_enforce_mode(guarded: Any) -> None:
    """numpy 1.x wrote arrays as ``numpy.core.numeric._frombuffer`` (protocol 5), a name numpy 2
    serves from its ``numpy.core`` shim: the array loads and nothing is reported."""
    numpy = pytest.importorskip("numpy")
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", on_finding=findings.append)
    array = numpy.arange(6, dtype="<f8").reshape(2, 3)
    arguments = pickle.dumps((array.tobytes(), array.dtype, array.shape, "C"), protocol=3)
    stream = b"\x80\x03cnumpy.core.numeric\n_frombuffer\n" + arguments[2:-1] + b"R."
    assert (pickle.loads(stream) == array).all()
    assert _pickle_findings(findings) == []
    assert unsafe_global("numpy.core.numeric", "_frombuffer") is None


@pytest.mark.parametrize(("module", "name", "capability", "protocol"), [
    ("os", "system", "exec", 4),
    ("posix", "system", "exec", 4),
    ("shutil", "os.system", "exec", 4),  # another module's reference, dotted (protocol 4)
    ("tempfile", "_os.system", "exec", 4),
    ("subprocess", "getoutput", "exec", 4),
    ("subprocess", "Popen", "exec", 4),
    ("__builtin__", "eval", "exec", 2),  # a Python 2 name the unpickler maps to builtins.eval
    ("shutil", ".".join(["os"] * 40) + ".system", "unresolved", 4),  # too deep to walk
])
def test_every_spelling_of_a_command_runner_is_refused_before_it_runs(
        guarded: Any, tmp_path: Path, module: str, name: str, capability: str,
        protocol: int) -> None:
    """A pickle calling a command runner under any name the unpickler resolves is refused in
    enforce mode before the command runs, and the finding names the spelling it used."""
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    argument = f"__import__('os').system({command!r})" if name == "eval" else command
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    with pytest.raises(PermissionError, match="sensor-unsafe-pickle"):
        pickle.loads(_calling(module, name, argument, protocol=protocol))
    assert not marker.exists()
    assert _pickle_findings(findings) == [("block", f"{module}.{name}", capability)]


def test_a_nested_pickle_is_refused(guarded: Any, tmp_path: Path) -> None:
    """A pickle that unpickles a second pickle (``pickle.loads`` as a global) is refused before
    the inner payload is read."""
    marker = tmp_path / "pwned"
    inner = _calling("os", "system", f"touch {marker}")
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    with pytest.raises(PermissionError, match="sensor-unsafe-pickle"):
        pickle.loads(_calling("pickle", "loads", inner))
    assert not marker.exists()
    assert _pickle_findings(findings) == [("block", "pickle.loads", "exec")]


@pytest.mark.parametrize(("module", "name"), [
    ("builtins", "getattr"),  # what a pickled bound method of a built-in type names
    ("operator", "attrgetter"),
])
def test_reflection_helpers_are_alerts(guarded: Any, module: str, name: str) -> None:
    """Reflection helpers have legitimate uses: the load goes ahead in enforce mode and leaves an
    alert."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    assert pickle.loads(_calling(module, name)) is getattr(sys.modules[module], name)
    assert _pickle_findings(findings) == [("alert", f"{module}.{name}", "reflection")]


_LAZY_MODULES = {
    # A module __getattr__ (PEP 562): the name is made by running it.
    "agentguard_test_lazy_getattr": "import os\n\ndef __getattr__(name):\n    return os.system\n",
    # An attribute of the module's class, computed when looked up (six.moves works this way).
    "agentguard_test_lazy_class": (
        "import os, sys, types\n\nclass _Lazy(types.ModuleType):\n    @property\n"
        "    def report(self):\n        return os.system\n\n"
        "sys.modules[__name__].__class__ = _Lazy\n"),
}


@pytest.mark.parametrize("module", sorted(_LAZY_MODULES))
def test_a_name_only_code_can_resolve_is_refused(guarded: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 module: str) -> None:
    """A global that harmless-looking module code would turn into ``os.system`` when looked up
    is refused as unresolved, and its command never runs."""
    (tmp_path / f"{module}.py").write_text(_LAZY_MODULES[module])
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "pwned"
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    try:
        with pytest.raises(PermissionError, match="sensor-unsafe-pickle"):
            pickle.loads(_calling(module, "report", f"touch {marker}"))
    finally:
        sys.modules.pop(module, None)
    assert not marker.exists()
    assert _pickle_findings(findings) == [("block", f"{module}.report", "unresolved")]


def test_a_pickle_cannot_rewrite_agentguards_own_state(guarded: Any) -> None:
    """A pickle naming the sensor's per-thread state (to mark its thread as agentguard's own) is
    refused, and what the thread does next is still judged."""
    recorder = Recorder()
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, policy=[recorder], on_finding=findings.append)
    # BUILD {"state": 2} on agentguard.sensors._state.local: "quiet", ignored by the hook.
    stream = (b"\x80\x04cagentguard.sensors._state\nlocal\n}X\x05\x00\x00\x00stateK\x02sb.")
    outcome: list[str] = []

    def agent_thread() -> None:
        try:
            pickle.loads(stream)
            outcome.append("loaded")
        except PermissionError:
            outcome.append("refused")
        subprocess.run(["/bin/true"], check=True)

    # (On a thread of its own: a load that went through would blind only that thread.)
    worker = threading.Thread(target=agent_thread)
    worker.start()
    worker.join(10)
    assert outcome == ["refused"]
    assert _pickle_findings(findings) == [("block", "agentguard.sensors._state.local", "state")]
    assert [event.executable for event in recorder.of("process_exec")] == ["/bin/true"]


def test_a_multiprocessing_pool_works_in_enforce_mode(guarded: Any) -> None:
    """A fork pool maps tasks, returns a task's exception and runs a task that calls a command
    runner in enforce mode: multiprocessing's own unpickling is never refused, so nothing
    hangs."""
    guarded(mode="enforce")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map_async(_square, range(8)).get(POOL_TIMEOUT) == [
            value * value for value in range(8)]
        with pytest.raises(ValueError, match="bad input 3"):
            pool.apply_async(_fail, (3,)).get(POOL_TIMEOUT)
        # The worker unpickles subprocess.check_output: reported there, not refused.
        assert pool.apply_async(subprocess.check_output, (["/bin/echo", "hi"],)).get(
            POOL_TIMEOUT) == b"hi\n"
        assert pool.apply_async(_square, (7,)).get(POOL_TIMEOUT) == 49


def test_multiprocessings_transport_is_reported_and_the_agents_own_load_refused(
        guarded: Any) -> None:
    """A command runner received through a multiprocessing pipe is an alert marked as
    multiprocessing's unpickling; the same bytes loaded by the agent itself are refused."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    try:
        sender.send(subprocess.check_output)
        assert receiver.recv() is subprocess.check_output
    finally:
        receiver.close()
        sender.close()
    (alert,) = [f for f in findings if f.rule_id == sensors.RULE_UNSAFE_PICKLE]
    assert (alert.action, alert.evidence["unpickled_by"]) == ("alert", "multiprocessing")
    with pytest.raises(PermissionError, match="sensor-unsafe-pickle"):
        pickle.loads(pickle.dumps(subprocess.check_output))
