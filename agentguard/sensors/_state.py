"""All of the runtime sensor's mutable state lives in this module, and nowhere else.

Per thread (``local``): whether the sensor is already running on this thread (re-entrancy) or
the thread is one of agentguard's own (the span exporter), the process spawn or model load the
thread is in the middle of, and a small cache of the event context. Process-wide: counters, the
per-span bookkeeping (events written, child pids) and the datagram verdict cache, each bounded.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from agentguard._spans import LightSpan

__all__ = ["BUSY", "IDLE", "QUIET", "SpanState", "busy", "counters", "local", "set_local",
           "span_state", "stats"]

# Spans other than agentguard's light spans (which carry their own) tracked at once; an evicted
# span starts a fresh tally (its earlier child pids are reseeded from the span when it can be
# read).
MAX_TRACKED_SPANS = 1024
# Sensor span events on one span; past this they are counted, not written.
MAX_EVENTS_PER_SPAN = 64
# Distinct things (destinations, paths) remembered per span to skip repeated span events.
MAX_KEYS_PER_SPAN = 256
MAX_CHILD_PIDS = 64


IDLE = 0
BUSY = 1  # the sensor is running on this thread: its own operations are not events
QUIET = 2  # one of agentguard's own threads: nothing it does is an event


# Set by the sensor while it runs: told the name of a checked per-thread attribute (see
# ``_CHECKED``) about to be written, by an assignment or :func:`set_local`; it lets agentguard's
# own modules through and reports anyone else's write as tampering (the exception raised in
# enforce mode stops the write). ``busy()`` writes ``state`` directly: once per judged event,
# where looking up the writer would cost more than the rest of the bookkeeping.
on_local_write: Callable[[str], object] | None = None
_SET = threading.local.__setattr__
_GET = threading.local.__getattribute__
_getframe = sys._getframe
_DELETE = threading.local.__delattr__

# The checked per-thread attributes: ``state`` (a thread marked busy or quiet is ignored by the
# hook), ``context`` (the cached context events are judged with), ``system`` (the command an
# os.system call is judged as), the spawns and loads in progress and the repeat table. Not
# ``repeat`` and ``last_span``: scratch written several times per event, which a forged value can
# at most use to hide a span event while nothing judges events (judgement never reads them).
# ``open_at``: the directory descriptor an ``os.open`` in progress resolves its path against.
_CHECKED = frozenset({"state", "context", "system", "spawns", "loads", "repeats", "open_at"})


class _Local(threading.local):
    """Per-thread flags and scratch space of the hook."""

    # One integer for both flags, so the hook reads a single thread-local value.
    state: int
    # (operation, guard, EventContext) of the last event on this thread.
    context: tuple[Any, Any, Any] | None
    # The spawn wrappers in progress (innermost last); the hook parks its observation there.
    spawns: list[Any]
    # Model loads in progress (innermost last).
    loads: list[Any]
    # (span, SpanState) of the last span this thread wrote to.
    last_span: tuple[Any, Any] | None
    # (command passed to system(), command the caller gave) while the os.system wrapper runs.
    system: tuple[str, Any] | None
    # (span, SpanState) a handler just wrote its event on (or found it repeated on), and the
    # repeats the hook settles at once: (OpenTelemetry context, guard, {absolute path or IP
    # address: (span, SpanState, open flags or None)}).
    repeat: tuple[Any, Any] | None
    repeats: tuple[Any, Any, dict[Any, tuple[Any, Any, Any]]] | None
    # (path object, directory descriptor) while the os.open wrapper runs a call with ``dir_fd``:
    # the hook resolves a relative path against that directory, not the working directory.
    open_at: tuple[Any, int] | None

    def __init__(self) -> None:
        _reset(self, IDLE)

    # agentguard's own writes go through set_local (or _SET for ``state`` in busy()).
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CHECKED:
            watch = on_local_write
            if watch is not None:
                watch(name)
        _SET(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _CHECKED:
            watch = on_local_write
            if watch is not None:
                watch(name)
        _DELETE(self, name)


def _reset(target: _Local, state: int) -> None:
    for name, value in (("state", state), ("context", None), ("spawns", []), ("loads", []),
                        ("last_span", None), ("system", None), ("repeat", None),
                        ("repeats", None), ("open_at", None)):
        _SET(target, name, value)


local = _Local()


def set_local(name: str, value: Any) -> None:
    """agentguard's write of one of this thread's attributes (``local``), without the
    Python-level ``__setattr__`` (as cheap as a plain thread-local write for the per-event
    scratch); a checked attribute written by code outside agentguard is shown to
    ``on_local_write`` (the pickle wrappers write one on every ``pickle.loads``: agentguard's own
    writes are let through here, without calling the watch)."""
    if name in _CHECKED:
        watch = on_local_write
        # (None over None changes nothing: the pickle wrappers' clearing of ``repeats``.)
        if watch is not None and (value is not None or _GET(local, name) is not None):
            writer = _getframe(1).f_globals.get("__name__")
            if type(writer) is not str or not (writer.startswith("agentguard.") or
                                               writer == "agentguard"):
                watch(name)
    _SET(local, name, value)


class busy:  # lower case: it reads as a statement, ``with busy():``
    """Marks the sensor as running on this thread for the duration of a ``with`` block."""

    __slots__ = ("previous",)

    def __enter__(self) -> None:
        self.previous = local.state
        _SET(local, "state", BUSY)

    def __exit__(self, *exc: object) -> None:
        _SET(local, "state", self.previous)


class SpanState:
    """What the sensor has written on one span so far."""

    __slots__ = ("child_pids", "keys", "suppressed", "written")

    def __init__(self) -> None:
        self.written = 0
        self.suppressed = 0
        self.keys: set[Any] = set()
        self.child_pids: list[int] = []


_spans: OrderedDict[int, SpanState] = OrderedDict()
_spans_lock = threading.Lock()

counters: dict[str, int] = {
    "events": 0,
    "span_events": 0,
    "span_events_suppressed": 0,
    "blocked": 0,
    "tamper": 0,
    "spans_evicted": 0,
    "child_pids_dropped": 0,
    "datagrams_cached": 0,
}


# The C hook holds ``modules_seen`` and ``ordinary_reads`` themselves: clear them, never rebind.
# Module loads: top-level names already loaded, names looked for and not found (with when), the
# distributions of each top-level name (read once, refreshed at most every few seconds on a
# miss), and distribution versions.
modules_seen: set[str] = set()
modules_missing: dict[str, float] = {}
distributions: dict[str, list[str]] | None = None
distributions_read_at = 0.0
versions: dict[str, str | None] = {}
# Absolute paths whose reads are not events (cleared when full).
ordinary_reads: set[str] = set()
# Model files hashed: (path, size, mtime_ns) -> sha256.
digests: dict[tuple[str, int, int], str] = {}
# Pickle globals judged: (module, name) -> why the global is unsafe, or None (cleared when full).
pickle_verdicts: dict[tuple[str, str], str | None] = {}
# The audit hook is added once and stays for the life of the process; ``native`` is the C
# extension module when the hook is entered from C.
hook_installed = False
native: Any = None
# The guard the C hook was last activated for: whether its stages judge events is kept in C.
stages_guard: Any = None
# agentguard's own files for the active guard (findings file, profile): (guard, paths).
own_paths: tuple[Any, frozenset[str]] | None = None
# wrapt patches in place: (owner, attribute, original, wrapper), and the targets whose import
# hooks are registered (they stay registered; they patch only while the sensor runs).
patches: list[tuple[Any, str, Any, Any]] = []
import_hooks: set[str] = set()
patching = False
# Guards ``patches``: import hooks patch from whichever thread imports the library.
patch_lock = threading.RLock()
# Functions whose code must not be replaced (the hook, its handlers, the Guard's judgement), and
# the patches already reported as removed.
protected: frozenset[Any] = frozenset()
reported_patches: set[tuple[int, str]] = set()
# Datagram destinations already judged as allowed: (guard id, span id, address) -> True.
datagrams: dict[tuple[Any, ...], bool] = {}


def _new_state(seed: Any) -> SpanState:
    """A fresh tally, its child pids taken from ``seed`` (what the span already carries)."""
    state = SpanState()
    if seed:
        state.child_pids = [pid for pid in seed if isinstance(pid, int)][:MAX_CHILD_PIDS]
    return state


def span_state(span: Any, seed: Any = None) -> SpanState:
    """The bookkeeping of ``span`` (created on first use): kept on agentguard's own light spans,
    else in a table where the least recently used are dropped."""
    last = local.last_span
    if last is not None and last[0] is span:
        state: SpanState = last[1]
        return state
    if type(span) is LightSpan:
        state = span.sensor_state
        if state is None:
            state = span.sensor_state = _new_state(seed)
        _SET(local, "last_span", (span, state))
        return state
    span_id: int = span.get_span_context().span_id
    with _spans_lock:
        found = _spans.get(span_id)
        if found is not None:
            _spans.move_to_end(span_id)
        else:
            found = _new_state(seed)
            _spans[span_id] = found
            if len(_spans) > MAX_TRACKED_SPANS:
                _spans.popitem(last=False)
                counters["spans_evicted"] += 1
    _SET(local, "last_span", (span, found))
    return found


def stats() -> dict[str, int]:
    """A copy of the counters, with the number of spans currently tracked."""
    with _spans_lock:
        tracked = len(_spans)
    return {**counters, "spans_tracked": tracked}


def _after_fork() -> None:
    # The child's only thread is the one that forked: forget what it was doing, and replace a
    # lock another thread may have held at the moment of the fork.
    global _spans_lock
    _spans_lock = threading.Lock()
    _reset(local, IDLE if local.state == BUSY else local.state)
    with _spans_lock:
        _spans.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
