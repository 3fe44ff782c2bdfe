"""The labelled evaluation set: recall and false-positive rate at the default threshold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentguard
from agentguard.detectors import InjectionAnnotation, InjectionScanner
from agentguard.events import Document, EventContext, Retrieval

DATA = Path(__file__).resolve().parent.parent / "data" / "injection"
THRESHOLD = 0.5


def load(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_single_text_cases_meet_the_targets() -> None:
    """On the labelled texts, recall is at least 0.95 with at most 1% false positives."""
    scanner = InjectionScanner()
    cases = [c for c in load("cases.jsonl") + load("holdout.jsonl") if "text" in c]
    positives = [c for c in cases if c["label"] == 1]
    negatives = [c for c in cases if c["label"] == 0]
    assert len(positives) >= 150 and len(negatives) >= 250
    missed = [c["id"] for c in positives if scanner.scan(c["text"]).score < THRESHOLD]
    alarms = [c["id"] for c in negatives if scanner.scan(c["text"]).score >= THRESHOLD]
    assert len(missed) / len(positives) <= 0.05, missed
    assert len(alarms) / len(negatives) <= 0.01, alarms


def test_multi_turn_cases_are_caught_by_the_detector(
        guarded: Callable[..., agentguard.Guard]) -> None:
    """Every multi-turn case, read piece by piece in one conversation, ends flagged, though no
    piece is flagged alone."""
    guard = guarded(mode="monitor")
    scanner = InjectionScanner()
    for case in (c for c in load("cases.jsonl") if "pieces" in c):
        assert all(scanner.scan(piece).score < THRESHOLD for piece in case["pieces"]), case["id"]
        rule_ids: set[str] = set()
        risk = 0.0
        for turn, piece in enumerate(case["pieces"], start=1):
            verdict = guard.evaluate(Retrieval(
                context=EventContext(conversation_id=case["id"], turn=turn), retriever="kb",
                phase="response", documents=[Document(id=f"{case['id']}-{turn}", content=piece)]))
            rule_ids.update(f.rule_id for f in verdict.findings)
            note = verdict.annotations["injection"]
            assert isinstance(note, InjectionAnnotation)
            risk = max(risk, note.conversation_risk)
        assert rule_ids & {"injection-fragments", "injection-conversation-risk"}, case["id"]
        assert risk >= THRESHOLD
