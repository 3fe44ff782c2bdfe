"""Behavioural baseline: scoring cost per event, learning cost, and profile size and process memory
over a million learned events.

Events come from a support-agent workload (tool calls and their results, cloud calls, connections,
DNS lookups, file writes, model calls with structured decisions), with high-cardinality values
(customer ids, e-mail addresses, free-text queries) so every bounded part of the profile fills up.

    .venv/bin/python bench/baseline.py                    # 1,000,000 learned events
    .venv/bin/python bench/baseline.py --events 200000    # quicker
    .venv/bin/python bench/baseline.py --json             # machine-readable
    .venv/bin/python bench/baseline.py --check            # exit 1 when a target is missed
"""

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

TARGET_SCORE_US = 15.0
TARGET_PROFILE_BYTES = 1 << 20
# Growth of the process's resident memory allowed after the first checkpoint.
TARGET_MEMORY_GROWTH_MB = 16.0

_TOOLS = ("lookup_customer", "query_customers", "search_orders", "fetch_doc", "send_email")
_CITIES = ("Berlin", "Lyon", "Porto", "Austin", "Osaka", "Leeds", "Turin", "Malmo")
_STATUSES = ("open", "shipped", "delivered", "returned")


def events(count: int, seed: int, agent: str = "support") -> Iterator[Any]:
    """``count`` events of the workload, built the way integrations build them (no validation)."""
    from agentguard.events import (
        CloudCall,
        DnsLookup,
        EventContext,
        FileOpen,
        Message,
        ModelCall,
        NetConnect,
        ToolCall,
        Turn,
        trusted,
    )

    rng = random.Random(seed)
    produced = 0
    conversation = 0
    now = time.time()
    while produced < count:
        conversation += 1
        conv = f"conv-{seed}-{conversation}"
        for turn in range(1, rng.randint(1, 3) + 1):
            turn_ctx = EventContext.model_construct(
                agent=agent, conversation_id=conv, user=None, turn=turn, trace_id=None,
                span_id=None, tool=None, tool_call_id=None, pid=1, tid=1)
            yield Turn.model_construct(context=turn_ctx, timestamp=now, text="please help",
                                       role="user")
            produced += 1
            for _ in range(rng.randint(1, 3)):
                tool = rng.choice(_TOOLS)
                ctx = EventContext.model_construct(
                    agent=agent, conversation_id=conv, user=None, turn=turn, trace_id=None,
                    span_id=None, tool=tool, tool_call_id=None, pid=1, tid=1)
                customer = rng.randint(1000, 999_999)
                if tool == "lookup_customer":
                    args: Any = {"customer_id": customer}
                    result: Any = json.dumps({"id": customer, "name": "Ada", "tier": "gold"})
                elif tool == "query_customers":
                    limit = rng.randint(1, 5)
                    args = {"query": f"city = {rng.choice(_CITIES)} and spend > "
                                     f"{rng.randint(10, 900)}", "limit": limit}
                    result = json.dumps([{"id": i, "tier": "gold"} for i in range(limit)])
                elif tool == "search_orders":
                    args = {"customer_id": customer, "status": rng.choice(_STATUSES),
                            "limit": rng.randint(1, 10)}
                    result = json.dumps({"orders": [{"order": f"ORD-{customer}"}]})
                elif tool == "fetch_doc":
                    args = {"url": f"https://help.example.com/guides/{rng.randint(1, 500)}"}
                    result = "policy text " * rng.randint(5, 40)
                else:
                    args = {"to": f"user{customer}@example.com", "subject": "About your order",
                            "body": "Hello, here is what we found. " * rng.randint(1, 5)}
                    result = f"sent to user{customer}@example.com"
                yield trusted(ToolCall, {
                    "context": ctx, "timestamp": now, "kind": "tool_call", "tool": tool,
                    "call_id": None, "arguments": args, "result": None, "error": None,
                    "phase": "call"})
                yield trusted(ToolCall, {
                    "context": ctx, "timestamp": now, "kind": "tool_call", "tool": tool,
                    "call_id": None, "arguments": args, "result": result, "error": None,
                    "phase": "result"})
                produced += 2
                extra = rng.random()
                if tool == "search_orders" and extra < 0.5:
                    yield CloudCall.model_construct(
                        context=ctx, timestamp=now, provider="aws", service="dynamodb",
                        operation="Query", region="eu-west-1", resource={"table": "orders"},
                        parameters={"Limit": rng.randint(1, 10)}, status=None, error=None)
                    produced += 1
                elif tool == "fetch_doc" and extra < 0.5:
                    yield DnsLookup.model_construct(context=ctx, timestamp=now,
                                                    hostname="help.example.com", port=443)
                    yield NetConnect.model_construct(
                        context=ctx, timestamp=now, address=f"10.0.3.{rng.randint(1, 20)}",
                        port=443, family="ipv4", protocol="tcp", hostname="help.example.com")
                    produced += 2
                elif tool == "send_email" and extra < 0.3:
                    yield FileOpen.model_construct(context=ctx, timestamp=now,
                                                   path=f"/var/spool/mail/out/{customer}.eml",
                                                   mode="w", write=True)
                    produced += 1
            agent_ctx = EventContext.model_construct(
                agent=agent, conversation_id=conv, user=None, turn=turn, trace_id=None,
                span_id=None, tool=None, tool_call_id=None, pid=1, tid=1)
            decision = rng.choices(["approve", "deny", "escalate"], [70, 25, 5])[0]
            yield ModelCall.model_construct(
                context=agent_ctx, timestamp=now, provider="openai", model="gpt-4o",
                messages=[], output=[Message.model_construct(
                    role="assistant", content=json.dumps({"decision": decision}),
                    tool_calls=[], tool_call_id=None, name=None)],
                parameters={}, input_tokens=100, output_tokens=rng.randint(20, 200),
                finish_reasons=[], phase="response")
            produced += 1


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / (1 << 20)


def learn(count: int, path: str) -> dict[str, Any]:
    """Learn ``count`` events through the baseline stage in learn mode; sample memory as it goes."""
    import agentguard
    from agentguard._guard import Verdict

    guard = agentguard.instrument(service_name="support", mode="learn", profile=path,
                                  exporter="none", runtime_sensor=False,
                                  injection_detection=False, builtin_rules=False)
    stage = guard.baseline
    assert stage is not None
    checkpoints = []
    step = max(count // 10, 1)
    timings: list[int] = []
    verdict = Verdict()
    gc.collect()
    started = time.perf_counter()
    for n, event in enumerate(events(count, seed=1), 1):
        if n % 50 == 0:
            t0 = time.perf_counter_ns()
            stage.process(event, verdict, guard)
            timings.append(time.perf_counter_ns() - t0)
        else:
            stage.process(event, verdict, guard)
        if n % step == 0:
            gc.collect()
            checkpoints.append({"events": n, "rss_mb": round(_rss_mb(), 1),
                                "profile_bytes": stage.profile.size_bytes()})
    elapsed = time.perf_counter() - started
    agentguard.uninstrument()
    return {"events": count, "seconds": round(elapsed, 1),
            "learn_median_us": round(statistics.median(timings) / 1000, 2),
            "learn_p99_us": round(sorted(timings)[int(len(timings) * 0.99)] / 1000, 2),
            "profile_bytes": os.path.getsize(path), "checkpoints": checkpoints}


def score(count: int, path: str) -> dict[str, Any]:
    """Score held-out events of the same workload through the stage in monitor mode."""
    import agentguard
    from agentguard._guard import Verdict

    guard = agentguard.instrument(service_name="support", mode="monitor", profile=path,
                                  exporter="none", runtime_sensor=False,
                                  injection_detection=False, builtin_rules=False,
                                  on_finding=lambda finding: None)
    import logging

    logging.getLogger("agentguard.findings").setLevel(logging.ERROR)
    stage = guard.baseline
    assert stage is not None
    held_out = list(events(count, seed=2))
    for event in held_out[:2000]:
        stage.process(event, Verdict(), guard)
    per_kind: dict[str, list[int]] = {}
    everything: list[int] = []
    findings = 0
    for event in held_out:
        verdict = Verdict()
        t0 = time.perf_counter_ns()
        stage.process(event, verdict, guard)
        elapsed = time.perf_counter_ns() - t0
        findings += len(verdict.findings)
        everything.append(elapsed)
        key = f"{event.kind}:{event.phase}" if event.kind == "tool_call" else event.kind
        per_kind.setdefault(key, []).append(elapsed)
    agentguard.uninstrument()
    return {
        "events": len(everything),
        "score_median_us": round(statistics.median(everything) / 1000, 2),
        "score_p99_us": round(sorted(everything)[int(len(everything) * 0.99)] / 1000, 2),
        "per_kind_median_us": {k: round(statistics.median(v) / 1000, 2)
                               for k, v in sorted(per_kind.items())},
        "findings_per_1000_events": round(1000 * findings / len(everything), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to learn")
    parser.add_argument("--score-events", type=int, default=50_000, help="events to score")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "support.json")
        learned = learn(args.events, path)
        scored = score(args.score_events, path)
    checkpoints = learned["checkpoints"]
    growth = checkpoints[-1]["rss_mb"] - checkpoints[0]["rss_mb"] if checkpoints else 0.0
    results = {"learn": learned, "score": scored, "memory_growth_mb": round(growth, 1),
               "targets": {"score_median_us": TARGET_SCORE_US,
                           "profile_bytes": TARGET_PROFILE_BYTES,
                           "memory_growth_mb": TARGET_MEMORY_GROWTH_MB}}
    ok = (scored["score_median_us"] <= TARGET_SCORE_US
          and learned["profile_bytes"] < TARGET_PROFILE_BYTES
          and growth <= TARGET_MEMORY_GROWTH_MB)
    results["ok"] = ok
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"learned {learned['events']:,} events in {learned['seconds']} s "
              f"(stage in learn mode: median {learned['learn_median_us']} µs, "
              f"p99 {learned['learn_p99_us']} µs per event)")
        print(f"{'events':>10} {'rss MB':>8} {'profile bytes':>14}")
        for point in checkpoints:
            print(f"{point['events']:>10,} {point['rss_mb']:>8} {point['profile_bytes']:>14,}")
        print(f"profile file: {learned['profile_bytes']:,} bytes "
              f"(target < {TARGET_PROFILE_BYTES:,}); resident memory grew "
              f"{growth:.1f} MB after the first checkpoint (target ≤ {TARGET_MEMORY_GROWTH_MB} MB)")
        print(f"scored {scored['events']:,} held-out events: median {scored['score_median_us']} µs, "
              f"p99 {scored['score_p99_us']} µs per event (target median ≤ {TARGET_SCORE_US} µs); "
              f"{scored['findings_per_1000_events']} findings per 1000 events")
        for kind, median in scored["per_kind_median_us"].items():
            print(f"  {kind:<22} median {median} µs")
        print("targets met" if ok else "TARGET MISSED")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
