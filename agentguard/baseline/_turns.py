"""Per-conversation state of the turn in progress: which tools were called, how often, in order."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["TurnState", "TurnTracker"]

# Distinct tools counted per turn (the rest share one counter).
_MAX_TOOLS_PER_TURN = 64
_OTHER = "(other)"


class TurnState:
    """The tool calls of one turn of one conversation so far."""

    __slots__ = ("counts", "last", "total", "turn")

    def __init__(self, turn: int | None) -> None:
        self.turn = turn
        self.counts: dict[str, int] = {}
        self.last: str | None = None
        self.total = 0


class TurnTracker:
    """The turn in progress of each recent conversation (least recently used dropped first).

    A turn ends when its conversation starts another, when it is evicted, or when the tracker is
    drained; ended turns are handed back to the caller, which learns from them.
    """

    def __init__(self, max_conversations: int = 4096) -> None:
        self._states: OrderedDict[str, TurnState] = OrderedDict()
        self._lock = threading.Lock()
        self.max_conversations = max_conversations
        self.evicted = 0

    def call(self, conversation: str, turn: int | None, tool: str
             ) -> tuple[str | None, int, int, list[TurnState]]:
        """Record a call of ``tool``: returns the tool called before it in this turn (``None``
        for the first call), this tool's calls and all calls in the turn so far, and the turns
        that ended."""
        ended: list[TurnState] = []
        with self._lock:
            states = self._states
            state = states.get(conversation)
            if state is None:
                state = states[conversation] = TurnState(turn)
                if len(states) > self.max_conversations:
                    ended.append(states.popitem(last=False)[1])
                    self.evicted += 1
            else:
                states.move_to_end(conversation)
                if state.turn != turn:
                    ended.append(state)
                    state = states[conversation] = TurnState(turn)
            previous = state.last
            state.last = tool
            counts = state.counts
            key = tool if tool in counts or len(counts) < _MAX_TOOLS_PER_TURN else _OTHER
            count = counts.get(key, 0) + 1
            counts[key] = count
            state.total += 1
            return previous, count, state.total, ended

    def end(self, conversation: str) -> TurnState | None:
        """End the turn in progress of ``conversation`` (a new user message arrived)."""
        with self._lock:
            return self._states.pop(conversation, None)

    def drain(self) -> list[TurnState]:
        """End every turn in progress (the profile is being saved)."""
        with self._lock:
            ended = list(self._states.values())
            self._states.clear()
            return ended

    def __len__(self) -> int:
        return len(self._states)
