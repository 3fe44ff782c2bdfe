"""Judging kernel events: the library's own Guard pipeline, plus what only the collector can tell.

Kernel events become the library's typed events (``ProcessExec``, ``NetConnect``, ``DnsLookup``,
``FileOpen``) with the context of the span they were joined to, and go through the same
detectors, baseline and policies as in the agent (no second rule engine). On top, the collector
reports acts the in-process sensor did not see: processes of processes, native code, a tool that
went around Python.
"""

from __future__ import annotations

import collections
import os
from typing import Any

from opentelemetry import trace

from agentguard._context import ConversationRegistry
from agentguard._guard import Guard
from agentguard.collector.model import (
    CONNECT,
    DNS,
    EXEC,
    IO_URING,
    OPEN,
    UNWATCHED,
    KernelEvent,
    SpanInfo,
)
from agentguard.collector.store import StoredFinding
from agentguard.config import resolve_config
from agentguard.events import DnsLookup, EventContext, FileOpen, NetConnect, ProcessExec

__all__ = ["KERNEL_RULES", "Judge", "opened_directory", "to_library_event"]

# The collector's own findings: acts that only the kernel saw.
KERNEL_RULES: dict[str, tuple[str, str]] = {
    EXEC: ("AGK001", "process the in-process sensor did not see"),
    CONNECT: ("AGK002", "network connection the in-process sensor did not see"),
    DNS: ("AGK003", "DNS lookup the in-process sensor did not see"),
    OPEN: ("AGK004", "sensitive file opened where the in-process sensor could not see it"),
    IO_URING: ("AGK005", "io_uring ring set up: its operations bypass system-call tracing"),
    UNWATCHED: ("AGK006", "process the kernel sensor could not watch: its watch map is full"),
}
_DEDUPE = 65536


def to_library_event(event: KernelEvent, context: EventContext) -> Any:
    """The library's typed event for a kernel event (``None`` for kinds policies do not judge)."""
    d = event.data
    ts = event.ts_ns / 1e9
    if event.kind == EXEC:
        return ProcessExec(context=context, timestamp=ts, executable=str(d.get("exe") or ""),
                           argv=[str(a) for a in d.get("argv") or []], pid=event.pid,
                           ppid=d.get("ppid"))
    if event.kind == CONNECT:
        return NetConnect(context=context, timestamp=ts, address=str(d.get("address") or ""),
                          port=d.get("port"), family=d.get("family"), protocol="tcp")
    if event.kind == DNS and d.get("query"):
        return DnsLookup(context=context, timestamp=ts, hostname=str(d["query"]))
    if event.kind == OPEN:
        write = bool(d.get("write"))
        return FileOpen(context=context, timestamp=ts, path=str(d.get("path") or ""),
                        mode="w" if write else "r", write=write)
    return None


def opened_directory(event: KernelEvent) -> bool:
    """Whether a ``file.open`` event opened a directory.

    The eBPF sensor tells the opened inode's type as the kernel saw it (``file_type``), which is
    the answer: a later look at the path could be fooled by a file swapped for a directory after
    it was read. Only for a sensor that could not tell is the path looked at now (relative paths
    against the process's working directory, while it lives).
    """
    file_type = event.data.get("file_type")
    if file_type is not None:
        return bool(file_type == "directory")
    path = str(event.data.get("path") or "")
    if not path:
        return False
    if not os.path.isabs(path):
        if event.pid <= 0:
            return False
        path = os.path.join(f"/proc/{event.pid}/cwd", path)
    # isdir answers False for a path that cannot be looked at.
    return os.path.isdir(path)


class Judge:
    """Runs joined kernel events through the Guard pipeline and the kernel-only rules."""

    def __init__(self, *, policy: list[str] | None = None, builtin_rules: bool = True,
                 profile: str | None = None) -> None:
        from agentguard import _api

        # Kernel events carry no text to scan, and the collector runs no sensor of its own.
        config = resolve_config(
            {"service_name": "agentguard-collector", "mode": "monitor", "exporter": "none",
             "policy": list(policy or []) or None, "builtin_rules": builtin_rules,
             "profile": profile, "injection_detection": False, "runtime_sensor": False,
             "propagate_context": False},
            environ={},
        )
        policies = _api._policies(config.policy)
        # The collector never blocks anything; monitor mode turns block decisions into alerts.
        self.guard = Guard(config, trace.NoOpTracer(), ConversationRegistry(max_size=1024),
                           policies=policies)
        _api._build_stages(self.guard)
        self._seen: collections.OrderedDict[tuple[Any, ...], None] = collections.OrderedDict()
        self.counters = {"judged": 0, "findings": 0, "directory_opens": 0}

    def judge(self, event: KernelEvent, span: SpanInfo | None,
              service: str | None) -> list[StoredFinding]:
        """Findings for one joined kernel event."""
        if event.kind == OPEN and opened_directory(event):
            # Listing a directory named like a credential file reads no credential.
            self.counters["directory_opens"] += 1
            return []
        context = EventContext(
            agent=(span.service if span else None) or service,
            conversation_id=span.conversation_id if span else None,
            turn=span.turn if span else None,
            trace_id=event.attribution.trace_id,
            span_id=event.attribution.span_id,
            tool=span.tool if span else None,
            tool_call_id=span.tool_call_id if span else None,
            pid=event.pid, tid=event.tid,
        )
        findings: list[StoredFinding] = []
        # What the in-process sensor saw, the library has judged already (its findings come in
        # on the span); the collector judges what only the kernel saw.
        library_event = None if event.seen_by_library else to_library_event(event, context)
        if library_event is not None and self.guard.has_stages:
            self.counters["judged"] += 1
            verdict = self.guard.evaluate(library_event)
            for finding in verdict.findings:
                findings.append(StoredFinding(**finding.model_dump(), source="collector",
                                              event_id=event.row_id))
        kernel_only = self._kernel_only(event, context)
        if kernel_only is not None:
            findings.append(kernel_only)
        self.counters["findings"] += len(findings)
        return findings

    def _kernel_only(self, event: KernelEvent, context: EventContext) -> StoredFinding | None:
        rule = KERNEL_RULES.get(event.kind)
        if rule is None or event.agent_pid is None:
            return None
        # No in-process sensor sees a ring (Python has no io_uring, nor an audit event for one)
        # or the kernel sensor's own blindness, so these are reported whatever the library saw.
        if event.kind not in (IO_URING, UNWATCHED) and event.seen_by_library is not False:
            return None
        d = event.data
        # A tree that fills the watch map is one story per tool call, not one per process.
        target = {EXEC: d.get("exe"), CONNECT: f"{d.get('address')}:{d.get('port')}",
                  DNS: d.get("query"), OPEN: d.get("path"),
                  IO_URING: f"pid {event.pid}", UNWATCHED: "watch map full"}.get(event.kind)
        # One finding per tool call, rule and target: a shell loop is one story, not a thousand.
        # A tool call is its agent's span (trace and span id): another sender's span with the
        # same span id must not use up this one's finding.
        attribution = event.attribution
        call = (event.agent_pid, attribution.trace_id, attribution.span_id) \
            if attribution.span_id is not None else (event.agent_pid,)
        key = (call, rule[0], target)
        if key in self._seen:
            return None
        self._seen[key] = None
        if len(self._seen) > _DEDUPE:
            self._seen.popitem(last=False)
        in_agent = event.pid == event.agent_pid
        direct_child = event.kind == EXEC and d.get("ppid") == event.agent_pid
        if in_agent or direct_child:
            where = "the agent process itself, outside anything Python reported (native code or a " \
                    "bypass of the audit hooks)"
            severity = "high"
        else:
            where = f"process {event.pid} started by the tool, below what the library can see"
            # A ring in a descendant may be a runtime's own I/O (some Node.js releases, Rust's
            # tokio-uring, liburing tools); in the agent it is native code, as CPython never
            # sets one up. Its opens and connects are still reported as they complete.
            severity = "high" if event.kind == OPEN else "medium"
        evidence: dict[str, Any] = {
            "kernel_event": event.kind, "pid": event.pid, "target": target,
            "attribution": event.attribution.method, "where": where, "sensor": event.source,
        }
        if event.kind == EXEC:
            evidence["argv"] = list(d.get("argv") or [])[:32]
            evidence["ppid"] = d.get("ppid")
        if event.kind == CONNECT and d.get("result") not in (None, 0):
            evidence["result"] = d.get("result_name") or d.get("result")
        if d.get("via"):
            evidence["via"] = d["via"]
        title = f"{rule[1]}: {event.summary()[:200]}"
        if event.kind == IO_URING:
            evidence.update(sqpoll=bool(d.get("sqpoll")), entries=d.get("entries"),
                            flags=d.get("flags"))
            title = f"process {event.pid} set up an io_uring ring: its file and network " \
                    "operations are not seen system call by system call"
        if event.kind == UNWATCHED:
            # Filling the map is how a tool would blind the sensor before acting: high wherever
            # it happens in the tree.
            severity = "high"
            evidence.update(child_pid=d.get("child_pid"), map_keys=d.get("map_keys"))
            title = f"process {d.get('child_pid')} started by process {event.pid} is not " \
                    f"watched: the kernel sensor's watch map is full ({d.get('map_keys')} " \
                    "processes); what it does is not seen"
        return StoredFinding(
            rule_id=rule[0], category="runtime", severity=severity,
            title=title, action="alert", kind=event.kind,
            tool=context.tool, agent=context.agent, conversation_id=context.conversation_id,
            turn=context.turn, trace_id=context.trace_id, span_id=context.span_id,
            evidence=evidence, timestamp=event.ts_ns / 1e9, source="collector",
            event_id=event.row_id,
        )
