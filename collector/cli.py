"""``agentguard collector ...`` and ``agentguard-collector``: run the daemon, read its database."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["add_incidents_parser", "add_parser", "build_parser", "main"]

# A status older than this (the daemon writes it every second) means the collector is gone.
_STALE_NS = 5 * 1_000_000_000


def _db_path(args: argparse.Namespace) -> str:
    from agentguard.collector.settings import ENV_PREFIX, default_db_path

    return str(args.db or os.environ.get(ENV_PREFIX + "DB") or default_db_path())


def _open_store(args: argparse.Namespace) -> Any:
    from agentguard.collector.store import Store, StoreError

    try:
        return Store(_db_path(args), readonly=True)
    except StoreError as exc:
        print(f"agentguard collector: {exc}", file=sys.stderr)
        return None


def _reading(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler``, a read command, with a database that fails while being read (damaged, or
    missing tables) reported in one line and exit status 2, like one that cannot be opened."""
    @functools.wraps(handler)
    def read(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except sqlite3.DatabaseError as exc:
            print(f"agentguard collector: {_db_path(args)}: cannot read the collector database "
                  f"({exc})", file=sys.stderr)
            return 2
    return read


def _console() -> Any:
    from rich.console import Console

    return Console(width=max(120, int(os.environ.get("COLUMNS", "0") or 0)), highlight=False)


# -- run -----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from agentguard.collector.daemon import Collector, CollectorError, tune_gc
    from agentguard.collector.receiver import ReceiverError
    from agentguard.collector.settings import SettingsError, load_settings
    from agentguard.collector.store import StoreError

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    overrides = {
        "db": args.db, "otlp_grpc": args.otlp_grpc, "otlp_http": args.otlp_http,
        "forward": args.forward, "metrics": args.metrics, "token": args.token, "sensor": args.sensor,
        "watch_pids": args.watch_pid, "watch_comm": args.watch_comm,
        "watch_cgroup": args.watch_cgroup, "hold_seconds": args.hold_seconds,
        "policy": args.policy, "profile": args.profile,
        "discover": False if args.no_discover else None,
    }
    try:
        settings = load_settings(overrides, config_file=args.config)
    except SettingsError as exc:
        print(f"agentguard collector: {exc}", file=sys.stderr)
        return 2
    if settings.sensor == "ebpf" and os.geteuid() != 0:
        print("agentguard collector: --sensor ebpf needs root (or CAP_BPF + CAP_PERFMON); run with "
              "sudo, or use --sensor procfs", file=sys.stderr)
        return 2
    try:
        collector = Collector(settings)
        tune_gc()
        return collector.run()
    except (CollectorError, ReceiverError, StoreError) as exc:
        print(f"agentguard collector: {exc}", file=sys.stderr)
        return 2


# -- read commands -------------------------------------------------------------------------


@_reading
def _status(args: argparse.Namespace) -> int:
    store = _open_store(args)
    if store is None:
        return 2
    try:
        status = store.status()
        counts = store.counts()
    finally:
        store.close()
    collector = status.get("collector", {})
    value = collector.get("value", {})
    pid = value.get("pid")
    fresh = time.time_ns() - int(collector.get("updated_ns") or 0) < _STALE_NS
    alive = bool(value.get("state") == "running" and fresh and pid and
                 os.path.exists(f"/proc/{pid}"))
    if args.json:
        print(json.dumps({**value, "alive": alive, "stored": counts}, indent=2, default=str))
    else:
        from agentguard.collector.render import print_status

        console = _console()
        print_status(console, status, alive)
        console.print(f"stored: {counts}")
    return 0 if alive else 3


@_reading
def _events(args: argparse.Namespace) -> int:
    store = _open_store(args)
    if store is None:
        return 2
    try:
        events = store.events(trace_id=args.trace_id, kind=args.kind, pid=args.pid,
                              limit=args.limit,
                              attribution="unattributed" if args.unattributed else None)
    finally:
        store.close()
    if args.json:
        for event in events:
            event["attributed_to"] = "unattributed" if not event.get("span_id") else {
                "trace_id": event.get("trace_id"), "span_id": event.get("span_id"),
                "conversation_id": event.get("conversation_id"), "turn": event.get("turn"),
                "tool": event.get("tool"),
            }
        print(json.dumps(events, indent=2, default=str))
    else:
        from agentguard.collector.render import print_events

        print_events(_console(), events)
    return 0


@_reading
def _incidents(args: argparse.Namespace) -> int:
    from agentguard.collector.incidents import build_incident, list_incidents

    store = _open_store(args)
    if store is None:
        return 2
    try:
        if args.id:
            incident = build_incident(store, args.id)
            if incident is None:
                print(f"agentguard collector: no incident {args.id!r}", file=sys.stderr)
                return 1
            incidents = [incident]
        else:
            rows = list_incidents(store, args.limit)
            if not args.html and not args.json:
                from agentguard.collector.render import print_incidents

                print_incidents(_console(), rows)
                return 0
            incidents = [i for i in (build_incident(store, row["id"]) for row in rows) if i]
    finally:
        store.close()
    if args.html:
        from agentguard.collector.render import incident_html

        if not incidents:
            print("agentguard collector: no incidents to report", file=sys.stderr)
            return 1
        with open(args.html, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(incident_html(incidents))
        print(f"wrote {args.html} ({len(incidents)} incident(s))")
        return 0
    if args.json:
        payload: Any = [i.model_dump(mode="json") for i in incidents]
        print(json.dumps(payload[0] if args.id else payload, indent=2, default=str))
        return 0
    from agentguard.collector.render import print_incident

    print_incident(_console(), incidents[0])
    return 0


# -- agentguard incidents list|show|report ------------------------------------------------


@_reading
def _incidents_list(args: argparse.Namespace) -> int:
    from agentguard.collector.incidents import list_incidents

    store = _open_store(args)
    if store is None:
        return 2
    try:
        rows = list_incidents(store, args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no incidents")
        return 0
    from agentguard.collector.render import print_incidents

    print_incidents(_console(), rows)
    return 0


def _load_incident(args: argparse.Namespace) -> tuple[Any, int]:
    """The incident named by ``args.id`` (or a unique prefix), or ``None`` and the exit status
    after saying why: 2 when the database cannot be read, 1 when it has no such incident."""
    from agentguard.collector.incidents import build_incident

    store = _open_store(args)
    if store is None:
        return None, 2
    try:
        incident = build_incident(store, args.id)
    finally:
        store.close()
    if incident is None:
        print(f"agentguard incidents: no incident {args.id!r} in {_db_path(args)} "
              f"(see agentguard incidents list)", file=sys.stderr)
        return None, 1
    return incident, 0


@_reading
def _incidents_show(args: argparse.Namespace) -> int:
    incident, status = _load_incident(args)
    if incident is None:
        return status
    if args.json:
        print(json.dumps(incident.model_dump(mode="json"), indent=2, default=str))
        return 0
    from agentguard.collector.render import print_incident

    print_incident(_console(), incident)
    return 0


@_reading
def _incidents_report(args: argparse.Namespace) -> int:
    incident, status = _load_incident(args)
    if incident is None:
        return status
    from agentguard.collector.render import incident_html

    page = incident_html([incident])
    try:
        with open(args.output, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(page)
    except OSError as exc:
        print(f"agentguard incidents: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} (incident {incident.id}, {len(page):,} bytes)")
    return 0


def add_incidents_parser(commands: Any) -> None:
    """Add ``incidents list|show|report`` to the ``agentguard`` command's subcommands."""
    incidents = commands.add_parser(
        "incidents", help="attack stories recorded by the collector: list, show, report",
        description="Incidents (attack stories) the collector assembled from related findings of "
                    "one conversation or trace. Reads the collector's database; the same as "
                    "'agentguard collector incidents'.")
    sub = incidents.add_subparsers(dest="incidents_command", required=True)
    listing = sub.add_parser("list", help="the incidents, newest first")
    _add_db(listing)
    listing.add_argument("--json", action="store_true", help="the index as a JSON array")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_incidents_list)
    show = sub.add_parser("show", help="one incident: timeline, process tree, findings, narrative")
    _add_db(show)
    show.add_argument("id", help="incident id (or a unique prefix)")
    show.add_argument("--json", action="store_true", help="the whole incident as JSON")
    show.set_defaults(handler=_incidents_show)
    report = sub.add_parser("report", help="write one incident as a self-contained HTML page")
    _add_db(report)
    report.add_argument("id", help="incident id (or a unique prefix)")
    report.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the HTML file to write (inline CSS, no scripts, no external assets)")
    report.set_defaults(handler=_incidents_report)


# -- parser --------------------------------------------------------------------------------


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="collector database (default: AGENTGUARD_COLLECTOR_DB, "
                                     "/var/lib/agentguard/collector.db as root)")


def _fill(collector: argparse.ArgumentParser) -> None:
    sub = collector.add_subparsers(dest="collector_command", required=True)
    run = sub.add_parser("run", help="run the collector daemon (root for the eBPF sensor)",
                         description="Receive agent spans by OTLP, watch the agents' processes "
                                     "in the kernel, join both, judge, store and forward. "
                                     "Settings also come from AGENTGUARD_COLLECTOR_* variables "
                                     "and --config FILE (YAML).")
    _add_db(run)
    run.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC listener "
                     "(default 127.0.0.1:4317; 'off' to disable)")
    run.add_argument("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP listener "
                     "(default 127.0.0.1:4318; 'off' to disable)")
    run.add_argument("--forward", metavar="URL", help="send enriched spans to this OTLP endpoint "
                     "(http://host:4318, grpc://host:4317)")
    run.add_argument("--metrics", metavar="URL",
                     help="export the collector's counters as OTLP metrics to this endpoint")
    run.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on OTLP requests")
    run.add_argument("--config", metavar="FILE", help="YAML file with collector settings")
    run.add_argument("--sensor", choices=["auto", "ebpf", "procfs", "none"])
    run.add_argument("--watch-pid", type=int, action="append", metavar="PID",
                     help="watch this process tree (repeatable)")
    run.add_argument("--watch-comm", metavar="NAME",
                     help="watch every process that executes a program with this name (eBPF)")
    run.add_argument("--watch-cgroup", metavar="PATH|ID",
                     help="watch every process that executes in this cgroup v2 (eBPF)")
    run.add_argument("--hold-seconds", type=float,
                     help="how long a kernel event waits for its agent span (default 10)")
    run.add_argument("--policy", action="append", metavar="FILE",
                     help="policy file judged against kernel events (repeatable)")
    run.add_argument("--profile", metavar="FILE",
                     help="behavioural profile (learned by the library) to score kernel events")
    run.add_argument("--no-discover", action="store_true",
                     help="do not watch processes found by their AGENTGUARD_* environment")
    run.add_argument("--log-level", default="info")
    run.set_defaults(handler=_run)

    status = sub.add_parser("status", help="health and counters of the collector")
    _add_db(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    events = sub.add_parser("events", help="kernel events and the span each was joined to")
    _add_db(events)
    events.add_argument("--trace-id")
    events.add_argument("--kind", help="e.g. process.exec, net.connect, dns.query, file.open")
    events.add_argument("--pid", type=int)
    events.add_argument("--unattributed", action="store_true", help="only events joined to no span")
    events.add_argument("--limit", type=int, default=200)
    events.add_argument("--json", action="store_true")
    events.set_defaults(handler=_events)

    incidents = sub.add_parser("incidents", help="attack stories: list, show one, or write HTML")
    _add_db(incidents)
    incidents.add_argument("id", nargs="?", help="incident id (or a unique prefix) to show")
    incidents.add_argument("--json", action="store_true")
    incidents.add_argument("--html", metavar="FILE",
                           help="write a self-contained HTML report (the incident, or all listed)")
    incidents.add_argument("--limit", type=int, default=50)
    incidents.set_defaults(handler=_incidents)


def add_parser(commands: Any) -> None:
    """Add ``collector`` to the ``agentguard`` command's subcommands."""
    collector = commands.add_parser(
        "collector", help="the node-side collector: eBPF sensor, OTLP receiver, incidents",
        description="The node-side collector daemon and its read commands.")
    _fill(collector)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentguard-collector",
                                     description="The agentguard node-side collector.")
    _fill(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``agentguard-collector [run|status|events|incidents] ...``; no subcommand means ``run``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments = ["run", *arguments]
    args = build_parser().parse_args(arguments)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
