"""Which file an ``open`` reaches: spellings normalised, directory descriptors resolved.

Paths are classified by their text, so every spelling of one file must come out the same:
``//proc/self/environ``, ``/proc/self/./environ``, ``/etc//shadow`` and ``/tmp/../etc/shadow``
are ``/proc/self/environ`` and ``/etc/shadow``. ``.`` and repeated slashes are removed from the
text (the kernel ignores them); a ``..`` is resolved against the real directory it leaves, since
a symbolic link before it changes where it goes (``/tmp/link/../shadow``).

``os.open(name, flags, dir_fd=fd)`` opens ``name`` relative to the directory ``fd``, but the
``open`` audit event carries the name alone. So ``os.open`` is wrapped while the sensor runs: a
call with ``dir_fd`` tells the hook (``_state.local.open_at``), which resolves the directory with
``/proc/self/fd/<fd>`` (checked against the descriptor itself). A directory that cannot be
resolved leaves the file's place unknown, never the working directory.
"""

from __future__ import annotations

import operator
import os
import stat
from typing import Any

import wrapt

from agentguard import _state as _agentguard_state
from agentguard.sensors import _state

__all__ = ["UNKNOWN", "absolute", "install", "normalised", "wrapper_functions"]

# The category of a file opened relative to a directory the sensor could not resolve.
UNKNOWN = "unknown"


def _needs_normalising(path: str) -> bool:
    return "//" in path or "/./" in path or "/.." in path or path.endswith("/.")


# Longer paths are refused by the kernel (ENAMETOOLONG): left as they are, never walked.
MAX_PATH = 4096


def normalised(path: str) -> str:
    """``path`` (absolute) without repeated slashes, ``.`` and ``..`` (cheap when it has none)."""
    if not _needs_normalising(path) or len(path) > MAX_PATH or "\0" in path:
        return path
    if "/.." in path:
        head, _, tail = path.rpartition("/")
        if tail in ("", ".", ".."):
            path = os.path.realpath(path)
        else:
            # The directory as the kernel walks it (links and all); the last component as named.
            path = os.path.join(os.path.realpath(head or "/"), tail)
    else:
        path = os.path.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # POSIX keeps exactly two leading slashes; Linux does not
    return path


def _directory(fd: int) -> str | None:
    """The path of the directory open as ``fd``, or ``None`` when it cannot be told."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path[:1] != "/":
            return None  # not a directory on a file system (a socket, a pipe)
        # A directory removed or renamed since: /proc shows where it was; the check says so.
        held = os.fstat(fd)
        found = os.stat(path)
    except (OSError, ValueError, TypeError):
        return None
    if not stat.S_ISDIR(held.st_mode) or (held.st_dev, held.st_ino) != (found.st_dev,
                                                                           found.st_ino):
        return None
    return path


def absolute(raw: Any, path: str) -> tuple[str, bool]:
    """Where a relative ``path`` (the text of the audit event's ``raw`` argument) is: resolved
    against the directory of the ``os.open`` in progress when it named one, else the working
    directory; and whether that place is known.

    An unresolved directory gives ``/proc/self/fd/<fd>/<path>`` (the name the kernel itself
    resolves for it).
    """
    at = _state.local.open_at
    if at is not None and at[0] is raw:
        fd = at[1]
        with _state.busy():
            directory = _directory(fd)
        if directory is None:
            return normalised(f"/proc/self/fd/{fd}/{path}"), False
        return normalised(os.path.join(directory, path)), True
    try:
        cwd = os.getcwd()
    except OSError:
        # The working directory was removed: the kernel still resolves against it.
        return normalised(f"/proc/self/cwd/{path}"), False
    return normalised(os.path.join(cwd, path)), True


def _open_at(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``os.open``: a call with ``dir_fd`` tells the hook which directory its path is in."""
    if not kwargs:
        return wrapped(*args)
    dir_fd = kwargs.get("dir_fd")
    guard = _agentguard_state.guard
    if dir_fd is None or guard is None or not guard.config.runtime_sensor or \
            _state.local.state:
        return wrapped(*args, **kwargs)
    if type(dir_fd) is not int:
        if isinstance(dir_fd, float):
            return wrapped(*args, **kwargs)  # refused by os.open
        # os.open takes any object with __index__: converted once, here (its own error
        # propagates as os.open would raise it), so the hook resolves the directory the call
        # really uses.
        dir_fd = operator.index(dir_fd)
        kwargs = {**kwargs, "dir_fd": dir_fd}
    path = args[0] if args else kwargs.get("path")
    previous = _state.local.open_at
    _state.set_local("open_at", (path, dir_fd))
    try:
        return wrapped(*args, **kwargs)
    finally:
        _state.set_local("open_at", previous)


def install() -> None:
    """Wrap ``os.open`` (idempotent; called after the other wrappers, under agentguard's state
    lock). The wrapper joins the sensor's list of patches: ``stop()`` removes it with the rest."""
    with _state.patch_lock:
        if not _state.patching or not hasattr(os, "open"):
            return
        for owner, attribute, _original, _wrapper in _state.patches:
            if owner is os and attribute == "open":
                return
        original = os.open
        wrapped = wrapt.FunctionWrapper(original, _open_at)
        setattr(os, "open", wrapped)  # noqa: B010 (a module attribute mypy knows as a function)
        _state.patches.append((os, "open", original, wrapped))


def wrapper_functions() -> frozenset[Any]:
    """The wrapper functions (their code must not be replaced while they run)."""
    return frozenset({_open_at})
