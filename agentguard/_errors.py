"""Containment of agentguard's own failures: log once per place, count, carry on."""

from __future__ import annotations

import logging
import threading

__all__ = ["internal_error", "internal_error_counts"]

logger = logging.getLogger("agentguard")

_lock = threading.Lock()
_counts: dict[str, int] = {}


def internal_error(where: str, exc: BaseException | None = None) -> None:
    """Record an internal failure at ``where``; the first one per place is logged with its traceback."""
    with _lock:
        seen = _counts.get(where, 0)
        _counts[where] = seen + 1
    if seen == 0:
        logger.warning(
            "agentguard internal error in %s (the agent continues; further errors here are counted, "
            "not logged)",
            where,
            exc_info=exc,
        )


def internal_error_counts() -> dict[str, int]:
    """How many internal errors each place has contained so far."""
    with _lock:
        return dict(_counts)
