"""Per-call cost of tracing a LangChain tool call: agentguard, OpenInference and OpenLLMetry.

Each variant runs in its own subprocess (instrumentors patch process-global state), invokes the
same small ``@tool`` with a model-style tool call (so the tool-call-id path runs), and reports the
median wall time per call. Spans go to an exporter that drops them, behind a batching processor,
so the numbers are the cost paid on the agent's thread. Nothing leaves the machine.

    .venv/bin/python bench/overhead.py                 # table
    .venv/bin/python bench/overhead.py --json          # machine-readable
    .venv/bin/python bench/overhead.py --profile agentguard   # cProfile of one variant
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import Child, child_env, interleave, noop_exporter, reply

VARIANTS = ("plain", "agentguard-trace", "agentguard-policy", "agentguard", "openinference",
            "openllmetry")
AGENTGUARD_VARIANTS = ("agentguard-trace", "agentguard-policy", "agentguard")
# The variants held to the target: tracing with redaction (core), and enforce mode with the
# built-in rule pack (policy). The full default set-up is reported beside them.
TARGET_VARIANTS = ("agentguard-trace", "agentguard-policy")
TARGET_ADDED_US = 40.0
DEFAULT_ITERATIONS = 5000
DEFAULT_REPEATS = 3
DEFAULT_PROCESSES = 3
DEFAULT_WARMUP = 500
# Repeats of one variant further apart than this (relative) mark the run as noisy.
NOISY_SPREAD = 0.10

TOOL_CALL = {
    "name": "lookup_customer",
    "args": {"customer_id": 42},
    "id": "call_0001",
    "type": "tool_call",
}


# -- child: one variant ----------------------------------------------------------------------------

def _peer_provider(exporter: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _setup(variant: str) -> tuple[Any, Callable[[], object]]:
    """Instrument this process for ``variant``; returns its exporter (None) and a flush."""
    if variant == "plain":
        return None, lambda: None
    exporter = noop_exporter()
    if variant in AGENTGUARD_VARIANTS:
        import agentguard

        # Tracing with content capture and secret redaction on, as in production.
        # `agentguard-trace`: tracing alone; `agentguard-policy`: enforce mode with the built-in
        # rule pack; `agentguard`: the default set-up (monitor mode, built-in pack, injection
        # detection and the runtime sensor).
        settings: dict[str, Any] = {}
        if variant == "agentguard-trace":
            settings = {"builtin_rules": False, "injection_detection": False,
                        "runtime_sensor": False}
        elif variant == "agentguard-policy":
            settings = {"mode": "enforce", "injection_detection": False,
                        "runtime_sensor": False}
        agentguard.instrument(exporter=exporter, capture_content="redacted",
                              service_name="bench", **settings)
        return exporter, agentguard.flush
    provider = _peer_provider(exporter)
    if variant == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
    elif variant == "openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        LangchainInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return exporter, provider.force_flush


def _make_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def lookup_customer(customer_id: int) -> dict[str, Any]:
        """Look up a customer record by id."""
        return {
            "id": customer_id,
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "tier": "gold",
            "country": "GB",
            "open_tickets": [1042, 1077],
            "notes": "Prefers email; renewal due next quarter.",
            "account_manager": "grace.hopper@example.com",
        }

    return lookup_customer


def _check(result: Any) -> None:
    # A tool call in, a ToolMessage carrying the same id out: the tool-call-id path ran.
    if getattr(result, "tool_call_id", None) != TOOL_CALL["id"]:
        raise SystemExit(f"unexpected tool result: {result!r}")


def _timed_repeat(invoke: Callable[[Any], Any], iterations: int) -> dict[str, float]:
    call = TOOL_CALL
    clock = time.perf_counter_ns
    samples = [0] * iterations
    gc.collect()
    started = clock()
    for i in range(iterations):
        t0 = clock()
        invoke(call)
        samples[i] = clock() - t0
    total = clock() - started
    return {"median_us": statistics.median(samples) / 1000, "mean_us": total / iterations / 1000}


def serve_variant(variant: str, iterations: int, warmup: int) -> None:
    """Child process: set up, warm up, then time one repeat per ``run`` line read from stdin.

    The parent drives every variant's child in turn, so slow drifts of the machine's speed hit
    all variants alike instead of whichever happened to run last.
    """
    exporter, flush = _setup(variant)
    invoke = _make_tool().invoke
    _check(invoke(dict(TOOL_CALL)))
    for _ in range(warmup):
        invoke(TOOL_CALL)
    flush()
    calls = 1 + warmup
    reply({"ready": True})
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            result = _timed_repeat(invoke, iterations)
            calls += iterations
            flush()
            reply(result)
        elif command == "stop":
            break
    flush()
    spans = exporter.count if exporter is not None else 0
    reply({"spans_per_call": spans / calls})


# -- profile ---------------------------------------------------------------------------------------

def profile_variant(variant: str, iterations: int, top: int) -> None:
    """cProfile ``iterations`` calls in this process; agentguard's own functions listed apart.

    Profiling inflates every function call, so read the numbers as shares, not as µs.
    """
    import cProfile
    import pstats

    _, flush = _setup(variant)
    invoke = _make_tool().invoke
    for _ in range(DEFAULT_WARMUP):
        invoke(TOOL_CALL)
    flush()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        invoke(TOOL_CALL)
    profiler.disable()
    flush()
    stats = pstats.Stats(profiler)
    rows: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(
        (row[3] for (path, _, name), row in rows.items()
         if name == "invoke" and path.endswith(os.path.join("tools", "base.py"))),
        default=0.0,
    )
    print(f"cProfile, {iterations} calls of the {variant} variant: "
          f"{total / iterations * 1e6:.1f} µs per call under the profiler\n")
    ours = sorted(
        ((row[3], row[2], row[1], path, line, name)
         for (path, line, name), row in rows.items()
         if any(part in path for part in _OWN_CODE)),
        reverse=True,
    )
    if ours:
        print("agentguard functions by cumulative time (µs per tool call, under the profiler):")
        print(f"{'cumulative':>10} {'own':>8} {'calls':>6}  function")
        for cumulative, own, calls, path, line, name in ours[:top]:
            short = os.path.relpath(path, _ROOT) if path.startswith(_ROOT) else path
            print(f"{cumulative / iterations * 1e6:>10.1f} {own / iterations * 1e6:>8.1f} "
                  f"{calls / iterations:>6.1f}  {short}:{line}({name})")
        print()
    print("All functions by cumulative time:")
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_CODE = (os.sep + "agentguard" + os.sep, os.sep + "integrations" + os.sep)


# -- parent: one fresh interpreter per variant, driven in turn ----------------------------------

def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Median µs per call of every variant, repeats interleaved round-robin across variants.

    Each variant runs in ``args.processes`` interpreters: one process's memory layout (address
    randomisation; hash seeds are pinned) shifts its speed by several µs for the whole run,
    which repeats inside it cannot average out; the median is over the repeats of all of them.
    """
    children = [
        Child(variant, [sys.executable, os.path.abspath(__file__), "--variant", variant,
                        "--iterations", str(args.iterations), "--warmup", str(args.warmup)],
              child_env())
        for _ in range(args.processes) for variant in args.variants
    ]
    try:
        for child in children:  # set-up and warm-up run concurrently; nothing is timed yet
            child.read()
        repeats, stops = interleave(children, args.repeats)
        results = []
        for variant in args.variants:
            medians = [r["median_us"] for r in repeats[variant]]
            results.append({
                "variant": variant,
                "iterations": args.iterations,
                "repeats": args.repeats,
                "processes": args.processes,
                "median_us": statistics.median(medians),
                "repeat_medians_us": medians,
                "mean_us": statistics.median(r["mean_us"] for r in repeats[variant]),
                "spans_per_call": min(stop["spans_per_call"] for stop in stops[variant]),
            })
        return results
    finally:
        for child in children:
            child.close()


def _summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_name = {r["variant"]: r for r in results}
    plain = by_name["plain"]["median_us"]
    for r in results:
        r["added_us"] = r["median_us"] - plain
        r["ratio"] = r["median_us"] / plain
    added = {v: by_name[v]["added_us"] for v in AGENTGUARD_VARIANTS if v in by_name}
    for r in results:
        medians = r["repeat_medians_us"]
        r["spread"] = (max(medians) - min(medians)) / min(medians)
    return {
        "benchmark": "langchain tool invoke with a ToolCall input",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "target_added_us": TARGET_ADDED_US,
        "agentguard_added_us": added,
        "agentguard_within_target": all(added[v] <= TARGET_ADDED_US for v in TARGET_VARIANTS
                                        if v in added),
        "noisy": any(r["spread"] > NOISY_SPREAD for r in results),
        "results": results,
    }


def _print_table(summary: dict[str, Any]) -> None:
    results = summary["results"]
    first = results[0]
    print(f"LangChain tool invoke (ToolCall input): {first['iterations']} calls x "
          f"{first['repeats']} repeats x {first['processes']} processes per variant, "
          f"Python {summary['python']}, {summary['cpus']} CPUs")
    print()
    header = (f"{'variant':<18} {'median µs/call':>15} {'added µs':>10} {'ratio':>7} "
              f"{'spans/call':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['variant']:<18} {r['median_us']:>15.1f} {r['added_us']:>+10.1f} "
              f"{r['ratio']:>6.2f}x {r['spans_per_call']:>11.2f}")
    print()
    if summary["noisy"]:
        worst = max(results, key=lambda r: r["spread"])
        print(f"warning: repeats of {worst['variant']} differ by {worst['spread']:.0%}; the "
              "machine was busy, numbers are unreliable (rerun, or raise --repeats)")
    for variant, added in summary["agentguard_added_us"].items():
        if variant in TARGET_VARIANTS:
            verdict = "meets" if added <= TARGET_ADDED_US else "MISSES"
            print(f"{variant} adds {added:.1f} µs per tool call: {verdict} the target of "
                  f"<= {TARGET_ADDED_US:.0f} µs.")
        else:
            print(f"{variant} adds {added:.1f} µs per tool call (no target: every detector "
                  "and the runtime sensor on).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="timed calls per repeat (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="timed repeats per variant (default %(default)s)")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES,
                        help="interpreters per variant (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls before timing (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when agentguard misses the target")
    parser.add_argument("--profile", choices=VARIANTS, metavar="VARIANT",
                        help="instead of benchmarking, run VARIANT under cProfile in this "
                             "process and print the top functions")
    parser.add_argument("--top", type=int, default=40,
                        help="rows printed by --profile (default %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated variants to run (plain is always included; "
                             "default: all)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    args.variants = [v for v in VARIANTS if v in wanted or v == "plain"]
    if min(args.iterations, args.repeats, args.processes) < 1 or args.warmup < 0:
        parser.error("--iterations, --repeats and --processes must be >= 1, --warmup >= 0")

    if args.variant:
        serve_variant(args.variant, args.iterations, args.warmup)
        return 0
    if args.profile:
        profile_variant(args.profile, args.iterations, args.top)
        return 0

    summary = _summarise(measure(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
    if args.check and not summary["agentguard_within_target"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
