"""The collector: kernel sensor + OTLP receiver → correlation → judgement → store and forwarding.

Threads: the sensor's reader, the receiver's servers, the forwarder, a discovery scanner, and one
core thread that owns the correlator, the judge and the database. Everything reaches the core
through one bounded queue that never blocks its producers (a full queue drops and counts).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agentguard._errors import internal_error, internal_error_counts
from agentguard.collector import _names as names
from agentguard.collector import procfs
from agentguard.collector.correlate import AgentInfo, Correlator, OwnEndpoints, SpanKey
from agentguard.collector.forward import AgentResources, ResourceKey
from agentguard.collector.judge import Judge
from agentguard.collector.model import CONNECT, FORK, GAP, LOST, Attribution, KernelEvent, SpanInfo
from agentguard.collector.otlp import (
    ExportRequest,
    kernel_event_span,
    resource_pid,
    span_event,
    span_infos,
)
from agentguard.collector.peers import Connection, Sender, SenderVerifier
from agentguard.collector.sensor import Sensor, WatchSet, ebpf_unavailable_reason
from agentguard.collector.settings import CollectorSettings
from agentguard.collector.store import AgentProcess, Store, StoredFinding

__all__ = ["Collector", "CollectorError", "tune_gc"]

logger = logging.getLogger("agentguard.collector")

_BATCH = 4096
# Kernel events waiting to ride on their span when it is forwarded: spans, events per span and
# events in all (an event whose span never comes, e.g. one a forged TRACEPARENT names, must not
# hold memory for ever).
_MAX_ENRICH_SPANS = 20_000
_MAX_EVENTS_PER_SPAN = 256
_MAX_ENRICH_EVENTS = 65_536
_MAX_FORWARDED_IDS = 200_000
_STATUS_EVERY = 1.0
# The longest the core works through its queue before it turns to its periodic work (status,
# expiry of waiting events, retention): under input that never lets the queue empty, that work
# would otherwise wait for ever, and the collector would read as dead to `status`.
_QUEUE_SLICE = 0.5
_PRUNE_EVERY = 60.0
# An agent whose spans came from no process found on this node is looked for again after this
# long, doubled on each miss up to _HOST_PID_RETRY_MAX: its process may not have been visible yet
# (a container still being set up, two candidates until one connects to us), and an answer kept
# for good would leave all its later spans unjoined. Each look walks /proc, hence the backoff.
_HOST_PID_RETRY = 2.0
_HOST_PID_RETRY_MAX = 60.0
_MAX_AGENT_PIDS = 4096
# Processes a request names that a receiver's thread checks for having sent it while it is open
# (the core checks any other it maps a pid to).
_MAX_SENDER_CHECKS = 8
# Looking for an agent's process walks /proc (milliseconds per hundred processes), on the core
# thread. Any sender can name any pid, so the walks get a budget of core time: this share of
# each second, banked up to _LOOKUP_BURST seconds. A pid left unlooked for is looked for again
# with its next request, and counted (agent_lookups_deferred).
_LOOKUP_SHARE = 0.25
_LOOKUP_BURST = 1.0
# The part of a stop's time (at most half) kept for the core to finish the request it is storing,
# and commit, once what it has not reached is given up: a request of max_request_bytes takes the
# core seconds.
_STOP_GRACE = 5.0
# The core commits after this much work (seconds) or this many span requests, not only when its
# queue runs empty: under a backlog that keeps the queue from emptying, everything stored since
# would otherwise sit in one transaction that a kill, or a stop that leaves the core behind, rolls
# back. Measured on a backlog of 200,000 spans, storing costs the same CPU either way.
_COMMIT_EVERY = 0.5
_COMMIT_EVERY_REQUESTS = 64
# The counters that add up to the snapshot's "dropped" (see Collector.snapshot).
_DROPPED_HERE = ("events_dropped", "events_failed", "requests_dropped", "spans_dropped",
                 "spans_rejected", "spans_lost_at_stop", "forward_events_dropped")
_DROPPED_FORWARD = ("forward_dropped", "forward_too_large", "forward_lost_at_stop")
# Lines of the sensor's output it could not read, each an event the collector lost (the kernel's
# own losses, perf-buffer records bpftrace reports, are "lost", apart).
_DROPPED_SENSOR = ("parse_errors",)
# The span name of an agent's runtime AI-BOM (agentguard.aibom._wire.SPAN_NAME).
_AIBOM_SPAN = "agentguard.aibom"
# Environment markers of a process that reports to a collector (set by `agentguard run` and by
# deployments); such processes are watched from their first instruction, not their first span.
DISCOVERY_MARKERS = ("AGENTGUARD_COLLECTOR_ENDPOINT", "AGENTGUARD_AUTO_INSTRUMENT", "AGENTGUARD_WATCH")


def _boot_id() -> str:
    """This boot's id: a process start time (clock ticks since boot) names a process only within
    one boot, and inventories outlive reboots in the store."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read(64).strip() or "unknown"
    except (OSError, ValueError):
        return "unknown"


_BOOT_ID = _boot_id()


class CollectorError(RuntimeError):
    """The collector cannot start as configured."""


def tune_gc() -> None:
    """Garbage-collector settings for the collector process (not for a process embedding it).

    Every kernel event allocates a few objects that live until they are stored, so the default
    threshold (700) runs a young-generation pass every few dozen events and older passes over
    the queue and the correlator's tables often. The startup objects are frozen out of the
    collector's way and the young generation is allowed to grow; measured on the replay benchmark
    this takes about a tenth off the cost of an event.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class _CoreQueue(collections.deque[tuple[str, Any]]):
    """The core thread's input, in order: kernel events, span requests, watches, sync markers.

    Producers append without blocking; only the core thread pops. Span requests are admitted by
    count and by bytes, and what each weighs is kept beside it, in the same order, so its bytes
    are given back when the core takes it. Once closed, requests are refused; once abandoned,
    requests the core takes are dropped and counted instead of handed over.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._weights: collections.deque[tuple[int, int]] = collections.deque()
        self.request_bytes = 0
        self.requests = 0
        self.spans = 0
        self.closed = False
        self.abandoned = False
        self.lost_requests = 0
        self.lost_spans = 0

    def put_request(self, request: ExportRequest, sender: Sender, size: int, *,
                    max_items: int, max_bytes: int) -> str | None:
        """Queue a span request of ``size`` bytes; why it was refused (``stopping``, ``full``,
        ``bytes``), or ``None``. One request is always admitted while no other waits, so a budget
        below ``max_request_bytes`` still lets every request through in turn."""
        spans = sum(len(scope.spans) for resource in request.resource_spans
                    for scope in resource.scope_spans)
        with self._lock:
            if self.closed:
                return "stopping"
            if len(self) >= max_items:
                return "full"
            if self.requests and self.request_bytes + size > max_bytes:
                return "bytes"
            self._weights.append((size, spans))
            self.request_bytes += size
            self.requests += 1
            self.spans += spans
            self.append(("spans", (request, sender)))
        return None

    def popleft(self) -> tuple[str, Any]:
        item = super().popleft()
        if item[0] != "spans":
            return item
        with self._lock:
            size, spans = self._weights.popleft()
            self.request_bytes -= size
            self.requests -= 1
            self.spans -= spans
            if not self.abandoned:
                return item
            self.lost_requests += 1
            self.lost_spans += spans
        # The core takes one item per pop: a dropped request becomes a marker it sets once its
        # batch is stored.
        return ("sync", threading.Event())

    def close(self) -> None:
        """Refuse every request from now on (the collector is stopping)."""
        with self._lock:
            self.closed = True

    def abandon(self) -> None:
        """Drop the requests still waiting as the core reaches them (a stop out of time)."""
        with self._lock:
            self.abandoned = True


def _cgroup_id(value: str | None) -> int:
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    path = value if value.startswith("/") else os.path.join("/sys/fs/cgroup", value)
    try:
        # A cgroup v2 id is the inode number of its directory.
        return os.stat(path).st_ino
    except OSError as exc:
        raise CollectorError(f"watch_cgroup: cannot read {path}: {exc.strerror}") from None


class Collector:
    """One collector instance; ``start()``, then ``stop()`` (or ``run()`` until SIGTERM)."""

    def __init__(self, settings: CollectorSettings, *, metric_readers: Sequence[Any] = (),
                 sensor: Sensor | None = None) -> None:
        self.settings = settings
        self.watches = WatchSet()
        self.correlator = Correlator(
            hold_seconds=settings.hold_seconds, max_pending=settings.max_pending_events,
            # A /proc poll sees an act up to one interval after it happened.
            coarse_ns=int(max(1.0, 2 * settings.poll_interval) * 1e9))
        self._metric_readers = list(metric_readers)
        self._sensor_override = sensor
        self.sensor: Any = None
        self.store: Store | None = None
        self.judge: Judge | None = None
        self.receiver: Any = None
        self.forwarder: Any = None
        self.metrics: Any = None
        self._queue = _CoreQueue()
        # Bytes of span requests the queue may hold (see _CoreQueue.put_request).
        self.max_queue_bytes = settings.max_queue_bytes
        # What the core stored since its last commit (its own; read by a stop for its log).
        self._last_commit = 0.0
        self._uncommitted_requests = 0
        self._uncommitted_spans = 0
        self._stop_lock = threading.Lock()
        self._stop_started = False
        self._stored_all = True
        # Who closes the store: stop, unless the core is still at work when stop gives up on it.
        self._store_lock = threading.Lock()
        self._core_done = False
        self._store_left_to_core = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._core: threading.Thread | None = None
        self._discovery: threading.Thread | None = None
        # Kernel events of a span not forwarded yet, by the span's identity (its agent, trace
        # and span id), and how many there are in all.
        self._enrich: collections.OrderedDict[SpanKey, list[KernelEvent]] = \
            collections.OrderedDict()
        self._enrich_events = 0
        # Forwarded span → its agent's resource key: late kernel events go out under the agent's
        # own resource, remembered once per agent.
        self._forwarded: collections.OrderedDict[SpanKey, ResourceKey] = collections.OrderedDict()
        self._resources = AgentResources()
        self._fallback_reason: str | None = None
        self._switch_to_fallback = threading.Event()
        self._discovered: set[int] = set()
        self._own_ports: frozenset[int] = frozenset()
        # (reported pid, peer address) → (host pid, in a pid namespace of its own); host pid 0:
        # none here. Both bounded by _MAX_AGENT_PIDS, oldest first.
        self._agent_pids: dict[tuple[int, str | None], tuple[int, bool]] = {}
        # Which process sent a request: used on the receiver's threads and the core's.
        self._senders = SenderVerifier()
        # (reported pid, peer address) found nowhere → (when to look again, misses so far).
        self._agent_pid_misses: dict[tuple[int, str | None], tuple[float, int]] = {}
        # Seconds of core time left for walks of /proc, and when it was last topped up.
        self._lookup_budget = _LOOKUP_BURST
        self._lookup_budget_at = time.monotonic()
        self.started_ns = 0
        self.counters = {
            "events": 0, "events_dropped": 0, "events_failed": 0, "spans_received": 0,
            "requests_dropped": 0, "requests_failed": 0,
            "findings": 0, "library_findings": 0, "reattributed": 0, "late_spans_forwarded": 0,
            "late_spans_resource_lost": 0, "forward_events_dropped": 0,
            "discovered": 0, "own_traffic": 0, "spans_dropped": 0, "agents_not_found": 0,
            "agent_lookups_deferred": 0,
            "spans_rejected": 0, "spans_rejected_invalid_id": 0, "spans_rejected_unreadable": 0,
            "requests_over_queue_bytes": 0, "requests_lost_at_stop": 0, "spans_lost_at_stop": 0,
            # Inventory entries stored; inventory spans not verified as sent by the process they
            # name (kept apart as the sender's claims, see Store.add_inventory), and those not
            # kept for want of room.
            "aibom_entries": 0, "aibom_unverified": 0, "aibom_refused": 0,
            # Spans whose process did not hold the connection they came on (see peers).
            "spans_sent_by_other": 0,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Collector:
        settings = self.settings
        self.started_ns = time.time_ns()
        self.store = Store(settings.db)
        try:
            self.judge = Judge(policy=settings.policy, builtin_rules=settings.builtin_rules,
                               profile=settings.profile)
        except Exception as exc:
            raise CollectorError(f"policy: {exc}") from None
        self.sensor = self._sensor_override or self._choose_sensor()
        for pid in settings.watch_pids:
            self.watch(pid)
        from agentguard.collector.receiver import Receiver

        # The receiver binds first (a busy port fails the start before anything else runs); what
        # it accepts waits in the queue until the core thread starts a moment later.
        self.receiver = Receiver(
            self.submit_request,
            grpc_address=None if settings.otlp_grpc == "off" else settings.otlp_grpc,
            http_address=None if settings.otlp_http == "off" else settings.otlp_http,
            token=settings.token, max_request_bytes=settings.max_request_bytes,
            health=self.healthy, request_timeout=settings.request_timeout,
        )
        try:
            self.receiver.start()
        except Exception:
            self.receiver.stop()
            self.store.close()
            raise
        self._own_ports = frozenset(port for port in (self.receiver.grpc_port,
                                                      self.receiver.http_port) if port)
        if settings.forward:
            from agentguard.collector.forward import Forwarder

            self.forwarder = Forwarder(settings.forward, max_queue=settings.forward_queue,
                                       max_queue_bytes=settings.forward_queue_bytes,
                                       max_batch_bytes=settings.forward_max_batch_bytes)
            self.forwarder.start()
        self._core = threading.Thread(target=self._run_core, name="agentguard-collector-core",
                                      daemon=True)
        self._core.start()
        if self.sensor is not None:
            self.sensor.start(self._on_kernel_event)
        if self._metric_readers:
            from agentguard.collector.metrics import CollectorMetrics

            self.metrics = CollectorMetrics(self.snapshot, self._metric_readers)
        else:
            from agentguard.collector.metrics import CollectorMetrics

            self.metrics = CollectorMetrics.for_endpoint(self.snapshot, settings.metrics,
                                                         settings.metrics_interval)
        if settings.discover:
            self._discovery = threading.Thread(target=self._run_discovery, daemon=True,
                                               name="agentguard-collector-discovery")
            self._discovery.start()
        self._announce()
        return self

    def _choose_sensor(self) -> Any:
        settings = self.settings
        if settings.sensor == "none":
            return None
        if settings.sensor in ("auto", "ebpf"):
            reason = ebpf_unavailable_reason(settings.bpftrace)
            if reason is None:
                from agentguard.collector.ebpf import BpftraceSensor

                return BpftraceSensor(
                    self.watches, bpftrace=settings.bpftrace,
                    watch_comm=settings.watch_comm or "",
                    watch_cgroup=_cgroup_id(settings.watch_cgroup),
                    map_keys=settings.watch_map_size,
                    on_failure=self._ebpf_failed if settings.sensor == "auto" else None,
                )
            if settings.sensor == "ebpf":
                raise CollectorError(f"the eBPF sensor cannot run: {reason}")
            self._fallback_reason = reason
            logger.warning("agentguard collector: eBPF sensor unavailable: %s", reason)
        if settings.watch_comm or settings.watch_cgroup:
            logger.warning("agentguard collector: watch_comm/watch_cgroup need the eBPF sensor; "
                           "the /proc sensor ignores them")
        from agentguard.collector.fallback import ProcSensor

        return ProcSensor(self.watches, interval=settings.poll_interval)

    def _ebpf_failed(self, reason: str) -> None:
        self._fallback_reason = f"bpftrace failed to start: {reason}"
        self._switch_to_fallback.set()
        self._wake.set()

    def _announce(self) -> None:
        sensor = self.sensor
        where = ", ".join(f"{name} {address}" for name, address in self.endpoints().items())
        logger.warning("agentguard collector: sensor=%s listening on %s, database %s%s",
                       sensor.name if sensor else "none", where or "nothing", self.settings.db,
                       f", forwarding to {self.settings.forward}" if self.settings.forward else "")
        if sensor is not None and sensor.name != "ebpf":
            logger.warning("agentguard collector: WITHOUT eBPF this collector cannot see: %s",
                           "; ".join(sensor.blind_spots))

    def endpoints(self) -> dict[str, str]:
        receiver = self.receiver
        out: dict[str, str] = {}
        if receiver is None:
            return out
        if receiver.grpc_port:
            out["otlp_grpc"] = f"{receiver.grpc_address.rsplit(':', 1)[0]}:{receiver.grpc_port}"
        if receiver.http_port:
            out["otlp_http"] = f"{receiver.http_address.rsplit(':', 1)[0]}:{receiver.http_port}"
        return out

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the sensor is attached (eBPF) or has polled once (procfs)."""
        sensor = self.sensor
        if sensor is None:
            return True
        waiter = getattr(sensor, "wait_attached", None)
        return bool(waiter(timeout)) if waiter is not None else sensor.healthy

    def healthy(self) -> bool:
        core = self._core
        sensor_ok = self.sensor is None or self.sensor.healthy
        return core is not None and core.is_alive() and sensor_ok

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking input, resolve what is waiting, store and forward it, and close.

        Returns ``False`` when spans already accepted could not all be stored within ``timeout``
        seconds (default: the ``stop_timeout`` setting): requests the core had not reached by then
        are dropped, logged and counted (``requests_lost_at_stop``, ``spans_lost_at_stop``). The
        store is never closed under a core thread still at work: the core closes it when it is
        done.
        """
        if timeout is None:
            timeout = self.settings.stop_timeout
        with self._stop_lock:
            again = self._stop_started
            self._stop_started = True
        if again:
            self._stopped.wait(timeout)
            return self._stored_all
        deadline = time.monotonic() + timeout
        # Refuse new requests first (their senders retry), then close the listeners and the
        # sensor; only then is the core told to finish, so nothing accepted arrives after it.
        self._queue.close()
        if self.receiver is not None:
            self.receiver.stop()
        if self.sensor is not None:
            self.sensor.stop()
        self._stopping.set()
        self._wake.set()
        core = self._core
        if core is not None:
            core.join(max(0.0, deadline - min(_STOP_GRACE, timeout / 2) - time.monotonic()))
            if core.is_alive():
                self._queue.abandon()
                self._wake.set()
                core.join(max(0.0, deadline - time.monotonic()))
        if self.forwarder is not None:
            self.forwarder.stop(timeout=min(5.0, timeout))
        # Counted before the metrics' last export, so the loss is exported too: requests the core
        # has not taken by now are counted as it takes them, so these totals no longer change.
        lost = self._count_loss()
        if self.metrics is not None:
            try:
                self.metrics.shutdown()
            except Exception as exc:
                internal_error("collector metrics shutdown", exc)
        with self._store_lock:
            busy = core is not None and core.is_alive() and not self._core_done
            self._stored_all = self._report_loss(lost, timeout, busy) and not busy
            if busy:
                self._store_left_to_core = True
            elif core is not None:
                self._close_store()
        self._stopped.set()
        return self._stored_all

    def _count_loss(self) -> tuple[int, int]:
        """Count the accepted requests (and their spans) a stop did not store."""
        queue = self._queue
        requests = queue.lost_requests + queue.requests
        spans = queue.lost_spans + queue.spans
        self.counters["requests_lost_at_stop"] = requests
        self.counters["spans_lost_at_stop"] = spans
        return requests, spans

    def _report_loss(self, lost: tuple[int, int], timeout: float, busy: bool) -> bool:
        """Log what a stop did not store; ``True`` if nothing was lost."""
        requests, spans = lost
        if requests:
            logger.error("agentguard collector: %d accepted request(s) (%d spans) were not stored: "
                         "the queue was not drained within the %gs the stop allows",
                         requests, spans, timeout)
        if busy:
            logger.error("agentguard collector: the core thread is still storing after %gs; the "
                         "database is left to it, and a process that exits before it is done "
                         "loses what it stored since its last commit (now %d request(s), %d spans; "
                         "not counted above)", timeout, self._uncommitted_requests,
                         self._uncommitted_spans)
        return not requests

    def _close_store(self) -> None:
        """Record the stop and close the store (the core thread no longer uses it)."""
        if self.store is None:
            return
        try:
            self._write_status("stopped")
            self.store.commit()
        except Exception as exc:
            internal_error("collector final status", exc)
        finally:
            self.store.close()

    def _core_exit(self) -> None:
        """The core thread's last act: it closes the store if a stop gave up waiting for it."""
        with self._store_lock:
            self._core_done = True
            if self._store_left_to_core:
                self._close_store()

    def run(self, *, stop_timeout: float | None = None) -> int:
        """Run until SIGTERM or SIGINT; returns the exit status: 1 when the core thread died or
        when spans already accepted could not all be stored within ``stop_timeout`` (default:
        the setting)."""
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            self.start()
            while not stop.wait(0.5):
                if self._core is not None and not self._core.is_alive():
                    logger.error("agentguard collector: core thread died; stopping")
                    status = 1
                    break
            if not status:
                logger.warning("agentguard collector: stopping")
        finally:
            stored_all = self.stop(stop_timeout)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status if stored_all else 1

    # -- input -----------------------------------------------------------------------------

    def _on_kernel_event(self, event: KernelEvent) -> None:
        if len(self._queue) >= self.settings.queue_size:
            self.counters["events_dropped"] += 1
            return
        self._queue.append(("event", event))
        self.counters["events"] += 1
        # Wake the core for a batch, not for every event (Event.set takes a lock).
        if len(self._queue) >= 256 and not self._wake.is_set():
            self._wake.set()

    def submit_request(self, request: ExportRequest, peer: Connection | str | None = None,
                       size: int = 0) -> bool:
        """The receiver's hand-off, while the request is open (``peer``: the connection it came
        on, or the sender's address alone; ``size``: the bytes of its body after inflation);
        ``False`` tells the sender to retry later: the collector is stopping, or its queue is
        full by count or by bytes (``max_queue_bytes``)."""
        if isinstance(peer, Connection):
            sender = Sender(peer.address, peer)
            try:
                sender.verdicts = self._check_senders(request, peer)
            except Exception as exc:
                # The core asks again for what it needs; the request is not lost for it.
                internal_error("collector sender check", exc)
        else:
            sender = Sender(peer)
        refused = self._queue.put_request(request, sender, size,
                                          max_items=self.settings.queue_size,
                                          max_bytes=self.max_queue_bytes)
        if refused is not None:
            self.counters["requests_dropped"] += 1
            if refused == "bytes":
                self.counters["requests_over_queue_bytes"] += 1
            return False
        self._wake.set()
        return True

    def _check_senders(self, request: ExportRequest,
                       connection: Connection) -> dict[int, bool | None]:
        """Whether each process the request names sent it, told now (on a receiver's thread), while
        the sender waits for the answer and so still holds its end of the connection: the host
        pid the core last mapped a reported pid to from this address, else the reported pid
        itself. The core asks again for a process it maps to that is not here."""
        verdicts: dict[int, bool | None] = {}
        for resource_spans in request.resource_spans:
            reported = resource_pid(resource_spans)
            if reported is None:
                continue
            # Read from the core thread's table without a lock: a lookup of a dict never sees
            # it half changed, and a stale answer only leaves the core to ask again.
            cached = self._agent_pids.get((reported, connection.address))
            host = cached[0] if cached and cached[0] else reported
            if host in verdicts:
                continue
            if len(verdicts) >= _MAX_SENDER_CHECKS:
                break
            verdicts[host] = self._senders.sent_by(connection, host)
        return verdicts

    def _sent_by(self, sender: Sender, host: int) -> bool | None:
        """Whether the process at ``host`` sent the request of ``sender`` (see
        :class:`~agentguard.collector.peers.SenderVerifier`); core thread."""
        if host in sender.verdicts:
            return sender.verdicts[host]
        verdict = None if sender.connection is None else \
            self._senders.sent_by(sender.connection, host)
        sender.verdicts[host] = verdict
        return verdict

    def watch(self, pid: int, reason: str = "option", *, agent: bool = True) -> bool:
        """Watch a process tree (an agent, or a pid named by an option).

        ``agent=False`` says it will send no spans: its events are stored at once instead of
        waiting for spans to join.
        """
        if pid <= 1 or pid == os.getpid() or not os.path.exists(f"/proc/{pid}"):
            return False
        if not self.watches.add(pid):
            return False
        logger.info("agentguard collector: watching pid %d (%s)", pid, reason)
        # A watched root may be an agent whose first spans are still to come: its events wait
        # for them like an agent's.
        if agent:
            self._queue.append(("watch", pid))
        if self.sensor is not None:
            self.sensor.watch(pid)
        return True

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until every event and request handed in so far has been processed and stored."""
        sensor_sync = getattr(self.sensor, "sync", None)
        if sensor_sync is not None:
            sensor_sync(timeout)
        marker = threading.Event()
        self._queue.append(("sync", marker))
        self._wake.set()
        return marker.wait(timeout)

    # -- discovery -------------------------------------------------------------------------

    def _run_discovery(self) -> None:
        interval = self.settings.discover_interval
        while not self._stopping.wait(interval):
            try:
                self._discover_once()
            except Exception as exc:
                internal_error("collector discovery", exc)

    def _discover_once(self) -> None:
        live = set(procfs.iter_pids())
        self._discovered &= live
        fresh = [pid for pid in live - self._discovered][:4096]
        for pid in fresh:
            self._discovered.add(pid)
            if pid in self.correlator.procs or pid in self.correlator.agents:
                continue
            markers = procfs.read_environ_markers(pid)
            if markers and any(key in markers for key in DISCOVERY_MARKERS):
                stat = procfs.read_stat(pid)
                # A child of a watched process is already watched through its parent.
                if stat is not None and (stat.ppid in self.watches.snapshot()
                                         or stat.ppid in self.correlator.procs):
                    continue
                if self.watch(pid, "environment marker"):
                    self.counters["discovered"] += 1

    # -- the core thread -------------------------------------------------------------------

    def _run_core(self) -> None:
        last_status = 0.0
        last_prune = time.monotonic()
        assert self.store is not None
        while True:
            self._wake.wait(0.1)
            self._wake.clear()
            try:
                if self._switch_to_fallback.is_set():
                    self._fall_back()
                self._process_queue()
                now = time.monotonic()
                self._finalize(self.correlator.expire(now))
                if now - last_status >= _STATUS_EVERY:
                    last_status = now
                    self._write_status("running")
                    self.watches.prune_dead()
                if now - last_prune >= _PRUNE_EVERY:
                    last_prune = now
                    self._prune()
                self._commit()
            except Exception as exc:
                internal_error("collector core", exc)
                try:
                    self._commit()
                except Exception as err:
                    internal_error("collector commit", err)
            if self._stopping.is_set() and not self._queue:
                try:
                    self._finalize(self.correlator.expire(everything=True))
                    self._commit()
                except Exception as exc:
                    internal_error("collector drain", exc)
                self._core_exit()
                return

    def _fall_back(self) -> None:
        self._switch_to_fallback.clear()
        old = self.sensor
        if old is None or old.name != "ebpf":
            return
        logger.warning("agentguard collector: falling back to the /proc sensor: %s",
                       self._fallback_reason)
        old.stop()
        from agentguard.collector.fallback import ProcSensor

        self.sensor = ProcSensor(self.watches, interval=self.settings.poll_interval)
        self.sensor.start(self._on_kernel_event)
        self._announce()

    def _process_queue(self) -> None:
        queue = self._queue
        own = self.correlator.own_endpoints
        if own is None and self.receiver is not None:
            # Built once the receiver listens (its ports may have been chosen by the system).
            receiver = self.receiver
            own = self.correlator.own_endpoints = OwnEndpoints(
                (address.rsplit(":", 1)[0], port)
                for address, port in ((receiver.grpc_address, receiver.grpc_port),
                                      (receiver.http_address, receiver.http_port))
                if address and port)
        until = time.monotonic() + _QUEUE_SLICE
        while queue:
            if time.monotonic() >= until:
                # The rest waits for the next pass of the core loop, which starts at once.
                self._wake.set()
                return
            resolved: list[KernelEvent] = []
            markers: list[threading.Event] = []
            for _ in range(min(_BATCH, len(queue))):
                kind, item = queue.popleft()
                if kind == "event":
                    if item.kind == CONNECT and item.data.get("port") in self._own_ports and \
                            own is not None and own.owns(item.data.get("address"),
                                                         item.data.get("port")):
                        # An agent exporting its spans to us is not news; the same port on
                        # another host is.
                        self.counters["own_traffic"] += 1
                        continue
                    try:
                        resolved.extend(self.correlator.observe(item))
                    except Exception as exc:
                        # One event that cannot be taken is lost alone, and counted; the
                        # batch around it (and the sync markers in it) go on.
                        self.counters["events_failed"] += 1
                        internal_error("collector event", exc)
                elif kind == "spans":
                    self._finalize(resolved)
                    resolved = []
                    try:
                        self._handle_spans(*item)
                    except Exception as exc:
                        self.counters["requests_failed"] += 1
                        internal_error("collector span request", exc)
                    self._commit_when_due()
                    if time.monotonic() >= until:
                        break
                elif kind == "watch":
                    try:
                        self.correlator.register_agent(item, None)
                    except Exception as exc:
                        internal_error("collector watch", exc)
                else:
                    markers.append(item)
            resolved.extend(self.correlator.take_forced())
            self._finalize(resolved)
            if markers:
                self._commit()
                for marker in markers:
                    marker.set()
            else:
                self._commit_when_due()

    def _commit(self) -> None:
        """Commit what the core stored (core thread only)."""
        assert self.store is not None
        self.store.commit()
        self._last_commit = time.monotonic()
        self._uncommitted_requests = self._uncommitted_spans = 0

    def _commit_when_due(self) -> None:
        """Commit when the last commit is ``_COMMIT_EVERY`` seconds or ``_COMMIT_EVERY_REQUESTS``
        span requests ago."""
        if self._uncommitted_requests >= _COMMIT_EVERY_REQUESTS or \
                time.monotonic() - self._last_commit >= _COMMIT_EVERY:
            self._commit()

    def _handle_spans(self, request: ExportRequest, sender: Sender) -> None:
        assert self.store is not None
        peer = sender.address
        rejected: dict[str, int] = {}
        spans = list(span_infos(request, rejected))
        self.counters["spans_received"] += len(spans)
        for cause, count in rejected.items():
            # Told to the sender too (partial_success.rejected_spans), for invalid ids.
            self.counters["spans_rejected"] += count
            self.counters[f"spans_rejected_{cause}"] += count
        self._uncommitted_requests += 1
        self._uncommitted_spans += len(spans)
        # Per request: the host pid of each reported one, and the agents looked at already.
        hosts: dict[int, tuple[int, bool] | None] = {}
        seen: set[int] = set()
        kept: list[SpanInfo] = []
        dropped = 0
        for span in spans:
            try:
                if span.pid is not None:
                    reported = span.pid
                    if reported not in hosts:
                        hosts[reported] = self._host_pid(reported, span.service, peer)
                    found = hosts[reported]
                    # From here on a span's pid is the agent's pid on this host (None: not on
                    # this node).
                    span.pid = found[0] if found is not None else None
                    if found is not None and found[0] not in seen:
                        seen.add(found[0])
                        self._agent_sent_spans(found[0], span.service, namespaced=found[1])
                    if found is not None and self._sent_by(sender, found[0]) is False:
                        # Still the agent's span (a relay forwards for it), marked as sent by
                        # another process.
                        span.attributes[names.AG_SENT_BY_OTHER] = True
                        self.counters["spans_sent_by_other"] += 1
            except Exception as exc:
                # A span that cannot be handled is left out alone, counted; its request's
                # other spans go on.
                internal_error("collector span", exc)
                dropped += 1
                continue
            kept.append(span)
        dropped += self.store.add_spans(kept)
        self.counters["spans_dropped"] += dropped
        for span in kept:
            try:
                self._inventories([span], sender)
            except Exception as exc:
                internal_error("collector aibom inventory", exc)
            try:
                self._library_findings([span])
            except Exception as exc:
                internal_error("collector library finding", exc)
        try:
            self._finalize(self.correlator.add_spans(kept))
        except Exception as exc:
            internal_error("collector span correlation", exc)
        for span in kept:
            try:
                self._late_reattribution([span])
            except Exception as exc:
                internal_error("collector late reattribution", exc)
        if self.forwarder is not None:
            self._forward(request, {reported: found[0] for reported, found in hosts.items()
                                    if found is not None}, sender)

    def _agent_sent_spans(self, pid: int, service: str | None, *, namespaced: bool) -> None:
        """Register and watch the agent at host ``pid`` when it is new: never seen, or on a pid
        an agent that is gone had (told apart by the process's start time)."""
        known = self.correlator.agents.get(pid)
        if self.correlator.register_agent(pid, service, namespaced=namespaced) is None:
            return
        if known is not None:
            # The old agent's watch ended with it (or is about to be pruned): watched afresh.
            self.watches.discard(pid)
        self.watch(pid, f"agent {service or '?'} sent spans")

    def _host_pid(self, reported: int, service: str | None,
                  peer: str | None) -> tuple[int, bool] | None:
        """The host pid of the agent that reported ``reported`` from ``peer``, and whether it is
        in a pid namespace of its own (cached; an agent found nowhere is looked for again, with
        backoff, and the walks of /proc are held to a budget of core time)."""
        key = (reported, peer)
        cached = self._agent_pids.get(key)
        # Still the same answer while the process there has the reported pid in its own
        # namespace (a pid handed to a process in another container is not).
        if cached and cached[0] and (procfs.read_nspid(cached[0]) or [0])[-1] == reported:
            return cached
        miss = self._agent_pid_misses.get(key)
        now = time.monotonic()
        if cached is not None and not cached[0] and miss is not None and now < miss[0]:
            return None
        if not self._lookup_allowed(now):
            # Looked for with a later request; its spans here are stored, not joined.
            self.counters["agent_lookups_deferred"] += 1
            return cached if cached and cached[0] else None
        started = time.monotonic()
        found = procfs.host_pid(reported, peer, self._own_ports)
        self._lookup_budget -= time.monotonic() - started
        if found is None and cached and cached[0]:
            # The agent is gone and no other took its place: these are its last spans (an
            # exporter's flush at exit is read after the exit). Its answer stays, so that a new
            # agent on the same pid is found then.
            return cached
        if found is None:
            misses = miss[1] + 1 if miss is not None else 1
            if misses == 1:
                logger.info("agentguard collector: spans of %s (pid %d, from %s) come from no "
                            "process on this node; they are kept, and joined to kernel events "
                            "once the process is found", service or "?", reported, peer or "?")
            delay = min(_HOST_PID_RETRY_MAX, _HOST_PID_RETRY * 2 ** min(misses - 1, 16))
            self._agent_pid_misses[key] = (now + delay, misses)
            self.counters["agents_not_found"] += 1
        else:
            self._agent_pid_misses.pop(key, None)
        self._agent_pids[key] = found if found is not None else (0, False)
        if len(self._agent_pids) > _MAX_AGENT_PIDS:
            self._agent_pids.pop(next(iter(self._agent_pids)))
        if len(self._agent_pid_misses) > _MAX_AGENT_PIDS:
            self._agent_pid_misses.pop(next(iter(self._agent_pid_misses)))
        return found

    def _lookup_allowed(self, now: float) -> bool:
        """Whether the budget of core time for walks of /proc has some left (topped up)."""
        self._lookup_budget = min(_LOOKUP_BURST, self._lookup_budget +
                                  (now - self._lookup_budget_at) * _LOOKUP_SHARE)
        self._lookup_budget_at = now
        return self._lookup_budget > 0

    def _inventories(self, spans: list[SpanInfo], sender: Sender) -> None:
        """Runtime AI-BOM spans (``agentguard.aibom``): merge each into the inventory of the
        process that sent it (the span's pid, already mapped to this host's) when that process
        is verified to have sent it, never into the one the span names; any other sender's
        claim goes to the sender's own namespace (its address)."""
        assert self.store is not None
        for span in spans:
            if span.name != _AIBOM_SPAN or span.parent_span_id is not None:
                continue
            try:
                from agentguard.aibom._wire import decode_span

                decoded = decode_span(span.attributes, span.events, span.service)
                if decoded is None:
                    continue
                # Only the process itself adds to its inventory: a relay's or another local
                # process's report naming it is that sender's claim.
                process = self._agent_process(span.pid) \
                    if span.pid is not None and self._sent_by(sender, span.pid) else None
                if process is None:
                    self.counters["aibom_unverified"] += 1
                stored = self.store.add_inventory(
                    **decoded, process=process,
                    sender=None if process is not None else sender.address)
                if stored is None:
                    self.counters["aibom_refused"] += 1
                else:
                    self.counters["aibom_entries"] += stored
            except Exception as exc:
                internal_error("collector aibom inventory", exc)

    def _agent_process(self, pid: int) -> AgentProcess:
        """The process at host ``pid`` that sent spans: its start as the correlator knows the
        agent (registered from these very spans), else as ``/proc`` has it now."""
        agent = self.correlator.agents.get(pid)
        if agent is not None:
            return AgentProcess(pid, _BOOT_ID, agent.start_ticks, agent.started_ns())
        stat = procfs.read_stat(pid)
        if stat is None:
            return AgentProcess(pid, _BOOT_ID, None)
        now = AgentInfo(pid, None, 0, start_ticks=stat.start_ticks)
        return AgentProcess(pid, _BOOT_ID, stat.start_ticks, now.started_ns())

    def _library_findings(self, spans: list[SpanInfo]) -> None:
        assert self.store is not None
        from agentguard import semconv

        for span in spans:
            for name, ts_ns, attrs in span.events:
                if name != semconv.EVENT_FINDING:
                    continue
                evidence_text = attrs.get("agentguard.finding.evidence")
                try:
                    evidence = json.loads(evidence_text) if isinstance(evidence_text, str) else {}
                    if not isinstance(evidence, dict):
                        evidence = {"value": evidence}
                except (ValueError, RecursionError):
                    # Not JSON, or nested deeper than the decoder goes: kept as the text it is.
                    evidence = {"raw": str(evidence_text)[:2000]}
                finding = StoredFinding(
                    rule_id=str(attrs.get("agentguard.finding.rule_id") or "unknown")[:128],
                    category=_category(attrs.get("agentguard.finding.category")),
                    severity=_severity(attrs.get("agentguard.finding.severity")),
                    title=str(attrs.get("agentguard.finding.title") or "")[:500] or "finding",
                    action="block" if attrs.get("agentguard.finding.action") == "block" else "alert",
                    kind=span.operation or "span", tool=span.tool, agent=span.service,
                    conversation_id=span.conversation_id, turn=span.turn,
                    trace_id=span.trace_id, span_id=span.span_id, evidence=evidence,
                    timestamp=(ts_ns or span.end_ns) / 1e9, source="library",
                )
                if self.store.add_finding(finding) is not None:
                    self.counters["library_findings"] += 1

    def _finalize(self, events: list[KernelEvent]) -> None:
        """Store resolved events, judge them, and queue them for forwarding."""
        if not events:
            return
        assert self.store is not None and self.judge is not None
        try:
            refused = self.store.add_events(events)
        except Exception as exc:
            # The database refused the batch (full disk, I/O error): lost, and counted.
            self.counters["events_failed"] += len(events)
            internal_error("collector store events", exc)
            return
        if refused:
            # Values the store cannot keep: those events alone are lost, and counted.
            self.counters["events_failed"] += refused
            events = [event for event in events if event.row_id is not None]
        for event in events:
            agent = self.correlator.agents.get(event.agent_pid) \
                if event.agent_pid is not None else None
            if agent is not None and event.attribution.method in ("unattributed", "agent"):
                # A tool span of this agent that still comes re-attributes it.
                agent.gave_up = True
            span = self.correlator.span_for(event)
            if event.kind not in (GAP, LOST) and event.agent_pid is not None:
                try:
                    for finding in self.judge.judge(event, span, agent.service if agent else None):
                        if self.store.add_finding(finding) is not None:
                            self.counters["findings"] += 1
                except Exception as exc:
                    internal_error("collector judge", exc)
            if event.kind == GAP:
                self.store.add_finding(StoredFinding(
                    rule_id="AGK900", category="internal", severity="medium",
                    title=f"kernel sensor was blind for {event.data.get('seconds', 0):.1f}s",
                    kind=GAP, evidence=dict(event.data), timestamp=event.ts_ns / 1e9,
                    source="collector", event_id=event.row_id, agent="agentguard-collector"))
            if self.forwarder is not None and event.agent_pid is not None and \
                    event.attribution.trace_id is not None and \
                    event.attribution.span_id is not None:
                # Only onto a span of the event's own agent: another sender's span with the
                # same ids never carries it.
                try:
                    self._enrich_or_send(event, (event.agent_pid, event.attribution.trace_id,
                                                 event.attribution.span_id))
                except Exception as exc:
                    # Stored already; only its forwarding is lost, and counted.
                    self.counters["forward_events_dropped"] += 1
                    internal_error("collector forward event", exc)

    def _enrich_or_send(self, event: KernelEvent, key: SpanKey) -> None:
        agent = self._forwarded.get(key)
        if agent is not None:
            # The span went out already: the event follows as a child span of it, under the
            # agent's resource (backends file spans by resource).
            late = kernel_event_span(event, agent[1])
            if not self._resources.apply(late, agent):
                self.counters["late_spans_resource_lost"] += 1
            self.forwarder.submit(_request_of(late))
            self.counters["late_spans_forwarded"] += 1
            return
        pending = self._enrich.get(key)
        if pending is None:
            pending = self._enrich[key] = []
        if len(pending) >= _MAX_EVENTS_PER_SPAN:
            self.counters["forward_events_dropped"] += 1
            return
        pending.append(event)
        self._enrich_events += 1
        while len(self._enrich) > _MAX_ENRICH_SPANS or self._enrich_events > _MAX_ENRICH_EVENTS:
            # Spans waited for longest first: they are the least likely to come.
            _, dropped = self._enrich.popitem(last=False)
            self._enrich_events -= len(dropped)
            self.counters["forward_events_dropped"] += len(dropped)

    def _forward(self, request: ExportRequest, hosts: dict[int, int], sender: Sender) -> None:
        """Send a request on, each span with the kernel events of its agent joined to it
        (``hosts``: reported pid → the agent's pid on this host), marked when another process
        sent it."""
        for resource_spans in request.resource_spans:
            agent = self._resources.remember(resource_spans)
            reported = resource_pid(resource_spans)
            host = hosts.get(reported) if reported is not None else None
            if host is None:
                # Not an agent on this node: no kernel event is its.
                continue
            other = self._sent_by(sender, host) is False
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if other:
                        span.attributes.append(KeyValue(key=names.AG_SENT_BY_OTHER,
                                                        value=AnyValue(bool_value=True)))
                    key = (host, span.trace_id.hex(), span.span_id.hex())
                    events = self._enrich.pop(key, ())
                    self._enrich_events -= len(events)
                    for event in events:
                        span.events.append(span_event(event))
                    self._forwarded[key] = agent
                    if len(self._forwarded) > _MAX_FORWARDED_IDS:
                        self._forwarded.popitem(last=False)
        self.forwarder.submit(request)

    def _late_reattribution(self, spans: list[SpanInfo]) -> None:
        """Events that gave up waiting are joined to a tool span that arrived after all."""
        assert self.store is not None
        for span in spans:
            agent = self.correlator.agents.get(span.pid) if span.pid is not None else None
            if not span.is_tool or agent is None or not agent.gave_up:
                continue
            slack = self.correlator.slack_ns
            # Only this agent's own acts: an earlier process on the same pid (one that exited,
            # its pid handed out again) was another agent, whatever times this span claims.
            start = max(span.start_ns - slack, agent.started_ns() or 0)
            rows = self.store.unattributed_events([agent.pid], start, span.end_ns + slack)
            own = [row for row in rows
                   if row["tid"] == 0 or self.correlator.agent_tid(agent, row["tid"]) == span.tid]
            if not own:
                continue
            attribution = Attribution("thread", span.trace_id, span.span_id)
            self.counters["reattributed"] += self.store.reattribute(
                [row["id"] for row in own], attribution, span.pid)
            for row in own:
                if row["kind"] != FORK:
                    continue
                child = int(json.loads(row["data"]).get("child_pid", 0))
                family = [child, *self.correlator.descendants_of(child, row["ts_ns"])]
                self.correlator.forget_proc_resolution(family)
                child_rows = self.store.unattributed_events(family, row["ts_ns"], 2**63 - 1)
                self.counters["reattributed"] += self.store.reattribute(
                    [r["id"] for r in child_rows], attribution.inherited(), span.pid)

    def _prune(self) -> None:
        assert self.store is not None
        removed = self.store.prune(max_age_ns=int(self.settings.retention_days * 86400e9),
                                   max_events=self.settings.max_events,
                                   max_spans=self.settings.max_spans)
        removed["aibom_agents"] = self.store.prune_inventories(
            max_age_ns=int(self.settings.retention_days * 86400e9))
        if any(removed.values()):
            logger.info("agentguard collector: retention removed %s", removed)

    # -- status ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter, flat, for status and metrics."""
        sensor_stats = self.sensor.stats() if self.sensor is not None else {}
        correlator = self.correlator.stats()
        receiver = self.receiver.counters if self.receiver is not None else {}
        forward = self.forwarder.stats() if self.forwarder is not None else {}
        counters = self.counters
        # What the collector dropped itself (the backend's failures are forward_failed): kernel
        # events and span requests refused by a full queue (requests_over_queue_bytes is part of
        # requests_dropped), spans the store refused, accepted spans a stop could not store
        # (spans_lost_at_stop; requests_lost_at_stop counts the same loss by request), and spans
        # not forwarded: a full forward queue (forward_over_queue_bytes is part of
        # forward_dropped), too large for any export, still queued at the stop.
        dropped = sum(counters[key] for key in _DROPPED_HERE) + \
            sum(forward.get(key, 0) for key in _DROPPED_FORWARD) + \
            sum(sensor_stats.get(key, 0) for key in _DROPPED_SENSOR)
        return {
            **self.counters,
            "lost": sensor_stats.get("lost", 0),
            # Lines of the sensor's output it could not read (an event each, lost).
            "events_unparsed": sensor_stats.get("parse_errors", 0),
            "sensor_restarts": sensor_stats.get("restarts", 0),
            "sensor_gaps": sensor_stats.get("gaps", 0),
            # Processes of watched trees the kernel program could not watch (its map was full).
            "unwatched_processes": sensor_stats.get("unwatched", 0),
            "watched_processes": sensor_stats.get("watched_processes", 0),
            "watched_roots": len(self.watches),
            "correlated": correlator["correlated"],
            "unattributed": correlator["unattributed"],
            "ambiguous": correlator["ambiguous"],
            "pending": correlator["pending"],
            "agents": correlator["agents"],
            "agents_replaced": correlator["agents_replaced"],
            "agents_evicted": correlator["agents_evicted"],
            # Events resolved before their time because the waiting room was full, and spans
            # and library records pushed out of the correlator's bounded indexes.
            "pending_forced": correlator["pending_forced"],
            "spans_evicted": correlator["spans_evicted"],
            "spans_unindexed": correlator["spans_unindexed"],
            "library_records_evicted": correlator["library_records_evicted"],
            "dropped": dropped,
            # Span requests accepted and waiting for the core thread, and their bytes.
            "queued_requests": self._queue.requests,
            "queued_request_bytes": self._queue.request_bytes,
            "requests": receiver.get("requests", 0),
            "requests_rejected": sum(v for k, v in receiver.items()
                                     if k not in ("requests", "accepted")),
            **{f"otlp_{k}": v for k, v in receiver.items()},
            **forward,
        }

    def _write_status(self, state: str) -> None:
        assert self.store is not None
        sensor = self.sensor
        self.store.put_status("collector", {
            "state": state,
            "pid": os.getpid(),
            "started_ns": self.started_ns,
            "db": self.settings.db,
            "endpoints": self.endpoints(),
            "forward": self.settings.forward,
            "sensor": sensor.name if sensor is not None else "none",
            # Healthy as configured: with no sensor there is nothing to fail.
            "sensor_healthy": bool(sensor.healthy) if sensor is not None else True,
            "sensor_error": getattr(sensor, "last_error", None),
            "fallback_reason": self._fallback_reason,
            "blind_spots": list(sensor.blind_spots) if sensor is not None else [],
            "counters": self.snapshot(),
            "watched_roots": sorted(self.watches.snapshot())[:256],
            "agents": [{"pid": a.pid, "service": a.service, "library_sensor": a.library_sensor,
                        "exited": a.exited_ns is not None}
                       for a in list(self.correlator.agents.values())[:256]],
            "internal_errors": internal_error_counts(),
        })


def _request_of(resource_spans: Any) -> ExportRequest:
    request = ExportRequest()
    request.resource_spans.append(resource_spans)
    return request


def _severity(value: Any) -> Any:
    return value if value in ("info", "low", "medium", "high", "critical") else "medium"


def _category(value: Any) -> Any:
    allowed = ("policy", "baseline", "injection", "taint", "runtime", "supply-chain", "internal")
    return value if value in allowed else "policy"

