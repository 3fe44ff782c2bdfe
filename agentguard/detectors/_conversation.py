"""Per-conversation injection state: decaying risk, flagged sources, a rolling tail, taint.

A conversation's risk is built from the distinct indicators seen in its untrusted content, each
kept at its strongest weight and decayed per turn since it was last seen; the same weak phrase
seen every turn stays weak, while different indicators arriving over several turns add up. The
rolling tail keeps the last few pieces of untrusted text so a phrase split across documents or
turns can be rescanned joined. Everything is bounded: conversations (LRU, with an eviction
counter), pieces, characters, sources, fingerprints and tainted values.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from agentguard.detectors._taint import SourceRef, TaintStore, UserValues
from agentguard.detectors.scanner import Evidence

__all__ = ["ConversationState", "ConversationStore", "Piece"]

MAX_SOURCES = 16
MAX_FINGERPRINTS = 512
MAX_INDICATORS = 64
# What the user typed, kept to tell their own values from injected ones: characters per turn and
# in all (the most recent turns).
USER_TEXT_CHARS = 16 * 1024
USER_CHARS = 32 * 1024
# Characters of a piece kept in the rolling tail.
TAIL_CHARS = 1024


class Piece:
    """One piece of untrusted text in the rolling tail (its last characters, not all of it).

    The source may be given as ``make_source(origin)`` instead: most pieces are never read
    again, and the clean-text path of the detector should not pay for building their source.
    """

    __slots__ = ("_make_source", "_origin", "_source", "open_tail", "tail")

    def __init__(self, tail: str, source: SourceRef | None, open_tail: bool,
                 make_source: Callable[[Any], SourceRef] | None = None, origin: Any = None
                 ) -> None:
        self.tail = tail
        self._source = source
        self.open_tail = open_tail
        self._make_source = make_source
        self._origin = origin

    @property
    def source(self) -> SourceRef:
        source = self._source
        if source is None:
            assert self._make_source is not None
            source = self._source = self._make_source(self._origin)
            self._origin = None
        return source

    def __repr__(self) -> str:
        return f"Piece(tail={self.tail!r}, source={self.source!r}, open_tail={self.open_tail!r})"


class ConversationState:
    """What the detector remembers about one conversation."""

    __slots__ = ("_user_values", "alerted_risk", "flagged", "heads", "indicators",
                 "last_channel", "last_clean", "last_turn", "lock", "open_tails", "pieces",
                 "risk", "seen", "taint", "user_chars", "user_texts")

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
        # Pieces in the tails ending with an anchor a neighbour could complete.
        self.open_tails = 0
        # The last clean text added and its channel, while nothing else was: the same text
        # again is already in the tail and judged.
        self.last_clean = ""
        self.last_channel: str | None = None
        # Texts judged before, by fingerprint, with their judgement (no second scan).
        self.seen: OrderedDict[tuple[int, int, str | None], Any] = OrderedDict()
        self.taint = TaintStore()
        self.alerted_risk = False
        # The user's own turns (bounded), and the values in those not flagged, read lazily: only
        # a tool call in a tainted conversation asks for them.
        self.user_texts: deque[tuple[str, SourceRef]] = deque()
        self.user_chars = 0
        self._user_values: UserValues | None = None

    # -- bookkeeping (call with ``lock`` held) -------------------------------------------------
    def turn_of(self, turn: int | None) -> int:
        if turn is not None and turn > self.last_turn:
            self.last_turn = turn
        return turn if turn is not None else self.last_turn

    def judged_before(self, text: str, channel: str | None = "content") -> Any:
        """The judgement of this exact text if it was judged before in this conversation, read
        the same way (``channel``: a user's turn, third-party content, or model output are
        scored with different profiles, and one's judgement is not the other's)."""
        key = (len(text), hash(text), channel)
        found = self.seen.get(key)
        if found is not None:
            self.seen.move_to_end(key)
        return found

    def record(self, text: str, channel: str | None, judgement: Any) -> None:
        self.seen[(len(text), hash(text), channel)] = judgement
        if len(self.seen) > MAX_FINGERPRINTS:
            self.seen.popitem(last=False)

    def add_clean(self, text: str, channel: str | None, source: SourceRef | None,
                  turn: int | None, max_pieces: int, judgement: Any,
                  make_source: Callable[[Any], SourceRef] | None = None, origin: Any = None
                  ) -> bool:
        """Keep a text the pre-check cleared in the rolling tail of ``channel`` (when it has one)
        and remember it as judged; ``False``, with nothing changed, when the conversation has
        flagged content or indicators, or an open phrase this text may complete: then the full
        path must judge it. The source is ``source``, or ``make_source(origin)`` when needed."""
        with self.lock:
            if self.flagged or self.indicators:
                return False
            if turn is not None and turn > self.last_turn:
                self.last_turn = turn
            if self.last_clean == text and self.last_channel == channel:
                return True  # the same text again: already in the tail, already judged
            if channel is not None and len(text) >= 8:
                tail = self.pieces.get(channel)
                if tail is None:
                    tail = self.pieces[channel] = deque()
                elif self.open_tails and any(p.open_tail for p in tail):
                    return False  # this text may complete an earlier piece
                tail.append(Piece(text[-TAIL_CHARS:], source, False, make_source, origin))
                while len(tail) > max_pieces:
                    self.open_tails -= tail.popleft().open_tail
            # Remembered as judged: the same text in the next model request costs a lookup.
            seen = self.seen
            seen[(len(text), hash(text), channel)] = judgement
            if len(seen) > MAX_FINGERPRINTS:
                seen.popitem(last=False)
            self.last_clean = text
            self.last_channel = channel
            return True

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
        self.open_tails += piece.open_tail
        while len(tail) > max_pieces:
            self.open_tails -= tail.popleft().open_tail
        # The tail changed under the last clean text: seen again, it must be judged again (it
        # may complete this piece).
        self.last_clean = ""

    def all_pieces(self) -> list[Piece]:
        return [piece for tail in self.pieces.values() for piece in tail]

    def add_user_text(self, text: str, source: SourceRef) -> None:
        """Remember what the user typed in a turn: a value they typed is theirs, not an
        injected one, even when flagged content repeats it."""
        text = text[:USER_TEXT_CHARS]
        self.user_texts.append((text, source))
        self.user_chars += len(text)
        while self.user_chars > USER_CHARS and len(self.user_texts) > 1:
            self.user_chars -= len(self.user_texts.popleft()[0])
        self._user_values = None

    def user_values(self) -> UserValues | None:
        """The values and text of the user's turns that were not flagged (``None``: none)."""
        if not self.user_texts:
            return None
        if self._user_values is None:
            flagged = {source.key for source in self.flagged}
            self._user_values = UserValues(
                [text for text, source in self.user_texts if source.key not in flagged])
        return self._user_values

    def flag(self, source: SourceRef, text: str) -> None:
        self._user_values = None  # a flagged turn's values are no longer the user's own
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
        # The state got last, already the most recently used: an agent's events come in runs
        # from one conversation, and those need no reordering.
        self._last: ConversationState | None = None

    def get(self, conversation_id: str) -> ConversationState:
        """The conversation's state, created when new (evicting the least recently used)."""
        items = self._items
        state = items.get(conversation_id)
        if state is not None:
            if self._last is state:
                return state  # already the most recently used
            # One C-level call on str keys, atomic under the GIL (the lock is for the insert and
            # eviction below); if an eviction got in first, ``state`` is returned orphaned, as
            # if it had been evicted just after.
            with contextlib.suppress(KeyError):
                items.move_to_end(conversation_id)
                self._last = state
            return state
        with self._lock:
            state = items.get(conversation_id)
            if state is None:
                state = ConversationState()
                items[conversation_id] = state
                if len(items) > self.max_conversations:
                    items.popitem(last=False)
                    self.evicted += 1
            else:
                items.move_to_end(conversation_id)
            self._last = state
            return state

    def peek(self, conversation_id: str) -> ConversationState | None:
        """The state if it exists, without creating it or refreshing its place."""
        return self._items.get(conversation_id)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._last = None
