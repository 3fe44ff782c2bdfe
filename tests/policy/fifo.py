"""A named pipe at a path where a file is expected, with a writer that feeds it only if something
blocks reading it (so code that waits on the pipe gets an answer instead of hanging the test)."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["named_pipe"]


@contextlib.contextmanager
def named_pipe(path: Path, content: bytes) -> Iterator[Path]:
    """Create a FIFO at ``path``; while the block runs, whoever opens it to read gets ``content``."""
    os.mkfifo(path)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            try:
                # Succeeds only while a reader has the pipe open.
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    return
                time.sleep(0.02)
                continue
            with contextlib.suppress(OSError):
                os.write(fd, content)
            os.close(fd)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        stop.set()
        writer.join()
