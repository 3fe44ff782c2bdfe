"""An inventory is its process's: the collector files each ``agentguard.aibom`` span under the
process it verified sent it (its pid on this host and that process's start, and the process
holding the connection the span came on), never under the service, host and pid the span names.
Another sender cannot replace, drop or add to an agent's inventory by naming it, not even a
process beside it on loopback or in its network namespace that names the agent's pid; a new
process on a reused pid starts a new inventory, and a database of an earlier collector keeps its
inventories where no sender reaches them.

Real collectors receiving real OTLP on loopback and on a network namespace's link, real processes
sending their own requests, and the store on its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from agentguard.aibom import _wire
from agentguard.cli import main
from agentguard.collector.daemon import Collector
from agentguard.collector.otlp import to_any_value
from agentguard.collector.procfs import read_stat
from agentguard.collector.sensor import boot_time_ns
from agentguard.collector.store import AgentProcess, Store
from tests.collector.conftest import require_ebpf, start_collector
from tests.collector.helpers import SendingProcess, wait_for
from tests.collector.test_ingest_limits import bulk_request
from tests.collector.test_receiver import post

NODE = os.uname().nodename
# No process can have it (above pid_max here), yet a span may report it.
NO_SUCH_PID = 4_000_000
Entries = dict[tuple[str, str], dict[str, Any]]


def _attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=to_any_value(value)) for key, value in values.items()]


def _aibom(*, sender_pid: int, service: str, claimed_pid: int, started: float, sequence: int,
           entries: list[_wire.Entry], final: bool = False) -> bytes:
    """An inventory span as the agent's emitter sends it, from a sender whose resource says
    ``sender_pid``, naming ``service`` and ``claimed_pid`` as the inventory's."""
    span = trace_pb2.Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), name=_wire.SPAN_NAME,
        start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns(),
        attributes=_attributes({
            _wire.ATTR_SEQUENCE: sequence, _wire.ATTR_PART: 0, _wire.ATTR_PARTS: 1,
            _wire.ATTR_FULL: sequence == 1, _wire.ATTR_FINAL: final, _wire.ATTR_STARTED: started,
            _wire.ATTR_PID: claimed_pid, _wire.ATTR_HOST: NODE}),
        events=[trace_pb2.Span.Event(name=_wire.EVENT_ENTRY, time_unix_nano=time.time_ns(),
                                     attributes=_attributes(_wire.event_attributes(entry)))
                for entry in entries])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=Resource(attributes=_attributes({"service.name": service,
                                                  "process.pid": sender_pid})),
        scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]).SerializeToString()


def _library(name: str, version: str) -> _wire.Entry:
    return _wire.Entry("library", name, {"name": name, "version": version})


def _send(collector: Collector, body: bytes) -> None:
    assert post(collector, body)[0] == 200
    assert collector.sync()


def _stored(db: str) -> list[tuple[dict[str, Any], Entries]]:
    """Every stored inventory with its entries, as a reader of the database sees them."""
    store = Store(db, readonly=True)
    try:
        return [(agent, {(row["kind"], row["key"]): row["data"]
                         for row in store.inventory_entries(agent["id"])})
                for agent in store.inventories()]
    finally:
        store.close()


def _of(stored: list[tuple[dict[str, Any], Entries]], host_pid: int | None
        ) -> list[tuple[dict[str, Any], Entries]]:
    return [item for item in stored if item[0]["host_pid"] == host_pid]


def _idle() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                            stdin=subprocess.PIPE)


@pytest.fixture
def senders() -> Iterator[list[SendingProcess]]:
    """Sending processes a test started, ended at its end."""
    started: list[SendingProcess] = []
    yield started
    for sender in started:
        sender.close()


def _forged() -> list[_wire.Entry]:
    return [_library("langchain-core", "6.6.6"), _library("evil-backdoor", "1")]


def test_another_sender_naming_an_agent_cannot_replace_or_alter_its_inventory(
        ebpf_collector: Collector, senders: list[SendingProcess],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two hostile senders name a running agent's service, host and pid with a newer inventory
    start, their own entries and a changed version: one from no process on this node, one from
    another process. The agent's inventory keeps exactly what the agent sent (and its later
    deltas), with no missed emission; each hostile report is kept apart, marked as what it is,
    and ``agentguard aibom --db`` still prints the agent's own document."""
    collector = ebpf_collector
    agent, other = SendingProcess(collector), SendingProcess(collector)
    senders += [agent, other]
    started = time.time() - 5
    agent.send(_aibom(sender_pid=agent.pid, service="inventory-agent", claimed_pid=agent.pid,
                      started=started, sequence=1, entries=[_library("langchain-core", "1.0.0")]))
    _send(collector, _aibom(sender_pid=NO_SUCH_PID, service="inventory-agent",
                            claimed_pid=agent.pid, started=started + 60, sequence=9,
                            entries=_forged(), final=True))
    other.send(_aibom(sender_pid=other.pid, service="inventory-agent", claimed_pid=agent.pid,
                      started=started + 60, sequence=9, entries=_forged(), final=True))
    agent.send(_aibom(sender_pid=agent.pid, service="inventory-agent", claimed_pid=agent.pid,
                      started=started, sequence=2, entries=[_library("requests", "2.32")]))

    stored = [item for item in _stored(collector.settings.db)
              if item[0]["service"] == "inventory-agent"]
    [(own, entries)] = _of(stored, agent.pid)
    assert entries == {("library", "langchain-core"): {"name": "langchain-core",
                                                       "version": "1.0.0"},
                       ("library", "requests"): {"name": "requests", "version": "2.32"}}
    assert (own["pid"], own["started"], own["sequence"], own["gaps"], own["final"]) == \
        (agent.pid, started, 2, 0, False)
    # The process's incarnation, as /proc has it.
    stat = read_stat(agent.pid)
    assert own["verified"] is True and own["sender"] is None and stat is not None
    from_proc = boot_time_ns() + stat.start_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert abs(own["process_started_ns"] - from_proc) < 1_000_000_000
    [(unverified, unverified_entries)] = _of(stored, None)
    assert (unverified["verified"], unverified["sender"], unverified["pid"]) == \
        (False, "127.0.0.1", agent.pid)
    assert unverified_entries[("library", "evil-backdoor")] == {"name": "evil-backdoor",
                                                                "version": "1"}
    [(claimed, _)] = _of(stored, other.pid)
    assert claimed["verified"] is True and claimed["final"] is True

    def status() -> str:
        assert main(["collector", "status", "--db", collector.settings.db]) == 0
        out = capsys.readouterr().out
        return out if re.search(r"aibom_unverified\W+1\b", out) else ""

    # Counted in `collector status` (rewritten every second).
    assert wait_for(status, timeout=10)

    assert main(["aibom", "--db", collector.settings.db, "--agent", f"#{own['id']}",
                 "--format", "cyclonedx-json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sorted((c["name"], c["version"]) for c in document["components"]) == [
        ("langchain-core", "1.0.0"), ("requests", "2.32")]


def test_a_process_beside_an_agent_naming_its_pid_cannot_add_to_its_inventory(
        ebpf_collector: Collector, senders: list[SendingProcess]) -> None:
    """Processes on the agent's own loopback (another process, and the test itself) send
    inventory spans whose resource says the agent's pid, over HTTP and gRPC, with the agent's
    own service and inventory start. None of it reaches the agent's inventory, which holds
    exactly what the agent sent over either protocol, with no missed emission; each claim is
    kept apart as the sender's, unverified, and counted."""
    collector = ebpf_collector
    agent, other = SendingProcess(collector), SendingProcess(collector)
    senders += [agent, other]
    started = time.time() - 5
    before = collector.snapshot()["aibom_unverified"]

    def report(sequence: int, entries: list[_wire.Entry]) -> bytes:
        return _aibom(sender_pid=agent.pid, service="neighbour-agent", claimed_pid=agent.pid,
                      started=started, sequence=sequence, entries=entries)

    agent.send(report(1, [_library("langchain-core", "1.0.0")]))
    other.send(report(2, _forged()))
    other.send(report(3, [_library("evil-grpc", "1")]), via="grpc")
    _send(collector, report(4, [_library("evil-test", "1")]))
    agent.send(report(2, [_library("requests", "2.32")]), via="grpc")

    stored = [item for item in _stored(collector.settings.db)
              if item[0]["service"] == "neighbour-agent"]
    [(own, entries)] = _of(stored, agent.pid)
    assert entries == {("library", "langchain-core"): {"name": "langchain-core",
                                                       "version": "1.0.0"},
                       ("library", "requests"): {"name": "requests", "version": "2.32"}}
    assert (own["verified"], own["sequence"], own["gaps"]) == (True, 2, 0)
    claims = _of(stored, None)
    assert {(claim["verified"], claim["sender"], claim["pid"]) for claim, _ in claims} == \
        {(False, "127.0.0.1", agent.pid)}
    assert set().union(*(set(claimed) for _, claimed in claims)) == {
        ("library", "langchain-core"), ("library", "evil-backdoor"), ("library", "evil-grpc"),
        ("library", "evil-test")}
    assert collector.snapshot()["aibom_unverified"] - before == 3


def test_an_agents_last_report_as_it_exits_is_its_own(
        ebpf_collector: Collector, senders: list[SendingProcess]) -> None:
    """An agent's last inventory span, sent on a connection of its own just before it exits (as
    the exit flush does) while the collector is still busy with a backlog, goes to its verified
    inventory, marked final: the collector tells who sent it while the request is open, not
    when it gets to it after the sender is gone."""
    collector = ebpf_collector
    agent = SendingProcess(collector)
    senders.append(agent)
    started = time.time() - 5
    agent.send(_aibom(sender_pid=agent.pid, service="exiting-agent", claimed_pid=agent.pid,
                      started=started, sequence=1, entries=[_library("numpy", "2.0")]))
    # Seconds of storing for the core ahead of the last report.
    for first in (0, 20_000, 40_000):
        assert post(collector, bulk_request(20_000, first))[0] == 200
    agent.send(_aibom(sender_pid=agent.pid, service="exiting-agent", claimed_pid=agent.pid,
                      started=started, sequence=2, entries=[_library("torch", "2.4")],
                      final=True), via="last")
    stored = [item for item in _stored(collector.settings.db)
              if item[0]["service"] == "exiting-agent"]
    [(own, entries)] = stored
    assert (own["host_pid"], own["verified"], own["final"], own["gaps"]) == \
        (agent.pid, True, True, 0)
    assert set(entries) == {("library", "numpy"), ("library", "torch")}


def test_a_new_process_on_a_reused_pid_starts_a_new_inventory(
        ebpf_collector: Collector, senders: list[SendingProcess]) -> None:
    """An agent sends its inventory and exits; a new process gets its pid and reports the same
    service, pid and even inventory start time. Each process has its own inventory: the new one
    inherits nothing of the old, and the old one gets nothing of the new."""
    if os.geteuid() != 0:
        pytest.skip("reusing a pid needs root (ns_last_pid)")
    collector = ebpf_collector
    old = SendingProcess(collector)
    senders.append(old)
    pid, started = old.pid, time.time() - 5
    old.send(_aibom(sender_pid=pid, service="reused-agent", claimed_pid=pid,
                    started=started, sequence=1, entries=[_library("numpy", "2.0")]))
    old.send(_aibom(sender_pid=pid, service="reused-agent", claimed_pid=pid,
                    started=started, sequence=2, entries=[], final=True))
    old.close()

    new = SendingProcess(collector, pid=pid)
    senders.append(new)
    new.send(_aibom(sender_pid=pid, service="reused-agent", claimed_pid=pid,
                    started=started, sequence=1, entries=[_library("torch", "2.4")]))

    stored = [item for item in _of(_stored(collector.settings.db), pid)
              if item[0]["service"] == "reused-agent"]
    assert len(stored) == 2
    (newer, newer_entries), (older, older_entries) = stored  # most recently heard from first
    assert set(older_entries) == {("library", "numpy")} and older["final"] is True
    assert set(newer_entries) == {("library", "torch")} and newer["final"] is False
    assert newer["process_started_ns"] > older["process_started_ns"]


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """A network namespace of its own linked to this one (as a container's is): its name, the
    address of this end of the link and the address of its end."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("a network namespace needs root and iproute2")
    # Names and a subnet of this test run's own (interface names have at most 15 characters).
    tag = f"agc{os.getpid() % 100000}"
    subnet = os.getpid() % 250 + 2
    ours, theirs = f"10.213.{subnet}.1", f"10.213.{subnet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    ip("netns", "add", tag)
    try:
        ip("link", "add", f"{tag}h", "type", "veth", "peer", "name", f"{tag}a", "netns", tag)
        ip("addr", "add", f"{ours}/30", "dev", f"{tag}h")
        ip("link", "set", f"{tag}h", "up")
        ip("-n", tag, "addr", "add", f"{theirs}/30", "dev", f"{tag}a")
        ip("-n", tag, "link", "set", f"{tag}a", "up")
        ip("-n", tag, "link", "set", "lo", "up")
        yield tag, ours, theirs
    finally:
        subprocess.run(["ip", "link", "del", f"{tag}h"], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", tag], capture_output=True, timeout=10)


def test_in_a_network_namespace_only_the_agent_adds_to_its_inventory(
        tmp_path: Path, namespace: tuple[str, str, str],
        senders: list[SendingProcess]) -> None:
    """An agent in a network namespace of its own (a container's, reaching the collector over a
    link) has its inventory verified; another process of that namespace naming the agent's pid
    adds only to a claim of its own, kept apart under the namespace's address."""
    require_ebpf()
    tag, ours, theirs = namespace
    collector = start_collector(tmp_path, sensor="ebpf", otlp_http=f"{ours}:0")
    try:
        endpoint = collector.endpoints()["otlp_http"]
        agent, other = (SendingProcess(collector, launcher=["ip", "netns", "exec", tag],
                                       endpoint=endpoint) for _ in range(2))
        senders += [agent, other]
        started = time.time() - 5

        def report(sequence: int, entries: list[_wire.Entry]) -> bytes:
            return _aibom(sender_pid=agent.pid, service="contained-agent",
                          claimed_pid=agent.pid, started=started, sequence=sequence,
                          entries=entries)

        agent.send(report(1, [_library("langchain-core", "1.0.0")]))
        other.send(report(2, _forged()))
        agent.send(report(2, [_library("requests", "2.32")]))
        stored = _stored(collector.settings.db)
    finally:
        collector.stop()
    [(own, entries)] = _of(stored, agent.pid)
    assert own["verified"] is True and (own["sequence"], own["gaps"]) == (2, 0)
    assert set(entries) == {("library", "langchain-core"), ("library", "requests")}
    [(claim, claimed)] = _of(stored, None)
    assert (claim["verified"], claim["sender"], claim["pid"]) == (False, theirs, agent.pid)
    assert set(claimed) == {("library", "langchain-core"), ("library", "evil-backdoor")}


# -- the store on its own ---------------------------------------------------------------------

def _add(store: Store, process: AgentProcess | None, name: str, *, pid: int = 7,
         started: float = 1000.0) -> int | None:
    return store.add_inventory(service="svc", host="node", pid=pid, started=started, sequence=1,
                               final=False, info={}, entries=[("module", name, {})],
                               process=process, sender=None if process else "10.0.0.9")


def _names(store: Store) -> list[tuple[int | None, list[str]]]:
    store.commit()
    return sorted(((agent["host_pid"], sorted(row["key"] for row in
                                              store.inventory_entries(agent["id"])))
                   for agent in store.inventories()), key=repr)


def test_a_process_whose_start_could_not_be_read_reports_to_its_last_inventory(
        tmp_path: Path) -> None:
    """A report from a process that was gone before its start could be read (an exporter's last
    flush) goes to the inventory of the process last known on that pid; a process of another
    start, or of another boot, on the same pid has an inventory of its own."""
    store = Store(str(tmp_path / "c.db"))
    try:
        _add(store, AgentProcess(42, "boot-a", 100, 1), "first")
        _add(store, AgentProcess(42, "boot-a", 250, 2), "second")
        _add(store, AgentProcess(42, "boot-a", None), "last-flush")
        _add(store, AgentProcess(42, "boot-b", 100, 3), "after-reboot")
        assert _names(store) == [(42, ["after-reboot"]), (42, ["first"]),
                                 (42, ["last-flush", "second"])]
    finally:
        store.close()


def test_senders_found_on_no_process_never_push_out_a_process_inventory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the inventory table full, a new inventory of a sender found on no process here takes
    the place of another such one, or is not kept; one of a process pushes those out first."""
    from agentguard.collector import store as store_module

    monkeypatch.setattr(store_module, "MAX_AIBOM_AGENTS", 3)
    store = Store(str(tmp_path / "c.db"))
    try:
        assert _add(store, AgentProcess(1, "b", 1), "p1") == 1
        assert _add(store, AgentProcess(2, "b", 1), "p2") == 1
        assert _add(store, None, "u1", pid=11) == 1
        assert _add(store, None, "u2", pid=12) == 1
        assert _names(store) == [(1, ["p1"]), (2, ["p2"]), (None, ["u2"])]
        assert _add(store, AgentProcess(3, "b", 1), "p3") == 1
        assert _names(store) == [(1, ["p1"]), (2, ["p2"]), (3, ["p3"])]
        assert _add(store, None, "u3", pid=13) is None
        assert _names(store) == [(1, ["p1"]), (2, ["p2"]), (3, ["p3"])]
        # Not even by naming a process's own pid, service and host with a newer start.
        assert _add(store, None, "u4", started=2000.0) is None
        assert _names(store) == [(1, ["p1"]), (2, ["p2"]), (3, ["p3"])]
    finally:
        store.close()


_OLD_INVENTORIES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE aibom_agents (
    id INTEGER PRIMARY KEY, service TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started REAL NOT NULL, first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
    sequence INTEGER NOT NULL, gaps INTEGER NOT NULL DEFAULT 0, final INTEGER NOT NULL DEFAULT 0,
    info TEXT NOT NULL, dropped INTEGER NOT NULL DEFAULT 0, UNIQUE (service, host, pid));
CREATE INDEX aibom_agents_last ON aibom_agents (last_ns);
CREATE TABLE aibom_entries (
    agent_id INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,
    first_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, PRIMARY KEY (agent_id, kind, key));
INSERT INTO aibom_agents VALUES (5, 'svc', 'node', 7, 1000.0, 1, 2, 3, 1, 1, '{"python": "3.11"}', 0);
INSERT INTO aibom_entries VALUES (5, 'library', 'requests', '{"version": "2"}', 1, 2);
"""


def test_a_database_of_an_earlier_collector_keeps_its_inventories_out_of_reach(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Inventories an earlier collector kept by what the spans named are readable before and
    after a writer opens the database; the writer keeps every one with its entries, and reports
    naming the same service, host and pid (from a process or from anyone) add inventories
    beside them without changing them. ``agentguard aibom --db`` lists them all."""
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(_OLD_INVENTORIES)
    db.close()
    reader = Store(path, readonly=True)
    try:
        [before] = reader.inventories()
        assert (before["id"], before["entries"], before["verified"]) == (5, 1, False)
    finally:
        reader.close()

    store = Store(path)
    try:
        assert _add(store, AgentProcess(7, "b", 1), "from-process", started=2000.0) == 1
        assert _add(store, None, "from-anyone", started=2000.0) == 1
        assert _names(store) == [(7, ["from-process"]), (None, ["from-anyone"]),
                                 (None, ["requests"])]
        [legacy] = [agent for agent in store.inventories() if agent["id"] == 5]
        assert (legacy["owner"], legacy["started"], legacy["sequence"], legacy["gaps"],
                legacy["final"], legacy["info"]) == ("legacy:5", 1000.0, 3, 1, True,
                                                     {"python": "3.11"})
    finally:
        store.close()
    Store(path).close()  # opened again: nothing left to move
    assert main(["aibom", "--db", path]) == 0
    out = capsys.readouterr().out
    assert out.count("svc@node:7") == 3 and "3 agents" in out
