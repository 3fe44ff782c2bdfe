"""Model loaders that open files in native code (safetensors): the wrappers report the load."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import aibom
from agentguard.aibom import _inventory
from tests.sensors.helpers import Recorder, events, run_tool

np = pytest.importorskip("numpy")
safetensors = pytest.importorskip("safetensors")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _weights(path: Path) -> Path:
    safetensors_numpy.save_file({"w": np.arange(4, dtype=np.float32)}, str(path))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_file_is_a_model_load_with_its_digest(guarded: Any, spans: Any,
                                                   tmp_path: Path) -> None:
    """``safetensors.numpy.load_file`` inside a tool is one model.load event with the file's size
    and SHA-256 and the loader's name, and one ModelLoad for the policy."""
    path = _weights(tmp_path / "weights.safetensors")
    sha256 = _digest(path)  # read before the sensor starts: the test's own read is no load
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def load_weights() -> str:
        """Load the weights."""
        return str(float(safetensors_numpy.load_file(str(path))["w"].sum()))

    assert run_tool(load_weights) == "6.0"
    (event,) = events(spans.one("execute_tool load_weights"), "model.load")
    assert event == {"file.path": str(path), "agentguard.model.format": "safetensors",
                     "agentguard.model.source": "safetensors.numpy.load_file",
                     "agentguard.model.size": path.stat().st_size,
                     "agentguard.model.sha256": sha256}
    (loaded,) = recorder.of("model_load")
    assert (loaded.path, loaded.sha256, loaded.context.tool) == (str(path), sha256, "load_weights")


def test_safe_open_is_a_model_load(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """``safetensors.safe_open`` (which load_file uses underneath) reports the file it opens."""
    path = _weights(tmp_path / "adapter.safetensors")
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def read_keys() -> str:
        """List the tensors."""
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            return ",".join(handle.keys())

    assert run_tool(read_keys) == "w"
    (event,) = events(spans.one("execute_tool read_keys"), "model.load")
    assert (event["file.path"], event["agentguard.model.source"]) == \
        (str(path), "safetensors.safe_open")
    assert [e.path for e in recorder.of("model_load")] == [str(path)]


def test_native_loads_are_in_the_aibom(guarded: Any, tmp_path: Path) -> None:
    """Models loaded through safetensors are artifacts of the AI-BOM with their digests."""
    first = _weights(tmp_path / "weights.safetensors")
    second = _weights(tmp_path / "other.safetensors")
    digests = {first: _digest(first), second: _digest(second)}
    _inventory.reset()
    guarded(builtin_rules=False)
    try:
        aibom.enable()
        safetensors_numpy.load_file(str(first))
        with safetensors.safe_open(str(second), framework="numpy") as handle:
            assert list(handle.keys()) == ["w"]
        document = aibom.build(settle_timeout=10)
    finally:
        aibom.disable()
    found = {c["name"]: (c.get("hashes"), {p["name"]: p["value"] for p in c["properties"]})
             for c in document["components"] if c["type"] == "machine-learning-model"}
    for path, loader in ((first, "safetensors.numpy.load_file"),
                         (second, "safetensors.safe_open")):
        hashes, props = found[path.name]
        assert hashes == [{"alg": "SHA-256", "content": digests[path]}]
        assert (props["agentguard:loader"], props["agentguard:format"]) == (loader, "safetensors")


def test_safe_open_is_restored_and_stays_a_class(guarded: Any, tmp_path: Path) -> None:
    """While wrapped, ``safe_open`` still works with ``isinstance``; ``uninstrument()`` puts the
    library's own back."""
    original = safetensors.safe_open
    path = _weights(tmp_path / "w.safetensors")
    guarded(builtin_rules=False)
    assert safetensors.safe_open is not original
    with safetensors.safe_open(str(path), framework="numpy") as handle:
        assert isinstance(handle, safetensors.safe_open)
    agentguard.uninstrument()
    assert safetensors.safe_open is original
