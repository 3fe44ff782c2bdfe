"""The collector with the real eBPF sensor: an instrumented agent in a subprocess, its tool's
processes, grandchildren and native code, joined to the right tool spans; the kernel filter;
DNS, sensitive files, bytes sent and long argument lists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.collector.daemon import Collector
from agentguard.collector.incidents import build_incident, list_incidents
from agentguard.collector.render import incident_html
from agentguard.collector.store import Store
from tests.collector.conftest import Listener, require_ebpf, start_collector
from tests.collector.helpers import (
    run_agent_script,
    run_watched,
    stored_events,
    tree_events,
    wait_for,
)
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.usefixtures("ebpf")

# Programs executed under this name are watched by the kernel program itself.
WATCHED_COMM = "agwatchme"


@pytest.fixture(scope="module")
def downstream() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory,
              downstream: OtlpReceiver) -> Iterator[Collector]:
    """The module's eBPF collector, forwarding enriched spans to a real OTLP receiver."""
    require_ebpf()
    collector = start_collector(tmp_path_factory.mktemp("ebpf"), sensor="ebpf",
                                forward=downstream.http_endpoint, watch_comm=WATCHED_COMM)
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def agent_run(collector: Collector) -> Iterator[dict[str, Any]]:
    """One run of the instrumented agent: a shell tool with a grandchild, and a native connect."""
    listener = Listener()
    endpoint = "http://" + collector.endpoints()["otlp_http"]
    pid, out = run_agent_script(collector, [endpoint, "http/protobuf", str(listener.port)],
                                env={**os.environ, "AGENTGUARD_RUNTIME_SENSOR": "true"})
    spans = json.loads(out.strip().splitlines()[-1])
    run_shell = spans["run_shell"]["span_id"]
    native = spans["native_connect"]["span_id"]
    # Both tool spans arrive, and with them every event they explain is joined and stored.
    wait_for(lambda: collector.sync() and {e["span_id"] for e in tree_events(collector, pid)}
             >= {run_shell, native}, timeout=20)
    # Bytes sent are summed in the kernel and flushed every second.
    wait_for(lambda: collector.sync() and [
        e for e in tree_events(collector, pid, "net.sent") if e["pid"] != pid])
    yield {"pid": pid, "spans": spans, "listener": listener}
    listener.close()


def _tree(collector: Collector, run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return tree_events(collector, run["pid"], kind)


def test_tool_subprocess_exec_and_connect_join_the_tool_span(collector: Collector,
                                                            agent_run: dict[str, Any]) -> None:
    """The shell a tool starts and the grandchild that connects out land on that tool's span."""
    shell = agent_run["spans"]["run_shell"]
    execs = _tree(collector, agent_run, "process.exec")
    (sh,) = [e for e in execs if e["data"]["argv"][:1] == ["sh"]
             and "echo start" in e["data"]["argv"][-1]]
    assert sh["data"]["argv"][:2] == ["sh", "-c"]
    assert os.path.basename(sh["data"]["exe"]) == "sh"
    assert sh["data"]["ppid"] == agent_run["pid"]
    grandchildren = [e for e in execs if e["data"]["ppid"] == sh["pid"]]
    assert len(grandchildren) == 1
    grandchild = grandchildren[0]
    assert "socket.create_connection" in " ".join(grandchild["data"]["argv"])
    for event in (sh, grandchild):
        assert (event["trace_id"], event["span_id"]) == (shell["trace_id"], shell["span_id"])
        assert event["tool"] == "run_shell"
        assert event["conversation_id"] == "conv-kernel"
    connects = [e for e in _tree(collector, agent_run, "net.connect") if e["pid"] == grandchild["pid"]]
    assert len(connects) == 1
    connect = connects[0]
    assert connect["data"]["address"] == "127.0.0.1"
    assert connect["data"]["port"] == agent_run["listener"].port
    assert connect["data"]["result"] == 0
    assert connect["span_id"] == shell["span_id"]


def test_fork_in_the_agent_is_joined_by_the_child_pid_the_library_recorded(
        collector: Collector, agent_run: dict[str, Any]) -> None:
    """The agent's own fork of the shell is joined through the child pid on the tool span."""
    shell = agent_run["spans"]["run_shell"]
    forks = [e for e in _tree(collector, agent_run, "process.fork") if e["pid"] == agent_run["pid"]]
    assert forks, "no fork seen from the agent process"
    fork = forks[0]
    assert fork["tid"] == shell["thread"]
    assert fork["span_id"] == shell["span_id"]
    assert fork["attribution"] in ("child_pid", "thread")


def test_what_the_library_could_not_see_is_flagged(collector: Collector,
                                                   agent_run: dict[str, Any]) -> None:
    """The grandchild and the native connect are kernel-only and raise collector findings."""
    shell = agent_run["spans"]["run_shell"]
    native = agent_run["spans"]["native_connect"]
    execs = _tree(collector, agent_run, "process.exec")
    sh = next(e for e in execs if e["span_id"] == shell["span_id"] and e["data"]["argv"][:1] == ["sh"])
    grandchild = next(e for e in execs if e["data"]["ppid"] == sh["pid"])
    assert sh["seen_by_library"] is True
    assert grandchild["seen_by_library"] is False
    native_connects = [e for e in _tree(collector, agent_run, "net.connect")
                       if e["pid"] == agent_run["pid"] and e["span_id"] == native["span_id"]]
    assert len(native_connects) == 1
    assert native_connects[0]["attribution"] == "thread"
    assert native_connects[0]["tid"] == native["thread"]
    assert native_connects[0]["seen_by_library"] is False
    store = Store(collector.settings.db, readonly=True)
    try:
        findings = store.findings()
    finally:
        store.close()
    by_rule = {(f.rule_id, f.span_id): f for f in findings}
    assert by_rule[("AGK001", shell["span_id"])].evidence["pid"] == grandchild["pid"]
    assert by_rule[("AGK002", shell["span_id"])].severity == "medium"
    # The library's own policy rules judged the kernel-only grandchild as well.
    judged = [f for f in findings if f.source == "collector" and not f.rule_id.startswith("AGK")
              and f.span_id == shell["span_id"] and f.kind == "process_exec"]
    assert judged and judged[0].evidence, findings
    bypass = by_rule[("AGK002", native["span_id"])]
    assert bypass.severity == "high"
    assert bypass.tool == "native_connect"
    assert bypass.conversation_id == "conv-kernel"


def test_incident_tells_the_story_and_renders_as_one_html_page(
        collector: Collector, agent_run: dict[str, Any], tmp_path: Path) -> None:
    """The findings become one incident of the conversation, with process tree and HTML page."""
    store = Store(collector.settings.db, readonly=True)
    try:
        rows = [r for r in list_incidents(store) if r["conversation_id"] == "conv-kernel"]
        assert len(rows) == 1
        incident = build_incident(store, rows[0]["id"])
    finally:
        store.close()
    assert incident is not None
    assert incident.severity == "high"
    assert {c["tool"] for c in incident.tool_calls} == {"run_shell", "native_connect", "background"}
    agent_node = next(n for n in incident.processes if n.pid == agent_run["pid"])
    sh = next(n for n in agent_node.children if n.tool == "run_shell")
    assert sh.argv[:1] == ["sh"]
    assert sh.children[0].kernel_only is True
    assert f"127.0.0.1:{agent_run['listener'].port}" in sh.children[0].connections
    assert sh.children[0].bytes_sent >= len(b"exfiltrated-secret") * 64
    assert "invisible to the in-process sensor" in incident.narrative
    page = incident_html([incident])
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page.replace(
        f"http://{collector.endpoints()['otlp_http']}", "")
    assert incident.id in page and "kernel-only" in page and "Process tree" in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        path = tmp_path / "story.html"
        path.write_text(page, encoding="utf-8")
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              "--dump-dom", path.as_uri()], capture_output=True, text=True,
                             timeout=60).stdout
        assert incident.id in dom and "Process tree" in dom


def _agentguard(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``agentguard`` command line in its own process."""
    return subprocess.run([sys.executable, "-m", "agentguard.cli", *args], capture_output=True,
                          text=True, timeout=60)


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the ``agentguard`` command line in this process: (exit status, stdout, stderr)."""
    from agentguard.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_incidents_commands_list_show_and_report_the_story(
        collector: Collector, agent_run: dict[str, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``agentguard incidents list/show/report`` read the collector's database: the index, the
    whole story as JSON and text, and a self-contained HTML page that renders."""
    db = collector.settings.db
    listed = _agentguard("incidents", "list", "--json", "--db", db)
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout) if r["conversation_id"] == "conv-kernel"]
    assert len(rows) == 1 and rows[0]["severity"] == "high" and rows[0]["findings"] >= 2
    incident_id = rows[0]["id"]
    code, out, _ = _in_process(capsys, "incidents", "list", "--db", db)
    assert code == 0 and incident_id in out

    code, out, err = _in_process(capsys, "incidents", "show", incident_id[:8], "--json", "--db", db)
    assert code == 0, err
    story = json.loads(out)
    assert story["id"] == incident_id and story["conversation_id"] == "conv-kernel"
    assert {c["tool"] for c in story["tool_calls"]} >= {"run_shell", "native_connect"}
    assert any(p["pid"] == agent_run["pid"] for p in story["processes"])
    assert "invisible to the in-process sensor" in story["narrative"]
    code, out, _ = _in_process(capsys, "incidents", "show", incident_id, "--db", db)
    assert code == 0 and incident_id in out and "run_shell" in out

    page_path = tmp_path / "story.html"
    report = _agentguard("incidents", "report", incident_id, "-o", str(page_path), "--db", db)
    assert report.returncode == 0, report.stderr
    page = page_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "Content-Security-Policy" in page and "Process tree" in page and "kernel-only" in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              "--dump-dom", page_path.as_uri()], capture_output=True, text=True,
                             timeout=60).stdout
        assert incident_id in dom and "Process tree" in dom and "run_shell" in dom

    code, _, err = _in_process(capsys, "incidents", "show", "INC-nope", "--db", db)
    assert code == 1 and "no incident 'INC-nope'" in err
    # The older spelling under `collector` still works.
    code, out, _ = _in_process(capsys, "collector", "incidents", incident_id, "--json", "--db", db)
    assert code == 0 and json.loads(out)["id"] == incident_id


def test_forwarded_tool_span_carries_the_kernel_events(agent_run: dict[str, Any],
                                                       downstream: OtlpReceiver) -> None:
    """The downstream backend gets the agent's tool span with the kernel events on it."""
    shell = agent_run["spans"]["run_shell"]
    spans = downstream.wait_for(lambda got: any(s.span_id == shell["span_id"] for s in got), 15)
    forwarded = next(s for s in spans if s.span_id == shell["span_id"])
    assert forwarded.name == "execute_tool run_shell"
    assert forwarded.resource["service.name"] == "kernel-test-agent"
    kernel = [name for name in forwarded.events if name.startswith("agentguard.kernel.")]
    assert "agentguard.kernel.process.exec" in kernel
    assert "agentguard.kernel.net.connect" in kernel


def test_late_kernel_events_follow_as_child_spans(agent_run: dict[str, Any],
                                                 downstream: OtlpReceiver) -> None:
    """A connection made after its tool's span went out is forwarded as a child span of it."""
    background = agent_run["spans"]["background"]
    spans = downstream.wait_for(lambda got: any(
        s.parent_span_id == background["span_id"] and "net.connect" in s.name for s in got), 15)
    late = next(s for s in spans if s.parent_span_id == background["span_id"]
                and "net.connect" in s.name)
    assert late.trace_id == background["trace_id"]
    assert late.attributes["network.peer.port"] == agent_run["listener"].port
    assert late.attributes["agentguard.attribution"] in ("traceparent", "inherited")
    assert late.resource["service.name"] == "kernel-test-agent"


def test_events_command_shows_the_join(collector: Collector, agent_run: dict[str, Any]) -> None:
    """``agentguard collector events --trace-id`` lists the trace's kernel events with their span."""
    shell = agent_run["spans"]["run_shell"]
    done = subprocess.run(
        [sys.executable, "-m", "agentguard.cli", "collector", "events", "--db",
         collector.settings.db, "--trace-id", shell["trace_id"], "--json"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    assert events and all(e["attributed_to"]["span_id"] == shell["span_id"] for e in events)
    assert {e["kind"] for e in events} >= {"process.exec", "process.fork", "net.connect"}
    assert all(e["attributed_to"]["conversation_id"] == "conv-kernel" for e in events)


def test_unwatched_processes_never_reach_user_space(collector: Collector, listener: Listener) -> None:
    """A process outside every watched tree execs and connects without producing one event."""
    outsider = subprocess.Popen(
        [sys.executable, "-c", f"import socket, subprocess; subprocess.run(['true']); "
                               f"socket.create_connection(('127.0.0.1', {listener.port})).close()"])
    assert outsider.wait(30) == 0
    wait_for(lambda: listener.connections == 1)
    assert collector.sync()
    events = stored_events(collector)
    assert [e for e in events if e["pid"] == outsider.pid] == []
    assert [e for e in events if e["kind"] == "net.connect"
            and e["data"].get("port") == listener.port] == []


def test_dns_sensitive_files_bytes_and_long_arguments(collector: Collector, listener: Listener,
                                                      tmp_path: Path) -> None:
    """DNS queries, credential files, bytes sent and a 600-byte argument list are all reported."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = x\n")
    long_arg = "A" * 600
    code = f"""
import os, socket, subprocess, time
header = bytes.fromhex("abcd01000001000000000000")
query = header + b"\\x05exfil\\x07example\\x04test\\x00" + bytes.fromhex("00010001")
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.sendto(query, ("127.0.0.1", 53))
connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
connected.connect(("127.0.0.1", 53))
connected.send(query.replace(b"exfil", b"again"))
os.chdir({str(home)!r})
open(".aws/credentials").read()
tcp = socket.create_connection(("127.0.0.1", {listener.port}))
tcp.sendall(b"x" * 50000)
tcp.close()
subprocess.run(["sh", "-c", "sleep 0.3", "{long_arg}"])
time.sleep(1.2)
"""
    pid = run_watched(collector, code)
    events = tree_events(collector, pid)
    queries = sorted(e["data"]["query"] for e in events if e["kind"] == "dns.query")
    assert queries == ["again.example.test", "exfil.example.test"]
    opens = [e for e in events if e["kind"] == "file.open"]
    assert [e["data"]["path"] for e in opens] == [".aws/credentials"]
    assert opens[0]["data"]["write"] is False
    sent = sum(e["data"]["bytes"] for e in events if e["kind"] == "net.sent" and e["pid"] == pid)
    assert sent >= 50000
    shell = next(e for e in events if e["kind"] == "process.exec" and e["data"]["argv"][:1] == ["sh"])
    assert shell["data"]["argv"] == ["sh", "-c", "sleep 0.3", long_arg]
    assert all(e["attribution"] == "unattributed" for e in events)


def test_agent_in_its_own_pid_namespace_is_joined_through_host_ids(collector: Collector) -> None:
    """An agent in a container-style pid namespace (pid 1 there) is matched to its host pid,
    and its thread ids and recorded child pids are translated before joining."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    listener = Listener()
    endpoint = "http://" + collector.endpoints()["otlp_http"]
    try:
        # The watched root is the launcher; the agent is its child, pid 1 of its namespace.
        launcher, out = run_agent_script(
            collector, [endpoint, "http/protobuf", str(listener.port)],
            launcher=["unshare", "--pid", "--fork", "--mount-proc"],
            watch=lambda pid: collector.watch(pid, "namespace launcher"))
    finally:
        listener.close()
    spans = json.loads(out.strip().splitlines()[-1])
    assert spans["run_shell"]["thread"] == 1  # the namespace's view of the main thread
    shell, native = spans["run_shell"], spans["native_connect"]

    def joined() -> list[dict[str, Any]]:
        collector.sync()
        return [e for e in tree_events(collector, launcher) if e["span_id"] == native["span_id"]]
    (native_connect,) = wait_for(joined, timeout=20)
    agent_pid = native_connect["pid"]
    assert agent_pid != 1 and native_connect["attribution"] == "thread"
    events = tree_events(collector, launcher)
    fork = next(e for e in events if e["kind"] == "process.fork" and e["pid"] == agent_pid
                and e["span_id"] == shell["span_id"])
    assert fork["attribution"] == "child_pid"
    grandchild = next(e for e in events if e["kind"] == "net.connect" and e["pid"] != agent_pid
                      and e["span_id"] == shell["span_id"])
    assert grandchild["data"]["port"] == listener.port


def test_programs_named_by_watch_comm_are_watched_from_their_exec(
        collector: Collector, listener: Listener, tmp_path: Path) -> None:
    """A process that executes a program with the watched name is watched, with its children,
    though nobody told the collector its pid."""
    program = tmp_path / WATCHED_COMM
    program.symlink_to("/bin/sh")
    done = subprocess.run(
        [str(program), "-c", f"{sys.executable} -c 'import socket; "
                             f"socket.create_connection((\"127.0.0.1\", {listener.port})).close()'"],
        timeout=30)
    assert done.returncode == 0
    wait_for(lambda: listener.connections == 1)

    def seen() -> list[dict[str, Any]]:
        collector.sync()
        return [e for e in stored_events(collector, kind="net.connect")
                if e["data"]["port"] == listener.port]
    (connect,) = wait_for(seen)
    execs = stored_events(collector, kind="process.exec")
    shell = next(e for e in execs if e["data"]["exe"] == str(program))
    child = next(e for e in execs if e["pid"] == connect["pid"])
    assert child["data"]["ppid"] == shell["pid"]
