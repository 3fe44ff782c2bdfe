"""Model loads: pickle files, a joblib model, and pickles whose payload runs a command."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import joblib
import pytest

import agentguard
from agentguard import sensors
from tests.sensors.helpers import Recorder, events, run_tool


class _Payload:
    """Pickles into a call of os.system: what a booby-trapped model file contains."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def _trapped_model(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "classifier.pkl"
    path.write_bytes(pickle.dumps({"weights": [0.1, 0.2], "hook": _Payload(f"touch {marker}")}))
    return path


@pytest.fixture
def guard_off_builtins(guarded: Any) -> Any:
    """``guarded`` without the built-in policy pack, so only the sensor's own rules judge."""

    def start(**kwargs: Any) -> agentguard.Guard:
        return guarded(builtin_rules=False, **kwargs)  # type: ignore[no-any-return]

    return start


def _load(path: Path) -> str:
    with open(path, "rb") as handle:
        return type(pickle.load(handle)).__name__


def test_a_pickle_model_load_is_reported_with_its_digest(guarded: Any, spans: Any,
                                                         tmp_path: Path) -> None:
    """Loading a .pkl file is a model.load event with size and SHA-256, and a ModelLoad for the
    policy."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": list(range(100))}))
    size, sha256 = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def load_model() -> str:
        """Load the model."""
        return _load(path)

    assert run_tool(load_model) == "dict"
    (event,) = events(spans.one("execute_tool load_model"), "model.load")
    assert event == {"file.path": str(path), "agentguard.model.format": "pickle",
                     "agentguard.model.source": "open",
                     "agentguard.model.size": size, "agentguard.model.sha256": sha256}
    (loaded,) = recorder.of("model_load")
    assert (loaded.path, loaded.format, loaded.size, loaded.sha256) == (
        str(path), "pickle", size, sha256)
    assert loaded.context.tool == "load_model"


def test_a_model_payload_spawn_is_attributed_to_the_load(guarded: Any, spans: Any,
                                                         tmp_path: Path) -> None:
    """In monitor mode a pickle that runs a command on load is flagged twice (the unsafe global,
    then the spawn) and the spawn is attributed to the tool and the file being loaded."""
    marker = tmp_path / "pwned"
    path = _trapped_model(tmp_path, marker)
    findings: list[agentguard.Finding] = []
    recorder = Recorder()
    guarded(mode="monitor", policy=[recorder], builtin_rules=False, on_finding=findings.append)

    def load_model() -> str:
        """Load a downloaded model."""
        return _load(path)

    assert run_tool(load_model) == "dict"
    assert marker.exists()
    assert [(f.rule_id, f.action, f.category) for f in findings] == [
        (sensors.RULE_UNSAFE_PICKLE, "alert", "supply-chain"),
        (sensors.RULE_LOAD_SPAWN, "alert", "supply-chain")]
    assert findings[0].evidence["model"] == str(path)
    assert (findings[0].evidence["module"], findings[0].evidence["name"]) == ("posix", "system")
    assert findings[1].tool == "load_model"
    span = spans.one("execute_tool load_model")
    (spawn,) = events(span, "process.exec")
    assert spawn["agentguard.model.loading"] == str(path)
    assert spawn["process.command_line"] == f"/bin/sh -c 'touch {marker}'"
    (exec_event,) = recorder.of("process_exec")
    assert exec_event.context.tool == "load_model"


def test_enforce_refuses_an_unsafe_pickle_before_its_payload_runs(
        guarded: Any, tmp_path: Path) -> None:
    """In enforce mode the load fails with PermissionError as soon as the pickle names
    os.system, and the command never runs."""
    marker = tmp_path / "pwned"
    path = _trapped_model(tmp_path, marker)
    findings: list[agentguard.Finding] = []
    guarded(on_block="raise", mode="enforce", builtin_rules=False, on_finding=findings.append)

    def load_model() -> str:
        """Load a downloaded model."""
        return _load(path)

    with pytest.raises(PermissionError, match=r"posix\.system"):
        run_tool(load_model)
    assert not marker.exists()
    assert [(f.rule_id, f.action) for f in findings] == [(sensors.RULE_UNSAFE_PICKLE, "block")]


def touch(path: str) -> int:
    """An innocent-looking helper a pickle can call: importable, not on any list, yet it runs
    a command."""
    return subprocess.run(["sh", "-c", f"touch {path}"], check=False).returncode


class _Gadget:
    """Pickles into a call of :func:`touch` (a gadget no list of unsafe globals names)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return touch, (str(self.path),)


def test_enforce_refuses_a_spawn_during_a_load_whatever_the_globals(
        guard_off_builtins: Any, tmp_path: Path) -> None:
    """A pickle reaching a spawn through an ordinary-looking function is refused at the spawn,
    because a load is in progress."""
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps([_Gadget(marker)]))
    findings: list[agentguard.Finding] = []
    guard_off_builtins(mode="enforce", on_block="raise", on_finding=findings.append)

    def load_model() -> str:
        """Load a downloaded model."""
        return _load(path)

    with pytest.raises(PermissionError, match="while deserialising"):
        run_tool(load_model)
    assert not marker.exists()
    assert [(f.rule_id, f.kind) for f in findings] == [(sensors.RULE_LOAD_SPAWN, "process_exec")]


def test_pickle_loads_of_bytes_is_watched_too(guarded: Any, tmp_path: Path) -> None:
    """A payload unpickled from bytes (no file) is refused the same way."""
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Payload(f"touch {marker}"))
    guarded(on_block="raise", mode="enforce", builtin_rules=False)

    def from_cache() -> str:
        """Unpickle cached bytes."""
        pickle.loads(blob)
        return "loaded"

    with pytest.raises(PermissionError):
        run_tool(from_cache)
    assert not marker.exists()


def test_an_ordinary_pickle_is_not_flagged(guarded: Any, tmp_path: Path) -> None:
    """Plain data and classes from ordinary modules load without findings."""
    findings: list[agentguard.Finding] = []
    guarded(mode="enforce", builtin_rules=False, on_finding=findings.append)
    blob = pickle.dumps({"path": Path("/tmp/x"), "set": {1, 2}, "bytes": bytearray(b"ab")})

    def load_data() -> str:
        """Unpickle data."""
        return str(sorted(pickle.loads(blob)))

    assert run_tool(load_data) == "['bytes', 'path', 'set']"
    assert findings == []


def test_joblib_model_load_is_reported_once(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """``joblib.load`` of a file without a model extension is still a model.load event, named
    after the loader, and its own open is not reported twice."""
    path = tmp_path / "model.dat"
    joblib.dump({"coef": [1.0, 2.0]}, path)
    guarded()

    def load_joblib() -> str:
        """Load a joblib model."""
        return str(sorted(joblib.load(path)))

    assert run_tool(load_joblib) == "['coef']"
    (event,) = events(spans.one("execute_tool load_joblib"), "model.load")
    assert event["file.path"] == str(path)
    assert event["agentguard.model.format"] == "joblib"
    assert event["agentguard.model.source"] == "joblib.load"
    assert event["agentguard.model.sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_safe_model_formats_and_large_files(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A safetensors file is reported with its format; a file too large to hash has its size
    and no digest."""
    small = tmp_path / "model.safetensors"
    small.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    large = tmp_path / "big.gguf"
    with open(large, "wb") as handle:
        handle.truncate(17 << 20)
    guarded()

    def read_weights() -> str:
        """Read two weight files."""
        for path in (small, large):
            with open(path, "rb") as handle:
                handle.read(8)
        return "ok"

    run_tool(read_weights)
    first, second = events(spans.one("execute_tool read_weights"), "model.load")
    assert first["agentguard.model.format"] == "safetensors"
    assert "agentguard.model.sha256" in first
    assert second["agentguard.model.format"] == "gguf"
    assert second["agentguard.model.size"] == 17 << 20
    assert "agentguard.model.sha256" not in second


def test_a_pickle_read_from_an_archive_member_blames_no_file_on_disk(
        guard_off_builtins: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ZIP member's name is not a path: a finding on a pickle read from one does not name the
    file of that name in the working directory (an innocent file), but the load itself."""
    import zipfile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps("an unrelated file"))
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("model.pkl", pickle.dumps({"lookup": getattr}))
    findings: list[agentguard.Finding] = []
    guard_off_builtins(on_finding=findings.append)

    def load_bundle() -> str:
        """Load the bundled model."""
        with zipfile.ZipFile(archive) as bundle, bundle.open("model.pkl") as member:
            return type(pickle.load(member)).__name__

    assert run_tool(load_bundle) == "dict"
    [finding] = [f for f in findings if f.rule_id == "sensor-unsafe-pickle"]
    assert finding.evidence["name"] == "getattr"
    assert finding.evidence["model"] == "<pickle.load>"


def test_a_path_through_a_link_and_dotdot_is_the_file_the_kernel_opens(
        guarded: Any, spans: Any, tmp_path: Path) -> None:
    """``link/../model.pkl`` where ``link`` is a symbolic link names the file in the link's
    target's parent, as the kernel resolves it, not the file a textual reading of ``..`` finds
    (here another model): one file, one model.load event, the right digest."""
    real = tmp_path / "store" / "models"
    (real / "sub").mkdir(parents=True)
    (real / "model.pkl").write_bytes(pickle.dumps({"weights": [1]}))
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"weights": [2]}))
    (tmp_path / "link").symlink_to(real / "sub")
    spelled = str(tmp_path / "link" / ".." / "model.pkl")
    guarded(builtin_rules=False)

    def load_model() -> str:
        """Load the model."""
        return type(joblib.load(spelled)).__name__

    assert run_tool(load_model) == "dict"
    loads = events(spans.one("execute_tool load_model"), "model.load")
    assert [e["file.path"] for e in loads] == [str(real / "model.pkl")]
    assert loads[0]["agentguard.model.sha256"] == hashlib.sha256(
        (real / "model.pkl").read_bytes()).hexdigest()


def test_a_model_path_swapped_for_a_named_pipe_never_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing a model file checks the file it opened, opened without blocking: a path that was
    a regular file when looked at and is a named pipe nobody writes to when opened (swapped in
    between) gives no digest instead of hanging the agent's thread."""
    import threading

    from agentguard.aibom._inventory import sha256_file
    from agentguard.sensors._models import digest

    regular = tmp_path / "model.pkl"
    regular.write_bytes(b"weights")
    pipe = tmp_path / "swapped.pkl"
    os.mkfifo(pipe)
    real_stat = os.stat
    # The moment of the swap: looking at the path still shows the regular file.
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: real_stat(
        regular if str(path) == str(pipe) else path, *a, **k))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.extend(
        [digest(str(pipe)), sha256_file(str(pipe))]), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the hashing thread before failing
        with open(pipe, "wb"):
            pass
        worker.join(10)
        pytest.fail("hashing a named pipe blocked")
    assert results == [(None, None), (None, None, 0)]
    assert digest(str(regular))[1] == hashlib.sha256(b"weights").hexdigest()
