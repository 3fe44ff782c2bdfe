"""What the scanner's tests share: a text's normalised view built both ways."""

from __future__ import annotations

from agentguard.detectors._text import NormalisedView, hidden_runs, non_ascii, normalise

__all__ = ["fast_and_plain_views"]


def fast_and_plain_views(text: str) -> tuple[NormalisedView, NormalisedView,
                                             frozenset[str] | None, bytes]:
    """``text``'s view as the scanner builds it (the non-ASCII set and the UTF-8 form given,
    which open its fast paths) and as plain string operations build it, with that set and form."""
    present = non_ascii(text)
    runs = [(start, stop - start) for start, stop in hidden_runs(text, present)]
    data = text.encode("utf-8", "surrogatepass")
    return normalise(text, runs, present=present, data=data), normalise(text, runs), present, data
