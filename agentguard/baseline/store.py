"""Profile files: strict loading, atomic writes, and read-merge-write under a lock.

A profile is written to a temporary file in the same directory, flushed to disk and renamed over
the old one, so a reader sees the old profile or the new one, never half of one. A file that
cannot be read as a profile is refused with an error naming it and is never overwritten. A path
that is a symbolic link is written through: the file it points to is replaced (or created, for a
link to a file that does not exist yet), the link stays.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator

from agentguard._files import NotRegularFile, open_regular
from agentguard.baseline.profile import Profile, ProfileError

__all__ = ["MAX_FILE_SIZE", "load_profile", "locked", "merge_into_file", "save_profile",
           "target_path", "write_text_atomic"]

# A profile is bounded far below this; a larger file is not one of ours.
MAX_FILE_SIZE = 64 << 20

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks between processes
    fcntl = None  # type: ignore[assignment]


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and check a profile file; raises :class:`ProfileError` naming the file."""
    name = os.fspath(path)
    try:
        # A named pipe nobody writes to would otherwise hang the agent at instrument().
        handle, _ = open_regular(name)
        with handle:
            data = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise ProfileError(f"{name}: no such profile file") from None
    except NotRegularFile as exc:
        what = "a directory" if exc.directory else "a named pipe, device or socket"
        raise ProfileError(f"{name}: is {what}, not a profile file") from None
    except OSError as exc:
        raise ProfileError(f"{name}: cannot read the profile ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_SIZE:
        raise ProfileError(f"{name}: larger than {MAX_FILE_SIZE >> 20} MiB, not a profile")
    return Profile.from_json(data, name)


def target_path(path: str | os.PathLike[str]) -> str:
    """The absolute path of the file ``path`` stands for: the file a symbolic link (or a chain of
    them) points to, whether that file exists yet or not.

    Raises ``OSError`` (``ELOOP``) for links that point at each other in a loop: such a path names
    no file, and writing "through" it would replace the link itself.
    """
    name = os.fspath(path)
    try:
        return os.path.realpath(name, strict=True)
    except FileNotFoundError:
        # A file not created yet, or a link to one: resolved as far as the links go.
        return os.path.realpath(name)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            # The non-strict form would return the link itself, to be replaced by a file.
            raise OSError(errno.ELOOP, "symbolic links in a loop", name) from None
        raise


def save_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write ``profile`` to ``path`` atomically (temporary file, fsync, rename)."""
    write_bytes_atomic(path, profile.to_json())


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one."""
    # Through a symbolic link: renaming over the link would leave the file it points to (shared
    # by other processes) behind with the old profile.
    name = target_path(path)
    directory = os.path.dirname(name)
    try:
        mode = os.stat(name).st_mode & 0o777
    except OSError:
        mode = None
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(name)}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    # The rename itself is durable only once the directory is flushed.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a hidden ``.NAME.lock`` beside the file, the file a
    symbolic link points to) between processes."""
    name = target_path(path)
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = os.path.join(os.path.dirname(name), f".{os.path.basename(name)}.lock")
    # Not through a link: a link planted under the lock's name would have the lock file created
    # (or opened for writing) wherever it points, with this process's rights.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def merge_into_file(path: str | os.PathLike[str], learned: Profile,
                    base: Profile | None = None) -> Profile:
    """Add ``learned`` to the profile in ``path`` and write the result atomically.

    The file is re-read under the lock, so processes sharing one profile file each add what they
    learned without losing the others'. When the file does not exist, ``learned`` is added to
    ``base`` (what was loaded before the file went away). A file that is not a valid profile,
    and one that cannot be written (its directory was removed), raise :class:`ProfileError`
    naming it; the file is left as it is.
    """
    try:
        with locked(path):
            current = load_profile(path) if os.path.exists(path) else base
            merged = current.merge(learned) if current is not None else learned
            save_profile(merged, path)
    except OSError as exc:
        raise ProfileError(f"{os.fspath(path)}: cannot write the profile: {_reason(exc)}") from None
    return merged


def _reason(exc: OSError) -> str:
    """What went wrong, with the file it happened to when that is not the one named already."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror} ({exc.filename})"
    return exc.strerror or str(exc)
