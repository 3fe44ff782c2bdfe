"""Periodic emission of the inventory as OpenTelemetry spans, so a collector keeps it per agent.

Every ``interval`` seconds (``AGENTGUARD_AIBOM_EMIT_INTERVAL``, 60 by default; 0 turns it off)
a daemon timer thread compares the inventory with what it sent last and, when something was
added or changed, sends the difference as ``agentguard.aibom`` root spans: one span event per
entry, at most :data:`MAX_ENTRIES_PER_SPAN` per span and :data:`MAX_SPANS` spans per emission
(the rest goes next time). A full copy goes out first and every :data:`FULL_EVERY` seconds, so a
collector that missed a delta (a dropped export, a restart) converges. The last difference goes
out when agentguard is uninstrumented or the program exits. The agent's threads never wait on
it: the thread only copies the inventory under its lock and hands finished spans to the export
queue, which drops rather than blocks.
"""

from __future__ import annotations

import atexit
import os
import platform
import sys
import threading
import time
from typing import Any

from agentguard._errors import internal_error
from agentguard.aibom._wire import (
    ATTR_EXECUTABLE,
    ATTR_FINAL,
    ATTR_FULL,
    ATTR_HOST,
    ATTR_PART,
    ATTR_PARTS,
    ATTR_PENDING,
    ATTR_PID,
    ATTR_PYTHON,
    ATTR_SEQUENCE,
    ATTR_STARTED,
    EVENT_ENTRY,
    MAX_ENTRIES_PER_SPAN,
    SPAN_NAME,
    entries_of,
    event_attributes,
)

__all__ = ["DEFAULT_INTERVAL", "ENV_INTERVAL", "FULL_EVERY", "MAX_SPANS", "Emitter", "emitter",
           "interval_from"]

ENV_INTERVAL = "AGENTGUARD_AIBOM_EMIT_INTERVAL"
DEFAULT_INTERVAL = 60.0
MIN_INTERVAL = 0.1
FULL_EVERY = 1800.0
MAX_SPANS = 32
# How long a final emission waits for a periodic one in progress.
_FINAL_WAIT = 2.0


def interval_from(value: Any = None, config: Any = None) -> float:
    """The emission interval in seconds: ``value``, else the configuration's
    ``aibom_emit_interval``, else ``AGENTGUARD_AIBOM_EMIT_INTERVAL``, else 60 (0: off).

    A bad value falls back to the default with a warning rather than stop the agent.
    """
    raw: Any = value
    source = "aibom emit_interval"
    if raw is None and config is not None:
        raw = getattr(config, "aibom_emit_interval", None)
    if raw is None:
        raw = os.environ.get(ENV_INTERVAL) or None
        source = ENV_INTERVAL
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        print(f"agentguard: {source}={raw!r} is not a number of seconds; using "
              f"{DEFAULT_INTERVAL:g}", file=sys.stderr)
        return DEFAULT_INTERVAL
    if seconds != seconds or seconds < 0:  # NaN or negative
        return DEFAULT_INTERVAL
    return 0.0 if seconds == 0 else max(MIN_INTERVAL, seconds)


class Emitter:
    """Sends what changed in the inventory as ``agentguard.aibom`` spans, from its own thread."""

    def __init__(self) -> None:
        self.interval = DEFAULT_INTERVAL
        self._lock = threading.Lock()  # one emission at a time
        self._state_lock = threading.Lock()
        self._sent: dict[tuple[str, str], str] = {}
        self._last_full = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._host = _hostname()
        self.sequence = 0
        self.counters = {"emissions": 0, "spans": 0, "entries": 0, "pending": 0}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, interval: float) -> None:
        """Run (or keep running) the timer thread at ``interval`` seconds (0 stops it)."""
        with self._state_lock:
            self.interval = interval
            if interval <= 0:
                self._stop_locked()
                return
            self._wake.set()  # an interval change applies now, not after the old one ran out
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop, self._wake),
                                            name="agentguard-aibom-emit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer thread (what was sent is remembered)."""
        with self._state_lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread = None

    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def reset(self) -> None:
        """Forget what was sent (a forked child is a new agent: it starts with a full copy)."""
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._sent = {}
        self._last_full = 0.0
        self._thread = None
        self.sequence = 0
        self._host = _hostname()

    def _run(self, stop: threading.Event, wake: threading.Event) -> None:
        try:
            from agentguard import sensors

            sensors.quiet_thread()  # reading metadata files for the inventory is not the agent's
        except Exception as exc:
            internal_error("aibom emit thread", exc)
        while not stop.is_set():
            wake.wait(self.interval)
            if stop.is_set():
                return
            if wake.is_set():
                wake.clear()
                continue  # the interval changed: wait the new one
            if self._thread is not threading.current_thread():
                return  # left behind by reset(): another timer (or none) emits now
            try:
                self.emit()
            except Exception as exc:
                internal_error("aibom emit", exc)

    # -- emission ----------------------------------------------------------------------------
    def emit(self, *, final: bool = False) -> int:
        """Send what changed since the last emission now; returns the number of spans sent."""
        from agentguard import _state
        from agentguard.aibom import stage

        guard = _state.guard
        current = stage(guard) if guard is not None else None
        if guard is None or current is None:
            return 0
        if not self._lock.acquire(timeout=_FINAL_WAIT if final else 0.0):
            return 0
        try:
            return self._emit(guard, current, final)
        finally:
            self._lock.release()

    def _emit(self, guard: Any, current: Any, final: bool) -> int:
        from opentelemetry.context import Context

        entries = entries_of(current.inventory, findings=current.reported())
        now = time.monotonic()
        full = not self._sent or now - self._last_full >= FULL_EVERY
        changed = entries if full else [
            entry for entry in entries if self._sent.get((entry.kind, entry.key)) !=
            entry.fingerprint()]
        if not changed and not final:
            return 0
        room = MAX_ENTRIES_PER_SPAN * MAX_SPANS
        batch = changed[:room]
        pending = len(changed) - len(batch)
        parts = [batch[i:i + MAX_ENTRIES_PER_SPAN]
                 for i in range(0, len(batch), MAX_ENTRIES_PER_SPAN)] or [[]]
        self.sequence += 1
        counts = current.inventory.counts()
        common: dict[str, Any] = {
            ATTR_SEQUENCE: self.sequence, ATTR_PARTS: len(parts), ATTR_FULL: full and not pending,
            ATTR_FINAL: final, ATTR_STARTED: current.inventory.started, ATTR_PENDING: pending,
            ATTR_PID: os.getpid(), ATTR_HOST: self._host,
            ATTR_PYTHON: platform.python_version(), ATTR_EXECUTABLE: sys.executable,
            **{f"agentguard.aibom.{name}": value for name, value in counts.items()
               if isinstance(value, int)},
            **{f"agentguard.aibom.dropped_{name}": value
               for name, value in counts["dropped"].items() if value},
        }
        sent = 0
        for index, part in enumerate(parts):
            span = guard.tracer.start_span(SPAN_NAME, context=Context(),
                                           attributes={**common, ATTR_PART: index})
            for entry in part:
                span.add_event(EVENT_ENTRY, event_attributes(entry))
            span.end()
            sent += 1
        for entry in batch:
            self._sent[(entry.kind, entry.key)] = entry.fingerprint()
        if full:
            # A full copy that did not fit goes on as deltas: the rest is not in _sent yet.
            self._last_full = now
        self.counters["emissions"] += 1
        self.counters["spans"] += sent
        self.counters["entries"] += len(batch)
        self.counters["pending"] = pending
        return sent


def _hostname() -> str:
    try:
        return os.uname().nodename
    except (AttributeError, OSError):
        return platform.node() or "unknown"


_emitter = Emitter()
_exit_registered = False


def emitter() -> Emitter:
    """The process's emitter."""
    return _emitter


def start(interval: float) -> Emitter:
    """Start periodic emission (and the final one at exit) at ``interval`` seconds."""
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        # Registered after instrument()'s exit handler (the caller makes sure of it), so it runs
        # first (atexit is LIFO), while the export pipeline is still open.
        atexit.register(_at_exit)
    _emitter.start(interval)
    return _emitter


def final() -> None:
    """The last emission (uninstrument, exit): what changed since the previous one."""
    try:
        if _emitter.interval > 0:
            _emitter.emit(final=True)
    except Exception as exc:
        internal_error("aibom final emit", exc)


def _at_exit() -> None:
    _emitter.stop()
    final()


def _after_fork() -> None:
    _emitter.reset()
    if _emitter.interval > 0 and _exit_registered:
        _emitter.start(_emitter.interval)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
