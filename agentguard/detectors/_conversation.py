"""Per-conversation injection state: decaying risk, flagged sources, a rolling tail, taint.

A conversation's risk is built from the distinct indicators seen in its untrusted content, each
kept at its strongest weight and decayed per turn since it was last seen; the same weak phrase
seen every turn stays weak, while different indicators arriving over several turns add up. The
rolling tail keeps the last few pieces of untrusted text so a phrase split across documents or
turns can be rescanned joined. Everything is bounded: conversations (LRU, with an eviction
counter), pieces, characters, sources, fingerprints and tainted values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentguard.detectors._taint import SourceRef, TaintStore
from agentguard.detectors.scanner import Evidence

__all__ = ["ConversationState", "ConversationStore", "Piece"]

MAX_SOURCES = 16
MAX_FINGERPRINTS = 512
MAX_INDICATORS = 64


@dataclass(slots=True)
class Piece:
    """One piece of untrusted text in the rolling tail (its last characters, not all of it)."""

    tail: str
    source: SourceRef
    open_tail: bool


class ConversationState:
    """What the detector remembers about one conversation."""

    __slots__ = ("alerted_risk", "flagged", "heads", "indicators", "last_turn", "lock",
                 "pieces", "risk", "seen", "taint")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # indicator -> (weight, family, turn seen, where it was seen)
        self.indicators: dict[str, tuple[float, str, int, SourceRef]] = {}
        self.risk = 0.0
        self.last_turn = 0
        self.flagged: deque[SourceRef] = deque(maxlen=MAX_SOURCES)
        # Start of each flagged text: a later tool result quoting it names that source too.
        self.heads: deque[tuple[str, SourceRef]] = deque(maxlen=MAX_SOURCES)
        # Rolling tails by channel: what users typed, and third-party content (documents, tool
        # results); a split instruction is joined within its channel only.
        self.pieces: dict[str, deque[Piece]] = {}
        # Texts judged before, by fingerprint, with their judgement (no second scan).
        self.seen: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self.taint = TaintStore()
        self.alerted_risk = False

    # -- bookkeeping (call with ``lock`` held) -------------------------------------------------
    def turn_of(self, turn: int | None) -> int:
        if turn is not None and turn > self.last_turn:
            self.last_turn = turn
        return turn if turn is not None else self.last_turn

    def judged_before(self, text: str) -> Any:
        """The judgement of this exact text if it was judged before in this conversation."""
        key = (len(text), hash(text))
        found = self.seen.get(key)
        if found is not None:
            self.seen.move_to_end(key)
        return found

    def record(self, text: str, judgement: Any) -> None:
        self.seen[(len(text), hash(text))] = judgement
        if len(self.seen) > MAX_FINGERPRINTS:
            self.seen.popitem(last=False)

    def absorb(self, evidence: Iterable[Evidence], turn: int, decay: float, source: SourceRef
               ) -> float:
        """Fold new evidence into the conversation's indicators; returns the updated risk."""
        for item in evidence:
            current = self.indicators.get(item.indicator)
            decayed = current[0] * decay ** max(0, turn - current[2]) if current else 0.0
            if item.weight >= decayed:
                self.indicators[item.indicator] = (item.weight, item.family, turn, source)
        if len(self.indicators) > MAX_INDICATORS:
            weakest = sorted(self.indicators.items(), key=lambda kv: kv[1][0])
            for name, _ in weakest[: len(self.indicators) - MAX_INDICATORS]:
                del self.indicators[name]
        self.risk = self.current_risk(turn, decay)
        return self.risk

    def current_risk(self, turn: int, decay: float) -> float:
        """Risk now: strongest decayed indicator per family, noisy-OR across families."""
        families: dict[str, list[float]] = {}
        for weight, family, seen, _ in self.indicators.values():
            families.setdefault(family, []).append(weight * decay ** max(0, turn - seen))
        keep = 1.0
        for weights in families.values():
            weights.sort(reverse=True)
            keep *= 1.0 - min(0.97, weights[0] + 0.1 * sum(weights[1:3]))
        return round(min(0.99, 1.0 - keep), 3)

    def contributors(self, turn: int, decay: float, floor: float = 0.1) -> list[SourceRef]:
        """The sources of the indicators that still weigh in the risk, strongest first."""
        ranked = sorted(
            ((weight * decay ** max(0, turn - seen), source)
             for weight, _, seen, source in self.indicators.values()),
            key=lambda item: -item[0],
        )
        out: list[SourceRef] = []
        for weight, source in ranked:
            if weight >= floor and all(source.key != known.key for known in out):
                out.append(source)
        return out

    def remember(self, channel: str, piece: Piece, max_pieces: int) -> None:
        tail = self.pieces.get(channel)
        if tail is None:
            tail = self.pieces[channel] = deque()
        tail.append(piece)
        while len(tail) > max_pieces:
            tail.popleft()

    def all_pieces(self) -> list[Piece]:
        return [piece for tail in self.pieces.values() for piece in tail]

    def flag(self, source: SourceRef, text: str) -> None:
        for index, known in enumerate(self.flagged):
            if known.key == source.key:
                if source.score > known.score:
                    self.flagged[index] = source
                break
        else:
            self.flagged.append(source)
        head = " ".join(text[:200].split())[:64]
        if len(head) >= 24:
            self.heads.append((head, source))

    def recent_flagged(self, turn: int, window: int) -> list[SourceRef]:
        """Flagged sources no older than ``window`` turns, most recent first."""
        return [s for s in reversed(self.flagged)
                if s.turn is None or turn - s.turn <= window]

    def quoted_sources(self, text: str) -> list[SourceRef]:
        """Flagged sources whose text this one quotes (a tool result carrying a document)."""
        if not self.heads:
            return []
        flat = " ".join(text[:65536].split())
        return [source for head, source in self.heads if head in flat]


class ConversationStore:
    """Conversation states by id, least recently used evicted first (and counted)."""

    def __init__(self, max_conversations: int = 2048) -> None:
        self._items: OrderedDict[str, ConversationState] = OrderedDict()
        self._lock = threading.Lock()
        self.max_conversations = max_conversations
        self.evicted = 0

    def get(self, conversation_id: str) -> ConversationState:
        with self._lock:
            state = self._items.get(conversation_id)
            if state is None:
                state = ConversationState()
                self._items[conversation_id] = state
                if len(self._items) > self.max_conversations:
                    self._items.popitem(last=False)
                    self.evicted += 1
            else:
                self._items.move_to_end(conversation_id)
            return state

    def peek(self, conversation_id: str) -> ConversationState | None:
        """The state if it exists, without creating it or refreshing its place."""
        return self._items.get(conversation_id)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
