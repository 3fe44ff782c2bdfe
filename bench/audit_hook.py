"""Cost of the runtime sensor: per audit event, and on import-heavy and I/O-heavy workloads.

Audit hooks cannot be removed, so each variant runs in its own interpreter: ``off`` is
``agentguard.instrument(runtime_sensor=False)`` (no hook at all), ``on`` the default set-up with
the sensor (its hook entered from the C extension when it is built), ``python`` the same with
the pure-Python hook (``AGENTGUARD_SENSOR_HOOK=python``). All trace to an exporter that drops
spans. The 3% target applies to ``on``.

* per event: ``sys.audit`` of a real event shape, timed in a loop; the cost of the hook is the
  difference between a sensor variant and ``off``: events nobody asked for, reads the sensor
  ignores (bytecode, an ordinary file), a lookup of a literal address, a submodule import, a
  connection reported on a tool span (with and without a policy callback judging it), and the
  same connection repeated in one tool call (settled by the repeat table). And per unpickle:
  ``pickle.loads`` of a dict of 10 ints and of five objects of five classes (the loader wrapper,
  and one ``pickle.find_class`` event per global), shown as ratios to ``off``.
* imports: each fresh interpreter imports a set of standard-library and installed packages.
* I/O: inside a tool call, a loop reading small files, rewriting one, and opening a loopback
  TCP connection that sends 512 bytes.

On a shared machine the speed of the CPU changes from one second to the next by more than the
few percent measured here, so the comparison is made between neighbours: the interpreters of a
set stay up, and rounds of the I/O loop alternate between them (off, on, python, switch, off,
...); each round of a sensor variant is divided by the ``off`` round just before it, and the
slowdown is the median of those ratios (the middle half of them is shown). Imports can run only
once per interpreter: one ratio per set. Times are CPU time of the measuring thread (the hook's
cost is CPU; waiting while other processes run is not).

Two interpreters running the same code also differ by a few percent on their own (where the
allocator and the loader placed things), which a handful of sets does not average out. So each
workload is also measured within one process. ``switch`` starts like ``off`` (no hook), imports
half of the modules, runs its I/O rounds in the rotation, then turns the sensor on
(``instrument(runtime_sensor=True)`` adds the hook), imports the other half and runs as many
rounds again. I/O: the ratio of its two medians against ``off`` (``off`` takes out the machine's
drift; the process is the same on both sides). Imports: its second half over its first, divided
by the same ratio of ``steady``, an interpreter with the same history whose sensor stays off
(which first loads what turning the sensor on loaded in ``switch``). The I/O target is read from
the first (``--control`` shows its own error, a few tenths); the halves of the imports spread
too much from set to set, so imports are read between interpreters. Garbage left by
``instrument()`` is collected before anything is timed: the collection it brings forward (~25
ms, once) belongs to ``instrument()``, whose own time is shown apart.

    .venv/bin/python bench/audit_hook.py
    .venv/bin/python bench/audit_hook.py --json
    .venv/bin/python bench/audit_hook.py --check      # exit status 1 above the 3% target
    .venv/bin/python bench/audit_hook.py --repeats 9 --io-rounds 30   # on a busy machine
    .venv/bin/python bench/audit_hook.py --control    # the one-interpreter method's own error
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from _harness import Child, child_env, noop_exporter, reply

TARGET_SLOWDOWN = 0.03
# Off/on pairs of one workload further apart than this mark the run as noisy.
NOISY_SPREAD = 0.10
# ``steady`` is a second ``switch`` that never turns the sensor on: it imports the same halves
# after the same history (I/O rounds included), so the difference between the halves cancels.
VARIANTS = ("off", "on", "python", "switch", "steady")
ROTATION = VARIANTS
SENSOR_VARIANTS = ("on", "python")
MICRO_VARIANTS = ("off", "on", "python")
HALVES = ("switch", "steady")

# Imported by the import workload, when present: standard-library modules agentguard does not
# load itself, then a few installed packages.
IMPORTS = (
    "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "email.mime.multipart",
    "email.mime.text", "email.parser", "http.cookies", "http.server", "ftplib", "imaplib",
    "smtplib", "poplib", "mailbox", "mimetypes", "wave", "colorsys", "csv", "sqlite3", "difflib",
    "decimal", "fractions", "statistics", "plistlib", "tarfile", "zipfile", "gzip", "bz2",
    "lzma", "shelve", "dbm", "configparser", "argparse", "optparse", "getopt", "gettext",
    "locale", "calendar", "pprint", "reprlib", "textwrap", "unicodedata", "stringprep",
    "codeop", "code", "pdb", "profile", "cProfile", "pstats", "timeit", "trace", "tracemalloc",
    "doctest", "unittest", "unittest.mock", "xmlrpc.client", "xmlrpc.server", "wsgiref.simple_server",
    "urllib.robotparser", "html.parser", "webbrowser", "uuid", "ipaddress", "secrets", "hmac",
    "sched", "queue", "selectors", "asyncio", "concurrent.futures", "multiprocessing",
    "ctypes", "curses", "sqlite3.dump", "zoneinfo", "graphlib", "tomllib", "filecmp", "fileinput",
    "requests", "httpx", "yaml", "jinja2", "numpy",
)


# -- child: one variant ----------------------------------------------------------------------------

# Timing: CPU time of the measuring thread (what the hook costs is CPU; time spent waiting while
# other processes run is not), and the fastest of several rounds (noise only ever adds time).
_CLOCK = time.thread_time_ns
ROUNDS = 7


def _per_call(fn: Callable[[], object], iterations: int) -> float:
    """The fastest of several rounds, in ns per call of ``fn``."""
    rounds = []
    for _ in range(ROUNDS):
        start = _CLOCK()
        for _ in range(iterations):
            fn()
        rounds.append((_CLOCK() - start) / iterations)
    return min(rounds)


# The halves ``switch`` and ``steady`` import before and after the switch (alternate names, so
# both get packages of every kind).
IMPORTS_BEFORE = IMPORTS[0::2]
IMPORTS_AFTER = IMPORTS[1::2]


def _import_workload(names: Sequence[str] = IMPORTS) -> tuple[float, int]:
    import importlib

    start = _CLOCK()
    count = 0
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.__import__(name)
        except Exception:
            continue
        count += 1
    return (_CLOCK() - start) / 1e6, count


class _Sink:
    """A loopback TCP server that reads whatever it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while conn.recv(4096):
                    pass


class _IOWorkload:
    """Inside a tool call, a loop reading small files, rewriting one, and sending 512 bytes over
    a new loopback TCP connection; one :meth:`round` is ``iterations`` turns of the loop."""

    def __init__(self, guard: Any, iterations: int) -> None:
        self.guard = guard
        self.iterations = iterations
        folder = tempfile.mkdtemp(prefix="agentguard-bench-")
        self.files = []
        for index in range(10):
            path = os.path.join(folder, f"doc-{index}.txt")
            with open(path, "w") as handle:
                handle.write("x" * 2048)
            self.files.append(path)
        self.out = os.path.join(folder, "summary.txt")
        self.sink = _Sink()

    def round(self) -> float:
        """CPU ms of the measuring thread for one round (in a fresh tool call)."""
        files, out, port, payload = self.files, self.out, self.sink.port, b"y" * 512
        op = self.guard.start_tool("bench_io", call_id="bench-io")
        token = op.activate()
        try:
            start = _CLOCK()
            for _ in range(self.iterations):
                for path in files:
                    with open(path) as handle:
                        handle.read()
                with open(out, "w") as handle:
                    handle.write("done")
                with socket.create_connection(("127.0.0.1", port)) as conn:
                    conn.sendall(payload)
            return (_CLOCK() - start) / 1e6
        finally:
            op.deactivate(token)
            op.end_tool(None)


UNPICKLES = ("unpickle_plain", "unpickle_classes")


def _pickles() -> tuple[bytes, bytes]:
    """A dict of 10 ints (no global), and five objects of five classes (five globals); their
    modules are imported only now, after the import workload."""
    import datetime
    import decimal
    import fractions
    import pickle
    import uuid
    from collections import OrderedDict

    classes = [OrderedDict(a=1), datetime.date(2024, 1, 1), decimal.Decimal("1.5"),
               fractions.Fraction(1, 3), uuid.UUID(int=1)]
    return pickle.dumps({f"k{index}": index for index in range(10)}), pickle.dumps(classes)


def _micro(guard: Any, iterations: int) -> dict[str, float]:
    audit = sys.audit
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    pyc = os.path.join(os.path.dirname(os.__file__), "__pycache__", "os.cpython-311.pyc")
    plain = os.path.join(tempfile.gettempdir(), "agentguard-bench", "data.txt")
    results = {
        "uninteresting": _per_call(lambda: audit("agentguard.bench.nothing", 1), iterations),
        "socket_new": _per_call(lambda: audit("socket.__new__", None, 2, 1, 0), iterations),
        "open_bytecode": _per_call(lambda: audit("open", pyc, "r", flags), iterations),
        "open_ordinary": _per_call(lambda: audit("open", plain, "r", flags), iterations),
        "lookup_literal": _per_call(
            lambda: audit("socket.getaddrinfo", "127.0.0.1", 80, 0, 1, 0, 0), iterations),
        "import_submodule": _per_call(
            lambda: audit("import", "os.path", None, sys.path, sys.meta_path, sys.path_hooks),
            iterations),
    }
    # Reported events: a connection on a tool span. A new tool call every 32 events keeps each
    # span under the sensor's per-span budget, so every event is written.
    sock = socket.socket()
    reported = max(iterations // 20, 200)
    ports = iter(range(10**9))

    def connect_in_tools() -> float:
        clock = _CLOCK
        total = 0
        done = 0
        while done < reported:
            op = guard.start_tool("bench_net")
            token = op.activate()
            try:
                start = clock()
                for _ in range(32):
                    audit("socket.connect", sock, ("127.0.0.1", next(ports) % 60000 + 1))
                total += clock() - start
            finally:
                op.deactivate(token)
                op.end_tool(None)
            done += 32
        return total / done

    def repeat_in_tool() -> float:
        # One address again and again in one tool call: the first is written, the second
        # counted by its handler (which fills the repeat table), the rest settled by the table.
        op = guard.start_tool("bench_repeat")
        token = op.activate()
        try:
            address = ("127.0.0.1", 9)
            for _ in range(2):
                audit("socket.connect", sock, address)
            start = _CLOCK()
            for _ in range(iterations):
                audit("socket.connect", sock, address)
            return (_CLOCK() - start) / iterations
        finally:
            op.deactivate(token)
            op.end_tool(None)

    # Unpickling: the pickle.loads wrapper, and the pickle.find_class event of each global
    # (judged once, then a cached verdict).
    plain, classes = _pickles()
    loads = sys.modules["pickle"].loads  # (the sensor's wrapper, when it runs)
    results["unpickle_plain"] = _per_call(lambda: loads(plain), iterations)
    results["unpickle_classes"] = _per_call(lambda: loads(classes), iterations)
    results["connect_reported"] = min(connect_in_tools() for _ in range(ROUNDS))
    results["connect_repeat"] = min(repeat_in_tool() for _ in range(ROUNDS))
    guard.add_policy(lambda event: None)
    results["connect_reported_judged"] = min(connect_in_tools() for _ in range(ROUNDS))
    sock.close()
    return results


def run_child(variant: str, iterations: int, io_iterations: int, control: bool = False) -> None:
    """A variant's interpreter: imports once, then answers ``io`` (one round of the I/O loop),
    ``micro`` (the per-event costs) and, for ``switch``, ``enable`` (the sensor on from now; with
    ``control``, configured again with the sensor still off), one JSON line each."""
    import agentguard
    from agentguard import sensors

    settings: dict[str, Any] = dict(exporter=noop_exporter(), service_name="bench",
                                    builtin_rules=False, injection_detection=False)
    started = _CLOCK()
    guard = agentguard.instrument(runtime_sensor=variant in SENSOR_VARIANTS, **settings)
    instrument_ms = (_CLOCK() - started) / 1e6
    # instrument()'s garbage is its own cost (shown apart), not the imports': whichever
    # collection it brings forward would otherwise land in the timed imports (~25 ms once).
    gc.collect()
    imports_ms, imported = _import_workload(IMPORTS_BEFORE if variant in HALVES else IMPORTS)
    workload = _IOWorkload(guard, io_iterations)
    for _ in range(3):
        workload.round()  # warm-up: first connections, first span events, allocator pools
    # Only now: the parent starts the next interpreter (and its imports) after this answer.
    reply({"hook": sensors.hook_kind() or "none", "imports_ms": imports_ms,
           "imported": imported, "instrument_ms": instrument_ms})
    for line in sys.stdin:
        command = line.strip()
        if command == "io":
            reply({"io_ms": workload.round()})
        elif command == "micro":
            reply({"micro": _micro(guard, iterations)})
        elif command == "enable":
            loaded = set(sys.modules)
            workload.guard = agentguard.instrument(runtime_sensor=not control, **settings)
            preloaded = sorted(set(sys.modules) - loaded)
            gc.collect()
            after_ms, _ = _import_workload(IMPORTS_AFTER)
            workload.round()
            reply({"hook": sensors.hook_kind() or "none", "imports_after_ms": after_ms,
                   "preloaded": preloaded})
        elif command.startswith("imports "):
            # Configured again as ``switch`` is (a new tracer provider and export thread), with
            # the sensor still off; what turning the sensor on loaded there is loaded here too
            # (untimed), so both import the same second half after the same history.
            workload.guard = agentguard.instrument(runtime_sensor=False, **settings)
            _import_workload(json.loads(command[len("imports "):]))
            gc.collect()
            after_ms, _ = _import_workload(IMPORTS_AFTER)
            reply({"imports_after_ms": after_ms})
        else:
            break
    agentguard.uninstrument()


# -- parent ----------------------------------------------------------------------------------------

def _start(variant: str, iterations: int, io_iterations: int, control: bool) -> Child:
    env = child_env()
    if variant == "python":
        env["AGENTGUARD_SENSOR_HOOK"] = "python"
    return Child(variant, [sys.executable, __file__, "--child", variant, "--iterations",
                           str(iterations), "--io-iterations", str(io_iterations),
                           *(["--control"] if control else [])], env)


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def measure(repeats: int, iterations: int, io_iterations: int, io_rounds: int,
            control: bool = False) -> dict[str, Any]:
    """``repeats`` fresh sets of the interpreters; in each, the I/O rounds alternate between the
    variants (off, on, python, switch, off, ...), so neighbouring rounds see the same machine,
    and each round's ratio is taken against the ``off`` round just before it. Then ``switch``
    turns the sensor on and alternates with ``off`` for as many rounds again."""
    imports: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    io: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    micro_runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in MICRO_VARIANTS}
    switched: list[float] = []  # per set: the switch interpreter's I/O slowdown ratio
    imports_switched: list[float] = []  # per set: its import slowdown, against steady's
    instrument_ms: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    hooks: dict[str, str] = {}
    imported = 0
    loads = [_load()]
    for _ in range(repeats):
        children: dict[str, Child] = {}
        try:
            for variant in VARIANTS:
                # One at a time, so the import workloads do not compete with each other.
                children[variant] = _start(variant, iterations, io_iterations, control)
                first = children[variant].read()
                hooks[variant] = first["hook"]
                imports[variant].append(first["imports_ms"])
                instrument_ms[variant].append(first["instrument_ms"])
                if variant not in HALVES:
                    imported = first["imported"]
            # The same rotation before and after the switch: which processes ran in between
            # decides how much of a process's memory is still in the caches.
            phases: list[list[float]] = [[], []]
            for phase in phases:
                if phase is phases[1]:
                    enabled = children["switch"].send("enable")
                    hooks["switch"] = enabled["hook"]
                    steady = children["steady"].send("imports " + json.dumps(enabled["preloaded"]))
                    imports_switched.append(
                        (enabled["imports_after_ms"] / imports["switch"][-1])
                        / (steady["imports_after_ms"] / imports["steady"][-1]))
                for _ in range(io_rounds):
                    ms = {variant: children[variant].send("io")["io_ms"] for variant in ROTATION}
                    phase.append(ms["switch"] / ms["off"])
                    for variant in ROTATION:
                        if variant not in HALVES:
                            io[variant].append(ms[variant])
            switched.append(statistics.median(phases[1]) / statistics.median(phases[0]))
            for variant in MICRO_VARIANTS:
                micro_runs[variant].append(children[variant].send("micro")["micro"])
        finally:
            for child in children.values():
                child.close()
        loads.append(_load())

    def ratios(samples: dict[str, list[float]], variant: str) -> dict[str, float]:
        values = [b / a for a, b in zip(samples["off"], samples[variant], strict=True)]
        return {"ms": statistics.median(samples[variant]), "ratio": statistics.median(values),
                "ratio_min": min(values), "ratio_max": max(values),
                "ratio_p25": statistics.quantiles(values, n=4)[0] if len(values) > 1 else
                values[0],
                "ratio_p75": statistics.quantiles(values, n=4)[2] if len(values) > 1 else
                values[0]}

    workloads = {name: {"off_ms": statistics.median(samples["off"]), "samples":
                        len(samples["off"]),
                        **{variant: ratios(samples, variant) for variant in SENSOR_VARIANTS}}
                 for name, samples in (("imports", imports), ("io", io))}
    micro = {name: {variant: statistics.median(run[name] for run in micro_runs[variant])
                    for variant in MICRO_VARIANTS}
             for name in micro_runs["on"][0]}
    return {
        "repeats": repeats,
        "io_rounds": io_rounds,
        "hooks": hooks,
        "load_average": {"min": min(loads), "max": max(loads)},
        "imported_modules": imported,
        "io_iterations": io_iterations,
        "per_event_ns": {name: {**v, **{f"hook_{variant}": v[variant] - v["off"]
                                        for variant in SENSOR_VARIANTS}}
                         for name, v in micro.items()},
        "workloads": workloads,
        # The I/O loop in one interpreter before and after the sensor is turned on: one ratio
        # per set (its median against ``off`` after, divided by the same before).
        "io_same_interpreter": {"ratio": statistics.median(switched), "ratio_min": min(switched),
                                "ratio_max": max(switched), "sets": len(switched),
                                "control": control},
        # The second half of the imports after turning the sensor on, over the first half
        # before, in ``switch``; divided by the same ratio of ``steady`` (sensor never on).
        # instrument() itself (CPU ms of the calling thread), median of the sets.
        "instrument_ms": {variant: statistics.median(instrument_ms[variant])
                          for variant in MICRO_VARIANTS},
        "imports_same_interpreter": {"ratio": statistics.median(imports_switched),
                                     "ratio_min": min(imports_switched),
                                     "ratio_max": max(imports_switched),
                                     "sets": len(imports_switched), "control": control},
        "target_slowdown": TARGET_SLOWDOWN,
    }


def _print(result: dict[str, Any]) -> None:
    hooks = result["hooks"]
    load = result["load_average"]
    print(f"runtime sensor cost: {result['repeats']} sets of interpreters, "
          f"{result['io_rounds']} interleaved I/O rounds each; hook of 'on': {hooks['on']}, of "
          f"'python': {hooks['python']}; load average {load['min']:.2f}..{load['max']:.2f}\n")
    print(f"{'audit event':28s} {'off ns':>8s} {'on ns':>8s} {'python ns':>10s}  "
          f"{'hook ns: on':>11s} {'python':>7s}")
    labels = {
        "uninteresting": "nobody asked for it",
        "socket_new": "socket.__new__ (no handler)",
        "open_bytecode": "open: bytecode read",
        "open_ordinary": "open: ordinary file read",
        "lookup_literal": "getaddrinfo: literal IP",
        "import_submodule": "import: loaded package",
        "connect_reported": "connect in a tool",
        "connect_repeat": "connect repeated in a tool",
        "connect_reported_judged": "connect in a tool + policy",
    }
    for name, values in result["per_event_ns"].items():
        if name in UNPICKLES:
            continue
        print(f"{labels.get(name, name):28s} {values['off']:8.0f} {values['on']:8.0f} "
              f"{values['python']:10.0f}  {values['hook_on']:11.0f} {values['hook_python']:7.0f}")
    print(f"\n{'pickle.loads, per call':28s} {'off ns':>8s} {'on ns':>8s} {'python ns':>10s}  "
          f"{'on/off':>11s} {'python/off':>10s}")
    for name, label in (("unpickle_plain", "a dict of 10 ints"),
                        ("unpickle_classes", "5 objects of 5 classes")):
        values = result["per_event_ns"].get(name)
        if values is not None:
            print(f"{label:28s} {values['off']:8.0f} {values['on']:8.0f} {values['python']:10.0f}"
                  f"  {values['on'] / values['off']:10.2f}x {values['python'] / values['off']:9.2f}x")
    print(f"\n{'workload (pairs)':28s} {'off ms':>8s} {'on':>8s} {'middle half':>15s}   "
          f"{'python':>8s} {'middle half':>15s}")
    noisy = False
    for name, values in result["workloads"].items():
        label = {"imports": f"import {result['imported_modules']} modules",
                 "io": f"I/O loop x{result['io_iterations']}"}[name]
        label = f"{label} ({values['samples']})"
        cells = []
        for variant in SENSOR_VARIANTS:
            entry = values[variant]
            low, high = (entry["ratio_p25"] - 1) * 100, (entry["ratio_p75"] - 1) * 100
            if variant == "on":
                noisy = noisy or high - low > NOISY_SPREAD * 100
            cells.append(f"{(entry['ratio'] - 1) * 100:+7.1f}% {f'{low:+.1f}..{high:+.1f}%':>15s}")
        print(f"{label:28s} {values['off_ms']:8.1f} {cells[0]}   {cells[1]}")
    setup = result["instrument_ms"]
    print(f"{'instrument() itself, ms':28s} {setup['off']:8.1f} {setup['on']:8.1f}"
          f"{'':16s}   {setup['python']:8.1f}   (once, before the workloads; its garbage is"
          " collected before they start)")
    control = result["io_same_interpreter"]["control"]
    how = "CONTROL: the sensor left off" if control else "before/after turning the sensor on"
    print(f"\none interpreter ({how}; median, range of the sets):")
    for key, label in (("imports_same_interpreter", "imports, 2nd half / 1st"),
                       ("io_same_interpreter", "I/O loop")):
        same = result[key]
        low, high = (same["ratio_min"] - 1) * 100, (same["ratio_max"] - 1) * 100
        sets = same["sets"]
        print(f"{f'{label} ({sets})':28s} {'':8s} "
              f"{(same['ratio'] - 1) * 100:+7.1f}% {f'{low:+.1f}..{high:+.1f}%':>15s}")
    worst = _worst(result)
    verdict = "within" if worst <= TARGET_SLOWDOWN else "ABOVE"
    print(f"\nslowdown (imports between interpreters, I/O within one): worst "
          f"{worst * 100:.1f}%: {verdict} the target of {TARGET_SLOWDOWN * 100:.0f}%")
    if noisy:
        print(f"warning: the middle half of one workload's on/off ratios spans more than "
              f"{NOISY_SPREAD * 100:.0f} points; the machine was busy, rerun with more "
              "--repeats/--io-rounds")


def _worst(result: dict[str, Any]) -> float:
    """The target's reading: the I/O loop within one interpreter, before and after the sensor
    is turned on (between interpreters, layout differences of a few percent dominate); imports
    between interpreters (halves of one interpreter spread too much, ``--control`` shows it)."""
    return float(max(result["workloads"]["imports"]["on"]["ratio"],
                     result["io_same_interpreter"]["ratio"]) - 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20000,
                        help="sys.audit calls per per-event measurement round")
    parser.add_argument("--io-iterations", type=int, default=50,
                        help="iterations of the I/O loop per round")
    parser.add_argument("--io-rounds", type=int, default=15,
                        help="interleaved I/O rounds per variant in each set of interpreters")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a workload slows down more than 3%%")
    parser.add_argument("--control", action="store_true",
                        help="'switch' leaves the sensor off: the one-interpreter figure then "
                             "shows the method's own error (about zero)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.iterations, args.io_iterations, args.control)
        return 0
    result = measure(args.repeats, args.iterations, args.io_iterations, args.io_rounds,
                     args.control)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 1 if args.check and _worst(result) > TARGET_SLOWDOWN else 0


if __name__ == "__main__":
    sys.exit(main())
