"""A directory named like a credential file (a package's ``lib/credentials`` folder, a
``.aws/credentials`` directory) is not a credential read: only real files are reported."""

from __future__ import annotations

import time
from pathlib import Path

from agentguard.collector.daemon import Collector
from agentguard.collector.ebpf import BpftraceSensor
from agentguard.collector.judge import Judge
from agentguard.collector.model import OPEN, Attribution, KernelEvent, SpanInfo
from agentguard.collector.sensor import WatchSet
from tests.collector.helpers import run_watched, tree_events


def test_directory_opens_never_reach_user_space(ebpf_collector: Collector, tmp_path: Path) -> None:
    """A watched process that lists and opens directories named ``credentials`` (with and without
    O_DIRECTORY, by absolute and relative path) and then reads a real credentials file produces
    exactly one sensitive-file event: the real file."""
    package = tmp_path / "site-packages" / "anthropic" / "lib" / "credentials"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    decoy = tmp_path / "decoy"
    (decoy / ".aws" / "credentials").mkdir(parents=True)
    (decoy / ".ssh" / "keys").mkdir(parents=True)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = x\n")
    code = f"""
import os, sys
sys.path.insert(0, {str(tmp_path / "site-packages")!r})
import anthropic.lib.credentials  # the import system lists the package directory
os.listdir({str(package)!r})
for path in ({str(decoy / ".aws" / "credentials")!r}, {str(decoy / ".ssh" / "keys")!r}):
    os.close(os.open(path, os.O_RDONLY))  # a directory opened without O_DIRECTORY
    os.close(os.open(path, os.O_PATH))
os.chdir({str(decoy)!r})
os.close(os.open(".aws/credentials", os.O_RDONLY | os.O_DIRECTORY))
os.chdir({str(home)!r})
open(".aws/credentials").read()
"""
    pid = run_watched(ebpf_collector, code)
    opens = tree_events(ebpf_collector, pid, "file.open")
    assert [(e["data"]["path"], e["data"]["file_type"]) for e in opens] == \
        [(".aws/credentials", "regular")]
    assert ebpf_collector.sensor.stats()["directory_opens"] == 0


def test_sensor_drops_a_directory_record_it_is_given() -> None:
    """Should a directory's open reach user space anyway, the sensor drops and counts it."""
    sensor = BpftraceSensor(WatchSet())
    events: list[KernelEvent] = []
    ts = time.monotonic_ns()
    lines = [
        f'{{"type": "printf", "data": "O 7 7 {ts} 0 4 anthropic/lib/credentials\\n"}}'.encode(),
        f'{{"type": "printf", "data": "O 7 7 {ts} 0 8 /root/.aws/credentials\\n"}}'.encode(),
    ]
    sensor.replay(lines, events.append)
    assert [(e.data["path"], e.data["file_type"]) for e in events] == \
        [("/root/.aws/credentials", "regular")]
    assert sensor.stats()["directory_opens"] == 1


def _tool_span(pid: int) -> SpanInfo:
    now = time.time_ns()
    return SpanInfo(trace_id="ab" * 16, span_id="cd" * 8, parent_span_id=None,
                    name="execute_tool read_file", operation="execute_tool", start_ns=now - 10**9,
                    end_ns=now + 10**9, pid=pid, tid=pid, service="agent", tool="read_file")


def _open(pid: int, path: str, **data: object) -> KernelEvent:
    return KernelEvent(OPEN, time.time_ns(), pid, pid, {"path": path, "write": False, **data},
                       source="procfs", attribution=Attribution("thread", "ab" * 16, "cd" * 8),
                       agent_pid=pid, seen_by_library=False)


def test_judge_ignores_directories_from_sensors_that_cannot_tell(tmp_path: Path) -> None:
    """For a sensor that gives no file type, the judge looks at the path: a ``.aws/credentials``
    directory raises nothing, the same path as a file raises the credential findings."""
    judge = Judge()
    span = _tool_span(4242)
    directory = tmp_path / "a" / ".aws" / "credentials"
    directory.mkdir(parents=True)
    real = tmp_path / "b" / ".aws" / "credentials"
    real.parent.mkdir(parents=True)
    real.write_text("[default]\n")
    assert judge.judge(_open(4242, str(directory)), span, "agent") == []
    assert judge.counters["directory_opens"] == 1
    rules = {f.rule_id for f in judge.judge(_open(4242, str(real)), span, "agent")}
    assert {"AG013", "AGK004"} <= rules


def test_judge_trusts_the_kernels_file_type_over_the_path_now(tmp_path: Path) -> None:
    """A file the kernel saw opened as a regular file is judged even if a directory stands at
    its path by the time the event is judged (a swap cannot hide the read)."""
    judge = Judge()
    swapped = tmp_path / ".aws" / "credentials"
    swapped.mkdir(parents=True)
    findings = judge.judge(_open(4343, str(swapped), file_type="regular"), _tool_span(4343),
                           "agent")
    assert {"AG013", "AGK004"} <= {f.rule_id for f in findings}
    assert judge.judge(_open(4343, str(tmp_path / "x"), file_type="directory"),
                       _tool_span(4343), "agent") == []
