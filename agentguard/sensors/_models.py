"""Model artifacts: loads in progress, file digests, and pickle globals that execute code.

A pickle runs code while it loads: its stream names callables (``pickle.find_class``) and calls
them. The sensor sees each name before it is resolved, and knows which load is in progress on the
thread (the loader wrappers push a :class:`Load`), so a process spawned or a connection opened by
a model payload is attributed to the file being deserialised.
"""

from __future__ import annotations

import hashlib
import os
import stat

from agentguard.sensors import _state

__all__ = ["Load", "current_load", "digest", "unsafe_global"]

# Model files larger than this are not hashed (the loader reads them anyway; hashing would read
# them twice on the agent's thread).
MAX_HASH_BYTES = 16 << 20
MAX_DIGESTS = 256
_CHUNK = 1 << 20


class Load:
    """A model or pickle load in progress on this thread."""

    __slots__ = ("format", "path", "reported", "source")

    def __init__(self, path: str | None, format: str, source: str) -> None:
        self.path = path
        self.format = format
        self.source = source
        # Whether a model.load event for ``path`` was already reported (the open that follows
        # must not report it again).
        self.reported = False


def current_load() -> Load | None:
    loads = _state.local.loads
    return loads[-1] if loads else None


def digest(path: str) -> tuple[int | None, str | None]:
    """The size of a regular file and, when it is small enough, its SHA-256 (cached)."""
    try:
        info = os.stat(path)
    except OSError:
        return None, None
    if not stat.S_ISREG(info.st_mode):
        return None, None
    size = info.st_size
    if size > MAX_HASH_BYTES:
        return size, None
    key = (path, size, info.st_mtime_ns)
    cached = _state.digests.get(key)
    if cached is not None:
        return size, cached
    sha = hashlib.sha256()
    remaining = MAX_HASH_BYTES
    try:
        with open(path, "rb") as handle:
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                sha.update(chunk)
                remaining -= len(chunk)
    except OSError:
        return size, None
    value = sha.hexdigest()
    if len(_state.digests) >= MAX_DIGESTS:
        _state.digests.clear()
    _state.digests[key] = value
    return size, value


# Globals a pickle can name to run commands, execute code, open connections or reach into the
# interpreter. A model's weights never need any of them.
_EXEC_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "runpy", "commands",
    "code", "codeop", "pdb", "bdb", "timeit", "webbrowser", "ctypes", "_ctypes", "multiprocessing",
    "importlib", "marshal", "pickle", "_pickle", "shutil", "sys",
})
_NETWORK_MODULES = frozenset({
    "socket", "_socket", "urllib", "http", "requests", "httpx", "urllib3", "smtplib", "ftplib",
    "telnetlib", "asyncio",
})
_EXEC_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "execfile", "breakpoint",
                            "open", "input"})
_REFLECTION_BUILTINS = frozenset({"getattr", "setattr", "delattr", "globals", "locals", "vars",
                                  "apply"})
_GADGETS = frozenset({("operator", "methodcaller"), ("operator", "attrgetter"),
                      ("_operator", "methodcaller"), ("_operator", "attrgetter")})


def unsafe_global(module: str, name: str) -> str | None:
    """Why a pickle global is unsafe (``"exec"``, ``"network"``, ``"reflection"``), or ``None``."""
    if module in ("builtins", "__builtin__"):
        if name in _EXEC_BUILTINS:
            return "exec"
        if name in _REFLECTION_BUILTINS:
            return "reflection"
        return None
    root = module.partition(".")[0]
    if root in _EXEC_MODULES:
        return "exec"
    if root in _NETWORK_MODULES:
        return "network"
    if (module, name) in _GADGETS:
        return "reflection"
    return None
