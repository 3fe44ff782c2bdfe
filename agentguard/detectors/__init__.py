"""Detectors: prompt-injection indicators in untrusted text, conversation risk and taint.

``InjectionDetector`` is the pipeline stage ``instrument()`` adds when ``injection_detection`` is
on; ``InjectionScanner`` is the scanner it uses, usable on its own; ``TextClassifier`` is the
extension point for model-based classifiers. Nothing here needs a model download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentguard.detectors._taint import SourceRef, TaintMatch
from agentguard.detectors.classifier import ClassifierVerdict, PipelineClassifier, TextClassifier
from agentguard.detectors.injection import (
    InjectionAnnotation,
    InjectionDetector,
    InjectionSettings,
)
from agentguard.detectors.scanner import (
    Evidence,
    InjectionScanner,
    ScanLimits,
    ScanResult,
    SourceKind,
    default_scanner,
)

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = [
    "ClassifierVerdict",
    "Evidence",
    "InjectionAnnotation",
    "InjectionDetector",
    "InjectionScanner",
    "InjectionSettings",
    "PipelineClassifier",
    "ScanLimits",
    "ScanResult",
    "SourceKind",
    "SourceRef",
    "TaintMatch",
    "TextClassifier",
    "default_scanner",
    "injection_detector",
]


def injection_detector(guard: Guard | None = None) -> InjectionDetector | None:
    """The injection detector of ``guard`` (default: the active Guard), to add a classifier to it
    or read its counters; ``None`` when injection detection is off."""
    if guard is None:
        from agentguard import _state

        guard = _state.guard
    if guard is None:
        return None
    for detector in guard.detectors:
        if isinstance(detector, InjectionDetector):
            return detector
    return None
