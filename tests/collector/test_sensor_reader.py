"""How the eBPF sensor reads bpftrace's output: lines split across reads are joined, and an
overlong line is dropped whole and counted, without losing the lines around it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from agentguard.collector import ebpf
from agentguard.collector.sensor import WatchSet


def _read_all(sensor: ebpf.BpftraceSensor, pieces: list[bytes]) -> list[bytes]:
    """Write ``pieces`` into a real pipe one by one, with pauses, and read it as the sensor does."""
    read_end, write_end = os.pipe()

    def writer() -> None:
        for piece in pieces:
            os.write(write_end, piece)
            time.sleep(0.01)
        os.close(write_end)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        return list(sensor._lines(read_end))
    finally:
        thread.join(5)
        os.close(read_end)


def test_lines_split_across_reads_are_joined() -> None:
    """A record written in several pieces comes out as one line, and the last unterminated line
    is delivered when the output ends."""
    sensor = ebpf.BpftraceSensor(WatchSet())
    lines = _read_all(sensor, [b'{"type": "printf", "da', b'ta": "C 1 1 5 2 256 0 127.0.0.1\\n"}\n',
                               b"second\nthi", b"rd"])
    assert lines == [b'{"type": "printf", "data": "C 1 1 5 2 256 0 127.0.0.1\\n"}', b"second",
                     b"third"]
    assert sensor.counters["parse_errors"] == 0


def test_an_overlong_line_is_dropped_whole_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line beyond the bound is discarded with all its pieces; the lines around it survive."""
    monkeypatch.setattr(ebpf, "_MAX_LINE_BYTES", 100)
    sensor = ebpf.BpftraceSensor(WatchSet())
    long_line = b"x" * 400
    pieces = [b"before\n", *[long_line[i:i + 60] for i in range(0, 400, 60)], b"\nafter\n"]
    assert _read_all(sensor, pieces) == [b"before", b"after"]
    assert sensor.counters["parse_errors"] == 1
