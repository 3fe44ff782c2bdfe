"""The eBPF sensor: ``bpftrace`` running the packaged ``agentguard.bt`` as a supervised subprocess.

The program filters in the kernel: only processes in its watch map (roots added by the collector,
descendants added at fork) produce output. The collector adds and removes roots at run time
through a control call only its own pid may make (see the program's header). When bpftrace exits
or crashes it is restarted with back-off, the watch map is seeded again from ``/proc``, processes
that started meanwhile are reported from ``/proc``, and a ``sensor.gap`` event records the blind
interval. Lost perf-buffer records are counted and reported as ``sensor.lost`` events.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import IO, Any

from agentguard._errors import internal_error
from agentguard.collector import procfs
from agentguard.collector.model import (
    CONNECT,
    DNS,
    EXEC,
    EXIT,
    FORK,
    GAP,
    IO_URING,
    LOST,
    OPEN,
    SENT,
    UNWATCHED,
    KernelEvent,
)
from agentguard.collector.sensor import EventSink, WatchSet, rescan_event, wall_clock

__all__ = ["BpftraceSensor", "fit_program", "parse_dns_query", "program_path", "record_text"]

logger = logging.getLogger("agentguard.collector")

# prctl options the program treats as control calls ('AG' 0x47 + operation); the kernel rejects
# them with EINVAL, so they do nothing else.
_CTL_WATCH = 0x41474701
_CTL_UNWATCH = 0x41474702
_CTL_SYNC = 0x41474703
# The argument area is sent in two chunks of this size (see the program).
_ARGV_CHUNK = 190
_MAX_PARTIAL_EXECS = 4096
_PRINTF = b'{"type": "printf", "data": "'
_PRINTF_LENGTH = len(_PRINTF)
_OWN_DEPTH = len(procfs.read_nspid(os.getpid()) or [0])
_STDERR_LINES = 40
# Opens and connects submitted to an io_uring ring carry this in their data (`via`).
_VIA_IO_URING = "io_uring"
# io_uring_setup's flag for a kernel thread that takes submissions without any system call.
_IORING_SETUP_SQPOLL = 0x2
# The opened inode's type (S_IFMT >> 12) as the `O` record gives it.
_FILE_TYPES = {1: "fifo", 2: "char_device", 4: "directory", 6: "block_device", 8: "regular",
               10: "symlink", 12: "socket"}
# Output reading: bytes per read, a pause after a short read so a batch gathers (well under the
# pipe's capacity at the highest rates measured), the pipe size asked for, and a bound on a line
# (the longest are the per-second byte counts, one key per process, up to the map's key limit).
_READ_BYTES = 256 * 1024
_COALESCE_BELOW = 64 * 1024
_COALESCE_SECONDS = 0.004
_PIPE_BYTES = 1024 * 1024
_MAX_LINE_BYTES = 4 * 1024 * 1024
_F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    """Ask for a larger pipe so bursts wait in the kernel rather than stall bpftrace."""
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
        # Above /proc/sys/fs/pipe-max-size for an unprivileged user: the default pipe will do.
        pass


def program_path() -> str:
    """Filesystem path of the packaged bpftrace program."""
    return str(resources.files("agentguard.collector").joinpath("agentguard.bt"))


# Probes the sensor can run without: io_uring's read the kernel's internal structures (request,
# open and connect commands), whose fields change between kernel versions.
_OPTIONAL_CATEGORIES = frozenset({"io_uring"})
# One attach point of a probe, alone on its line at the start of a block (a probe with several
# lists them one per line, each but the last ending in a comma).
_ATTACH_POINT = re.compile(r"tracepoint:(\w+):(\w+),?")


def fit_program(text: str, has_tracepoint: Callable[[str, str], bool]) -> tuple[str, list[str]]:
    """The program without the tracepoints this kernel lacks, and those left out.

    bpftrace refuses a whole program that names one missing tracepoint, and kernels differ:
    arm64 has no ``open`` or ``creat`` system calls, a kernel built without io_uring has no
    ``io_uring`` events, ``openat2`` came with Linux 5.6. A missing attach point is dropped from
    its probe, and a probe left with none is dropped with its predicate and body (up to the
    ``}`` that closes it at the start of a line).
    """
    lines = text.split("\n")
    kept: list[str] = []
    missing: list[str] = []
    index = 0
    while index < len(lines):
        if _ATTACH_POINT.fullmatch(lines[index]) is None:
            kept.append(lines[index])
            index += 1
            continue
        header: list[str] = []
        while index < len(lines):
            line = lines[index]
            index += 1
            match = _ATTACH_POINT.fullmatch(line)
            if match is None or has_tracepoint(match[1], match[2]):
                header.append(line.rstrip(","))
            elif f"{match[1]}:{match[2]}" not in missing:
                missing.append(f"{match[1]}:{match[2]}")
            if not line.endswith(","):
                break
        if header:
            kept.extend([line + "," for line in header[:-1]] + header[-1:])
            continue
        while index < len(lines) and lines[index] != "}":
            index += 1
        index += 1
    return "\n".join(kept), missing


def _tracepoint_checker() -> Callable[[str, str], bool] | None:
    """Whether this kernel has a tracepoint (from tracefs), or ``None`` when it cannot tell."""
    tracefs = procfs.tracefs_ready(mount_if_missing=False)
    if tracefs is None:
        return None
    events = os.path.join(tracefs, "events")
    return lambda category, name: os.path.isdir(os.path.join(events, category, name))


def _hex_bytes(text: str) -> bytes:
    """Decode bpftrace's ``%rx`` output (``\\x41\\x42``) into bytes."""
    try:
        return bytes.fromhex(text.replace("\\x", ""))
    except ValueError:
        return b""


# The escapes bpftrace writes in a JSON string: the usual one-character ones, \u00XX for control
# characters and, for a byte of 0x80 or more (a signed char, sign-extended), \uffffffXX.
_JSON_ESCAPE = re.compile(rb'\\(?:u(?:ffffff([0-9a-fA-F]{2})|([0-9a-fA-F]{4}))|(["\\/bfnrt]))')
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f",
                   b"n": b"\n", b"r": b"\r", b"t": b"\t"}


def _unescape_byte(match: re.Match[bytes]) -> bytes:
    """The byte (or UTF-8 bytes) one escape of ``_JSON_ESCAPE`` stands for."""
    high, code, simple = match.groups()
    if high is not None:
        return bytes.fromhex(high.decode())
    if code is not None:
        point = int(code, 16)
        return bytes((point,)) if point < 0x80 else chr(point).encode("utf-8", "surrogatepass")
    return _SIMPLE_ESCAPES[simple]


def record_text(body: bytes) -> str:
    """A printf record as bpftrace wrote it inside a JSON string, with the bytes of file names
    exactly: escapes undone to bytes, then UTF-8, a byte that is not UTF-8 kept as a surrogate
    escape (as ``os.fsdecode`` does), so ``os.fsencode`` gives back the name the kernel had."""
    if body.isascii():
        if b"\\" not in body:
            return body.decode("ascii")
        if b"\\u" not in body:
            # One-character escapes only (the hex of argument lists and DNS payloads): the C
            # decoder undoes them faster than the general path.
            text: str = json.loads(b'"' + body + b'"')
            return text
    return _JSON_ESCAPE.sub(_unescape_byte, body).decode("utf-8", "surrogateescape")


def _ntohs(value: int) -> int:
    return ((value & 0xFF) << 8) | ((value >> 8) & 0xFF)


def parse_dns_query(payload: bytes) -> tuple[str | None, int | None]:
    """The first question's name and type from a DNS message (bounded, never raises)."""
    labels: list[str] = []
    offset = 12
    try:
        for _ in range(64):
            length = payload[offset]
            if length == 0:
                offset += 1
                break
            if length & 0xC0 or offset + 1 + length > len(payload):
                return None, None
            labels.append(payload[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        else:
            return None, None
        qtype = int.from_bytes(payload[offset:offset + 2], "big") if offset + 2 <= len(payload) \
            else None
    except IndexError:
        return None, None
    return (".".join(labels) or "."), qtype


class _Control:
    """The prctl control channel to the running program."""

    def __init__(self) -> None:
        self._libc: Any = None
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
        except OSError as exc:
            internal_error("collector prctl", exc)
        self.sequence = 0
        self._lock = threading.Lock()

    def call(self, option: int, pid: int = 0) -> int:
        """Make one control call; returns its sequence number (echoed in the program's answer)."""
        if self._libc is None:
            return 0
        with self._lock:
            self.sequence += 1
            sequence = self.sequence
        self._libc.prctl(ctypes.c_int(option), ctypes.c_ulong(pid), ctypes.c_ulong(sequence),
                         ctypes.c_ulong(0), ctypes.c_ulong(0))
        return sequence


class _PartialExec:
    __slots__ = ("argv", "event", "expected", "lines")

    def __init__(self, event: KernelEvent, expected: int) -> None:
        self.event = event
        self.expected = expected
        self.argv = b""
        self.lines = 0


class BpftraceSensor:
    """Runs the bpftrace program, restarts it when it dies, and parses its JSON output."""

    name = "ebpf"
    blind_spots: tuple[str, ...] = (
        "events of processes outside the watched trees (by design: filtered in the kernel)",
        "argument lists beyond 380 bytes of processes that exit before /proc can be read",
        "what happened while bpftrace was restarting (reported as sensor.gap events)",
    )

    def __init__(
        self,
        watches: WatchSet,
        *,
        bpftrace: str = "bpftrace",
        program: str | None = None,
        watch_comm: str = "",
        watch_cgroup: int = 0,
        perf_pages: int = 256,
        map_keys: int = 16384,
        startup_timeout: float = 20.0,
        max_backoff: float = 30.0,
        on_failure: Any = None,
    ) -> None:
        self.watches = watches
        self.bpftrace = bpftrace
        self.program = program or program_path()
        self.watch_comm = watch_comm[:15]
        self.watch_cgroup = watch_cgroup
        self.perf_pages = perf_pages
        self.map_keys = map_keys
        self.startup_timeout = startup_timeout
        self.max_backoff = max_backoff
        # Called with a reason when bpftrace cannot start at all (the collector may fall back).
        self.on_failure = on_failure
        self._control = _Control()
        self._sink: EventSink | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._attached = threading.Event()
        self._lock = threading.Lock()
        self._partials: dict[int, _PartialExec] = {}
        self._known: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._acks: dict[int, threading.Event] = {}
        self.confirmed: set[int] = set()
        self.counters = {
            "events": 0, "lost": 0, "restarts": 0, "gaps": 0, "parse_errors": 0,
            "startup_failures": 0, "rescanned": 0, "directory_opens": 0, "unwatched": 0,
        }
        self.last_error: str | None = None
        # Tracepoints of the program this kernel lacks (left out of the program it runs).
        self.missing_tracepoints: list[str] = []
        # Set when the program failed to start: the optional probes are left out from then on.
        self._without_optional = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._thread = threading.Thread(target=self._supervise, name="agentguard-bpftrace",
                                        daemon=True)
        self._thread.start()

    def replay(self, lines: list[bytes], sink: EventSink) -> None:
        """Feed recorded bpftrace output to ``sink`` without running bpftrace (benchmarks)."""
        self._sink = sink
        for raw in lines:
            self.handle_line(raw)

    def wait_attached(self, timeout: float) -> bool:
        """Block until the program is attached and answering control calls."""
        return self._attached.wait(timeout)

    @property
    def healthy(self) -> bool:
        return self._attached.is_set()

    @property
    def process_pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def stop(self) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                # SIGINT lets bpftrace run its END block and detach cleanly.
                proc.send_signal(signal.SIGINT)
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(10)

    def stats(self) -> dict[str, int]:
        return {**self.counters, "watched_processes": len(self.confirmed)}

    # -- watch set -------------------------------------------------------------------------

    def watch(self, pid: int) -> None:
        """Watch ``pid`` and everything it starts from now on (its current children too)."""
        if pid in (os.getpid(), self.process_pid):
            return
        if self._attached.is_set():
            self._seed([pid])

    def unwatch(self, pid: int) -> None:
        if self._attached.is_set():
            self._control.call(_CTL_UNWATCH, pid)
        self.confirmed.discard(pid)

    def sync(self, timeout: float = 2.0) -> bool:
        """Round trip through the kernel program: every control call before it has taken effect."""
        if not self._attached.is_set():
            return False
        done = threading.Event()
        with self._lock:
            sequence = self._control.call(_CTL_SYNC)
            self._acks[sequence] = done
        ok = done.wait(timeout)
        with self._lock:
            self._acks.pop(sequence, None)
        return ok

    def _seed(self, roots: list[int]) -> None:
        """Put roots and their live descendants in the kernel map; report children not yet seen."""
        own = {os.getpid(), self.process_pid}
        roots = [pid for pid in roots if pid not in own and os.path.exists(f"/proc/{pid}")]
        if not roots:
            return
        for pid in roots:
            self._control.call(_CTL_WATCH, pid)
        for pid in sorted(procfs.descendants(roots) - own):
            self._control.call(_CTL_WATCH, pid)
            if not self._is_known(pid):
                event = rescan_event(pid, "rescan")
                if event is not None:
                    self.counters["rescanned"] += 1
                    self._remember(pid)
                    self._emit(event)

    # -- supervision -----------------------------------------------------------------------

    def _command(self) -> list[str]:
        # O_DIRECTORY is passed in because its value depends on the architecture.
        return [self.bpftrace, "-f", "json", *self._source(), str(os.getpid()), self.watch_comm,
                str(self.watch_cgroup), str(getattr(os, "O_DIRECTORY", 0))]

    def _source(self) -> list[str]:
        """The program as bpftrace's arguments: its file, or its text (``-e``) when this kernel
        lacks some of its tracepoints and they had to be left out, or when the optional probes
        (io_uring's, which read the kernel's own structures) did not load here."""
        checker = _tracepoint_checker()
        if self._without_optional:
            present = checker

            def without_optional(category: str, name: str) -> bool:
                if category in _OPTIONAL_CATEGORIES:
                    return False
                return present is None or present(category, name)

            checker = without_optional
        if checker is None:
            return [self.program]
        try:
            with open(self.program, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            # bpftrace reports the unreadable file itself.
            return [self.program]
        fitted, missing = fit_program(text, checker)
        if not missing:
            return [self.program]
        if missing != self.missing_tracepoints:
            self.missing_tracepoints = missing
            logger.warning("agentguard collector: %s %s; the eBPF sensor runs without it",
                           "the program did not load with the optional tracepoints" if
                           self._without_optional else "this kernel has no tracepoint",
                           ", ".join(missing))
            self.blind_spots = type(self).blind_spots + tuple(
                f"what the kernel tracepoint {name} would show (this kernel has none)"
                for name in missing)
        return ["-e", fitted]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "BPFTRACE_STRLEN": "200",
            "BPFTRACE_PERF_RB_PAGES": str(self.perf_pages),
            "BPFTRACE_MAP_KEYS_MAX": str(self.map_keys),
            "BPFTRACE_NO_CPP_DEMANGLE": "1",
        })
        return env

    def _supervise(self) -> None:
        backoff = 0.5
        failures = 0
        gap_started: int | None = None
        gap_reason = ""
        while not self._stopping.is_set():
            started = time.monotonic()
            attached = self._run_once(gap_started, gap_reason)
            if self._stopping.is_set():
                return
            self._attached.clear()
            self.confirmed.clear()
            proc = self._proc
            code = proc.returncode if proc is not None else None
            tail = " | ".join(list(self._stderr)[-3:])
            gap_reason = f"bpftrace exited with {self._describe_exit(code)}" + \
                (f": {tail}" if tail else "")
            self.last_error = gap_reason
            gap_started = time.time_ns()
            if attached:
                failures = 0
                if time.monotonic() - started > 60:
                    backoff = 0.5
                logger.warning("agentguard collector: %s; restarting in %.1fs", gap_reason, backoff)
            else:
                failures += 1
                self.counters["startup_failures"] += 1
                logger.warning("agentguard collector: bpftrace failed to start (%s)", gap_reason)
                if not self._without_optional:
                    # The io_uring probes read kernel structures whose layout changes between
                    # kernel versions: where they do not compile, the rest of the sensor still
                    # runs (the next attempt leaves them out, and says so).
                    self._without_optional = True
                    failures -= 1
                if failures >= 2 and self.on_failure is not None:
                    try:
                        self.on_failure(gap_reason)
                    except Exception as exc:
                        internal_error("collector sensor fallback", exc)
            if self._stopping.wait(backoff):
                return
            backoff = min(self.max_backoff, backoff * 2)
            self.counters["restarts"] += 1

    @staticmethod
    def _describe_exit(code: int | None) -> str:
        if code is None:
            return "unknown status"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"status {code}"

    def _run_once(self, gap_started: int | None, gap_reason: str) -> bool:
        """Run bpftrace until it exits; ``True`` if it attached its probes."""
        self._stderr.clear()
        try:
            proc = subprocess.Popen(
                self._command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, env=self._environment(), start_new_session=True,
            )
        except OSError as exc:
            self._stderr.append(str(exc))
            self._proc = None
            return False
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        stderr_thread = threading.Thread(target=self._read_stderr, args=(proc.stderr,),
                                         name="agentguard-bpftrace-stderr", daemon=True)
        stderr_thread.start()
        watchdog = threading.Timer(self.startup_timeout, self._startup_watchdog, args=(proc,))
        watchdog.daemon = True
        watchdog.start()
        attached = False
        try:
            for raw in self._lines(proc.stdout.fileno()):
                if not attached:
                    if b'"attached_probes"' not in raw:
                        continue
                    # bpftrace reports the probes attached a moment before they fire; the program
                    # is live once it answers a control call.
                    attached = True
                    threading.Thread(target=self._handshake, args=(proc,), daemon=True,
                                     name="agentguard-bpftrace-handshake").start()
                    continue
                if not self._attached.is_set() and raw.startswith(b'{"type": "printf", "data": "S '):
                    watchdog.cancel()
                    self._on_attached(gap_started, gap_reason)
                self.handle_line(raw)
        except Exception as exc:
            internal_error("collector bpftrace reader", exc)
            proc.kill()
        finally:
            watchdog.cancel()
            proc.wait()
            stderr_thread.join(2)
            self._flush_partials()
        return attached and self._attached.is_set()

    def _lines(self, fd: int) -> Iterator[bytes]:
        """bpftrace's output lines, read in batches.

        bpftrace writes (and flushes) one line per record. Reading line by line would wake this
        thread for every kernel event; instead, after a short read it waits a few milliseconds so
        the pipe gathers a batch, which cuts the reader's CPU at moderate rates by more than half.
        Under load reads come back full and there is no pause.
        """
        _grow_pipe(fd)
        pending = b""
        skipping = False
        while True:
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                if pending and not skipping:
                    yield pending
                return
            lines = (pending + chunk if pending else chunk).split(b"\n")
            pending = lines.pop()
            if skipping and lines:
                # The end of an overlong line: dropped with the rest of it.
                lines = lines[1:]
                skipping = False
            if skipping:
                pending = b""
            elif len(pending) > _MAX_LINE_BYTES:
                self.counters["parse_errors"] += 1
                pending = b""
                skipping = True
            yield from lines
            if len(chunk) < _COALESCE_BELOW and self._attached.is_set() and \
                    not self._stopping.is_set():
                time.sleep(_COALESCE_SECONDS)

    def _handshake(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self._attached.is_set() and proc.poll() is None and \
                time.monotonic() < deadline and not self._stopping.is_set():
            self._control.call(_CTL_SYNC)
            time.sleep(0.05)

    def _startup_watchdog(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None and not self._attached.is_set():
            self._stderr.append(f"no probes attached within {self.startup_timeout:.0f}s")
            proc.kill()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            # bpftrace warns about RLIMIT_MEMLOCK and address spaces on every start; not news.
            if line and "RLIMIT_MEMLOCK" not in line and "Addrspace" not in line and \
                    not line.startswith(("~", "$", "tracepoint:", "/")):
                self._stderr.append(line[:500])

    def _on_attached(self, gap_started: int | None, gap_reason: str) -> None:
        # Set first: a root added from now on is seeded by watch(), one added before by this.
        self._attached.set()
        self._seed(sorted(self.watches.snapshot()))
        if gap_started is not None:
            now = time.time_ns()
            self.counters["gaps"] += 1
            self._emit(KernelEvent(GAP, now, 0, 0, {
                "start_ns": gap_started, "end_ns": now, "seconds": (now - gap_started) / 1e9,
                "reason": gap_reason[:500], "restarts": self.counters["restarts"],
            }, source="ebpf"))
            logger.warning("agentguard collector: eBPF sensor back after %.1fs blind",
                           (now - gap_started) / 1e9)

    # -- parsing ---------------------------------------------------------------------------

    def _emit(self, event: KernelEvent) -> None:
        self.counters["events"] += 1
        sink = self._sink
        if sink is not None:
            sink(event)

    def _remember(self, pid: int) -> None:
        with self._lock:
            known = self._known
            known[pid] = None
            known.move_to_end(pid)
            if len(known) > 65536:
                known.popitem(last=False)

    def _is_known(self, pid: int) -> bool:
        with self._lock:
            return pid in self._known

    def handle_line(self, raw: bytes) -> None:
        """Parse one line of bpftrace's JSON output and emit the events it completes."""
        try:
            if raw.startswith(_PRINTF):
                # A record is one JSON string ending in its newline. It is read here rather than
                # by the JSON decoder, which would turn the escapes bpftrace writes for bytes of
                # 0x80 and more into other characters (see record_text).
                end = raw.rfind(b'\\n"}')
                if end > 0:
                    body = raw[_PRINTF_LENGTH:end]
                    if body.startswith(b"C "):
                        # Connections are most of the traffic: parsed from bytes directly.
                        self._handle_connect(body)
                        return
                    self._handle_record(record_text(body))
                    return
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "printf":
                data = str(message["data"])
                self._handle_record(data[:-1] if data.endswith("\n") else data)
            elif kind == "map":
                self._handle_map(message.get("data") or {})
            elif kind == "lost_events":
                count = int((message.get("data") or {}).get("events", 0))
                self.counters["lost"] += count
                self._emit(KernelEvent(LOST, time.time_ns(), 0, 0, {"count": count}))
        except Exception:
            self.counters["parse_errors"] += 1

    def _handle_connect(self, body: bytes) -> None:
        _, pid_s, tid_s, ts_s, family_s, port_s, ret_s, address = body.split(b" ", 7)
        ret = int(ret_s)
        port = int(port_s)
        data: dict[str, Any] = {
            "address": address.decode("ascii", "replace"),
            "port": ((port & 0xFF) << 8) | ((port >> 8) & 0xFF),
            "family": "ipv6" if family_s == b"10" else "ipv4", "result": ret,
        }
        if ret < 0:
            data["result_name"] = errno.errorcode.get(-ret) or str(ret)
        self.counters["events"] += 1
        sink = self._sink
        if sink is not None:
            sink(KernelEvent(CONNECT, wall_clock.to_wall(int(ts_s)), int(pid_s), int(tid_s), data))

    def _handle_map(self, data: dict[str, Any]) -> None:
        sent = data.get("@sent")
        if not isinstance(sent, dict):
            return
        now = time.time_ns()
        for pid, count in sent.items():
            if int(count) > 0:
                self._emit(KernelEvent(SENT, now, int(pid), 0, {"bytes": int(count)}))

    def _handle_record(self, text: str) -> None:
        tag = text[:1]
        # Connections first: they are most of the traffic.
        if tag == "C" or tag == "K":
            _, pid_s, tid_s, ts_s, family_s, port_s, ret_s, address = text.split(" ", 7)
            ret = int(ret_s)
            data: dict[str, Any] = {
                "address": address, "port": _ntohs(int(port_s)),
                "family": "ipv6" if family_s == "10" else "ipv4", "result": ret,
            }
            if ret < 0:
                data["result_name"] = errno.errorcode.get(-ret, str(ret))
            if tag == "K":
                data["via"] = _VIA_IO_URING
            self._emit(KernelEvent(CONNECT, wall_clock.to_wall(int(ts_s)), int(pid_s), int(tid_s),
                                   data))
            return
        if tag == "V":
            _, pid_s, offset_s, blob = text.split(" ", 3)
            partial = self._partials.get(int(pid_s))
            if partial is not None:
                if int(offset_s) == len(partial.argv):
                    partial.argv += _hex_bytes(blob)
                if len(partial.argv) >= min(partial.expected, 2 * _ARGV_CHUNK):
                    self._complete_exec(int(pid_s))
            return
        if self._partials:
            self._age_partials()
        if tag == "E":
            _, pid_s, tid_s, ppid_s, uid_s, ts_s, cgroup_s, length_s, filename = text.split(" ", 8)
            pid = int(pid_s)
            if pid in self._partials:
                self._complete_exec(pid)
            event = KernelEvent(EXEC, wall_clock.to_wall(int(ts_s)), pid, int(tid_s), {
                "exe": filename, "ppid": int(ppid_s), "uid": int(uid_s), "cgroup": int(cgroup_s),
            })
            if len(self._partials) >= _MAX_PARTIAL_EXECS:
                self._complete_exec(next(iter(self._partials)))
            self._partials[pid] = _PartialExec(event, int(length_s))
            self._remember(pid)
        elif tag == "F":
            _, pid_s, tid_s, child_s, ts_s = text.split(" ")
            self._remember(int(child_s))
            self._emit(KernelEvent(FORK, wall_clock.to_wall(int(ts_s)), int(pid_s), int(tid_s),
                                   {"child_pid": int(child_s)}))
        elif tag == "X":
            _, pid_s, ts_s, code_s = text.split(" ")
            pid = int(pid_s)
            if pid in self._partials:
                self._complete_exec(pid)
            code = int(code_s)
            with self._lock:
                self._known.pop(pid, None)
            self._emit(KernelEvent(EXIT, wall_clock.to_wall(int(ts_s)), pid, pid, {
                "exit_code": (code >> 8) & 0xFF, "signal": code & 0x7F,
            }))
        elif tag == "D":
            _, pid_s, tid_s, ts_s, blob = text.split(" ", 4)
            query, qtype = parse_dns_query(_hex_bytes(blob))
            self._emit(KernelEvent(DNS, wall_clock.to_wall(int(ts_s)), int(pid_s), int(tid_s),
                                   {"query": query, "qtype": qtype}))
        elif tag == "O" or tag == "P":
            _, pid_s, tid_s, ts_s, mode_s, type_s, path = text.split(" ", 6)
            file_type = _FILE_TYPES.get(int(type_s), "other")
            if file_type == "directory":
                # The kernel program leaves directories out; a record of one (a program built
                # without that filter) is still no credential read.
                self.counters["directory_opens"] += 1
                return
            data = {"path": path, "write": int(mode_s) in (1, 2), "file_type": file_type}
            if tag == "P":
                data["via"] = _VIA_IO_URING
            self._emit(KernelEvent(OPEN, wall_clock.to_wall(int(ts_s)), int(pid_s), int(tid_s),
                                   data))
        elif tag == "R":
            _, pid_s, tid_s, ts_s, fd_s, entries_s, flags_s = text.split(" ")
            flags = int(flags_s)
            self._emit(KernelEvent(IO_URING, wall_clock.to_wall(int(ts_s)), int(pid_s),
                                   int(tid_s), {"fd": int(fd_s), "entries": int(entries_s),
                                                "flags": flags,
                                                "sqpoll": bool(flags & _IORING_SETUP_SQPOLL)}))
        elif tag in ("W", "U", "S"):
            parts = text.split(" ")
            sequence = int(parts[1])
            if tag == "W":
                self.confirmed.add(int(parts[2]))
            elif tag == "U":
                self.confirmed.discard(int(parts[2]))
            with self._lock:
                done = self._acks.get(sequence)
            if done is not None:
                done.set()
        elif tag == "A":
            self.confirmed.add(int(text.split(" ")[1]))
        elif tag == "B":
            # The watch map is full: this process of a watched tree acts unseen from now on.
            _, pid_s, tid_s, child_s, ts_s = text.split(" ")
            self.counters["unwatched"] += 1
            self._emit(KernelEvent(UNWATCHED, wall_clock.to_wall(int(ts_s)), int(pid_s),
                                   int(tid_s), {"child_pid": int(child_s),
                                                "map_keys": self.map_keys}))

    def _age_partials(self) -> None:
        # An exec whose argument records never came (should not happen) is sent without them.
        for pid in [pid for pid, p in self._partials.items() if p.lines > 64]:
            self._complete_exec(pid)
        for partial in self._partials.values():
            partial.lines += 1

    def _flush_partials(self) -> None:
        for pid in list(self._partials):
            self._complete_exec(pid)

    def _complete_exec(self, pid: int) -> None:
        partial = self._partials.pop(pid, None)
        if partial is None:
            return
        event = partial.event
        argv = procfs.split_args(partial.argv)
        if partial.expected > len(partial.argv):
            # The kernel sent the first 380 bytes; /proc has the rest while the process lives.
            raw = procfs.read_cmdline_raw(pid)
            if raw and raw.startswith(partial.argv):
                argv = procfs.split_args(raw)
            else:
                event.data["argv_truncated"] = True
        event.data["argv"] = argv
        # Read now: a short-lived child is gone within milliseconds.
        markers = procfs.read_environ_markers(pid)
        if markers:
            event.data["env"] = markers
        levels = procfs.read_nspid(pid)
        if levels is not None and len(levels) > _OWN_DEPTH:
            # In a container: the pid its own namespace (and its agent) knows it by.
            event.data["ns_pid"] = levels[-1]
        self._emit(event)
