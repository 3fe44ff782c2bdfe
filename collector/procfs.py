"""Bounded readers for ``/proc``: environment markers, command lines, parents and process trees."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Iterator

from agentguard.collector._names import ENV_IDENTITY_PREFIX

__all__ = [
    "ProcStat",
    "descendants",
    "host_pid",
    "iter_pids",
    "local_addresses",
    "net_namespace",
    "parse_traceparent",
    "read_cmdline",
    "read_cmdline_raw",
    "read_environ_markers",
    "read_exe",
    "read_nspid",
    "read_stat",
    "split_args",
    "tracefs_ready",
]

PROC = "/proc"
# An environment block is read up to this size; markers further out are missed, never worth more.
MAX_ENVIRON_BYTES = 256 * 1024
MAX_CMDLINE_BYTES = 32 * 1024
MAX_ARGS = 256
MAX_ARG_LENGTH = 4096
MAX_MARKERS = 32

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as handle:
            return handle.read(limit)
    except OSError:
        return None


def read_environ_markers(pid: int) -> dict[str, str] | None:
    """``TRACEPARENT``, ``AGENTGUARD_*`` and ``OTEL_SERVICE_NAME`` from a process's environment.

    ``None`` when the process is gone or unreadable; an empty dict when it has none of them.
    """
    raw = _read(f"{PROC}/{pid}/environ", MAX_ENVIRON_BYTES)
    if raw is None:
        return None
    found: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        if not (entry.startswith((b"TRACEPARENT=", b"OTEL_SERVICE_NAME="))
                or entry.startswith(ENV_IDENTITY_PREFIX.encode())):
            continue
        name, _, value = entry.partition(b"=")
        found[name.decode("ascii", "replace")] = value[:1024].decode("utf-8", "replace")
        if len(found) >= MAX_MARKERS:
            break
    return found


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a W3C ``traceparent`` value, or ``None`` when it is not valid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, span_id = match.group(2), match.group(3)
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


def split_args(raw: bytes) -> list[str]:
    """NUL-separated argument bytes to a bounded list of strings."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    if not raw:
        return []
    return [arg[:MAX_ARG_LENGTH].decode("utf-8", "replace") for arg in raw.split(b"\0", MAX_ARGS)]


def read_cmdline_raw(pid: int) -> bytes | None:
    return _read(f"{PROC}/{pid}/cmdline", MAX_CMDLINE_BYTES)


def read_cmdline(pid: int) -> list[str] | None:
    raw = read_cmdline_raw(pid)
    return None if raw is None else split_args(raw)


def read_exe(pid: int) -> str | None:
    try:
        return os.readlink(f"{PROC}/{pid}/exe")
    except OSError:
        return None


class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the collector uses."""

    __slots__ = ("comm", "pid", "ppid", "start_ticks", "state")

    def __init__(self, pid: int, comm: str, ppid: int, start_ticks: int, state: str = "R") -> None:
        self.pid = pid
        self.comm = comm
        self.ppid = ppid
        self.start_ticks = start_ticks
        # R, S, D, Z (exited, not yet reaped: no command line any more), ...
        self.state = state


def read_stat(pid: int) -> ProcStat | None:
    raw = _read(f"{PROC}/{pid}/stat", 4096)
    if not raw:
        return None
    # comm is in parentheses and may itself contain ") "; the last one closes it.
    open_paren = raw.find(b"(")
    close_paren = raw.rfind(b")")
    if open_paren < 0 or close_paren < 0:
        return None
    fields = raw[close_paren + 2:].split()
    try:
        return ProcStat(pid, raw[open_paren + 1:close_paren].decode("utf-8", "replace"),
                        int(fields[1]), int(fields[19]), fields[0].decode("ascii", "replace"))
    except (IndexError, ValueError):
        return None


def iter_pids() -> Iterator[int]:
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def descendants(roots: Iterable[int]) -> set[int]:
    """Every live process below ``roots`` (not the roots themselves), from one scan of ``/proc``."""
    children: dict[int, list[int]] = {}
    for pid in iter_pids():
        stat = read_stat(pid)
        if stat is not None:
            children.setdefault(stat.ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def read_nspid(pid: int, tid: int | None = None) -> list[int] | None:
    """The pid (or thread id) in every pid namespace from the host's down to the process's own."""
    path = f"{PROC}/{pid}/status" if tid is None else f"{PROC}/{pid}/task/{tid}/status"
    raw = _read(path, 8192)
    if raw is None:
        return None
    for line in raw.split(b"\n"):
        if line.startswith(b"NSpid:"):
            try:
                return [int(value) for value in line.split()[1:]]
            except ValueError:
                return None
    return None


def _namespace(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"{PROC}/{pid}/ns/{kind}")
    except OSError:
        return None


def net_namespace(pid: int) -> str | None:
    """The network namespace ``pid`` lives in (``net:[inode]``), or ``None`` when it is gone."""
    return _namespace(pid, "net")


def local_addresses(pid: int) -> set[str]:
    """The addresses of the network namespace ``pid`` lives in (IPv4 and IPv6)."""
    found: set[str] = set()
    raw = _read(f"{PROC}/{pid}/net/fib_trie", 1 << 20) or b""
    previous = b""
    for line in raw.split(b"\n"):
        stripped = line.strip()
        if stripped.startswith(b"/32 host LOCAL") and previous.startswith(b"|-- "):
            found.add(previous[4:].decode("ascii", "replace"))
        previous = stripped
    for line in (_read(f"{PROC}/{pid}/net/if_inet6", 1 << 16) or b"").split(b"\n"):
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(fields[0].decode()))))
            except ValueError:
                continue
    return found


def _connected_to(pid: int, ports: frozenset[int]) -> bool:
    """Whether ``pid`` holds a TCP connection to one of ``ports`` (our OTLP listeners)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"{PROC}/{pid}/fd")[:4096]:
            try:
                target = os.readlink(f"{PROC}/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    wanted = {f"{port:04X}" for port in ports}
    for table in ("tcp", "tcp6"):
        for line in (_read(f"{PROC}/{pid}/net/{table}", 4 << 20) or b"").split(b"\n")[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[2].decode().rsplit(":", 1)[-1] in wanted and \
                    fields[9].decode() in inodes:
                return True
    return False


def host_pid(reported: int, peer: str | None,
             ports: frozenset[int] = frozenset()) -> tuple[int, bool] | None:
    """The pid on this host of a process that reported ``reported`` as its own pid.

    An agent in a container reports the pid of its own namespace. Candidates are this host's
    process ``reported`` and every process whose innermost pid is ``reported``; the network
    namespace the spans came from (loopback: ours; else the one owning the peer address)
    narrows them, and a connection to our OTLP ``ports`` decides between the rest.
    Returns ``(pid, namespaced)``, or ``None`` when no single process fits.
    """
    loopback = peer is None or peer in ("127.0.0.1", "::1", "localhost") or \
        peer.startswith("127.")
    own_net = _namespace("self", "net")

    def same_network(pid: int) -> bool:
        if loopback:
            return _namespace(pid, "net") == own_net
        return peer in local_addresses(pid)

    candidates: list[tuple[int, bool]] = []
    nspid = read_nspid(reported)
    own_depth = len(read_nspid(os.getpid()) or [0])
    if nspid is not None and len(nspid) == own_depth and same_network(reported):
        candidates.append((reported, False))
    for pid in iter_pids():
        levels = read_nspid(pid)
        if levels and len(levels) > own_depth and levels[-1] == reported and same_network(pid):
            candidates.append((pid, True))
            if len(candidates) > 16:
                break
    if len(candidates) > 1 and ports:
        candidates = [c for c in candidates if _connected_to(c[0], ports)]
    return candidates[0] if len(candidates) == 1 else None


def tracefs_ready(mount_if_missing: bool = True) -> str | None:
    """The tracefs mount point with event formats, mounting it when missing and allowed (root)."""
    for path in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(path, "events", "sched")):
            return path
    if not mount_if_missing or os.geteuid() != 0 or not os.path.isdir("/sys/kernel/tracing"):
        return None
    import subprocess

    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"],
                       check=False, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return "/sys/kernel/tracing" if os.path.isdir("/sys/kernel/tracing/events/sched") else None
