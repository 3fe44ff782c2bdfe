"""Model files for the AI-BOM tests, written in their real on-disk formats."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

__all__ = ["TrappedModel", "read_safetensors", "write_safetensors", "write_trapped_pickle"]


def write_safetensors(path: Path, tensors: dict[str, list[float]]) -> Path:
    """A safetensors file: 8-byte little-endian header length, JSON header, then the F32 data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)],
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


def read_safetensors(path: str) -> dict[str, list[float]]:
    """Parse a safetensors file the way a loader does (header, then each tensor's bytes)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        data = handle.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = list(struct.unpack(f"<{(end - start) // 4}f", data[start:end]))
    return tensors


class TrappedModel:
    """Pickles into a call of os.system: what a booby-trapped model file contains."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def write_trapped_pickle(path: Path, marker: Path) -> Path:
    """A "model" whose unpickling runs ``touch marker`` in a shell."""
    path.write_bytes(pickle.dumps({"weights": [0.5, 0.25], "hook": TrappedModel(f"touch {marker}")}))
    return path
