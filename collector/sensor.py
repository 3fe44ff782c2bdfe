"""The sensor interface, shared helpers, and the choice between the eBPF and ``/proc`` sensors."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Protocol

from agentguard.collector import procfs
from agentguard.collector.model import EXEC, KernelEvent

__all__ = ["EventSink", "Sensor", "WatchSet", "ebpf_unavailable_reason", "rescan_event", "wall_clock"]

logger = logging.getLogger("agentguard.collector")

EventSink = Callable[[KernelEvent], None]


class Sensor(Protocol):
    """Sees what watched process trees do and hands each event to the sink."""

    name: str
    # What this sensor cannot see, in words for the person running it.
    blind_spots: tuple[str, ...]

    def start(self, sink: EventSink) -> None: ...

    def watch(self, pid: int) -> None: ...

    def unwatch(self, pid: int) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...

    @property
    def healthy(self) -> bool: ...


class WatchSet:
    """The watched roots: agent pids and pids named by options; thread-safe and bounded."""

    def __init__(self, max_roots: int = 4096) -> None:
        self._roots: set[int] = set()
        self._lock = threading.Lock()
        self.max_roots = max_roots
        self.refused = 0

    def add(self, pid: int) -> bool:
        """Add a root; ``False`` if it was already watched or the set is full (counted)."""
        with self._lock:
            if pid in self._roots:
                return False
            if len(self._roots) >= self.max_roots:
                self.refused += 1
                return False
            self._roots.add(pid)
            return True

    def discard(self, pid: int) -> bool:
        with self._lock:
            if pid in self._roots:
                self._roots.discard(pid)
                return True
            return False

    def snapshot(self) -> set[int]:
        with self._lock:
            return set(self._roots)

    def prune_dead(self) -> list[int]:
        """Forget roots that no longer exist; returns them."""
        with self._lock:
            dead = [pid for pid in self._roots if not os.path.exists(f"/proc/{pid}")]
            for pid in dead:
                self._roots.discard(pid)
            return dead

    def __len__(self) -> int:
        return len(self._roots)


class _WallClock:
    """Converts CLOCK_MONOTONIC nanoseconds (the kernel's ``nsecs``) to Unix nanoseconds."""

    def __init__(self) -> None:
        self._offset = 0
        self._refreshed = 0.0
        self.refresh()

    def refresh(self) -> None:
        # Bracket the wall-clock read with two monotonic reads so the offset is good to a few µs.
        before = time.monotonic_ns()
        wall = time.time_ns()
        after = time.monotonic_ns()
        self._offset = wall - (before + after) // 2
        self._refreshed = time.monotonic()

    def to_wall(self, monotonic_ns: int) -> int:
        # The wall clock can be stepped (NTP); a refresh every few seconds keeps them in line.
        if time.monotonic() - self._refreshed > 5.0:
            self.refresh()
        return monotonic_ns + self._offset


wall_clock = _WallClock()


def boot_time_ns() -> int:
    """Unix time of boot, for ``/proc/<pid>/stat`` start times (which count from boot)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        # Precise to the microsecond, where /proc/stat's btime is whole seconds.
        return time.time_ns() - time.clock_gettime_ns(boottime)
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return int(line.split()[1]) * 1_000_000_000
    except (OSError, ValueError):
        pass
    return time.time_ns() - time.monotonic_ns()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BOOT_NS = boot_time_ns()


def rescan_event(pid: int, source: str) -> KernelEvent | None:
    """An exec event reconstructed from ``/proc`` for a process no sensor saw start."""
    stat = procfs.read_stat(pid)
    if stat is None:
        return None
    argv = procfs.read_cmdline(pid)
    if not argv and stat.state != "Z":
        # Empty while the process is inside execve (its old image gone, the new one not yet
        # mapped); a moment later it reads.
        time.sleep(0.02)
        argv = procfs.read_cmdline(pid) or []
    exe = procfs.read_exe(pid) or (argv[0] if argv else stat.comm)
    data: dict[str, object] = {"exe": exe, "argv": argv, "ppid": stat.ppid, "comm": stat.comm}
    if stat.state == "Z":
        # It ran and exited unseen; only its name is left.
        data["exited"] = True
    markers = procfs.read_environ_markers(pid)
    if markers:
        data["env"] = markers
    started = _BOOT_NS + stat.start_ticks * 1_000_000_000 // _CLK_TCK
    return KernelEvent(EXEC, started, pid, pid, data, source=source)


def ebpf_unavailable_reason(bpftrace: str = "bpftrace") -> str | None:
    """Why the eBPF sensor cannot run here, or ``None`` when it can (root, bpftrace, tracefs)."""
    if os.geteuid() != 0:
        return "not running as root (the eBPF sensor needs CAP_BPF and CAP_PERFMON or root)"
    if shutil.which(bpftrace) is None:
        return f"{bpftrace!r} not found (install Debian's bpftrace package)"
    if procfs.tracefs_ready() is None:
        return "tracefs is not mounted at /sys/kernel/tracing and could not be mounted"
    return None
