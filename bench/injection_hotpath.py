"""Cost of the prompt-injection detector on the agent's thread, in the real LangChain loop.

One process invokes a real LangChain ``@tool`` with a model-style tool call (args
``{"customer_id": 42}``, a ~250-byte JSON result), so the detector sees the two events an agent's
tool call produces: ``ToolCall`` phase ``call`` and phase ``result``. agentguard is
re-instrumented between timed repeats, alternating:

* ``off``: ``instrument(injection_detection=False)`` (tracing alone, no pipeline stage);
* ``pipeline``: the same plus a detector that does nothing: the cost of having a stage at all
  (the result event, the verdicts), which is not the detector's;
* ``on``: ``instrument(injection_detection=True)``;
* ``timed``: ``on`` with every ``InjectionDetector.inspect`` timed by ``perf_counter_ns``, for the
  per-event distribution (its call times are not used for the added cost).

All four use ``builtin_rules=False, runtime_sensor=False``, content capture with redaction, and an
exporter that drops spans behind agentguard's export thread, which stays runnable, as in
production. Scenarios: the same call (``customer_id`` 42, so the same result) outside any
conversation and inside ``agentguard.conversation()``, and, in a conversation, a different
customer on every call (other names, e-mail addresses, ids and notes), so no result repeats.
Repeats of the variants are interleaved round-robin, so a slow spell of a shared machine hits all
of them alike; a variant's figure is the median over repeats of the median call.

    .venv/bin/python bench/injection_hotpath.py
    .venv/bin/python bench/injection_hotpath.py --json
    .venv/bin/python bench/injection_hotpath.py --check     # exit 1 when inspect > 3 µs median
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from _harness import noop_exporter

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("off", "pipeline", "on", "timed")
# (name, inside a conversation, a different result on every call)
SCENARIOS = (("same result, no conversation", False, False),
             ("same result, in a conversation", True, False),
             ("a new result every call, in a conversation", True, True))
TARGET_INSPECT_US = 3.0
TOOL_CALL = {"name": "lookup_customer", "args": {"customer_id": 42}, "id": "call_0001",
             "type": "tool_call"}
_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra",
          "Barbara Liskov", "Donald Knuth", "Frances Allen", "Margaret Hamilton", "Ken Thompson",
          "Radia Perlman", "John Backus", "Sophie Wilson", "Tim Berners-Lee", "Hedy Lamarr")
_NOTES = ("Prefers email; renewal due next quarter.", "Asked about volume pricing last week.",
          "Escalated ticket resolved on Monday.", "Pays by invoice, net 30.",
          "Wants a call before any plan change.", "Moved to the Berlin office in May.")


def _make_tool() -> Any:
    from langchain_core.tools import tool

    @tool
    def lookup_customer(customer_id: int) -> dict[str, Any]:
        """Look up a customer record by id."""
        if customer_id == 42:
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
        name = _NAMES[customer_id % len(_NAMES)]
        manager = _NAMES[customer_id * 7 % len(_NAMES)]
        return {
            "id": customer_id,
            "name": name,
            "email": f"{name.split()[0].lower()}.{customer_id}@example.com",
            "tier": ("gold", "silver", "bronze")[customer_id % 3],
            "country": ("GB", "DE", "US", "FR")[customer_id % 4],
            "open_tickets": [1000 + customer_id, 5000 + customer_id * 3],
            "notes": _NOTES[customer_id % len(_NOTES)],
            "account_manager": manager.lower().replace(" ", ".") + "@example.com",
        }

    return lookup_customer


class _NullDetector:
    """A pipeline stage that looks at nothing: the cost of the pipeline itself."""

    name = "null"

    def inspect(self, event: Any, verdict: Any, guard: Any) -> None:
        return None


class _TimedDetector:
    """Wraps the injection detector and records the time of each ``inspect`` by event phase."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.samples: dict[str, list[int]] = {"call": [], "result": []}

    def inspect(self, event: Any, verdict: Any, guard: Any) -> None:
        clock = time.perf_counter_ns
        started = clock()
        self.inner.inspect(event, verdict, guard)
        elapsed = clock() - started
        phase = getattr(event, "phase", None)
        if phase in self.samples:
            self.samples[phase].append(elapsed)


def _instrument(variant: str, exporter: Any) -> _TimedDetector | None:
    import agentguard

    guard = agentguard.instrument(
        exporter=exporter, capture_content="redacted", service_name="bench",
        injection_detection=variant in ("on", "timed"), builtin_rules=False,
        runtime_sensor=False,
    )
    if variant == "pipeline":
        guard.add_detector(_NullDetector())
    if variant == "timed":
        (detector,) = guard.detectors
        timed = _TimedDetector(detector)
        guard.remove_detector(detector)
        guard.add_detector(timed)
        return timed
    return None


def _clock_overhead_ns() -> float:
    """The median cost of one ``perf_counter_ns`` pair, subtracted from timed inspects."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        started = clock()
        samples.append(clock() - started)
    return statistics.median(samples)


def _calls(varied: bool, count: int, first: int) -> list[dict[str, Any]]:
    """The tool calls of one repeat: the same one, or one per customer from ``first`` on."""
    if not varied:
        return [TOOL_CALL] * count
    return [{**TOOL_CALL, "args": {"customer_id": first + i}, "id": f"call_{first + i}"}
            for i in range(count)]


def _timed_calls(invoke: Callable[[Any], Any], calls: list[dict[str, Any]]) -> float:
    """Median ns per invoke over ``calls``."""
    clock = time.perf_counter_ns
    samples = [0] * len(calls)
    gc.collect()
    for i, call in enumerate(calls):
        started = clock()
        invoke(call)
        samples[i] = clock() - started
    return statistics.median(samples)


def _scope(conversation: bool, round_index: int, variant: str) -> AbstractContextManager[Any]:
    if not conversation:
        return nullcontext()
    import agentguard

    # A fresh conversation per repeat: the detector's state for it starts clean.
    return agentguard.conversation(f"bench-{round_index}-{variant}")


def measure(iterations: int, repeats: int, warmup: int) -> dict[str, Any]:
    import agentguard

    exporter = noop_exporter()
    invoke = _make_tool().invoke
    clock_ns = _clock_overhead_ns()
    out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                           "iterations": iterations, "repeats": repeats,
                           "clock_overhead_ns": clock_ns, "scenarios": {}}
    # Customers never repeat within a run: each repeat of each variant gets its own range.
    first_customer = 1000
    try:
        for scenario, conversation, varied in SCENARIOS:
            medians: dict[str, list[float]] = {v: [] for v in VARIANTS}
            inspect_ns: dict[str, list[int]] = {"call": [], "result": []}
            for round_index in range(repeats):
                shift = round_index % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    timed = _instrument(variant, exporter)
                    calls = _calls(varied, warmup + iterations, first_customer)
                    first_customer += warmup + iterations
                    with _scope(conversation, round_index, variant):
                        for call in calls[:warmup]:
                            invoke(call)
                        if timed is not None:
                            timed.samples = {"call": [], "result": []}
                        medians[variant].append(_timed_calls(invoke, calls[warmup:]))
                    if timed is not None:
                        for phase, samples in timed.samples.items():
                            inspect_ns[phase].extend(samples)
            per_call = {v: statistics.median(m) / 1000 for v, m in medians.items()}
            out["scenarios"][scenario] = {
                "median_us": per_call,
                "repeat_medians_us": {v: [x / 1000 for x in m] for v, m in medians.items()},
                "added_us": per_call["on"] - per_call["off"],
                "pipeline_us": per_call["pipeline"] - per_call["off"],
                "detector_us": per_call["on"] - per_call["pipeline"],
                "inspect_us": {phase: {
                    "median": max(0.0, statistics.median(s) - clock_ns) / 1000,
                    "p90": max(0.0, _quantile(s, 0.9) - clock_ns) / 1000,
                    "p99": max(0.0, _quantile(s, 0.99) - clock_ns) / 1000,
                    "events": len(s),
                } for phase, s in inspect_ns.items() if s},
            }
    finally:
        agentguard.uninstrument()
    worst = max((row["median"] for scenario in out["scenarios"].values()
                 for row in scenario["inspect_us"].values()), default=0.0)
    out["worst_inspect_median_us"] = worst
    out["within_target"] = worst <= TARGET_INSPECT_US
    return out


def _quantile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _rows(results: dict[str, Any]) -> Iterator[str]:
    yield (f"LangChain tool invoke (ToolCall input): {results['iterations']} calls x "
           f"{results['repeats']} repeats per variant, Python {results['python']}, "
           f"{results['cpus']} CPUs")
    for scenario, row in results["scenarios"].items():
        yield ""
        yield f"{scenario}:"
        for variant in VARIANTS:
            spread = row["repeat_medians_us"][variant]
            yield (f"  {variant:<9} {row['median_us'][variant]:8.1f} µs/call   repeats "
                   + " ".join(f"{x:.1f}" for x in spread))
        yield (f"  injection detection adds {row['added_us']:+.1f} µs per call "
               f"(pipeline stage {row['pipeline_us']:+.1f}, detector {row['detector_us']:+.1f})")
        for phase, stats in row["inspect_us"].items():
            mark = "" if stats["median"] <= TARGET_INSPECT_US else "   over the target"
            yield (f"  inspect, phase {phase:<7} median {stats['median']:.2f} µs  "
                   f"p90 {stats['p90']:.2f}  p99 {stats['p99']:.2f}  ({stats['events']} events)"
                   + mark)
    yield ""
    verdict = "meets" if results["within_target"] else "MISSES"
    yield (f"worst median inspect {results['worst_inspect_median_us']:.2f} µs: {verdict} the "
           f"target of <= {TARGET_INSPECT_US:.0f} µs (perf_counter_ns pair of "
           f"{results['clock_overhead_ns']:.0f} ns subtracted)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the median inspect exceeds the target")
    args = parser.parse_args(argv)
    if min(args.iterations, args.repeats) < 1 or args.warmup < 0:
        parser.error("--iterations and --repeats must be >= 1, --warmup >= 0")
    # The set-up is the one written here, whatever the environment says.
    for key in [k for k in os.environ if k.startswith("AGENTGUARD_")]:
        del os.environ[key]
    sys.path.insert(0, str(ROOT))
    results = measure(args.iterations, args.repeats, args.warmup)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for line in _rows(results):
            print(line)
    return 0 if results["within_target"] or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
