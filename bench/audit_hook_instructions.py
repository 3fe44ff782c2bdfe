"""Cost of the runtime sensor in instructions: the same workloads as ``audit_hook.py``, counted
by valgrind's callgrind instead of timed.

Timing a few percent on a shared machine is noisy (``audit_hook.py`` shows the spread). An
instruction count is not: CPU frequency, other processes and the other threads do not change how
many instructions the measuring thread executes. Each variant (``off``: no hook, ``on``: the
default set-up with the sensor) runs in its own interpreter under callgrind with one output file
per thread; only the main thread's count is read. The cost of a workload is the count of a run
that does it minus the count of a run that stops just before it (same start-up, same warm-up):

* imports: the import workload of ``audit_hook.py`` (standard-library and installed packages);
* I/O: ``--rounds`` rounds of its I/O loop inside a tool call (small file reads, a rewrite, a
  loopback TCP connection).

What a count leaves out, and how it is shown: kernel work (the system calls are the same with the
sensor on and off; ``strace`` counts agree), so a ratio of user-space instructions overstates the
slowdown of a workload that spends much of its time in the kernel. The I/O loop's split of CPU
time between user space and the kernel is measured natively (``getrusage`` of the thread, sensor
off), and the estimated CPU slowdown is the instruction ratio scaled by the user-space share.
Cache effects are not in an instruction count; ``--cache-sim`` has callgrind simulate the caches
and estimates cycles the usual way (an instruction each, 10 per first-level miss, 100 per
last-level miss), and ``audit_hook.py`` times the real ones. Branch prediction is in neither.

The count of the ``on`` runs varies by about a million instructions from run to run (thread
interleaving decides where allocations and the export thread's work fall); ``--repeats`` runs per
point show the range. The difference is also split by where it is spent: CPython's audit
dispatch (building each event's argument tuple, ``sys_audit_tstate``) and agentguard's hook
(inclusive of what it calls).

    .venv/bin/python bench/audit_hook_instructions.py            # needs valgrind; a few minutes
    .venv/bin/python bench/audit_hook_instructions.py --cache-sim   # with simulated caches
    .venv/bin/python bench/audit_hook_instructions.py --json
    .venv/bin/python bench/audit_hook_instructions.py --check    # exit 1 above the 3% target
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _harness import child_env, noop_exporter

TARGET_SLOWDOWN = 0.03
VARIANTS = ("off", "on")
WARMUP_ROUNDS = 3
IO_ITERATIONS = 50  # iterations of the I/O loop per round, as in audit_hook.py
# Functions whose inclusive cost splits the difference: CPython's dispatch of an audit event
# (argument tuple built, every hook called) and, inside it, agentguard's C hook.
# Only the outermost entries: a nested one (an event raised while the hook's Python side runs)
# is counted inside it already.
_DISPATCH = re.compile(r"Python/sysmodule\.c:sys_audit_tstate \[")
_HOOK = re.compile(r"_fasthook\.c:hook \[")


# -- child -----------------------------------------------------------------------------------------

def _settings() -> dict[str, Any]:
    return dict(exporter=noop_exporter(), service_name="bench", builtin_rules=False,
                injection_detection=False)


def run_child(variant: str, imports: bool, rounds: int, preload: Sequence[str]) -> None:
    """Instrument (sensor on or off), load ``preload`` (what turning the sensor on loads, so
    both variants import the same modules in the workload), then optionally the imports, then
    the I/O warm-up and ``rounds`` rounds: runs differing only in the last step are
    subtracted."""
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import audit_hook

    import agentguard

    guard = agentguard.instrument(runtime_sensor=variant == "on", **_settings())
    for name in preload:
        # A module that only imports as part of its package's set-up is loaded by that.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    gc.collect()
    if imports:
        audit_hook._import_workload(audit_hook.IMPORTS)
    workload = audit_hook._IOWorkload(guard, IO_ITERATIONS)
    for _ in range(WARMUP_ROUNDS + rounds):
        workload.round()
    agentguard.uninstrument()


def run_share_child(rounds: int) -> None:
    """Natively, sensor off: the I/O loop's user and system CPU time on the measuring thread."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import audit_hook

    import agentguard

    guard = agentguard.instrument(runtime_sensor=False, **_settings())
    workload = audit_hook._IOWorkload(guard, IO_ITERATIONS)
    for _ in range(WARMUP_ROUNDS):
        workload.round()
    before = resource.getrusage(resource.RUSAGE_THREAD)
    for _ in range(rounds):
        workload.round()
    after = resource.getrusage(resource.RUSAGE_THREAD)
    print(json.dumps({"user": after.ru_utime - before.ru_utime,
                      "system": after.ru_stime - before.ru_stime}))
    agentguard.uninstrument()


def run_modules_child() -> None:
    """Natively: the modules loaded once agentguard is instrumented with the sensor on."""
    import agentguard

    agentguard.instrument(runtime_sensor=True, **_settings())
    print(json.dumps(sorted(sys.modules)))
    agentguard.uninstrument()


# -- parent ----------------------------------------------------------------------------------------

def _cycles(events: dict[str, int]) -> int:
    """Callgrind's usual estimate of cycles from a simulated cache: an instruction each, 10 per
    first-level miss, 100 per last-level miss (the instruction count without a simulation)."""
    first = events.get("I1mr", 0) + events.get("D1mr", 0) + events.get("D1mw", 0)
    last = events.get("ILmr", 0) + events.get("DLmr", 0) + events.get("DLmw", 0)
    return events.get("Ir", 0) + 10 * first + 100 * last


def _callgrind(folder: str, name: str, args: list[str], cache_sim: bool) -> dict[str, int]:
    """Run this script's child under callgrind; the main thread's instructions (estimated cycles
    with ``cache_sim``), and the instructions of the audit dispatch and of the hook."""
    out = os.path.join(folder, name)
    env = child_env()  # PYTHONHASHSEED fixed: the same dictionary layouts in every run
    command = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
               f"--cache-sim={'yes' if cache_sim else 'no'}",
               f"--callgrind-out-file={out}", sys.executable, __file__, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    main_thread = out + "-01"
    if done.returncode != 0 or not os.path.exists(main_thread):
        raise RuntimeError(f"callgrind run {name} failed ({done.returncode}):\n"
                           + done.stderr[-2000:])
    names: list[str] = []
    values: list[int] = []
    with open(main_thread, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("summary:"):
                values = [int(v) for v in line.split()[1:]]
                break
    events = dict(zip(names, values, strict=False))
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                main_thread], capture_output=True, text=True, check=False).stdout
    counts = {"total": events.get("Ir", 0), "cycles": _cycles(events), "dispatch": 0, "hook": 0}
    for line in annotated.splitlines():
        match = re.match(r"\s*([\d,]+)\s", line)
        if match is None:
            continue
        value = int(match.group(1).replace(",", ""))
        if _DISPATCH.search(line):
            counts["dispatch"] += value
        elif _HOOK.search(line):
            counts["hook"] += value
    for path in Path(folder).glob(name + "*"):
        path.unlink()
    return counts


def measure(repeats: int, rounds: int, share_rounds: int, cache_sim: bool = False
            ) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("valgrind (callgrind) is not installed: apt-get install valgrind")
    listed = subprocess.run([sys.executable, __file__, "--modules-child"], env=child_env(),
                            capture_output=True, text=True, check=True)
    runs: list[tuple[str, str, list[str]]] = []
    for repeat in range(repeats):
        for variant in VARIANTS:
            for step, args in (("base", []), ("imports", ["--imports"]),
                               ("io", ["--child-rounds", str(rounds)])):
                runs.append((f"{variant}.{step}.{repeat}",
                             variant, ["--child", variant, *args]))
    with tempfile.TemporaryDirectory(prefix="agentguard-callgrind-") as folder, \
            ThreadPoolExecutor(max_workers=max(1, min(len(runs), os.cpu_count() or 1))) as pool:
        preload = os.path.join(folder, "preload.json")
        Path(preload).write_text(listed.stdout.strip().splitlines()[-1], encoding="utf-8")
        futures = {name: pool.submit(_callgrind, folder, name, [*args, "--preload", preload],
                                     cache_sim)
                   for name, _, args in runs}
        counts = {name: future.result() for name, future in futures.items()}
    share = subprocess.run([sys.executable, __file__, "--share-child", str(share_rounds)],
                           env=child_env(), capture_output=True, text=True, check=True)
    cpu = json.loads(share.stdout.strip().splitlines()[-1])
    user_share = cpu["user"] / (cpu["user"] + cpu["system"])

    workloads: dict[str, Any] = {}
    for step in ("imports", "io"):
        per_variant: dict[str, list[dict[str, int]]] = {variant: [] for variant in VARIANTS}
        for repeat in range(repeats):
            for variant in VARIANTS:
                base = counts[f"{variant}.base.{repeat}"]
                done = counts[f"{variant}.{step}.{repeat}"]
                per_variant[variant].append({key: done[key] - base[key] for key in base})
        off = statistics.median(d["total"] for d in per_variant["off"])
        ratios = [d["total"] / off for d in per_variant["on"]]
        on = per_variant["on"]
        added = statistics.median(d["total"] for d in on) - off
        hook = statistics.median(d["hook"] for d in on)
        dispatch = statistics.median(d["dispatch"] for d in on) - hook
        dispatch_off = statistics.median(d["dispatch"] for d in per_variant["off"])
        off_cycles = statistics.median(d["cycles"] for d in per_variant["off"])
        cycle_ratios = [d["cycles"] / off_cycles for d in on]
        workloads[step] = {
            "cycles_ratio": statistics.median(cycle_ratios),
            "cycles_ratio_min": min(cycle_ratios), "cycles_ratio_max": max(cycle_ratios),
            "off_instructions": off,
            "on_instructions": statistics.median(d["total"] for d in on),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "added": added,
            "added_hook": hook,
            "added_dispatch": dispatch - dispatch_off,
            "added_other": added - hook - (dispatch - dispatch_off),
        }
    io = workloads["io"]
    io["user_share"] = user_share
    # With a simulated cache, its estimate of cycles; else the instructions.
    measure_key = "cycles_ratio" if cache_sim else "ratio"
    io["estimated_cpu_ratio"] = 1 + (io[measure_key] - 1) * user_share
    workloads["imports"]["estimated_cpu_ratio"] = workloads["imports"][measure_key]
    return {"repeats": repeats, "io_rounds": rounds, "cache_sim": cache_sim,
            "io_iterations": IO_ITERATIONS, "workloads": workloads,
            "target_slowdown": TARGET_SLOWDOWN}


def _print(result: dict[str, Any]) -> None:
    cache = result["cache_sim"]
    print(f"runtime sensor cost in instructions (callgrind, the measuring thread only; "
          f"{result['repeats']} runs per point"
          f"{'; cycles estimated from a simulated cache' if cache else ''})\n")
    cycles_header = f"{'cycles on/off':>17s}" if cache else ""
    print(f"{'workload':28s} {'off M':>9s} {'on M':>9s} {'on/off':>8s} {'range':>15s}   "
          f"{'of the added: dispatch':>22s} {'hook':>6s} {'other':>6s}{cycles_header}")
    labels = {"imports": "imports (audit_hook.py's)",
              "io": f"I/O loop x{result['io_iterations']} x{result['io_rounds']}"}
    for name, values in result["workloads"].items():
        added = values["added"] or 1
        low, high = (values["ratio_min"] - 1) * 100, (values["ratio_max"] - 1) * 100
        line = (f"{labels[name]:28s} {values['off_instructions'] / 1e6:9.1f} "
                f"{values['on_instructions'] / 1e6:9.1f} {(values['ratio'] - 1) * 100:+7.2f}% "
                f"{f'{low:+.2f}..{high:+.2f}%':>15s}   {values['added_dispatch'] / added:22.0%} "
                f"{values['added_hook'] / added:6.0%} {values['added_other'] / added:6.0%}")
        if cache:
            line += f"   {(values['cycles_ratio'] - 1) * 100:+13.2f}%"
        print(line)
    io = result["workloads"]["io"]
    print(f"\nI/O loop: user space is {io['user_share']:.0%} of its CPU time (sensor off; the "
          f"rest is kernel work the sensor does not change)")
    print("estimated CPU slowdown: imports "
          f"{(result['workloads']['imports']['estimated_cpu_ratio'] - 1) * 100:+.2f}%, I/O "
          f"{(io['estimated_cpu_ratio'] - 1) * 100:+.2f}%"
          f"{' (from the estimated cycles)' if cache else ' (from the instructions)'}")
    worst = _worst(result)
    verdict = "within" if worst <= TARGET_SLOWDOWN else "ABOVE"
    print(f"worst {worst * 100:.2f}%: {verdict} the target of {TARGET_SLOWDOWN * 100:.0f}%"
          + ("" if cache else " (instructions only: --cache-sim adds a simulated cache; "
             "audit_hook.py times the real one)"))


def _worst(result: dict[str, Any]) -> float:
    return float(max(values["estimated_cpu_ratio"]
                     for values in result["workloads"].values()) - 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=2, help="callgrind runs per point")
    parser.add_argument("--rounds", type=int, default=16, help="I/O rounds counted")
    parser.add_argument("--share-rounds", type=int, default=60,
                        help="I/O rounds timed natively for the user/kernel split")
    parser.add_argument("--cache-sim", action="store_true",
                        help="simulate the caches and estimate cycles (about twice as slow)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when the estimate is above the 3%% target")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--imports", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-rounds", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--preload", help=argparse.SUPPRESS)
    parser.add_argument("--modules-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        preload = json.loads(Path(args.preload).read_text(encoding="utf-8")) \
            if args.preload else []
        run_child(args.child, args.imports, args.child_rounds, preload)
        return 0
    if args.modules_child:
        run_modules_child()
        return 0
    if args.share_child:
        run_share_child(args.share_child)
        return 0
    result = measure(args.repeats, args.rounds, args.share_rounds, args.cache_sim)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 1 if args.check and _worst(result) > TARGET_SLOWDOWN else 0


if __name__ == "__main__":
    sys.exit(main())
