"""All of agentguard's process-wide mutable state lives in this module, and nowhere else.

``guard`` is the active :class:`~agentguard._guard.Guard` (``None`` when not instrumented); every
wrapper reads it first and calls straight through when it is ``None``. Changes happen under
``lock`` in :mod:`agentguard._api`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from agentguard._context import ConversationRegistry

if TYPE_CHECKING:
    from agentguard._guard import Guard
    from agentguard._telemetry import Telemetry

lock = threading.RLock()
guard: Guard | None = None
telemetry: Telemetry | None = None
conversations = ConversationRegistry()
# Integration names the user asked for, and the ones currently patched into their framework.
enabled_integrations: set[str] = set()
# Export counters of the last pipeline shut down by uninstrument().
last_export_stats: dict[str, int] = {}
