"""ONNX Runtime opens model files in native code: its wrapper reports the load, and only a path
names a file (a model given as bytes is no file)."""

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
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def _model(path: Path) -> Path:
    """A one-node ONNX model (y = x + 1) written to ``path``."""
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(session: Any) -> float:
    return float(session.run(None, {"x": np.array([2.0], dtype=np.float32)})[0][0])


def test_an_inference_session_from_a_path_is_a_model_load(guarded: Any, spans: Any,
                                                          tmp_path: Path) -> None:
    """``onnxruntime.InferenceSession(path)`` in a tool is one model.load event with the file's
    size and SHA-256, and a ModelLoad for the policy; the session works as before."""
    path = _model(tmp_path / "adapter.onnx")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    recorder = Recorder()
    guarded(policy=[recorder], builtin_rules=False)

    def score() -> str:
        """Score with the adapter."""
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return str(_run(session))

    assert run_tool(score) == "3.0"
    (event,) = events(spans.one("execute_tool score"), "model.load")
    assert event == {"file.path": str(path), "agentguard.model.format": "onnx",
                     "agentguard.model.source": "onnxruntime.InferenceSession",
                     "agentguard.model.size": path.stat().st_size,
                     "agentguard.model.sha256": sha256}
    (loaded,) = recorder.of("model_load")
    assert (loaded.path, loaded.format, loaded.context.tool) == (str(path), "onnx", "score")


def test_a_model_given_as_bytes_names_no_file(guarded: Any, spans: Any, tmp_path: Path) -> None:
    """A model passed as bytes loads and runs; it is no file, so no model.load names one."""
    data = _model(tmp_path / "inline.onnx").read_bytes()
    guarded(builtin_rules=False)

    def score_inline() -> str:
        """Score with an inline model."""
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        return str(_run(session))

    assert run_tool(score_inline) == "3.0"
    assert events(spans.one("execute_tool score_inline"), "model.load") == []


def test_onnx_models_are_in_the_aibom(guarded: Any, tmp_path: Path) -> None:
    """A model ONNX Runtime loaded is a machine-learning-model component with its digest."""
    path = _model(tmp_path / "ranker.onnx")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    _inventory.reset()
    guarded(builtin_rules=False)
    try:
        aibom.enable()
        _run(onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
        document = aibom.build(settle_timeout=10)
    finally:
        aibom.disable()
    [component] = [c for c in document["components"]
                   if c["type"] == "machine-learning-model" and c["name"] == "ranker.onnx"]
    assert component["hashes"] == [{"alg": "SHA-256", "content": sha256}]
    properties = {p["name"]: p["value"] for p in component["properties"]}
    assert properties["agentguard:loader"] == "onnxruntime.InferenceSession"
    assert properties["agentguard:format"] == "onnx"
    assert isinstance(agentguard.get_guard(), agentguard.Guard)
