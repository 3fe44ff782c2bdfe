"""The ``/proc`` + psutil polling sensor, for hosts where eBPF cannot run.

It sees processes and connections that live at least one polling interval, sensitive files held
open at a poll, and nothing finer. It says so when it starts, and its ``blind_spots`` are shown by
``agentguard collector status``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agentguard._errors import internal_error
from agentguard.collector import procfs
from agentguard.collector.model import CONNECT, EXIT, OPEN, KernelEvent
from agentguard.collector.sensor import EventSink, WatchSet, rescan_event

__all__ = ["ProcSensor", "is_sensitive_path"]

logger = logging.getLogger("agentguard.collector")

_SENSITIVE_DIRS = frozenset({
    ".ssh", ".aws", ".kube", ".gnupg", ".docker", "serviceaccount", "secrets", "gcloud", ".azure",
    "private-keys-v1.d", ".password-store", "gh",
})
_SENSITIVE_NAMES = frozenset({
    "shadow", "gshadow", "sudoers", ".netrc", "_netrc", ".git-credentials", "environ", ".pgpass",
    "credentials", ".bash_history", "kubeconfig", ".npmrc", ".pypirc", ".vault-token", ".my.cnf",
    "master.passwd",
})
# Per poll: processes whose connections and open files are listed (the expensive part).
_MAX_INSPECTED = 256
_MAX_SEEN_CONNECTIONS = 65536


def is_sensitive_path(path: str) -> bool:
    """The same rule as the kernel program: by file name, or by the name of its directory."""
    parts = path.rstrip("/").rsplit("/", 2)
    name = parts[-1]
    directory = parts[-2] if len(parts) >= 2 else ""
    return name in _SENSITIVE_NAMES or directory in _SENSITIVE_DIRS or name.startswith(".env")


class ProcSensor:
    """Polls ``/proc`` for the watched trees' processes, connections and sensitive open files."""

    name = "procfs"
    blind_spots: tuple[str, ...] = (
        "processes that start and exit between two polls (e.g. a quick curl)",
        "connections opened and closed between two polls, and failed connection attempts",
        "DNS queries",
        "which thread acted: inside an agent process, attribution is by time only",
        "bytes sent",
        "files opened and closed between two polls",
        "exact event times (to the polling interval)",
    )

    def __init__(self, watches: WatchSet, *, interval: float = 0.2) -> None:
        self.watches = watches
        self.interval = interval
        self._sink: EventSink | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._live: set[int] = set()
        self._connections: set[tuple[int, str, int, str, int]] = set()
        self._files: set[tuple[int, str]] = set()
        self._started = threading.Event()
        self.counters = {"events": 0, "polls": 0, "lost": 0, "poll_errors": 0}

    def start(self, sink: EventSink) -> None:
        self._sink = sink
        logger.warning(
            "agentguard collector: eBPF unavailable, using the /proc polling sensor every %.2fs. "
            "It cannot see: %s.", self.interval, "; ".join(self.blind_spots))
        self._thread = threading.Thread(target=self._run, name="agentguard-procfs", daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_attached(self, timeout: float) -> bool:
        return self._started.wait(timeout)

    def watch(self, pid: int) -> None:
        self._wake.set()

    def unwatch(self, pid: int) -> None:
        self._wake.set()

    def sync(self, timeout: float = 2.0) -> bool:
        """Wait for one complete poll after this call."""
        target = self.counters["polls"] + 2
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.counters["polls"] < target and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.counters["polls"] >= target

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def stats(self) -> dict[str, int]:
        return {**self.counters, "watched_processes": len(self._live)}

    def _emit(self, event: KernelEvent) -> None:
        self.counters["events"] += 1
        if self._sink is not None:
            self._sink(event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as exc:
                self.counters["poll_errors"] += 1
                internal_error("collector procfs poll", exc)
            self.counters["polls"] += 1
            self._started.set()
            self._wake.wait(self.interval)
            self._wake.clear()

    def _poll(self) -> None:
        roots = self.watches.snapshot()
        tree = procfs.descendants(roots) | {pid for pid in roots if procfs.read_stat(pid)}
        now = time.time_ns()
        for pid in sorted(tree - self._live):
            # Roots were announced by whoever watched them; only their descendants are news.
            if pid in roots:
                continue
            event = rescan_event(pid, "procfs")
            if event is not None:
                self._emit(event)
        for pid in sorted(self._live - tree):
            self._emit(KernelEvent(EXIT, now, pid, pid, {"exit_code": None}, source="procfs"))
            self._connections = {c for c in self._connections if c[0] != pid}
            self._files = {f for f in self._files if f[0] != pid}
        self._live = tree
        for pid in sorted(tree)[:_MAX_INSPECTED]:
            self._inspect(pid, now)

    def _inspect(self, pid: int, now: int) -> None:
        import psutil

        try:
            process = psutil.Process(pid)
            connections: list[Any] = process.net_connections(kind="inet")
            files = process.open_files()
        except (psutil.Error, OSError):
            return
        for conn in connections:
            if not conn.raddr:
                continue
            key = (pid, conn.laddr.ip, conn.laddr.port, conn.raddr.ip, conn.raddr.port)
            if key in self._connections:
                continue
            if len(self._connections) >= _MAX_SEEN_CONNECTIONS:
                self.counters["lost"] += 1
                continue
            self._connections.add(key)
            family = "ipv6" if ":" in conn.raddr.ip else "ipv4"
            self._emit(KernelEvent(CONNECT, now, pid, 0, {
                "address": conn.raddr.ip, "port": conn.raddr.port, "family": family,
                "result": None, "state": conn.status,
            }, source="procfs"))
        for handle in files:
            key2 = (pid, handle.path)
            if key2 in self._files or not is_sensitive_path(handle.path):
                continue
            self._files.add(key2)
            self._emit(KernelEvent(OPEN, now, pid, 0, {
                "path": handle.path, "write": getattr(handle, "mode", "r") not in ("r", None),
            }, source="procfs"))
