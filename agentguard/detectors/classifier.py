"""The extension point for model-based injection classifiers.

The built-in scanner needs no model. A deployment that has one (a fine-tuned DeBERTa, a hosted
moderation endpoint, an in-house model) plugs it in as a :class:`TextClassifier`; the detector
combines its score with the scanner's (the higher one counts) for every untrusted text it judges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentguard.detectors.scanner import SourceKind

__all__ = ["ClassifierVerdict", "PipelineClassifier", "TextClassifier"]


@dataclass(frozen=True, slots=True)
class ClassifierVerdict:
    """A classifier's judgement of one text: probability of injection in [0, 1]."""

    score: float
    label: str = "injection"
    detail: str = ""


@runtime_checkable
class TextClassifier(Protocol):
    """Scores untrusted text for prompt injection.

    ``classify`` returns ``None`` when it has nothing to say (wrong language, text too short).
    Optional attributes the detector honours when present:

    * ``max_chars`` (default 8192): longer texts are passed as their head and tail;
    * ``min_chars`` (default 16): shorter texts are not passed at all;
    * ``sources``: the source kinds to classify (default: all);
    * ``gate`` (default 0.0): only texts the built-in scanner scores at least this high are
      passed, so an expensive model runs on the suspicious fraction only.

    It runs on the agent's thread, so it must be fast or gated; an exception is contained and
    counted like any internal error, and the text is judged by the scanner alone.
    """

    name: str

    def classify(self, text: str, *, source: SourceKind) -> ClassifierVerdict | None: ...


class PipelineClassifier:
    """Adapts a text-classification callable with Hugging Face pipeline output.

    ``pipeline(text)`` returns ``[{"label": ..., "score": ...}, ...]`` (or one such dict), as
    ``transformers.pipeline("text-classification", model=...)`` does; the score of the first
    label in ``injection_labels`` is the injection probability. Loading the model is the
    caller's business, so importing agentguard never imports ``transformers``::

        from transformers import pipeline
        clf = PipelineClassifier(pipeline("text-classification", model=MODEL_DIR),
                                 injection_labels=("INJECTION",))
    """

    def __init__(
        self,
        pipeline: Callable[[str], Any],
        *,
        injection_labels: Sequence[str] = ("INJECTION", "LABEL_1", "injection", "jailbreak"),
        name: str = "pipeline",
        max_chars: int = 2048,
        min_chars: int = 16,
        gate: float = 0.0,
        sources: Iterable[str] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.injection_labels = tuple(injection_labels)
        self.name = name
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.gate = gate
        if sources is not None:
            self.sources = frozenset(sources)

    def classify(self, text: str, *, source: SourceKind) -> ClassifierVerdict | None:
        output = self.pipeline(text)
        if isinstance(output, Mapping):
            output = [output]
        if output and isinstance(output[0], list):
            output = output[0]
        for item in output or ():
            label = str(item.get("label", ""))
            if label in self.injection_labels:
                return ClassifierVerdict(float(item.get("score", 0.0)), label)
        # Binary models report only the winning label; a benign win means a low injection score.
        if output:
            best = max(output, key=lambda item: float(item.get("score", 0.0)))
            return ClassifierVerdict(1.0 - float(best.get("score", 0.0)), str(best.get("label")))
        return None
