"""Opening a file that must be a regular file, without ever waiting on one that is not.

Policies, profiles and model files are named by paths someone else controls. A path checked
first and opened after could be swapped in between, and opening a named pipe nobody writes to
waits for ever (in the agent's thread, at ``instrument()`` or in a loader). So the file is opened
without blocking and its type is checked on what was opened.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

__all__ = ["NotRegularFile", "open_regular"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """The path names a directory, a named pipe, a device or a socket."""

    def __init__(self, path: str, directory: bool) -> None:
        super().__init__(f"{path}: not a regular file")
        self.directory = directory


def open_regular(path: str) -> tuple[BinaryIO, int]:
    """``path`` opened for reading in binary, and its size.

    Raises :class:`NotRegularFile` when it is no regular file, and what ``os.open`` raises
    (``OSError``; ``ValueError`` for a path with a NUL character).
    """
    fd = os.open(path, _FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, stat.S_ISDIR(info.st_mode))
        handle = os.fdopen(fd, "rb")
        fd = -1
        return handle, info.st_size
    finally:
        if fd >= 0:
            os.close(fd)
