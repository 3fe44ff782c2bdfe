"""File and program names with bytes beyond ASCII, from the kernel to the store and the exported
spans: UTF-8 names come out as written, other bytes as surrogate escapes that give back the very
bytes the kernel had (``os.fsencode``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.ebpf import BpftraceSensor
from agentguard.collector.model import EXEC, OPEN, KernelEvent
from agentguard.collector.otlp import event_attributes, kernel_event_span, span_event
from agentguard.collector.sensor import WatchSet
from agentguard.collector.store import Store, StoredFinding
from tests.collector.helpers import run_watched, tree_events

# Directory names: UTF-8 (two and three bytes a character), and bytes that are no UTF-8 at all.
NAMES = ["josé".encode(), "データ".encode(), b"\xff\xfe-raw", b"bad\xe2-cut\xc3"]


@pytest.fixture(scope="module")
def collector(ebpf_collector: Collector) -> Collector:
    return ebpf_collector


OPEN_AND_RUN = """
import os, subprocess
for name in sys.argv[1].split(","):
    base = bytes.fromhex(name)
    with open(os.path.join(base, b".aws", b"credentials"), "rb") as handle:
        handle.read()
    subprocess.run([os.path.join(base, b"t\\xc3\\xa2che")], check=True)
"""


def test_non_ascii_file_and_program_names_are_stored_exactly(collector: Collector,
                                                             tmp_path: Path) -> None:
    """A credential file and a program under directories named in UTF-8 or in bytes that are
    not UTF-8 are stored with their names exactly as the kernel had them."""
    root = os.fsencode(tmp_path)
    bases = [os.path.join(root, name) for name in NAMES]
    for base in bases:
        os.makedirs(os.path.join(base, b".aws"))
        with open(os.path.join(base, b".aws", b"credentials"), "wb") as handle:
            handle.write(b"[default]\n")
        os.symlink(b"/bin/true", os.path.join(base, b"t\xc3\xa2che"))
    pid = run_watched(collector, OPEN_AND_RUN, args=[",".join(base.hex() for base in bases)])
    opened = [e["data"]["path"] for e in tree_events(collector, pid, "file.open")]
    ran = [e["data"]["exe"] for e in tree_events(collector, pid, "process.exec")
           if e["pid"] != pid]
    assert opened == [os.fsdecode(os.path.join(base, b".aws", b"credentials")) for base in bases]
    assert ran == [os.fsdecode(os.path.join(base, b"t\xc3\xa2che")) for base in bases]
    assert [os.fsencode(path) for path in opened] == [
        os.path.join(base, b".aws", b"credentials") for base in bases]


def _printf(record: bytes) -> bytes:
    return b'{"type": "printf", "data": "' + record + b'\\n"}'


def _records(lines: list[bytes]) -> list[KernelEvent]:
    events: list[KernelEvent] = []
    sensor = BpftraceSensor(WatchSet())
    sensor.replay(lines, events.append)
    sensor._flush_partials()
    assert sensor.counters["parse_errors"] == 0
    return events


def test_every_byte_of_a_name_survives_bpftrace_json_escapes() -> None:
    """Names holding every byte value come out exactly, both as bpftrace 0.17 escapes them
    (``\\uffffffXX`` for a byte of 0x80 and more, ``\\u00XX`` for control characters) and as
    later versions write them (the bytes themselves)."""
    every = bytes(b for b in range(1, 256) if b != 0x2F)

    def escaped(name: bytes) -> bytes:
        out = b""
        for byte in name:
            if byte >= 0x80:
                out += b"\\uffffff%02x" % byte
            elif byte in b'"\\':
                out += b"\\" + bytes((byte,))
            elif byte == 0x0A:
                out += b"\\n"
            elif byte < 0x20:
                out += b"\\u%04x" % byte
            else:
                out += bytes((byte,))
        return out

    path = b"/home/a/" + every + b"/credentials"
    # A name that spells an escape must stay that text.
    tricky = b"/tmp/\\uffffff80 \\\\n\\u0041\n"
    lines = []
    for name in (path, tricky):
        for form in (escaped(name), name.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
                     .replace(b"\n", b"\\n")):
            lines.append(_printf(b"O 7 7 100 0 8 " + form))
            lines.append(_printf(b"E 7 7 1 0 100 0 0 " + form))
    events = _records(lines)
    opened = [os.fsencode(e.data["path"]) for e in events if e.kind == OPEN]
    ran = [os.fsencode(e.data["exe"]) for e in events if e.kind == EXEC]
    assert opened == ran == [path, path, tricky, tricky]


def test_names_that_are_not_utf8_are_stored_and_read_back_exactly(tmp_path: Path) -> None:
    """An event and a finding quoting a name that is not UTF-8 are stored (not lost with their
    batch): the data reads back as the very same name, the title as printable text."""
    name = os.fsdecode(b"/home/x/\xff\xfe/.aws/credentials")
    store = Store(str(tmp_path / "c.db"))
    try:
        store.add_events([KernelEvent(OPEN, 1, 10, 10, {"path": name}),
                          KernelEvent(OPEN, 2, 10, 10, {"path": "/tmp/plain"})])
        stored = store.add_finding(StoredFinding(
            rule_id="AGK010", category="runtime", severity="high", title=f"read {name}",
            kind=OPEN, evidence={"path": name}, timestamp=1.0, agent="agent"))
        store.commit()
        assert stored is not None
        assert [e["data"]["path"] for e in store.events()] == [name, "/tmp/plain"]
        (finding,) = store.findings()
    finally:
        store.close()
    assert finding.evidence == {"path": name}
    assert finding.title == "read /home/x/\\xff\\xfe/.aws/credentials"


def test_exported_spans_carry_such_names_as_valid_utf8() -> None:
    """A kernel event naming a file that is not UTF-8 still goes out over OTLP, the name's odd
    bytes written as ``\\xff``."""
    event = KernelEvent(OPEN, 5, 10, 10, {"path": os.fsdecode(b"/x/\xffy"), "write": False})
    assert event_attributes(event)["file.path"] == os.fsdecode(b"/x/\xffy")
    attributes: dict[str, Any] = {kv.key: kv.value.string_value
                                  for kv in span_event(event).attributes}
    assert attributes["file.path"] == "/x/\\xffy"
    event.attribution = type(event.attribution)("thread", "a" * 32, "b" * 16)
    late = kernel_event_span(event, "agent")
    assert late.scope_spans[0].spans[0].name.endswith("open /x/\\xffy")
    assert late.SerializeToString() and span_event(event).SerializeToString()
