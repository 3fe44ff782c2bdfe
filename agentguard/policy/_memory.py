"""What a policy remembers between events: rate-limit windows and per-conversation history.

Both are bounded: least recently used keys are dropped first and counted, so a flood of new
conversations costs memory up to a limit and no more (and shows up in ``Policy.stats()``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["ConversationHistory", "Flag", "History", "RateWindow"]

# A rate window keeps at most this many timestamps over all its keys (about 2.4 MB of floats).
RATE_BUDGET = 100_000
MAX_RATE_KEYS = 10_000
MAX_CONVERSATIONS = 10_000
MAX_TOOLS_PER_CONVERSATION = 256


class RateWindow:
    """An exact sliding-window counter per key (a log of the last ``max + 1`` timestamps)."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self.max_keys = max(16, min(MAX_RATE_KEYS, RATE_BUDGET // (limit + 1)))
        self._log: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def hit(self, key: tuple[str, ...], now: float) -> int:
        """Record an event at ``now``; returns how many fall in the window ending at ``now``."""
        with self._lock:
            log = self._log.get(key)
            if log is None:
                log = self._new_log(key)
            else:
                self._log.move_to_end(key)
            log.append(now)
            self._expire(log, now)
            return len(log)

    def hit_within(self, key: tuple[str, ...], now: float) -> bool:
        """Record an event at ``now`` when that keeps the window within the limit (``True``);
        over it, nothing is recorded (``False``): the caller then records it with :meth:`hit`."""
        with self._lock:
            log = self._log.get(key)
            if log is None:
                if self.limit < 1:
                    return False
                log = self._new_log(key)
            else:
                self._expire(log, now)
                if len(log) + 1 > self.limit:
                    return False
                self._log.move_to_end(key)
            log.append(now)
            return True

    def _expire(self, log: deque[float], now: float) -> None:
        """Drop the events of ``log`` outside the window ending at ``now``."""
        start = now - self.per
        while log and log[0] <= start:
            log.popleft()

    def _new_log(self, key: tuple[str, ...]) -> deque[float]:
        """The empty log of a new key (the least recently used key dropped past the cap); the
        caller holds the lock."""
        log = self._log[key] = deque(maxlen=self.limit + 1)
        if len(self._log) > self.max_keys:
            self._log.popitem(last=False)
            self.evicted += 1
        return log

    def peek(self, key: tuple[str, ...], now: float) -> int:
        """How many events fall in the window ending at ``now`` (nothing recorded)."""
        with self._lock:
            log = self._log.get(key)
            if not log:
                return 0
            start = now - self.per
            return sum(1 for t in log if start < t <= now)

    def __len__(self) -> int:
        return len(self._log)


@dataclass
class Flag:
    """When untrusted content was flagged in a conversation, and what flagged it."""

    at: float
    turn: int | None
    source: str


@dataclass
class ConversationHistory:
    """The tools a conversation called (last time and turn each) and its latest flag."""

    tools: OrderedDict[str, tuple[float, int | None]] = field(default_factory=OrderedDict)
    flag: Flag | None = None
    dropped_tools: int = 0

    def record_tool(self, tool: str, at: float, turn: int | None) -> None:
        if tool in self.tools:
            self.tools.move_to_end(tool)
        elif len(self.tools) >= MAX_TOOLS_PER_CONVERSATION:
            self.tools.popitem(last=False)
            self.dropped_tools += 1
        self.tools[tool] = (at, turn)


class History:
    """Conversation histories by conversation id, least recently used dropped first."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._items: OrderedDict[str, ConversationHistory] = OrderedDict()
        self._lock = threading.Lock()
        self.max_conversations = max_conversations
        self.evicted = 0

    def get(self, conversation_id: str) -> ConversationHistory | None:
        # A single dict read is atomic under the GIL; changes go through update() and the lock.
        return self._items.get(conversation_id)

    def update(self, conversation_id: str) -> ConversationHistory:
        """The history of ``conversation_id``, created if new (call under :attr:`lock`)."""
        item = self._items.get(conversation_id)
        if item is None:
            item = self._items[conversation_id] = ConversationHistory()
            if len(self._items) > self.max_conversations:
                self._items.popitem(last=False)
                self.evicted += 1
        else:
            self._items.move_to_end(conversation_id)
        return item

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def __len__(self) -> int:
        return len(self._items)
