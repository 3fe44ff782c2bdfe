"""Ways around ``openat`` and around system calls altogether: files opened with ``open(2)``,
``openat2(2)`` and ``creat(2)``, and opens, connects and sends submitted to an io_uring ring, made
with raw system calls from watched processes, are seen, stored and judged like their ``openat``
and ``connect`` counterparts; setting up a ring is an event and a finding of its own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.ebpf import BpftraceSensor, fit_program, program_path
from agentguard.collector.model import KernelEvent
from agentguard.collector.sensor import WatchSet
from agentguard.collector.store import Store
from tests.collector.conftest import Listener, require_ebpf, start_collector
from tests.collector.helpers import run_agent_script, run_watched, tree_events, wait_for

# Raw system calls through ctypes, below Python's own file and socket functions and their audit
# hooks (x86-64 numbers; openat2 and io_uring have the same numbers on every architecture).
RAW_SYSCALLS = r'''
import ctypes, mmap, os, socket, struct

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_OPEN, SYS_CREAT, SYS_OPENAT2, SYS_IO_URING_SETUP, SYS_IO_URING_ENTER = 2, 85, 437, 425, 426
IORING_OP_CONNECT, IORING_OP_OPENAT, IORING_OP_SEND = 16, 18, 26


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class Params(ctypes.Structure):
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("sq_thread_cpu", ctypes.c_uint32),
                ("sq_thread_idle", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", ctypes.c_uint32 * 10), ("cq_off", ctypes.c_uint32 * 10)]


class Sqe(ctypes.Structure):
    _fields_ = [("opcode", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("ioprio", ctypes.c_uint16),
                ("fd", ctypes.c_int32), ("off", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("len", ctypes.c_uint32), ("op_flags", ctypes.c_uint32),
                ("user_data", ctypes.c_uint64), ("buf_index", ctypes.c_uint16),
                ("personality", ctypes.c_uint16), ("file_index", ctypes.c_int32),
                ("addr3", ctypes.c_uint64), ("pad", ctypes.c_uint64)]


def checked(result):
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def raw_open(path, flags=os.O_RDONLY):
    return libc.syscall(SYS_OPEN, path.encode(), flags, 0)


def raw_openat2(path, flags=os.O_RDONLY):
    how = OpenHow(flags, 0, 0)
    return libc.syscall(SYS_OPENAT2, -100, path.encode(), ctypes.byref(how),
                        ctypes.c_size_t(ctypes.sizeof(how)))


def raw_creat(path):
    return libc.syscall(SYS_CREAT, path.encode(), 0o600)


class Ring:
    """A one-entry io_uring ring driven by hand: one request submitted, its completion awaited."""

    def __init__(self):
        self.params = Params()
        self.fd = checked(libc.syscall(SYS_IO_URING_SETUP, 1, ctypes.byref(self.params)))
        p = self.params
        self.sq = mmap.mmap(self.fd, p.sq_off[6] + p.sq_entries * 4, offset=0)
        self.cq = mmap.mmap(self.fd, p.cq_off[5] + p.cq_entries * 16, offset=0x8000000)
        self.sqes = mmap.mmap(self.fd, p.sq_entries * 64, offset=0x10000000)
        self.keep = []

    def run(self, **fields):
        p = self.params
        sqe = Sqe(**fields)
        self.sqes[0:64] = bytes(sqe)
        tail = struct.unpack_from("I", self.sq, p.sq_off[1])[0]
        mask = struct.unpack_from("I", self.sq, p.sq_off[2])[0]
        struct.pack_into("I", self.sq, p.sq_off[6] + (tail & mask) * 4, 0)
        struct.pack_into("I", self.sq, p.sq_off[1], tail + 1)
        checked(libc.syscall(SYS_IO_URING_ENTER, self.fd, 1, 1, 1, None, 0))
        head = struct.unpack_from("I", self.cq, p.cq_off[0])[0]
        cmask = struct.unpack_from("I", self.cq, p.cq_off[2])[0]
        _, res, _ = struct.unpack_from("QiI", self.cq, p.cq_off[5] + (head & cmask) * 16)
        struct.pack_into("I", self.cq, p.cq_off[0], head + 1)
        return res

    def openat(self, path, flags=os.O_RDONLY):
        name = ctypes.create_string_buffer(path.encode())
        return self.run(opcode=IORING_OP_OPENAT, fd=-100, addr=ctypes.addressof(name),
                        op_flags=flags)

    def connect(self, sock, port):
        address = ctypes.create_string_buffer(
            struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton("127.0.0.1") + bytes(8), 16)
        return self.run(opcode=IORING_OP_CONNECT, fd=sock.fileno(),
                        addr=ctypes.addressof(address), off=16)

    def send(self, sock, data):
        buffer = ctypes.create_string_buffer(data, len(data))
        return self.run(opcode=IORING_OP_SEND, fd=sock.fileno(), addr=ctypes.addressof(buffer),
                        len=len(data))
'''

pytestmark = pytest.mark.usefixtures("ebpf")


def _require_io_uring() -> None:
    try:
        disabled = Path("/proc/sys/kernel/io_uring_disabled").read_text().strip()
    except OSError:
        disabled = "0"
    if disabled != "0":
        pytest.skip("io_uring is disabled on this kernel (kernel.io_uring_disabled), so there is "
                    "no way around system calls to see")


def _credentials(root: Path) -> dict[str, Path]:
    """Credential files and decoys under ``root``."""
    files = {"aws": root / ".aws" / "credentials", "ssh": root / ".ssh" / "id_ed25519",
             "kube": root / ".kube" / "config", "plain": root / "notes.txt"}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret\n")
    (root / "decoy" / ".aws" / "credentials").mkdir(parents=True)
    return files


def test_open_openat2_and_creat_are_reported_like_openat(ebpf_collector: Collector,
                                                         tmp_path: Path) -> None:
    """Credential files opened with open(2), openat2(2) and creat(2) are file events with path,
    mode and type; failed opens and directories (O_DIRECTORY asked for, or found at exit) are
    not, and an ordinary file is not a sensitive one."""
    files = _credentials(tmp_path)
    decoy = tmp_path / "decoy" / ".aws" / "credentials"
    written = tmp_path / ".docker" / "config.json"
    written.parent.mkdir()
    code = RAW_SYSCALLS + f"""
os.close(checked(raw_open({str(files["aws"])!r})))
os.close(checked(raw_openat2({str(files["ssh"])!r})))
os.close(checked(raw_creat({str(written)!r})))
os.close(checked(raw_open({str(files["plain"])!r})))
assert raw_open({str(files["aws"]) + ".missing"!r}) == -1
assert raw_openat2({str(files["ssh"]) + ".missing"!r}) == -1
os.close(checked(raw_open({str(decoy)!r})))
os.close(checked(raw_openat2({str(decoy)!r}, os.O_RDONLY | os.O_DIRECTORY)))
os.close(checked(raw_openat2({str(decoy)!r})))
"""
    pid = run_watched(ebpf_collector, code)
    opens = tree_events(ebpf_collector, pid, "file.open")
    assert [(e["data"]["path"], e["data"]["write"], e["data"]["file_type"]) for e in opens] == [
        (str(files["aws"]), False, "regular"), (str(files["ssh"]), False, "regular"),
        (str(written), True, "regular")]
    assert all("via" not in e["data"] for e in opens)
    assert ebpf_collector.sensor.stats()["directory_opens"] == 0


def test_io_uring_ring_opens_connects_and_sends_are_reported(ebpf_collector: Collector,
                                                              listener: Listener,
                                                              tmp_path: Path) -> None:
    """A ring's setup is an event; a credential file opened through the ring is a file event,
    connections through it are connect events with their result, and bytes it sends count as
    sent, each marked ``via: io_uring``; ordinary files and failed opens stay out."""
    _require_io_uring()
    files = _credentials(tmp_path)
    code = RAW_SYSCALLS + f"""
import time
ring = Ring()
fd = checked(ring.openat({str(files["kube"])!r}))
assert os.read(fd, 100) == b"secret\\n"
os.close(fd)
os.close(checked(ring.openat({str(files["plain"])!r})))
assert ring.openat({str(files["aws"]) + ".missing"!r}) < 0
sock = socket.socket()
assert ring.connect(sock, {listener.port}) == 0
assert ring.send(sock, b"z" * 30000) == 30000
sock.close()
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
port = closed.getsockname()[1]
closed.close()
refused = socket.socket()
assert ring.connect(refused, port) < 0
time.sleep(1.2)
"""
    pid = run_watched(ebpf_collector, code)
    events = tree_events(ebpf_collector, pid)
    (ring,) = [e for e in events if e["kind"] == "io_uring.setup"]
    assert ring["pid"] == pid
    assert ring["data"]["entries"] == 1
    assert ring["data"]["sqpoll"] is False
    opens = [e for e in events if e["kind"] == "file.open"]
    assert [(e["data"]["path"], e["data"]["file_type"], e["data"].get("via")) for e in opens] == \
        [(str(files["kube"]), "regular", "io_uring")]
    connects = [e["data"] for e in events if e["kind"] == "net.connect"]
    assert connects[0] == {"address": "127.0.0.1", "port": listener.port, "family": "ipv4",
                           "result": 0, "via": "io_uring"}
    assert len(connects) == 2
    assert connects[1]["result_name"] == "ECONNREFUSED"
    assert connects[1]["via"] == "io_uring"
    sent = sum(e["data"]["bytes"] for e in events if e["kind"] == "net.sent")
    assert sent >= 30000


# An instrumented agent whose tools read one credential file three ways the in-process sensor
# cannot see: raw open(2), raw openat2(2), and an io_uring ring (which it also connects through).
# Its first tool connects through Python, which shows the collector that the in-process sensor is
# on (and so that what it did not report, it did not see).
AGENT = RAW_SYSCALLS + r'''
import json, sys, threading

import agentguard


def main():
    endpoint, secret, port, home = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    agentguard.instrument(service_name="syscall-test-agent", exporter="otlp",
                          otlp_endpoint=endpoint, otlp_protocol="http/protobuf")
    from langchain_core.tools import tool
    from opentelemetry import trace

    seen = {}

    def remember(name):
        context = trace.get_current_span().get_span_context()
        seen[name] = {"trace_id": format(context.trace_id, "032x"),
                      "span_id": format(context.span_id, "016x"),
                      "thread": threading.get_native_id()}

    def read(fd):
        data = os.read(checked(fd), 100)
        os.close(fd)
        return str(len(data))

    @tool
    def check_in(which: str) -> str:
        """Connect home the ordinary way (the in-process sensor reports it)."""
        socket.create_connection(("127.0.0.1", port)).close()
        return "ok"

    @tool
    def read_with_open(which: str) -> str:
        """Read the configuration with open(2)."""
        remember("read_with_open")
        return read(raw_open(secret))

    @tool
    def read_with_openat2(which: str) -> str:
        """Read the configuration with openat2(2)."""
        remember("read_with_openat2")
        return read(raw_openat2(secret))

    @tool
    def read_with_ring(which: str) -> str:
        """Read the configuration through io_uring, and report home through it."""
        remember("read_with_ring")
        ring = Ring()
        result = read(ring.openat(secret))
        sock = socket.socket()
        ring.connect(sock, home)
        sock.close()
        return result

    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    with agentguard.conversation("conv-syscalls", user="tester"):
        for each in (check_in, read_with_open, read_with_openat2, read_with_ring):
            each.invoke({"which": "default"})
    agentguard.flush()
    print(json.dumps(seen), flush=True)
    agentguard.uninstrument()
    return 0


sys.exit(main())
'''


def test_agent_reading_credentials_around_openat_gets_findings(tmp_path: Path) -> None:
    """An agent's tools that read a credential file with raw open(2), openat2(2) or through an
    io_uring ring get, on each tool call, the file event and the findings an openat gets (the
    credential rule and the read the in-process sensor missed); the ring is a high finding of
    its own and its connection one the in-process sensor did not see."""
    require_ebpf()
    _require_io_uring()
    secret = _credentials(tmp_path / "home")["aws"]
    script = tmp_path / "syscall_agent.py"
    script.write_text(AGENT)
    listener, elsewhere = Listener(), Listener()
    collector = start_collector(tmp_path, sensor="ebpf")
    try:
        endpoint = "http://" + collector.endpoints()["otlp_http"]
        pid, out = run_agent_script(collector, [endpoint, str(secret), str(listener.port),
                                                str(elsewhere.port)],
                                    script=str(script),
                                    env={**os.environ, "AGENTGUARD_RUNTIME_SENSOR": "true"})
        spans: dict[str, dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
        tools = {span["span_id"]: name for name, span in spans.items()}

        def joined() -> list[dict[str, Any]]:
            collector.sync()
            return [e for e in tree_events(collector, pid, "file.open")
                    if e["span_id"] in tools]

        opens = wait_for(lambda: len(joined()) == 3 and joined(), timeout=20)
        assert sorted((tools[e["span_id"]], e["data"]["path"], e["data"].get("via"))
                      for e in opens) == [("read_with_open", str(secret), None),
                                          ("read_with_openat2", str(secret), None),
                                          ("read_with_ring", str(secret), "io_uring")]
        assert all(e["seen_by_library"] is False for e in opens)

        def findings() -> set[tuple[str, str | None, str]]:
            collector.sync()
            store = Store(collector.settings.db, readonly=True)
            try:
                return {(f.rule_id, f.tool, f.severity) for f in store.findings()
                        if f.span_id in tools}
            finally:
                store.close()

        expected = {(rule, tool, "high") for rule in ("AG013", "AGK004")
                    for tool in ("read_with_open", "read_with_openat2", "read_with_ring")}
        expected |= {("AGK005", "read_with_ring", "high"), ("AGK002", "read_with_ring", "high")}
        wait_for(lambda: findings() >= expected, timeout=20)
        store = Store(collector.settings.db, readonly=True)
        try:
            (ring,) = [f for f in store.findings() if f.rule_id == "AGK005"]
        finally:
            store.close()
        assert ring.title == (f"process {pid} set up an io_uring ring: its file and network "
                              "operations are not seen system call by system call")
        assert ring.conversation_id == "conv-syscalls"
        assert ring.span_id == spans["read_with_ring"]["span_id"]
    finally:
        collector.stop()
        listener.close()
        elsewhere.close()


def _credential_read_is_seen(sensor: BpftraceSensor, events: list[KernelEvent],
                             tmp_path: Path) -> None:
    """A watched child that reads a credential file with open() gives a file.open event."""
    import subprocess

    home = _credentials(tmp_path / "home")
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.stdin.readline(); "
                               f"open({str(home['aws'])!r}).read()"],
        stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    sensor.watch(child.pid)
    assert sensor.sync()
    child.stdin.write("go\n")
    child.stdin.close()
    assert child.wait(20) == 0
    wait_for(lambda: sensor.sync() and [e for e in events if e.kind == "file.open"
                                        and e.pid == child.pid])


def test_probes_on_tracepoints_this_kernel_lacks_are_left_out(tmp_path: Path) -> None:
    """A program naming tracepoints the kernel does not have (as arm64 lacks open(2), or a kernel
    built without io_uring lacks its events) still runs, without them, and reports the rest."""
    require_ebpf()
    program = program_path()
    text = Path(program).read_text()
    extra = text.replace("tracepoint:syscalls:sys_exit_openat,\n",
                         "tracepoint:syscalls:sys_exit_openat,\n"
                         "tracepoint:syscalls:sys_exit_agentguard_nonexistent,\n")
    extra += ("\ntracepoint:agentguard_nonexistent:event\n/@watch[pid]/\n{\n"
              "  printf(\"Z %d\\n\", pid);\n}\n")
    fitted, missing = fit_program(extra, lambda category, name: "nonexistent" not in
                                  category + name)
    assert missing == ["syscalls:sys_exit_agentguard_nonexistent", "agentguard_nonexistent:event"]
    assert fitted == text + "\n"
    altered = tmp_path / "agentguard.bt"
    altered.write_text(extra)
    sensor = BpftraceSensor(WatchSet(), program=str(altered), startup_timeout=30)
    events: list[KernelEvent] = []
    sensor.start(events.append)
    try:
        assert sensor.wait_attached(30), sensor.last_error
        assert sensor.missing_tracepoints == missing
        assert any("agentguard_nonexistent:event" in spot for spot in sensor.blind_spots)
        _credential_read_is_seen(sensor, events, tmp_path)
    finally:
        sensor.stop()


def test_io_uring_probes_that_do_not_load_leave_the_rest_running(tmp_path: Path) -> None:
    """The io_uring probes read kernel structures whose fields change between versions: on a
    kernel where they do not compile, the sensor starts again without them, says so, and the rest
    of it (here a credential read through openat) still reports."""
    require_ebpf()
    text = Path(program_path()).read_text()
    marker = "tracepoint:io_uring:io_uring_create\n/@watch[pid]/\n{\n"
    assert marker in text
    broken = text.replace(marker, marker + "  $x = ((struct io_kiocb *)0)->agentguard_no_such_field;\n")
    altered = tmp_path / "agentguard.bt"
    altered.write_text(broken)
    sensor = BpftraceSensor(WatchSet(), program=str(altered), startup_timeout=30)
    events: list[KernelEvent] = []
    sensor.start(events.append)
    try:
        assert sensor.wait_attached(60), sensor.last_error
        assert sensor.counters["startup_failures"] == 1
        assert "io_uring:io_uring_create" in sensor.missing_tracepoints
        assert any("io_uring" in spot for spot in sensor.blind_spots)
        _credential_read_is_seen(sensor, events, tmp_path)
    finally:
        sensor.stop()
