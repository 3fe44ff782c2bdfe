"""What the scanner's tests share: a text's normalised view built both ways."""

from __future__ import annotations

from agentguard.detectors import InjectionScanner, ScanResult
from agentguard.detectors._text import NormalisedView, hidden_runs, non_ascii, normalise

__all__ = ["fast_and_plain_views", "scan"]


def scan(scanner: InjectionScanner, text: str, source: str = "document") -> ScanResult:
    """``scanner``'s result for ``text`` read as a ``source`` (a retrieved document by default)."""
    return scanner.scan(text, source=source)  # type: ignore[arg-type]


def fast_and_plain_views(text: str) -> tuple[NormalisedView, NormalisedView,
                                             frozenset[str] | None, bytes]:
    """``text``'s view as the scanner builds it (the non-ASCII set and the UTF-8 form given,
    which open its fast paths) and as plain string operations build it, with that set and form."""
    present = non_ascii(text)
    runs = [(start, stop - start) for start, stop in hidden_runs(text, present)]
    data = text.encode("utf-8", "surrogatepass")
    return normalise(text, runs, present=present, data=data), normalise(text, runs), present, data
