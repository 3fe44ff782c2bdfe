"""The ``/proc`` + psutil polling sensor, for hosts where eBPF cannot run.

It sees processes and connections that live at least one polling interval, sensitive files held
open at a poll, and nothing finer. It says so when it starts, and its ``blind_spots`` are shown by
``agentguard collector status``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from agentguard._errors import internal_error
from agentguard.collector import procfs
from agentguard.collector.model import CONNECT, EXIT, OPEN, KernelEvent
from agentguard.collector.sensor import EventSink, WatchSet, rescan_event

__all__ = ["ListeningPorts", "ProcSensor", "is_sensitive_path"]

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
# Per poll: sockets of the watched trees that wait for peers (their accepted connections are
# recognised by these).
_MAX_LISTENERS = 4096
_WILDCARDS = frozenset({"0.0.0.0", "::"})


def is_sensitive_path(path: str) -> bool:
    """The same rule as the kernel program: by file name, or by the name of its directory."""
    parts = path.rstrip("/").rsplit("/", 2)
    name = parts[-1]
    directory = parts[-2] if len(parts) >= 2 else ""
    return name in _SENSITIVE_NAMES or directory in _SENSITIVE_DIRS or name.startswith(".env")


def _plain(ip: str) -> str:
    """An IPv4-mapped IPv6 address as IPv4: a dual-stack listener reports its IPv4 peers so."""
    return ip[7:] if ip[:7].lower() == "::ffff:" and "." in ip else ip


class ListeningPorts:
    """Where the watched trees wait for peers, to tell accepted connections from outgoing ones.

    ``/proc`` shows an established socket the same whichever side opened it. A socket whose local
    port is one a listener of the same process tree is bound to, in the same network namespace,
    was accepted: Linux never picks a port that any socket is bound to as the source port of a
    ``connect()``, so only a socket explicitly bound there with ``SO_REUSEPORT`` (same user as the
    listener) can share it. Listeners are TCP sockets in ``LISTEN`` and unconnected UDP sockets
    bound to a port (a UDP server that connects one socket per peer on its own port).
    """

    def __init__(self, limit: int = _MAX_LISTENERS) -> None:
        self._bound: dict[tuple[str | None, int, int], set[str]] = {}
        self._count = 0
        self.limit = limit
        self.dropped = 0

    def add(self, netns: str | None, conn: Any) -> None:
        """Remember ``conn`` (a psutil connection) if it is a socket that waits for peers."""
        if conn.raddr or not conn.laddr or not conn.laddr.port:
            return
        if conn.type == socket.SOCK_STREAM:
            if conn.status != "LISTEN":
                return
        elif conn.type != socket.SOCK_DGRAM:
            return
        if self._count >= self.limit:
            # Fail open towards reporting: an unrecognised accepted connection shows as outgoing.
            self.dropped += 1
            return
        addresses = self._bound.setdefault((netns, int(conn.type), conn.laddr.port), set())
        if _plain(conn.laddr.ip) not in addresses:
            addresses.add(_plain(conn.laddr.ip))
            self._count += 1

    def accepted(self, netns: str | None, conn: Any) -> bool:
        """Whether the connected socket ``conn`` was accepted by one of the remembered listeners."""
        if not conn.raddr or not conn.laddr:
            return False
        addresses = self._bound.get((netns, int(conn.type), conn.laddr.port))
        if not addresses:
            return False
        return _plain(conn.laddr.ip) in addresses or not addresses.isdisjoint(_WILDCARDS)


class ProcSensor:
    """Polls ``/proc`` for the watched trees' processes, connections and sensitive open files."""

    name = "procfs"
    blind_spots: tuple[str, ...] = (
        "processes that start and exit between two polls (e.g. a quick curl)",
        "connections opened and closed between two polls, and failed connection attempts",
        "incoming connections (accepted sockets are recognised by the tree's listening ports and "
        "not reported; one accepted from a listener already closed shows as outgoing)",
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
        self.counters = {"events": 0, "polls": 0, "lost": 0, "poll_errors": 0, "inbound": 0,
                         "listeners_dropped": 0}

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
        # Every process is read before any connection is judged: a listener may live in another
        # process of the tree than the socket it accepted (a pre-fork server's workers).
        listeners = ListeningPorts()
        inspected: list[tuple[int, str | None, list[Any], list[Any]]] = []
        for pid in sorted(tree)[:_MAX_INSPECTED]:
            found = self._read(pid)
            if found is None:
                continue
            netns = procfs.net_namespace(pid)
            for conn in found[0]:
                listeners.add(netns, conn)
            inspected.append((pid, netns, *found))
        self.counters["listeners_dropped"] += listeners.dropped
        for pid, netns, connections, files in inspected:
            self._report(pid, now, netns, connections, files, listeners)

    @staticmethod
    def _read(pid: int) -> tuple[list[Any], list[Any]] | None:
        """A process's inet sockets and open files, or ``None`` when it is gone or unreadable."""
        import psutil

        try:
            process = psutil.Process(pid)
            return list(process.net_connections(kind="inet")), list(process.open_files())
        except (psutil.Error, OSError):
            return None

    def _report(self, pid: int, now: int, netns: str | None, connections: list[Any],
                files: list[Any], listeners: ListeningPorts) -> None:
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
            if listeners.accepted(netns, conn):
                # A peer connected to a server in the tree: not a connect() the library could
                # have seen, and never one the eBPF sensor (which traces connect) reports either.
                self.counters["inbound"] += 1
                continue
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
