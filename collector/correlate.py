"""Joins kernel events to the agent spans that caused them.

An event from an agent process (one that sends us spans) belongs to the tool span of the same
process and native thread that was open at that moment. An event from a descendant process
belongs to the span that started it: the one whose child pids (recorded by the in-process sensor)
include it, else the one its ``TRACEPARENT`` names, else whatever its parent's fork belonged to.

Spans arrive after they end, so an event that needs a span not yet seen waits (bounded in time
and number) and is retried when spans from its agent arrive; when the wait runs out it is
resolved with what is known (the agent invocation span of that time, or unattributed).

A span is known by its agent (the host pid its sender was mapped to), trace id and span id: an
event of one agent is only ever joined to that agent's own spans, so spans another sender makes
up with the same ids (it may have read them from a ``TRACEPARENT``) cannot take, hide or relabel
another agent's events.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import os
import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentguard._errors import internal_error
from agentguard.collector import _names as names
from agentguard.collector import procfs
from agentguard.collector.model import (
    CONNECT,
    DNS,
    EXEC,
    EXIT,
    FORK,
    GAP,
    LOST,
    OPEN,
    SENT,
    UNATTRIBUTED,
    Attribution,
    KernelEvent,
    SpanInfo,
)
from agentguard.collector.sensor import boot_time_ns

__all__ = ["AgentInfo", "Correlator", "OwnEndpoints", "ProcInfo", "SpanKey", "span_key"]

_MAX_DEPTH = 64
# How far up a span's parents are followed to find the tool call it belongs to.
_MAX_TOOL_DEPTH = 16
# Sensors whose event times are when they looked (a poll), not when the act happened.
_COARSE_SOURCES = frozenset({"procfs"})
# The library's records of connections, lookups and opens kept for matching kernel events, in all,
# and of one peer, name or file name of one agent (the library writes an act once per span, so
# these are the spans that last did it; a kernel event's own span is among the newest).
_MAX_LIBRARY_RECORDS = 65_536
_MAX_RECORDS_PER_KEY = 256
_RESOLV_CONF_BYTES = 16_384
# Span events only the in-process sensor writes: an agent whose spans carry one runs it.
_LIBRARY_RECORDS = names.LIBRARY_CONNECT_EVENTS | names.LIBRARY_DNS_EVENTS | \
    names.LIBRARY_OPEN_EVENTS

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_BOOT_NS = boot_time_ns()

# A span's identity: its agent's pid on this host, its trace id and its span id.
SpanKey = tuple[int, str, str]


def span_key(span: SpanInfo) -> SpanKey | None:
    """The identity of an agent's span (``None`` for a span of no agent on this node)."""
    return None if span.pid is None else (span.pid, span.trace_id, span.span_id)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class AgentInfo:
    """An instrumented agent process, known from the spans it sends."""

    pid: int
    service: str | None
    registered_ns: int
    # The TRACEPARENT in the agent's own environment: children inherit it without the library,
    # so it names no tool span.
    own_traceparent: tuple[str, str] | None = None
    # Whether the in-process sensor runs in that agent (it reported spawns or connections).
    library_sensor: bool = False
    exited_ns: int | None = None
    # In a pid namespace of its own (a container): its spans carry that namespace's pids and
    # thread ids, which the kernel's host ids are translated to before comparing.
    namespaced: bool = False
    thread_ids: dict[int, int] = field(default_factory=dict)
    # When the process started (``/proc/<pid>/stat``, clock ticks since boot); ``None`` when it
    # was gone before it could be read. With the pid it names the process: a pid is handed out
    # again once its process is gone, and the next agent on it is another agent.
    start_ticks: int | None = None
    # Some of its events were stored without the span they waited for: a tool span of this
    # agent that still comes re-attributes them (the flag goes with the agent, so it is bounded
    # as the agents are and never carries over to another process on the same pid).
    gave_up: bool = False
    # The DNS search domains of its resolver (``None``: not read yet): a lookup of ``name`` may
    # reach the kernel as ``name.<domain>`` first.
    search_domains: tuple[str, ...] | None = None

    def started_ns(self) -> int | None:
        """When its process started, in Unix nanoseconds (``None`` when unknown)."""
        if self.start_ticks is None:
            return None
        return _BOOT_NS + self.start_ticks * 1_000_000_000 // _CLK_TCK

    def is_other_process(self, start_ticks: int | None) -> bool:
        """Whether the process now at this pid (started at ``start_ticks``; ``None``: no process
        there now) is another one than this agent."""
        if start_ticks is None:
            # Nobody on the pid: spans that come now are this agent's last ones.
            return False
        if self.start_ticks is None:
            return self.exited_ns is not None
        return start_ticks != self.start_ticks


@dataclass(slots=True)
class ProcInfo:
    """A process in a watched tree."""

    pid: int
    ppid: int | None
    start_ns: int
    fork_tid: int = 0
    exe: str | None = None
    argv: list[str] = field(default_factory=list)
    traceparent: tuple[str, str] | None = None
    markers: dict[str, str] = field(default_factory=dict)
    agent_pid: int | None = None
    resolved: Attribution | None = None
    exited_ns: int | None = None
    # Its pid as its agent sees it (differs from ``pid`` when the agent is in a container).
    agent_view_pid: int | None = None


class Correlator:
    """The process table, the span index and the events waiting for their span."""

    def __init__(
        self,
        *,
        hold_seconds: float = 10.0,
        max_pending: int = 100_000,
        max_spans: int = 200_000,
        max_processes: int = 65_536,
        max_agents: int = 4096,
        slack_ns: int = 2_000_000,
        coarse_ns: int = 1_000_000_000,
        max_library_records: int = _MAX_LIBRARY_RECORDS,
    ) -> None:
        self.hold_seconds = hold_seconds
        self.max_pending = max_pending
        self.max_pending_per_agent = max(100, max_pending // 8)
        self.max_spans = max_spans
        self.max_processes = max_processes
        self.max_agents = max_agents
        self.slack_ns = slack_ns
        # How long before its time an act of a polling sensor may have happened (its time is
        # the poll that saw it).
        self.coarse_ns = coarse_ns
        self.max_library_records = max_library_records
        self.agents: dict[int, AgentInfo] = {}
        # Agents whose process is gone, with the monotonic time after which they are forgotten
        # (the hold window: their last spans and events have come by then), oldest first.
        self._exited: collections.deque[tuple[float, AgentInfo]] = collections.deque()
        # Set by the collector once its receiver listens: connections there are no agent's act.
        self.own_endpoints: OwnEndpoints | None = None
        self.procs: collections.OrderedDict[int, ProcInfo] = collections.OrderedDict()
        self.spans: collections.OrderedDict[SpanKey, SpanInfo] = collections.OrderedDict()
        # pid → native thread id → tool spans of that thread; pid → agent invocation spans.
        self._tools: dict[int, dict[int, list[SpanInfo]]] = {}
        self._invocations: dict[int, list[SpanInfo]] = {}
        # (agent pid, child pid as the agent recorded it) → the span that started the child.
        self._by_child: dict[tuple[int, int], SpanInfo] = {}
        # What the in-process sensor reported (connections, lookups, opens), as
        # (value, time, span) under a key naming the agent pid and what a kernel event is looked
        # up by; and every record's key, oldest first, for the bound on them all.
        self._records: dict[tuple[Any, ...], collections.deque[tuple[Any, int, SpanInfo]]] = {}
        self._record_order: collections.deque[tuple[tuple[Any, ...], tuple[Any, int, SpanInfo]]] = \
            collections.deque()
        self._pending: dict[int, collections.deque[KernelEvent]] = {}
        self._forced: list[KernelEvent] = []
        # Whether a process lives in a pid namespace below ours (cached per parent process).
        self._namespaced: dict[int, bool] = {}
        self._own_depth = len(procfs.read_nspid(os.getpid()) or [0])
        self.pending_count = 0
        self.counters = {
            "correlated": 0, "unattributed": 0, "ambiguous": 0, "pending_expired": 0,
            "pending_forced": 0, "spans_evicted": 0, "processes_evicted": 0,
            "agents_replaced": 0, "agents_evicted": 0, "spans_unindexed": 0,
            "library_records_evicted": 0,
        }

    # -- agents and spans ------------------------------------------------------------------

    def register_agent(self, pid: int, service: str | None,
                       namespaced: bool = False) -> AgentInfo | None:
        """Note an agent process (``service`` unknown: a watched root that may send spans);
        returns it when it is new: never seen, or on a pid another agent had before."""
        stat = procfs.read_stat(pid)
        start_ticks = stat.start_ticks if stat is not None else None
        agent = self.agents.get(pid)
        if agent is not None:
            if not agent.is_other_process(start_ticks):
                if service and not agent.service:
                    agent.service = service
                agent.namespaced = agent.namespaced or namespaced
                return None
            # The pid was handed out again: what waits for the old agent is resolved with what
            # is known of it, and nothing of it is joined to the new one.
            self.counters["agents_replaced"] += 1
            until = agent.exited_ns
            if until is None and start_ticks is not None:
                until = AgentInfo(pid, None, 0, start_ticks=start_ticks).started_ns()
            self._forget_agent(agent, until)
        markers = procfs.read_environ_markers(pid) or {}
        agent = AgentInfo(pid, service, time.time_ns(),
                          own_traceparent=procfs.parse_traceparent(markers.get(names.ENV_TRACEPARENT)),
                          namespaced=namespaced, start_ticks=start_ticks)
        self.agents[pid] = agent
        if start_ticks is None:
            # Gone before its spans were read (they were its last): kept as long as one that
            # exited under watch.
            self._exited_now(agent, time.time_ns())
        self._bound_agents()
        proc = self.procs.get(pid)
        if proc is not None and proc.exited_ns is None:
            # The agent was first seen as a process below another watched root (a launcher,
            # a container's init): it and its own descendants are the new agent's from now on,
            # and what of theirs waits under the old root is moved over.
            previous = proc.agent_pid
            proc.agent_pid = pid
            below = set(self.descendants_of(pid, 0))
            for child in below:
                self.procs[child].agent_pid = pid
            if previous is not None and previous != pid and previous in self._pending:
                mine = collections.deque(e for e in self._pending[previous]
                                         if e.pid == pid or e.pid in below)
                if mine:
                    self._pending[previous] = collections.deque(
                        e for e in self._pending[previous] if e.pid != pid and e.pid not in below)
                    for event in mine:
                        event.agent_pid = pid
                    self._pending.setdefault(pid, collections.deque()).extend(mine)
        return agent

    def _exited_now(self, agent: AgentInfo, ts_ns: int) -> None:
        """Note that ``agent``'s process is gone; it is forgotten a hold window from now."""
        if agent.exited_ns is None:
            agent.exited_ns = ts_ns
        self._exited.append((time.monotonic() + self.hold_seconds, agent))

    def _bound_agents(self) -> None:
        """At most ``max_agents``: those gone longest are forgotten first, then the oldest."""
        while len(self.agents) > self.max_agents:
            if self._exited:
                _, agent = self._exited.popleft()
            else:
                agent = next(iter(self.agents.values()))
            if self.agents.get(agent.pid) is agent:
                self.counters["agents_evicted"] += 1
                self._forget_agent(agent, None)

    def _forget_agent(self, agent: AgentInfo, until_ns: int | None) -> None:
        """Drop an agent whose process is gone: its events still waiting (those up to
        ``until_ns``, all when ``None``) are resolved with what is known, then its indexes go."""
        pid = agent.pid
        queue = self._pending.get(pid)
        if queue:
            still: collections.deque[KernelEvent] = collections.deque()
            for event in queue:
                if until_ns is not None and event.ts_ns > until_ns:
                    still.append(event)
                    continue
                self._finish(event, self._resolve(event, event.pid, event.tid, event.ts_ns, True, 0)
                             or UNATTRIBUTED)
                self._forced.append(event)
            self.pending_count -= len(queue) - len(still)
            if still:
                self._pending[pid] = still
            else:
                del self._pending[pid]
        elif queue is not None:
            del self._pending[pid]
        self._tools.pop(pid, None)
        self._invocations.pop(pid, None)
        for key in [key for key in self._by_child if key[0] == pid]:
            del self._by_child[key]
        for key in [key for key in self._records if key[1] == pid]:
            del self._records[key]
        self._namespaced.pop(pid, None)
        if self.agents.get(pid) is agent:
            del self.agents[pid]

    def add_spans(self, spans: Iterable[SpanInfo]) -> list[KernelEvent]:
        """Index spans; returns the waiting events they resolve."""
        touched: set[int] = set()
        for span in spans:
            try:
                self._index(span)
            except Exception as exc:
                # One span that cannot be indexed is left out; the others still join.
                self.counters["spans_unindexed"] += 1
                internal_error("collector span index", exc)
                continue
            if span.pid is not None:
                touched.add(span.pid)
        resolved: list[KernelEvent] = []
        for pid in touched:
            resolved.extend(self._retry(pid))
        return resolved

    def _index(self, span: SpanInfo) -> None:
        key = span_key(span)
        # A span of no agent on this node joins no kernel event; one already known (a sender's
        # retry) is kept as it was.
        if key is None or key in self.spans:
            return
        self.spans[key] = span
        if len(self.spans) > self.max_spans:
            self._evict(self.spans.popitem(last=False)[1])
        pid = key[0]
        agent = self.agents.get(pid)
        if agent is not None and (span.child_pids or any(
                name in _LIBRARY_RECORDS for name, _, _ in span.events)):
            agent.library_sensor = True
        for child in span.child_pids:
            self._by_child[(pid, child)] = span
        for name, ts_ns, attrs in span.events:
            if name in names.LIBRARY_CONNECT_EVENTS:
                address = attrs.get(names.NETWORK_PEER_ADDRESS)
                port = attrs.get(names.NETWORK_PEER_PORT)
                if isinstance(address, str) and isinstance(port, int):
                    # A host name resolved inside connect() names no address: any address on
                    # that port may be it.
                    where = address if _is_ip(address) else "*"
                    self._record(("connect", pid, port, _canonical_ip(where)), address, ts_ns,
                                 span)
                hostname = attrs.get(names.SERVER_ADDRESS)
                if isinstance(hostname, str) and hostname:
                    # ... and its lookup has no record of its own.
                    self._record(("dns", pid, _dns_name(hostname)), hostname, ts_ns, span)
            elif name in names.LIBRARY_DNS_EVENTS:
                query = attrs.get(names.DNS_QUESTION_NAME)
                if isinstance(query, str) and query:
                    self._record(("dns", pid, _dns_name(query)), query, ts_ns, span)
            elif name in names.LIBRARY_OPEN_EVENTS:
                path = attrs.get(names.FILE_PATH)
                if isinstance(path, str) and path:
                    self._record(("open", pid, posixpath.basename(path)),
                                 (path, bool(attrs.get(names.AG_OPEN_WRITE))), ts_ns, span)
        if span.is_tool:
            tid = span.tid or 0
            self._tools.setdefault(pid, {}).setdefault(tid, []).append(span)
        elif span.operation == "invoke_agent":
            self._invocations.setdefault(pid, []).append(span)

    def _record(self, key: tuple[Any, ...], value: Any, ts_ns: int, span: SpanInfo) -> None:
        """Keep one record of the in-process sensor; past the bound the oldest goes."""
        record = (value, ts_ns, span)
        entries = self._records.get(key)
        if entries is None:
            entries = self._records[key] = collections.deque(maxlen=_MAX_RECORDS_PER_KEY)
        entries.append(record)
        order = self._record_order
        order.append((key, record))
        if len(order) > self.max_library_records:
            old_key, old = order.popleft()
            entries = self._records.get(old_key)
            # Its agent may have been forgotten (and the pid's records with it) meanwhile.
            if entries and entries[0] is old:
                entries.popleft()
                if not entries:
                    del self._records[old_key]
            self.counters["library_records_evicted"] += 1

    def _evict(self, span: SpanInfo) -> None:
        self.counters["spans_evicted"] += 1
        pid = span.pid
        if pid is None:
            return
        threads = self._tools.get(pid)
        if threads is not None:
            spans = threads.get(span.tid or 0)
            if spans and span in spans:
                spans.remove(span)
        invocations = self._invocations.get(pid)
        if invocations and span in invocations:
            invocations.remove(span)
        for child in span.child_pids:
            if self._by_child.get((pid, child)) is span:
                del self._by_child[(pid, child)]

    def span_for(self, event: KernelEvent) -> SpanInfo | None:
        """The span an event was joined to, as its own agent sent it (``None``: none, or not
        one of its agent's spans)."""
        attribution = event.attribution
        if event.agent_pid is None or attribution.trace_id is None or attribution.span_id is None:
            return None
        return self.spans.get((event.agent_pid, attribution.trace_id, attribution.span_id))

    # -- kernel events ---------------------------------------------------------------------

    def observe(self, event: KernelEvent) -> list[KernelEvent]:
        """Take one kernel event; returns the events resolved now (it, or none while it waits)."""
        self._track(event)
        if event.kind in (GAP, LOST):
            return [event]
        return self._try(event, final=False)

    def _track(self, event: KernelEvent) -> None:
        kind = event.kind
        if kind == FORK:
            child = int(event.data.get("child_pid", 0))
            parent = self.procs.get(event.pid)
            agent_pid = event.pid if event.pid in self.agents else (
                parent.agent_pid if parent is not None else None)
            forked = ProcInfo(child, event.pid, event.ts_ns, fork_tid=event.tid,
                              exe=parent.exe if parent else None,
                              argv=list(parent.argv) if parent else [], agent_pid=agent_pid)
            forked.agent_view_pid = self._agent_view(event.pid, child)
            self._put(forked)
        elif kind == EXEC:
            data = event.data
            known = self.procs.get(event.pid)
            if known is not None and known.exited_ns is None:
                proc = known
            else:
                ppid = data.get("ppid")
                parent = self.procs.get(ppid) if isinstance(ppid, int) else None
                agent_pid = ppid if ppid in self.agents else (parent.agent_pid if parent else None)
                proc = ProcInfo(event.pid, ppid if isinstance(ppid, int) else None, event.ts_ns,
                                agent_pid=agent_pid)
                self._put(proc)
            if isinstance(data.get("ns_pid"), int):
                proc.agent_view_pid = data["ns_pid"]
            elif proc.agent_view_pid is None:
                proc.agent_view_pid = self._agent_view(proc.ppid, event.pid)
            proc.exe = data.get("exe")
            proc.argv = list(data.get("argv") or [])
            markers = data.get("env") or {}
            proc.markers = dict(markers)
            traceparent = procfs.parse_traceparent(markers.get(names.ENV_TRACEPARENT))
            agent = self.agents.get(proc.agent_pid) if proc.agent_pid is not None else None
            if traceparent is not None and (agent is None or traceparent != agent.own_traceparent):
                proc.traceparent = traceparent
        elif kind == EXIT:
            exited = self.procs.get(event.pid)
            if exited is not None:
                exited.exited_ns = event.ts_ns
            agent = self.agents.get(event.pid)
            if agent is not None and agent.exited_ns is None:
                self._exited_now(agent, event.ts_ns)
        if event.pid in self.agents:
            event.agent_pid = event.pid
        else:
            own = self.procs.get(event.pid)
            event.agent_pid = own.agent_pid if own is not None else None

    def _agent_view(self, parent: int | None, pid: int) -> int | None:
        """``pid`` as its parent's namespace sees it (the agent records its children's pids as
        its own pid namespace numbers them), ``None`` when it cannot be read yet. Read while the
        process is new, as it may be gone by the time the agent's spans arrive."""
        if parent is None:
            return pid
        namespaced = self._namespaced.get(parent)
        if namespaced is None:
            levels = procfs.read_nspid(parent)
            namespaced = levels is not None and len(levels) > self._own_depth
            self._namespaced[parent] = namespaced
            if len(self._namespaced) > 4096:
                self._namespaced.pop(next(iter(self._namespaced)))
        if not namespaced:
            return pid
        # A task announced at fork may not be in /proc yet; its exec tries again.
        levels = procfs.read_nspid(pid)
        return levels[-1] if levels else None

    def agent_tid(self, agent: AgentInfo, tid: int) -> int:
        """A kernel thread id as the agent's spans name it (translated once per thread)."""
        if not agent.namespaced or not tid:
            return tid
        known = agent.thread_ids.get(tid)
        if known is None:
            levels = procfs.read_nspid(agent.pid, tid)
            known = levels[-1] if levels else tid
            if len(agent.thread_ids) < 4096:
                agent.thread_ids[tid] = known
        return known

    def _recorded_child(self, agent_pid: int | None, pid: int) -> SpanInfo | None:
        if agent_pid is None:
            return None
        proc = self.procs.get(pid)
        view = pid
        if proc is not None:
            if proc.agent_view_pid is None:
                proc.agent_view_pid = self._agent_view(proc.ppid, pid)
            view = proc.agent_view_pid or pid
        return self._by_child.get((agent_pid, view))

    def _put(self, proc: ProcInfo) -> None:
        self.procs[proc.pid] = proc
        self.procs.move_to_end(proc.pid)
        while len(self.procs) > self.max_processes:
            self.procs.popitem(last=False)
            self.counters["processes_evicted"] += 1

    def _try(self, event: KernelEvent, *, final: bool) -> list[KernelEvent]:
        attribution = self._resolution(event, final)
        if attribution is None:
            queue = self._pending.get(event.agent_pid or 0)
            if queue is None or len(queue) < self.max_pending_per_agent:
                self._wait(event)
                return []
            # A watched tree that floods without sending spans (or far faster than its spans
            # come) does not hold the others' room: its events are resolved now.
            self.counters["pending_forced"] += 1
            attribution = self._resolve(event, event.pid, event.tid, event.ts_ns, True, 0) \
                or UNATTRIBUTED
        self._finish(event, attribution)
        return [event]

    def _wait(self, event: KernelEvent) -> None:
        event.deadline = time.monotonic() + self.hold_seconds
        key = event.agent_pid or 0
        self._pending.setdefault(key, collections.deque()).append(event)
        self.pending_count += 1
        if self.pending_count > self.max_pending:
            # Full: the oldest waiting event is resolved with what is known now.
            oldest_key = min(self._pending, key=lambda k: self._pending[k][0].deadline
                             if self._pending[k] else float("inf"))
            queue = self._pending[oldest_key]
            victim = queue.popleft()
            if not queue:
                del self._pending[oldest_key]
            self.pending_count -= 1
            self.counters["pending_forced"] += 1
            self._finish(victim, self._resolve(victim, victim.pid, victim.tid, victim.ts_ns, True, 0)
                         or UNATTRIBUTED)
            self._forced.append(victim)

    def take_forced(self) -> list[KernelEvent]:
        """Events resolved early because the waiting room was full."""
        forced, self._forced = self._forced, []
        return forced

    def _retry(self, agent_pid: int) -> list[KernelEvent]:
        queue = self._pending.get(agent_pid)
        if not queue:
            return []
        resolved: list[KernelEvent] = []
        still: collections.deque[KernelEvent] = collections.deque()
        for event in queue:
            attribution = self._resolution(event, False)
            if attribution is None:
                still.append(event)
            else:
                self._finish(event, attribution)
                resolved.append(event)
        self.pending_count -= len(queue) - len(still)
        # An agent's queue goes once empty: one kept per agent ever seen would grow with every
        # agent pid and slow the search for the oldest waiting event when the room is full.
        if still:
            self._pending[agent_pid] = still
        else:
            del self._pending[agent_pid]
        return resolved

    def expire(self, now: float | None = None, *, everything: bool = False) -> list[KernelEvent]:
        """Resolve waiting events whose time is up (all of them at shutdown)."""
        now = time.monotonic() if now is None else now
        resolved: list[KernelEvent] = []
        exited = self._exited
        while exited and exited[0][0] <= now:
            _, agent = exited.popleft()
            if self.agents.get(agent.pid) is agent:
                self.counters["agents_evicted"] += 1
                self._forget_agent(agent, None)
        if self._forced:
            resolved.extend(self.take_forced())
        emptied: list[int] = []
        for key, queue in self._pending.items():
            while queue and (everything or queue[0].deadline <= now):
                event = queue.popleft()
                self.pending_count -= 1
                self.counters["pending_expired"] += 1
                attribution = self._resolve(event, event.pid, event.tid, event.ts_ns, True, 0)
                self._finish(event, attribution or UNATTRIBUTED)
                resolved.append(event)
            if not queue:
                emptied.append(key)
        for key in emptied:
            del self._pending[key]
        return resolved

    def _finish(self, event: KernelEvent, attribution: Attribution) -> None:
        event.attribution = attribution
        if attribution.method == "ambiguous":
            self.counters["ambiguous"] += 1
        elif attribution.attributed:
            self.counters["correlated"] += 1
        else:
            self.counters["unattributed"] += 1
        event.seen_by_library = self._seen_by_library(event, attribution)

    # -- resolution ------------------------------------------------------------------------

    def _resolution(self, event: KernelEvent, final: bool) -> Attribution | None:
        """The attribution, or ``None`` to keep waiting: for the span, or for its details (a
        child's TRACEPARENT names its span before the span itself arrives; the conversation,
        turn and tool it carries are needed to judge the event)."""
        attribution = self._resolve(event, event.pid, event.tid, event.ts_ns, final, 0)
        if attribution is None or final or attribution.span_id is None or event.agent_pid is None:
            # An event outside every agent's tree has no agent whose span could give details.
            return attribution
        return attribution if self.span_for_attribution(event.agent_pid, attribution) else None

    def span_for_attribution(self, agent_pid: int, attribution: Attribution) -> SpanInfo | None:
        if attribution.trace_id is None or attribution.span_id is None:
            return None
        return self.spans.get((agent_pid, attribution.trace_id, attribution.span_id))

    def _resolve(self, event: KernelEvent | None, pid: int, tid: int, ts_ns: int, final: bool,
                 depth: int) -> Attribution | None:
        """The span for an act of ``pid``/``tid`` at ``ts_ns``; ``None`` while it may still come."""
        if depth > _MAX_DEPTH:
            return UNATTRIBUTED
        if pid in self.agents:
            if event is not None and event.kind in (SENT, EXIT):
                # Per-second byte totals and the agent's own exit belong to no single tool call.
                return UNATTRIBUTED
            return self._in_agent(event, pid, tid, ts_ns, final)
        proc = self.procs.get(pid)
        if proc is None:
            return UNATTRIBUTED
        if proc.resolved is not None:
            return proc.resolved
        span = self._recorded_child(proc.agent_pid, pid)
        if span is not None and span.start_ns - self.slack_ns <= proc.start_ns:
            proc.resolved = Attribution("child_pid", span.trace_id, span.span_id)
            return proc.resolved
        if proc.traceparent is not None:
            proc.resolved = Attribution("traceparent", *proc.traceparent)
            return proc.resolved
        if proc.ppid is None or (proc.ppid not in self.agents and proc.ppid not in self.procs):
            return UNATTRIBUTED
        parent = self._resolve(None, proc.ppid, proc.fork_tid, proc.start_ns, final, depth + 1)
        if parent is None:
            return None
        attribution = parent.inherited()
        if attribution.attributed or final:
            proc.resolved = attribution
        return attribution

    def _in_agent(self, event: KernelEvent | None, pid: int, tid: int, ts_ns: int,
                  final: bool) -> Attribution | None:
        threads = self._tools.get(pid, {})
        agent = self.agents.get(pid)
        if agent is not None:
            tid = self.agent_tid(agent, tid)
        spans = threads.get(tid, []) if tid else [s for group in threads.values() for s in group]
        slack = self.slack_ns
        # Clocks of agent and kernel agree to well under the slack; it only counts when no span
        # covers the moment exactly (two back-to-back tool calls must not both claim it).
        candidates = [span for span in spans if span.covers(ts_ns)] or \
            [span for span in spans if span.covers(ts_ns, slack)]
        method = "thread" if tid else "time"
        if event is not None and event.kind == FORK:
            recorded = self._recorded_child(pid, int(event.data.get("child_pid", 0)))
            if recorded is not None:
                return Attribution("child_pid", recorded.trace_id, recorded.span_id)
        if not candidates:
            if not final:
                return None
            invocations = [span for span in self._invocations.get(pid, ())
                           if span.covers(ts_ns, slack)]
            if invocations:
                inner = max(invocations, key=lambda span: span.start_ns)
                return Attribution("agent", inner.trace_id, inner.span_id)
            return UNATTRIBUTED
        if len(candidates) == 1:
            only = candidates[0]
            return Attribution(method, only.trace_id, only.span_id)  # type: ignore[arg-type]
        candidates.sort(key=lambda span: (span.start_ns, -span.end_ns))
        nested = all(inner.start_ns >= outer.start_ns and inner.end_ns <= outer.end_ns
                     for outer, inner in itertools.pairwise(candidates))
        if nested:
            inner = candidates[-1]
            return Attribution(method, inner.trace_id, inner.span_id)  # type: ignore[arg-type]
        # Several tool calls interleaved on one thread (asyncio): the in-process sensor's own
        # record of the act decides; without one the event is reported as ambiguous.
        if event is not None and event.kind == CONNECT:
            recorded_spans = [span for span in candidates
                              if self._library_saw(event, frozenset({span_key(span)}))]
            if len(recorded_spans) == 1:
                return Attribution(method, recorded_spans[0].trace_id,  # type: ignore[arg-type]
                                   recorded_spans[0].span_id)
        traces = {span.trace_id for span in candidates}
        return Attribution("ambiguous", traces.pop() if len(traces) == 1 else None, None,
                           tuple(span.span_id for span in candidates))

    def _seen_by_library(self, event: KernelEvent, attribution: Attribution) -> bool | None:
        """Whether the in-process sensor reported this act; ``None`` when it cannot know."""
        if event.kind not in (EXEC, FORK, CONNECT, DNS, OPEN):
            return None
        agent_pid = event.agent_pid
        if agent_pid is None:
            return None
        agent = self.agents.get(agent_pid)
        if event.pid != agent_pid:
            proc = self.procs.get(event.pid)
            # The library sees the processes its agent starts, never what they do inside.
            if event.kind == EXEC and proc is not None and proc.ppid == agent_pid:
                if self._recorded_child(agent_pid, event.pid) is not None or proc.markers:
                    return True
                return False if agent is not None and agent.library_sensor else None
            return False
        if agent is None or not agent.library_sensor:
            return None
        if event.kind == FORK:
            return self._recorded_child(agent_pid, int(event.data.get("child_pid", 0))) is not None
        if event.kind == EXEC:
            # The agent process itself ran a new program: the library records that as a spawn
            # on the span it happened in.
            span = self.span_for_attribution(agent_pid, attribution)
            if span is None:
                return None
            return any(name in names.LIBRARY_EXEC_EVENTS for name, _, _ in span.events)
        return self._library_saw(event, self._tool_calls_of(agent_pid, attribution))

    def _tool_calls_of(self, agent_pid: int, attribution: Attribution) -> frozenset[Any]:
        """The tool calls an act of the agent process belongs to: the tool span it was joined
        to, the candidates of an ambiguous one, or none (``{None}``: outside every tool call as
        far as the kernel can tell, e.g. a thread the tool's span does not name)."""
        if attribution.method == "ambiguous":
            trace_id = attribution.trace_id
            if trace_id is not None:
                calls = {(agent_pid, trace_id, span_id) for span_id in attribution.candidates}
            else:
                # Candidates of several traces: found among the agent's tool spans.
                calls = {(agent_pid, span.trace_id, span.span_id)
                         for spans in self._tools.get(agent_pid, {}).values() for span in spans
                         if span.span_id in attribution.candidates}
            return frozenset(calls) if calls else frozenset({None})
        span = self.span_for_attribution(agent_pid, attribution)
        if span is not None and span.is_tool:
            return frozenset({span_key(span)})
        return frozenset({None})

    def _tool_call(self, span: SpanInfo) -> SpanKey | None:
        """The tool span ``span`` is part of (itself, or its nearest tool ancestor)."""
        current: SpanInfo | None = span
        for _ in range(_MAX_TOOL_DEPTH):
            if current is None:
                return None
            if current.is_tool:
                return span_key(current)
            if current.parent_span_id is None or current.pid is None:
                return None
            current = self.spans.get((current.pid, current.trace_id, current.parent_span_id))
        return None

    def _library_saw(self, event: KernelEvent, tool_calls: frozenset[Any]) -> bool:
        """Whether the in-process sensor reported this very act: the same peer, name or file,
        recorded no later than the act, on a span open at the time, in the same tool call.

        A record of the same peer in another tool call (an earlier, legitimate one) does not
        count: an attacker's tool could otherwise hide a native connection behind it. An act
        outside every tool call (``tool_calls`` is ``{None}``) counts as seen by a record on any
        span of its agent open at that moment, as the kernel cannot tell which call a thread
        the spans do not name worked for. A polling sensor's time is when it looked, so its
        events are matched by time alone, over the poll's window.
        """
        coarse = event.source in _COARSE_SOURCES
        slack = self.slack_ns
        before = self.coarse_ns if coarse else slack
        ts = event.ts_ns
        pid = event.pid
        d = event.data
        keys: list[tuple[Any, ...]] = []
        if event.kind == CONNECT:
            port = d.get("port")
            address = _canonical_ip(str(d.get("address")))
            keys = [("connect", pid, port, address), ("connect", pid, port, "*")]
        elif event.kind == DNS:
            query = d.get("query")
            if not isinstance(query, str) or not query:
                return False
            name = _dns_name(query)
            keys = [("dns", pid, name)]
            for domain in self._search_domains(pid):
                if name.endswith("." + domain):
                    keys.append(("dns", pid, name[:-len(domain) - 1]))
        elif event.kind == OPEN:
            path = d.get("path")
            if not isinstance(path, str) or not path:
                return False
            keys = [("open", pid, posixpath.basename(posixpath.normpath(path)))]
        else:
            return False
        for key in keys:
            for value, recorded_ns, span in reversed(self._records.get(key, ())):
                if recorded_ns > ts + slack or span.start_ns - slack > ts or \
                        span.end_ns + before < ts:
                    continue
                if not coarse and None not in tool_calls and self._tool_call(span) not in tool_calls:
                    continue
                if event.kind == OPEN and not _same_file(value, d):
                    continue
                return True
        return False

    def _search_domains(self, pid: int) -> tuple[str, ...]:
        agent = self.agents.get(pid)
        if agent is None:
            return ()
        if agent.search_domains is None:
            agent.search_domains = _read_search_domains(pid)
        return agent.search_domains

    # -- introspection ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "pending": self.pending_count, "agents": len(self.agents),
                "processes": len(self.procs), "spans_indexed": len(self.spans)}

    def descendants_of(self, pid: int, since_ns: int) -> list[int]:
        """Known processes forked from ``pid`` (at any depth) since ``since_ns``."""
        children: dict[int, list[int]] = {}
        for proc in self.procs.values():
            if proc.ppid is not None and proc.start_ns >= since_ns:
                children.setdefault(proc.ppid, []).append(proc.pid)
        found: list[int] = []
        # A reused pid can close a loop (a process forks a child, exits, and its pid goes to a
        # process that child forks): each process is visited once.
        seen = {pid}
        stack = [pid]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    stack.append(child)
        return found

    def forget_proc_resolution(self, pids: Iterable[int]) -> None:
        for pid in pids:
            proc = self.procs.get(pid)
            if proc is not None and proc.resolved is not None and not proc.resolved.attributed:
                proc.resolved = None



def _canonical_ip(text: str) -> str:
    """An address as one spelling (IPv4-mapped IPv6 as IPv4, IPv6 compressed); other text as is."""
    address = _address(text)
    return text if address is None else str(address)


def _dns_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _same_file(recorded: tuple[str, bool], data: dict[str, Any]) -> bool:
    """Whether a file open the library recorded (absolute path, write) is the kernel's: the same
    path, or one ending in the kernel's relative path; a write needs a recorded write."""
    path, write = recorded
    if data.get("write") and not write:
        return False
    opened = posixpath.normpath(str(data.get("path")))
    if opened.startswith("/"):
        return path == opened
    if opened.startswith(".."):
        # Relative to a parent directory: which one is not known here; the name decides.
        return posixpath.basename(path) == posixpath.basename(opened)
    return path.endswith("/" + opened)


def _read_search_domains(pid: int) -> tuple[str, ...]:
    """The ``search`` (or ``domain``) list of a process's resolver configuration, as its own
    file system has it; empty when it cannot be read."""
    try:
        with open(f"/proc/{pid}/root/etc/resolv.conf", "rb") as handle:
            raw = handle.read(_RESOLV_CONF_BYTES)
    except OSError:
        return ()
    domains: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if fields and fields[0] in ("search", "domain"):
            # The last search or domain line wins (resolv.conf(5)).
            domains = [_dns_name(field) for field in fields[1:7] if field.strip(".")]
    return tuple(domains)


def _address(text: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a sensor reported it, an IPv4-mapped IPv6 address as the IPv4 one."""
    if not isinstance(text, str):
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class OwnEndpoints:
    """Where the collector's OTLP receiver listens: a connection there is an agent exporting its
    spans to us, not an act worth recording. Only the address and port together say so: the
    same port number on any other host is an ordinary (possibly exfiltrating) connection.

    A listener bound to one address owns that address; one bound to ``0.0.0.0`` owns every IPv4
    address of this host (loopback included) and one bound to ``::`` every address of either
    family. The host's addresses are read from ``/proc`` and read again after a while, as they
    change (DHCP, interfaces coming up).
    """

    def __init__(self, listeners: Iterable[tuple[str, int]], *, refresh_seconds: float = 10.0,
                 max_addresses: int = 4096) -> None:
        self.refresh_seconds = refresh_seconds
        self.max_addresses = max_addresses
        self._exact: set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = set()
        # Port → the address families a wildcard listener on it accepts (4, 6).
        self._wildcard: dict[int, set[int]] = {}
        for host, port in listeners:
            if not port:
                continue
            for address in self._resolve(host):
                if address.is_unspecified:
                    families = {4, 6} if address.version == 6 else {4}
                    self._wildcard.setdefault(port, set()).update(families)
                else:
                    self._exact.add((address, port))
        self.ports = frozenset({port for _, port in self._exact} | set(self._wildcard))
        self._local: frozenset[str] = frozenset()
        self._local_until = 0.0

    @staticmethod
    def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        address = _address(host.strip("[]"))
        if address is not None:
            return [address]
        import socket

        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return []
        found = [_address(str(info[4][0])) for info in infos]
        return [address for address in found if address is not None]

    def owns(self, address: object, port: int | None) -> bool:
        """Whether a connection to ``address``:``port`` reaches the receiver."""
        if port not in self.ports:
            return False
        destination = _address(address)
        if destination is None:
            return False
        if destination.is_unspecified:
            # Linux delivers a connection to 0.0.0.0 or :: to the host itself, over loopback.
            destination = ipaddress.ip_address("127.0.0.1" if destination.version == 4 else "::1")
        if (destination, port) in self._exact:
            return True
        families = self._wildcard.get(port)
        if not families or destination.version not in families:
            return False
        return destination.is_loopback or str(destination) in self._local_addresses()

    def _local_addresses(self) -> frozenset[str]:
        now = time.monotonic()
        if now >= self._local_until:
            found = procfs.local_addresses(os.getpid())
            self._local = frozenset(sorted(found)[:self.max_addresses])
            self._local_until = now + self.refresh_seconds
        return self._local
