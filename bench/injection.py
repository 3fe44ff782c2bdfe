"""Detection quality and speed of the prompt-injection detector on the labelled set.

Reads ``tests/data/injection/cases.jsonl`` (built by ``tests/data/injection/build.py``): benign
texts (label 0), injected texts in many carriers and languages (label 1), and multi-turn cases
whose pieces are judged in order within one conversation. Prints recall and false-positive rate
at the flag threshold (and a small threshold sweep), per-carrier recall, the held-out set's
recall and false-positive rate, how many real 100 KB documents (the installed packages' READMEs)
are flagged, throughput on 100 KB
documents (the labelled set's texts, the installed packages' READMEs, plain prose) and the worst
time on adversarial 1 MB inputs.

    .venv/bin/python bench/injection.py
    .venv/bin/python bench/injection.py --json
    .venv/bin/python bench/injection.py --check     # exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "injection" / "cases.jsonl"
# Written after the rules, as a check on over-fitting; see docs/detection.md for its history.
HOLDOUT = ROOT / "tests" / "data" / "injection" / "holdout.jsonl"
TARGET_RECALL = 0.95
TARGET_FPR = 0.01
TARGET_MB_PER_S = 50.0
TARGET_WORST_MS = 50.0


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def judge_multi_turn(pieces: list[str], conversation: str) -> float:
    """The highest injection score the detector gives while reading ``pieces`` as documents of
    successive turns of one conversation (fragments and conversation risk included)."""
    from agentguard._guard import Verdict
    from agentguard.detectors import InjectionDetector
    from agentguard.events import Document, EventContext, Retrieval

    class _Guard:
        mode = "monitor"

        def finding_for(self, event: Any, decision: Any) -> Any:
            from agentguard._guard import Guard

            return Guard.finding_for(self, event, decision)  # type: ignore[arg-type]

    detector = InjectionDetector()
    best = 0.0
    for turn, text in enumerate(pieces, start=1):
        verdict = Verdict()
        event = Retrieval(context=EventContext(conversation_id=conversation, turn=turn),
                          retriever="kb", phase="response",
                          documents=[Document(id=f"{conversation}-{turn}", content=text)])
        detector.inspect(event, verdict, _Guard())  # type: ignore[arg-type]
        annotation = verdict.annotations.get("injection")
        if annotation is not None:
            best = max(best, annotation.score, annotation.conversation_risk)
    return best


def evaluate(threshold: float, path: Path = CASES) -> dict[str, Any]:
    from agentguard.detectors import InjectionScanner

    scanner = InjectionScanner()
    scores: list[tuple[int, float, dict[str, Any]]] = []
    for case in load_cases(path):
        if "pieces" in case:
            score = judge_multi_turn(case["pieces"], case["id"])
        else:
            score = scanner.scan(case["text"], source="document").score
        scores.append((case["label"], score, case))

    def rates(cut: float) -> tuple[float, float]:
        positives = [s for label, s, _ in scores if label == 1]
        negatives = [s for label, s, _ in scores if label == 0]
        recall = sum(s >= cut for s in positives) / len(positives)
        fpr = sum(s >= cut for s in negatives) / len(negatives)
        return recall, fpr

    recall, fpr = rates(threshold)
    by_carrier: dict[str, list[bool]] = defaultdict(list)
    for label, score, case in scores:
        if label == 1:
            by_carrier[case.get("carrier") or case.get("kind", "?")].append(score >= threshold)
    missed = [case["id"] for label, score, case in scores if label == 1 and score < threshold]
    false_alarms = [case["id"] for label, score, case in scores if label == 0 and score >= threshold]
    return {
        "threshold": threshold,
        "positives": sum(1 for label, _, _ in scores if label == 1),
        "negatives": sum(1 for label, _, _ in scores if label == 0),
        "recall": recall, "false_positive_rate": fpr,
        "sweep": {f"{cut:.2f}": dict(zip(("recall", "fpr"), rates(cut), strict=True))
                  for cut in (0.35, 0.45, 0.5, 0.6, 0.7, 0.85)},
        "recall_by_carrier": {k: sum(v) / len(v) for k, v in sorted(by_carrier.items())},
        "missed": missed, "false_alarms": false_alarms,
    }


def real_documents_flagged(threshold: float) -> dict[str, Any]:
    """How many of the installed packages' READMEs, joined into 100 KB documents (benign text
    full of links, code, configuration and, for agent libraries, talk of prompts and tools),
    score at the threshold or above: false alarms on real documents."""
    sys.path.insert(0, str(ROOT / "bench"))
    from injection_scan import real_documents

    from agentguard.detectors import InjectionScanner

    scanner = InjectionScanner()
    docs = real_documents()
    scores = [scanner.scan(doc, source="document").score for doc in docs]
    return {"documents": len(docs), "flagged": sum(score >= threshold for score in scores),
            "highest": max(scores, default=0.0)}


def speed(repeats: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from injection_scan import adversarial_inputs, benign_document, real_throughput

    from agentguard.detectors import InjectionScanner

    scanner = InjectionScanner()
    doc = benign_document(100 * 1024)
    english = ("Our support team reviewed your request and updated the account settings. "
               "Orders placed before noon ship the same day from the warehouse in Leipzig, "
               "and you will receive a tracking link by e-mail once the parcel leaves. ") * 600
    english = english[: 100 * 1024]
    out: dict[str, Any] = {"engine": f"{scanner.engine} matcher, prefilter {scanner.prefilter}"}
    for name, text in (("labelled-set documents", doc), ("plain English prose", english)):
        scanner.scan(text)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(10):
                scanner.scan(text)
            samples.append((time.perf_counter() - started) / 10)
        out[f"MB/s, 100 KB {name}"] = len(text) / statistics.median(samples) / 1e6
    real = real_throughput(scanner, repeats)
    if real is not None:
        out["MB/s, 100 KB real documents, median"] = real["median_mb_per_s"]
        out["MB/s, 100 KB real documents, slowest"] = real["min_mb_per_s"]
    worst = 0.0
    worst_name = ""
    for name, text in adversarial_inputs().items():
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            scanner.scan(text)
            samples.append(time.perf_counter() - started)
        ms = statistics.median(samples) * 1e3
        if ms > worst:
            worst, worst_name = ms, name
    out["worst adversarial input (ms)"] = worst
    out["worst adversarial input"] = worst_name
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quality = evaluate(args.threshold)
    holdout = evaluate(args.threshold, HOLDOUT)
    real = real_documents_flagged(args.threshold)
    timing = speed(args.repeats)
    ok = (quality["recall"] >= TARGET_RECALL and quality["false_positive_rate"] <= TARGET_FPR
          and timing["worst adversarial input (ms)"] < TARGET_WORST_MS)
    if args.json:
        print(json.dumps({"quality": quality, "holdout": holdout, "real_documents": real,
                          "speed": timing, "targets_met": ok}, indent=2))
    else:
        print(f"labelled set: {quality['positives']} injected, {quality['negatives']} benign "
              f"(threshold {quality['threshold']})")
        print(f"  recall               {quality['recall']:.3f}   (target ≥ {TARGET_RECALL})")
        print(f"  false-positive rate  {quality['false_positive_rate']:.3f}   "
              f"(target ≤ {TARGET_FPR})")
        print("  sweep: " + ", ".join(f"{cut}: R={v['recall']:.2f} FPR={v['fpr']:.3f}"
                                      for cut, v in quality["sweep"].items()))
        print("  recall by carrier: " + ", ".join(f"{k} {v:.2f}"
                                                  for k, v in quality["recall_by_carrier"].items()))
        if quality["missed"]:
            print(f"  missed: {', '.join(quality['missed'])}")
        if quality["false_alarms"]:
            print(f"  false alarms: {', '.join(quality['false_alarms'])}")
        print(f"holdout set: {holdout['positives']} injected, {holdout['negatives']} benign: "
              f"recall {holdout['recall']:.3f}, false-positive rate "
              f"{holdout['false_positive_rate']:.3f}")
        print(f"real documents (installed READMEs, 100 KB each): {real['flagged']} of "
              f"{real['documents']} flagged (highest score {real['highest']:.2f})")
        print("speed (one core)")
        for name, value in timing.items():
            print(f"  {name:<40} {value:.1f}" if isinstance(value, float) else
                  f"  {name:<40} {value}")
        print(f"  (targets: ≥ {TARGET_MB_PER_S} MB/s on 100 KB documents, < {TARGET_WORST_MS} ms "
              "per adversarial 1 MB input)")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
