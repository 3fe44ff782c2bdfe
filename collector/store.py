"""The collector's embedded SQLite store: kernel events, agent spans, findings, incidents, status.

One writer (the collector's core thread) and any number of readers (the CLI) share the file in
WAL mode. Every table is bounded by age and row count (:meth:`Store.prune`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from agentguard._text import faithful
from agentguard.collector.model import Attribution, KernelEvent, SpanInfo
from agentguard.findings import SEVERITY_ORDER, Finding

__all__ = ["MAX_AIBOM_AGENTS", "MAX_AIBOM_ENTRIES", "SCHEMA_VERSION", "AgentProcess", "Store",
           "StoreError", "StoredFinding"]

SCHEMA_VERSION = 1
# A conversation's findings separated by more than this start a new incident.
INCIDENT_IDLE_NS = 3600 * 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL,
    attribution TEXT NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    candidates TEXT,
    agent_pid INTEGER,
    seen_by_library INTEGER
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ns);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id, ts_ns);
CREATE INDEX IF NOT EXISTS events_pid ON events (pid, ts_ns);
CREATE TABLE IF NOT EXISTS spans (
    span_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    operation TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    pid INTEGER,
    tid INTEGER,
    service TEXT,
    tool TEXT,
    tool_call_id TEXT,
    conversation_id TEXT,
    turn INTEGER,
    status TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    received_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_identity ON spans (trace_id, span_id, ifnull(pid, 0));
CREATE INDEX IF NOT EXISTS spans_conversation ON spans (conversation_id);
CREATE INDEX IF NOT EXISTS spans_received ON spans (received_ns);
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    category TEXT,
    severity TEXT NOT NULL,
    action TEXT,
    title TEXT NOT NULL,
    kind TEXT,
    tool TEXT,
    agent TEXT,
    conversation_id TEXT,
    turn INTEGER,
    trace_id TEXT,
    span_id TEXT,
    event_id INTEGER,
    evidence TEXT NOT NULL,
    incident_id TEXT
);
CREATE INDEX IF NOT EXISTS findings_incident ON findings (incident_id);
CREATE INDEX IF NOT EXISTS findings_ts ON findings (ts_ns);
CREATE UNIQUE INDEX IF NOT EXISTS findings_library_span ON findings
    (trace_id, span_id, rule_id, ts_ns) WHERE source = 'library';
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    conversation_id TEXT,
    trace_id TEXT,
    agent TEXT,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    findings INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_key ON incidents (key, last_ns);
CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ns INTEGER NOT NULL);
"""

# Runtime AI-BOM inventories, one per agent process, merged from the agents' ``agentguard.aibom``
# spans. Additive tables: older databases gain them on open. An inventory's ``owner`` (its key) is
# what the collector verified, never what a span says of itself (see Store.add_inventory):
# ``process:<boot id>:<host pid>:<start ticks>`` for a process found on this node that sent the
# span itself (its start tells a pid handed out again apart), ``sender:[address, service, host,
# pid]`` for any other sender (found on no process here, or not the process it names: a namespace
# of its own, so nothing it sends reaches a process's inventory),
# ``legacy:<id>`` for an inventory an earlier collector keyed by the span's own word (kept as it
# is, never merged into again).
_AIBOM_SCHEMA = """
CREATE TABLE IF NOT EXISTS aibom_agents (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    gaps INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 0,
    info TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    host_pid INTEGER,
    process_started_ns INTEGER,
    sender TEXT
);
CREATE INDEX IF NOT EXISTS aibom_agents_last ON aibom_agents (last_ns);
CREATE INDEX IF NOT EXISTS aibom_agents_host_pid ON aibom_agents (host_pid);
CREATE TABLE IF NOT EXISTS aibom_entries (
    agent_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    first_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kind, key)
);
"""
# The tables a collector creates: a database with only these and no version yet is one.
_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA + _AIBOM_SCHEMA))
# A span is its agent's (pid on this host; none: not on this node), trace id and span id. Earlier
# collectors keyed spans by span id alone, so a sender could replace another agent's span (or
# another trace's) by reusing its id: a writer opening such a database rebuilds the table under
# the new key, keeping every row. The columns stay the same, so readers read either layout.
_SPANS_COLUMNS = ("span_id, trace_id, parent_span_id, name, operation, start_ns, end_ns, pid, tid, "
                  "service, tool, tool_call_id, conversation_id, turn, status, attributes, events, "
                  "received_ns")
_OLD_SPANS = "spans_by_span_id"
_SPANS_REKEY_BEFORE = f"""
ALTER TABLE spans RENAME TO {_OLD_SPANS};
DROP INDEX IF EXISTS spans_trace;
DROP INDEX IF EXISTS spans_conversation;
DROP INDEX IF EXISTS spans_received;
"""
_SPANS_REKEY_AFTER = f"""
INSERT OR REPLACE INTO spans ({_SPANS_COLUMNS}) SELECT {_SPANS_COLUMNS} FROM {_OLD_SPANS};
DROP TABLE {_OLD_SPANS};
"""
# Earlier collectors keyed inventories by the (service, host, pid) the spans named, so any sender
# could replace or add to another agent's inventory: a writer opening such a database moves them
# to the new table as legacy inventories (same ids, so their entries stay theirs), every row kept.
_AIBOM_COLUMNS = ("id, service, host, pid, started, first_ns, last_ns, sequence, gaps, final, "
                  "info, dropped")
_OLD_AIBOM = "aibom_agents_by_claim"
_AIBOM_REKEY_BEFORE = f"""
ALTER TABLE aibom_agents RENAME TO {_OLD_AIBOM};
DROP INDEX IF EXISTS aibom_agents_last;
"""
_AIBOM_REKEY_AFTER = f"""
INSERT INTO aibom_agents (owner, {_AIBOM_COLUMNS})
    SELECT 'legacy:' || id, {_AIBOM_COLUMNS} FROM {_OLD_AIBOM};
DROP TABLE {_OLD_AIBOM};
"""
# Library findings were told apart by span id alone too.
_DROP_OLD_INDEXES = "DROP INDEX IF EXISTS findings_library;\n"
# Per-agent and overall bounds of the inventory tables.
MAX_AIBOM_ENTRIES = 16384
MAX_AIBOM_AGENTS = 1024


# A span sent again by its agent (an exporter's retry) replaces the one stored; a span with the
# same ids from another agent is another span (see _SPANS_COLUMNS).
_INSERT_SPAN = (
    f"INSERT OR REPLACE INTO spans ({_SPANS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_INSERT_EVENT = (
    "INSERT INTO events (id, ts_ns, kind, pid, tid, source, data, attribution, trace_id, span_id, "
    "candidates, agent_pid, seen_by_library) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
# The span an event was joined to: its own agent's, never another sender's with the same ids.
_EVENT_SPAN = "s.trace_id = e.trace_id AND s.span_id = e.span_id AND s.pid = e.agent_pid"
# What SQLite raises for one row's values (an integer past 64 bits, text with no UTF-8 form, a
# type it cannot bind), as against the database itself failing.
_ROW_ERRORS = (OverflowError, ValueError, sqlite3.InterfaceError, sqlite3.IntegrityError)


class AgentProcess(NamedTuple):
    """The process on this node that sent an inventory, as the collector verified it."""

    pid: int  # on this host
    boot: str  # the boot it runs in (/proc/sys/kernel/random/boot_id)
    # When it started (``/proc/<pid>/stat``, clock ticks since boot); ``None``: gone before it
    # was read. With ``boot`` and ``pid`` it names the process: pids are handed out again.
    start_ticks: int | None
    started_ns: int | None = None  # the same start in Unix nanoseconds, for people


class StoreError(RuntimeError):
    """The database cannot be opened or is not an agentguard collector database."""


class StoredFinding(Finding):
    """A finding as stored: who raised it (the library or the collector) and where it belongs."""

    source: str = "collector"
    event_id: int | None = None
    incident_id: str | None = None
    id: int | None = None


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def _storable_json(text: str, value: Any) -> str:
    """``text`` (``value`` as JSON) as SQLite can take it: a file name that is not UTF-8 is held
    with surrogate escapes (``os.fsdecode``), which have no UTF-8 form; JSON's ``\\udcff``
    escapes keep them, and ``json.loads`` gives back the very same string."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, default=str, separators=(",", ":"))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int64(value: int | None) -> int | None:
    """An integer column: ``None`` for one SQLite cannot keep."""
    return value if value is None or _INT64_MIN <= value <= _INT64_MAX else None


def _time_ns(seconds: float) -> int:
    """Unix seconds as the store's nanoseconds, held to signed 64 bits."""
    if not math.isfinite(seconds):
        return _INT64_MAX if seconds > 0 else 0
    return max(_INT64_MIN, min(_INT64_MAX, int(seconds * 1e9)))


def _make_event_json() -> Any:
    """The JSON encoding of kernel event data, the store's busiest path.

    The C encoder is built once instead of on every call (as ``JSONEncoder.encode`` does), which
    halves its cost. Event data is built by the sensors from parsed values and never refers to
    itself, so the circular-reference bookkeeping is left out.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _json
    encode = make(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def event_json(value: Any) -> str:
        return "".join(encode(value, 0))

    return event_json


_event_json = _make_event_json()


class Store:
    """The SQLite database behind the collector and its CLI."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not os.path.exists(path):
                    raise StoreError(f"no collector database at {path} (is the collector running "
                                     f"with --db {path}?)")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                                          check_same_thread=False)
                # The connection opens the file lazily: this first read is what finds out whether
                # it is a database at all, and ours.
                self._check_version()
            else:
                directory = os.path.dirname(os.path.abspath(path))
                os.makedirs(directory, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=5.0, check_same_thread=False,
                                          isolation_level=None)
                # Checked before anything is written, so another program's database is left as
                # it was (not even switched to WAL).
                self._check_version()
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                rekey = self._spans_keyed_by_span_id()
                rekey_aibom = self._inventories_keyed_by_claim()
                # One transaction: a reader never sees the tables without the version, or
                # spans or inventories half moved to their new key.
                self.db.executescript(
                    f"BEGIN IMMEDIATE;\n{_SPANS_REKEY_BEFORE if rekey else ''}"
                    f"{_AIBOM_REKEY_BEFORE if rekey_aibom else ''}{_DROP_OLD_INDEXES}"
                    f"{_SCHEMA}{_AIBOM_SCHEMA}{_SPANS_REKEY_AFTER if rekey else ''}"
                    f"{_AIBOM_REKEY_AFTER if rekey_aibom else ''}"
                    f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', "
                    f"'{SCHEMA_VERSION}');\nCOMMIT;\n")
        except (sqlite3.DatabaseError, StoreError) as exc:
            connection: sqlite3.Connection | None = getattr(self, "db", None)
            if connection is not None:
                connection.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{path}: not a usable collector database ({exc})") from None
        self.db.row_factory = sqlite3.Row
        self._in_transaction = False
        self._next_event_id: int | None = None

    def _spans_keyed_by_span_id(self) -> bool:
        """Whether the spans table is an earlier collector's, keyed by span id alone."""
        row = self.db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'spans'").fetchone()
        return row is not None and "span_id TEXT PRIMARY KEY" in str(row[0])

    def _inventories_keyed_by_claim(self) -> bool:
        """Whether the inventory table is an earlier collector's, keyed by what spans claimed."""
        row = self.db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'aibom_agents'"
        ).fetchone()
        return row is not None and "owner TEXT" not in str(row[0])

    def _check_version(self) -> None:
        """Refuse what is not a collector database of this schema version; a new (empty) one is
        fine for the writer, which creates the schema next."""
        tables = {str(row[0]) for row in
                  self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if not str(row[0]).startswith("sqlite_")}
        if not tables:
            if self.readonly:
                raise StoreError(f"{self.path}: not an agentguard collector database (no tables; "
                                 f"is the collector still starting?)")
            return
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None:
                if str(row[0]) != str(SCHEMA_VERSION):
                    raise StoreError(f"{self.path}: schema version {row[0]}, this collector "
                                     f"reads version {SCHEMA_VERSION}")
                return
            if not self.readonly and tables <= _TABLES:
                return  # made by a collector that stopped before it wrote the version
        raise StoreError(f"{self.path}: not an agentguard collector database (no schema version; "
                         f"its tables: {', '.join(sorted(tables)[:5])})")

    def close(self) -> None:
        try:
            if self._in_transaction:
                self.commit()
            self.db.close()
        except sqlite3.Error:
            pass

    # -- writing (one thread) --------------------------------------------------------------

    def begin(self) -> None:
        if not self._in_transaction:
            self.db.execute("BEGIN")
            self._in_transaction = True

    def commit(self) -> None:
        if self._in_transaction:
            self.db.execute("COMMIT")
            self._in_transaction = False

    def add_events(self, events: Sequence[KernelEvent]) -> int:
        """Store kernel events (each gets its ``row_id``); returns how many could not be stored.

        An event the database refuses (a value it cannot keep) is left out alone, its
        ``row_id`` ``None``: the others of its batch are kept.
        """
        self.begin()
        if self._next_event_id is None:
            last = self.db.execute("SELECT MAX(id) FROM events").fetchone()[0]
            self._next_event_id = int(last or 0) + 1
        rows = []
        # Ids are assigned here (one writer) so a batch goes in with one executemany.
        next_id = self._next_event_id
        for event in events:
            a = event.attribution
            event.row_id = next_id
            data = _event_json(event.data)
            if not data.isascii():
                data = _storable_json(data, event.data)
            rows.append((next_id, event.ts_ns, event.kind, event.pid, event.tid, event.source,
                         data, a.method, a.trace_id, a.span_id,
                         _json(list(a.candidates)) if a.candidates else None, event.agent_pid,
                         None if event.seen_by_library is None else int(event.seen_by_library)))
            next_id += 1
        self._next_event_id = next_id
        try:
            self.db.executemany(_INSERT_EVENT, rows)
            return 0
        except _ROW_ERRORS:
            pass
        # One row in the batch is bad: the rows go in one by one (one the batch wrote already
        # is written again, to the same effect).
        dropped = 0
        for event, row in zip(events, rows, strict=True):
            try:
                self.db.execute(_INSERT_EVENT.replace("INSERT", "INSERT OR REPLACE", 1), row)
            except _ROW_ERRORS:
                event.row_id = None
                dropped += 1
        return dropped

    def reattribute(self, event_ids: Iterable[int], attribution: Attribution,
                    agent_pid: int | None) -> int:
        """Give stored, still unattributed events their span (a late span arrived)."""
        self.begin()
        count = 0
        for event_id in event_ids:
            count += self.db.execute(
                "UPDATE events SET attribution = ?, trace_id = ?, span_id = ?, agent_pid = ? "
                "WHERE id = ? AND attribution IN ('unattributed', 'agent')",
                (attribution.method, attribution.trace_id, attribution.span_id, agent_pid, event_id),
            ).rowcount
        return count

    def unattributed_events(self, pids: Sequence[int], start_ns: int, end_ns: int,
                            limit: int = 10000) -> list[sqlite3.Row]:
        if not pids:
            return []
        marks = ",".join("?" * len(pids))
        return self.db.execute(
            f"SELECT id, pid, tid, ts_ns, kind, data FROM events WHERE pid IN ({marks}) AND ts_ns "
            "BETWEEN ? AND ? AND attribution IN ('unattributed', 'agent') ORDER BY ts_ns LIMIT ?",
            (*pids, start_ns, end_ns, limit),
        ).fetchall()

    def add_spans(self, spans: Sequence[SpanInfo]) -> int:
        """Store spans (one stored before is replaced); returns how many could not be stored.

        A span the database refuses is left out alone: the others of its batch are kept.
        """
        self.begin()
        now = time.time_ns()
        rows = [(s.span_id, s.trace_id, s.parent_span_id, s.name, s.operation, s.start_ns,
                 s.end_ns, s.pid, s.tid, s.service, s.tool, s.tool_call_id, s.conversation_id,
                 s.turn, s.status, _json(s.attributes), _json([list(e) for e in s.events]), now)
                for s in spans]
        try:
            self.db.executemany(_INSERT_SPAN, rows)
            return 0
        except _ROW_ERRORS:
            pass
        # One row in the batch is bad: the rows go in one by one (a row already written by
        # the batch is written again, to the same effect).
        dropped = 0
        for row in rows:
            try:
                self.db.execute(_INSERT_SPAN, row)
            except _ROW_ERRORS:
                dropped += 1
        return dropped

    def add_finding(self, finding: StoredFinding) -> StoredFinding | None:
        """Store a finding and file it under an incident; ``None`` if it was already stored."""
        self.begin()
        ts_ns = _time_ns(finding.timestamp)
        # The title may quote a file name that is not UTF-8 (the evidence keeps it exactly).
        title = faithful(finding.title)
        if title != finding.title:
            finding = finding.model_copy(update={"title": title})
        evidence = _json(finding.evidence)
        incident_id = self._incident_for(finding, ts_ns)
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO findings (ts_ns, source, rule_id, category, severity, action, "
            "title, kind, tool, agent, conversation_id, turn, trace_id, span_id, event_id, evidence, "
            "incident_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ts_ns, finding.source, finding.rule_id, finding.category, finding.severity,
             finding.action, finding.title, finding.kind, finding.tool, finding.agent,
             finding.conversation_id, _int64(finding.turn), finding.trace_id, finding.span_id,
             _int64(finding.event_id), _storable_json(evidence, finding.evidence), incident_id),
        )
        if cursor.rowcount == 0:
            return None
        self._touch_incident(incident_id, finding, ts_ns)
        return finding.model_copy(update={"incident_id": incident_id, "id": cursor.lastrowid})

    def _incident_for(self, finding: Finding, ts_ns: int) -> str:
        key = f"conversation:{finding.conversation_id}" if finding.conversation_id else \
            f"trace:{finding.trace_id}" if finding.trace_id else f"agent:{finding.agent or '?'}"
        row = self.db.execute(
            "SELECT id FROM incidents WHERE key = ? AND last_ns >= ? ORDER BY last_ns DESC LIMIT 1",
            (key, ts_ns - INCIDENT_IDLE_NS),
        ).fetchone()
        if row is not None:
            return str(row[0])
        digest = hashlib.sha256(f"{key}|{ts_ns}".encode()).hexdigest()[:10]
        incident_id = f"INC-{digest}"
        self.db.execute(
            "INSERT OR IGNORE INTO incidents (id, key, conversation_id, trace_id, agent, first_ns, "
            "last_ns, severity, title, findings) VALUES (?,?,?,?,?,?,?,?,?,0)",
            (incident_id, key, finding.conversation_id, finding.trace_id, finding.agent, ts_ns,
             ts_ns, finding.severity, finding.title),
        )
        return incident_id

    def _touch_incident(self, incident_id: str, finding: Finding, ts_ns: int) -> None:
        row = self.db.execute("SELECT severity, first_ns, last_ns FROM incidents WHERE id = ?",
                              (incident_id,)).fetchone()
        if row is None:
            return
        worse = SEVERITY_ORDER.get(finding.severity, 0) > SEVERITY_ORDER.get(row["severity"], 0)
        self.db.execute(
            "UPDATE incidents SET findings = findings + 1, first_ns = MIN(first_ns, ?), "
            "last_ns = MAX(last_ns, ?), severity = CASE WHEN ? THEN ? ELSE severity END, "
            "title = CASE WHEN ? THEN ? ELSE title END, "
            "agent = COALESCE(agent, ?), trace_id = COALESCE(trace_id, ?) WHERE id = ?",
            (ts_ns, ts_ns, worse, finding.severity, worse, finding.title, finding.agent,
             finding.trace_id, incident_id),
        )

    def put_status(self, key: str, value: Any) -> None:
        self.begin()
        self.db.execute("INSERT OR REPLACE INTO status (key, value, updated_ns) VALUES (?,?,?)",
                        (key, _json(value), time.time_ns()))

    def prune(self, *, max_age_ns: int, max_events: int, max_spans: int) -> dict[str, int]:
        """Drop rows past the retention limits; returns how many of each went."""
        self.begin()
        cutoff = time.time_ns() - max_age_ns
        removed = {
            "events": self.db.execute("DELETE FROM events WHERE ts_ns < ?", (cutoff,)).rowcount,
            "spans": self.db.execute("DELETE FROM spans WHERE received_ns < ?", (cutoff,)).rowcount,
            "findings": self.db.execute("DELETE FROM findings WHERE ts_ns < ?", (cutoff,)).rowcount,
        }
        removed["incidents"] = self.db.execute(
            "DELETE FROM incidents WHERE last_ns < ?", (cutoff,)).rowcount
        for table, column, limit in (("events", "id", max_events),
                                     ("spans", "received_ns", max_spans),
                                     ("findings", "id", max_events)):
            count = self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if count > limit:
                removed[table] += self.db.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                    f"ORDER BY {column} LIMIT ?)", (count - limit,)).rowcount
        self.commit()
        return removed

    # -- reading ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        try:
            rows = self.db.execute("SELECT key, value, updated_ns FROM status").fetchall()
        except sqlite3.OperationalError:
            # A database the collector is creating right now has no tables yet.
            return {}
        return {row["key"]: {"value": json.loads(row["value"]), "updated_ns": row["updated_ns"]}
                for row in rows}

    def events(self, *, trace_id: str | None = None, kind: str | None = None,
               pid: int | None = None, limit: int = 200,
               attribution: str | None = None) -> list[dict[str, Any]]:
        """Kernel events, newest last, with the span they were joined to."""
        clauses: list[str] = []
        params: list[Any] = []
        if trace_id:
            clauses.append("e.trace_id = ?")
            params.append(trace_id)
        if kind:
            clauses.append("e.kind = ?")
            params.append(kind)
        if pid is not None:
            clauses.append("e.pid = ?")
            params.append(pid)
        if attribution:
            clauses.append("e.attribution = ?")
            params.append(attribution)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.execute(
            "SELECT * FROM (SELECT e.*, s.name AS span_name, s.tool AS tool, "
            "s.conversation_id AS conversation_id, s.turn AS turn, s.service AS service "
            f"FROM events e LEFT JOIN spans s ON {_EVENT_SPAN} {where} "
            "ORDER BY e.ts_ns DESC, e.id DESC LIMIT ?) ORDER BY ts_ns, id",
            (*params, limit),
        ).fetchall()
        return [_event_row(row) for row in rows]

    def spans(self, *, trace_ids: Sequence[str] = (), conversation_id: str | None = None,
              limit: int = 5000) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if trace_ids:
            clauses.append(f"trace_id IN ({','.join('?' * len(trace_ids))})")
            params.extend(trace_ids)
        if conversation_id:
            clauses.append("conversation_id = ?")
            params.append(conversation_id)
        where = ("WHERE " + " OR ".join(clauses)) if clauses else ""
        rows = self.db.execute(f"SELECT * FROM spans {where} ORDER BY start_ns LIMIT ?",
                               (*params, limit)).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            item["attributes"] = json.loads(item["attributes"])
            item["events"] = json.loads(item["events"])
            out.append(item)
        return out

    def findings(self, *, incident_id: str | None = None, limit: int = 1000) -> list[StoredFinding]:
        if incident_id:
            rows = self.db.execute(
                "SELECT * FROM findings WHERE incident_id = ? ORDER BY ts_ns LIMIT ?",
                (incident_id, limit)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM findings ORDER BY ts_ns DESC LIMIT ?",
                                   (limit,)).fetchall()
        return [_finding_row(row) for row in rows]

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM incidents ORDER BY last_ns DESC LIMIT ?",
                               (limit,)).fetchall()
        return [dict(row) for row in rows]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            # Accept an unambiguous prefix, as people type them.
            rows = self.db.execute("SELECT * FROM incidents WHERE id LIKE ? LIMIT 2",
                                   (incident_id + "%",)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return dict(row) if row is not None else None

    def events_for_traces(self, trace_ids: Sequence[str], limit: int = 5000) -> list[dict[str, Any]]:
        if not trace_ids:
            return []
        rows = self.db.execute(
            "SELECT e.*, s.name AS span_name, s.tool AS tool, s.conversation_id AS conversation_id, "
            "s.turn AS turn, s.service AS service FROM events e LEFT JOIN spans s "
            f"ON {_EVENT_SPAN} WHERE e.trace_id IN ({','.join('?' * len(trace_ids))}) "
            "ORDER BY e.ts_ns LIMIT ?", (*trace_ids, limit)).fetchall()
        return [_event_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        return {table: int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("events", "spans", "findings", "incidents")}

    # -- runtime AI-BOM inventories ----------------------------------------------------------

    def add_inventory(self, *, service: str, host: str, pid: int, started: float, sequence: int,
                      final: bool, info: dict[str, Any],
                      entries: Sequence[tuple[str, str, dict[str, Any]]],
                      process: AgentProcess | None = None, sender: str | None = None) -> int | None:
        """Merge one ``agentguard.aibom`` span into its agent's inventory; returns entries stored,
        ``None`` when the inventory had no room (see :meth:`_room_for_inventory`).

        ``service``, ``host``, ``pid`` and ``started`` are what the span says of itself. The
        inventory it goes to is the ``process`` the collector verified sent it, when there is
        one: that process's inventory whatever the span says (a report with another ``started``
        adds to it), and a new process on the pid gets a new one. Any other sender (``process``
        ``None``: found on no process here, or not verified as the process it names) has
        inventories of its own, by ``sender`` (its address) and what the span says, where
        another ``started`` for the same triple replaces the old one; it never reaches an
        inventory of a process. Entries are upserted (an inventory only grows); past
        :data:`MAX_AIBOM_ENTRIES` new ones are counted, not stored.
        """
        self.begin()
        now = time.time_ns()
        if process is not None:
            owner, row = self._process_inventory(process)
        else:
            owner = "sender:" + _json([sender, service, host, pid])
            row = self.db.execute(
                "SELECT id, started, sequence, final FROM aibom_agents WHERE owner = ?",
                (owner,)).fetchone()
            if row is not None and abs(float(row["started"]) - started) > 0.001:
                self._drop_inventory(int(row["id"]))
                row = None
        if row is None:
            if not self._room_for_inventory(verified=process is not None):
                return None
            agent_id = int(self.db.execute(
                "INSERT INTO aibom_agents (owner, service, host, pid, started, first_ns, last_ns, "
                "sequence, gaps, final, info, host_pid, process_started_ns, sender) "
                "VALUES (?,?,?,?,?,?,?,?,0,?,?,?,?,?)",
                (owner, service, host, pid, started, now, now, sequence, int(final), _json(info),
                 process.pid if process is not None else None,
                 _int64(process.started_ns) if process is not None else None, sender),
            ).lastrowid or 0)
        else:
            agent_id = int(row["id"])
            last = int(row["sequence"])
            # Parts of one emission share its sequence number; a jump means emissions were lost.
            missed = sequence - last - 1 if sequence > last + 1 else 0
            self.db.execute(
                "UPDATE aibom_agents SET last_ns = ?, sequence = MAX(sequence, ?), "
                "gaps = gaps + ?, final = ?, info = ?, started = MIN(started, ?) WHERE id = ?",
                (now, sequence, missed, int(final) if sequence >= last else int(row["final"]),
                 _json(info), started, agent_id))
        count = int(self.db.execute("SELECT COUNT(*) FROM aibom_entries WHERE agent_id = ?",
                                    (agent_id,)).fetchone()[0])
        stored = dropped = 0
        for kind, key, data in entries:
            text = _json(data)
            updated = self.db.execute(
                "UPDATE aibom_entries SET data = ?, updated_ns = ? WHERE agent_id = ? AND kind = ? "
                "AND key = ?", (text, now, agent_id, kind, key)).rowcount
            if updated:
                stored += 1
            elif count < MAX_AIBOM_ENTRIES:
                self.db.execute(
                    "INSERT INTO aibom_entries (agent_id, kind, key, data, first_ns, updated_ns) "
                    "VALUES (?,?,?,?,?,?)", (agent_id, kind, key, text, now, now))
                count += 1
                stored += 1
            else:
                dropped += 1
        if dropped:
            self.db.execute("UPDATE aibom_agents SET dropped = dropped + ? WHERE id = ?",
                            (dropped, agent_id))
        return stored

    def _process_inventory(self, process: AgentProcess) -> tuple[str, sqlite3.Row | None]:
        """The owner key of ``process``'s inventory and its row, if it has one yet."""
        prefix = f"process:{process.boot}:{process.pid}:"
        if process.start_ticks is not None:
            owner = f"{prefix}{process.start_ticks}"
            return owner, self.db.execute(
                "SELECT id, started, sequence, final FROM aibom_agents WHERE owner = ?",
                (owner,)).fetchone()
        # Gone before its start could be read: these are the last reports of the process last
        # known on the pid (as for its spans), so they go to that one's inventory.
        return f"{prefix}?", self.db.execute(
            "SELECT id, started, sequence, final FROM aibom_agents WHERE host_pid = ? AND "
            "substr(owner, 1, ?) = ? ORDER BY last_ns DESC LIMIT 1",
            (process.pid, len(prefix), prefix)).fetchone()

    def _room_for_inventory(self, *, verified: bool) -> bool:
        """Make room for one more inventory within :data:`MAX_AIBOM_AGENTS`; ``False`` when
        there is none for it.

        The inventories heard from least recently go, those of senders not verified as a process
        here (and legacy ones) first. A new inventory of such a sender never pushes out one of a
        process on this node: with no other of its kind left to go, it is not kept.
        """
        count = int(self.db.execute("SELECT COUNT(*) FROM aibom_agents").fetchone()[0])
        excess = count - MAX_AIBOM_AGENTS + 1
        if excess <= 0:
            return True
        victims = [int(row[0]) for row in self.db.execute(
            "SELECT id FROM aibom_agents WHERE host_pid IS NULL ORDER BY last_ns LIMIT ?",
            (excess,))]
        if len(victims) < excess:
            if not verified:
                return False
            victims += [int(row[0]) for row in self.db.execute(
                "SELECT id FROM aibom_agents WHERE host_pid IS NOT NULL ORDER BY last_ns "
                "LIMIT ?", (excess - len(victims),))]
        for victim in victims:
            self._drop_inventory(victim)
        return True

    def _drop_inventory(self, agent_id: int) -> None:
        self.db.execute("DELETE FROM aibom_entries WHERE agent_id = ?", (agent_id,))
        self.db.execute("DELETE FROM aibom_agents WHERE id = ?", (agent_id,))

    def prune_inventories(self, *, max_age_ns: int) -> int:
        """Drop the inventories of agents not heard from within ``max_age_ns``; returns how many."""
        self.begin()
        cutoff = time.time_ns() - max_age_ns
        old = self.db.execute("SELECT id FROM aibom_agents WHERE last_ns < ?", (cutoff,)).fetchall()
        for row in old:
            self._drop_inventory(int(row["id"]))
        self.commit()
        return len(old)

    def inventories(self, limit: int = MAX_AIBOM_AGENTS) -> list[dict[str, Any]]:
        """The agents with an inventory, most recently heard from first, with entry counts and
        whether each is a verified process of this node (``host_pid``, ``process_started_ns``)
        or another sender's claim (``sender``: its address)."""
        try:
            rows = self.db.execute(
                "SELECT a.*, (SELECT COUNT(*) FROM aibom_entries e WHERE e.agent_id = a.id) "
                "AS entries FROM aibom_agents a ORDER BY a.last_ns DESC LIMIT ?",
                (limit,)).fetchall()
        except sqlite3.OperationalError:
            return []  # a database from before inventories were kept
        out = []
        for row in rows:
            item = dict(row)
            item["info"] = json.loads(item["info"])
            item["final"] = bool(item["final"])
            # Sent by a process the collector found on this node (a database of an earlier
            # collector has no such column: none of its inventories was).
            item["verified"] = item.get("host_pid") is not None
            out.append(item)
        return out

    def inventory_entries(self, agent_id: int, limit: int = MAX_AIBOM_ENTRIES
                          ) -> list[dict[str, Any]]:
        """The stored entries of one agent's inventory (kind, key, data, first and last update)."""
        try:
            rows = self.db.execute(
                "SELECT kind, key, data, first_ns, updated_ns FROM aibom_entries "
                "WHERE agent_id = ? ORDER BY kind, key LIMIT ?", (agent_id, limit)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [{**dict(row), "data": json.loads(row["data"])} for row in rows]


def _event_row(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["data"] = json.loads(item["data"])
    item["candidates"] = json.loads(item["candidates"]) if item.get("candidates") else []
    if item.get("seen_by_library") is not None:
        item["seen_by_library"] = bool(item["seen_by_library"])
    return item


def _finding_row(row: sqlite3.Row) -> StoredFinding:
    item = dict(row)
    return StoredFinding(
        id=item["id"], rule_id=item["rule_id"], category=item["category"] or "runtime",
        severity=item["severity"], title=item["title"], action=item["action"] or "alert",
        kind=item["kind"] or "unknown", tool=item["tool"], agent=item["agent"],
        conversation_id=item["conversation_id"], turn=item["turn"], trace_id=item["trace_id"],
        span_id=item["span_id"], evidence=json.loads(item["evidence"]),
        timestamp=item["ts_ns"] / 1e9, source=item["source"], event_id=item["event_id"],
        incident_id=item["incident_id"],
    )
