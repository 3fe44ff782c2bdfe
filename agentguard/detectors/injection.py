"""The prompt-injection detector stage: scans what the model reads, tracks each conversation,
and judges the tool calls that follow.

For every event it annotates the verdict with an :class:`InjectionAnnotation` under
``verdict.annotations["injection"]`` (for the policy stage after it) and adds findings:

* ``injection-detected``: untrusted text (user turn, retrieved document, tool result, tool
  message, model output) scores at or above the flag threshold;
* ``injection-fragments``: pieces that only form an instruction joined together;
* ``injection-conversation-risk``: indicators accumulated across turns cross the threshold;
* ``injection-escalation``: a sensitive tool is called after untrusted content was flagged;
* ``taint-argument``: a tool argument carries a value or passage from flagged content.

Modes: ``learn`` and ``monitor`` alert; ``enforce`` blocks tool calls (and tool results) only at
high confidence (``injection_block_threshold``) and alerts otherwise. Findings about text that
cannot be withheld (turns, retrievals, model calls) are alerts in every mode: enforcement bites at
the tool call they lead to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import TYPE_CHECKING, Any

from agentguard._errors import internal_error
from agentguard.config import ConfigError
from agentguard.detectors._conversation import (
    TAIL_CHARS,
    ConversationState,
    ConversationStore,
    Piece,
)
from agentguard.detectors._taint import SourceRef, TaintMatch
from agentguard.detectors._tools import ToolClassifier, side_effects
from agentguard.detectors.classifier import ClassifierVerdict, TextClassifier
from agentguard.detectors.scanner import (
    EMPTY,
    Evidence,
    InjectionScanner,
    ScanResult,
    SourceKind,
    combine,
    default_scanner,
)
from agentguard.findings import Decision, Severity

if TYPE_CHECKING:
    from agentguard._guard import Guard, Verdict

__all__ = ["InjectionAnnotation", "InjectionDetector", "InjectionSettings"]

ANNOTATION_KEY = "injection"
_TOOL_ROLES = frozenset({"tool", "toolresult", "tool_result", "function", "ipython"})
# A structured tool result: characters read (the last _TAIL_TEXT of them from its end), values
# visited from its front and from its back, and nesting followed.
_MAX_TEXT = 4 * 1024 * 1024
_TAIL_TEXT = 1024 * 1024
_MAX_STEPS = 10_000
_TAIL_STEPS = 4_000
_MAX_DEPTH = 256
_TEXT_ATTRIBUTES = ("page_content", "content", "text")
_TAIL = TAIL_CHARS
_EVIDENCE_IN_FINDING = 8
_CLEAN_CALLS_LIMIT = 4096
# Tool calls read per message when naming the tools of tool messages.
_MAX_CALLS = 256
# Which rolling tail a source kind joins (model output joins none: it is the model's own text).
_CHANNELS: dict[str, str] = {"turn": "user", "document": "content", "tool_result": "content",
                             "tool_message": "content"}
_KIND_LABELS = {"email": "an e-mail address", "url": "a URL", "host": "a host name",
                "account": "an account number", "phone": "a phone number", "path": "a file path",
                "token": "a token", "amount": "an amount", "passage": "a passage"}


@dataclass(frozen=True, slots=True)
class InjectionSettings:
    """Thresholds and limits of the injection detector (checked when built: a wrong value raises
    :class:`~agentguard.config.ConfigError` naming the setting, instead of switching detection
    off quietly)."""

    flag_threshold: float = 0.5
    # Above 1, nothing is confident enough to block.
    block_threshold: float = 0.85
    # Weight kept per turn by an indicator not seen again (0.7: a third after three turns).
    decay: float = 0.7
    # Turns after a flagged source during which sensitive tool calls are escalated.
    escalation_turns: int = 20
    # Tool names or shell patterns; a string is read as comma-separated names.
    sensitive_tools: tuple[str, ...] = ()
    safe_tools: tuple[str, ...] = ()
    tool_heuristics: bool = True
    taint: bool = True
    block_taint: bool = True
    max_conversations: int = 2048
    tail_pieces: int = 4
    scan_model_output: bool = True

    def __post_init__(self) -> None:
        flag = _number("flag_threshold", self.flag_threshold, 0.0, 1.0, low_open=True)
        block = _number("block_threshold", self.block_threshold, flag, math.inf)
        decay = _number("decay", self.decay, 0.0, 1.0)
        for name, value in (("flag_threshold", flag), ("block_threshold", block),
                            ("decay", decay)):
            object.__setattr__(self, name, value)
        for name, low, high in (("escalation_turns", 0, 1_000_000),
                                ("max_conversations", 1, 1 << 24), ("tail_pieces", 0, 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"InjectionSettings.{name} must be a whole number from {low} "
                                  f"to {high}; got {value!r}")
        for name in ("tool_heuristics", "taint", "block_taint", "scan_model_output"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"InjectionSettings.{name} must be True or False; got "
                                  f"{getattr(self, name)!r}")
        for name in ("sensitive_tools", "safe_tools"):
            object.__setattr__(self, name, _names(name, getattr(self, name)))

    @classmethod
    def from_config(cls, config: Any) -> InjectionSettings:
        """Settings from an agentguard ``Config`` (``injection_*`` fields where present)."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = getattr(config, f"injection_{name}", None)
            if value is not None:
                values[name] = value
        return cls(**values)


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False
            ) -> float:
    """``value`` as a float within ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or \
            value < low or value > high or (low_open and value == low):
        bound = "(" if low_open else "["
        upper = "]" if high != math.inf else ")"
        raise ConfigError(f"InjectionSettings.{name} must be a number in {bound}{low:g}, "
                          f"{high:g}{upper}; got {value!r}")
    return float(value)


def _names(name: str, value: Any) -> tuple[str, ...]:
    """Tool names or patterns: a tuple of non-empty strings (a string is split on commas, so
    ``"send_email"`` is one name, not ten letters)."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(f"InjectionSettings.{name} must be tool names (a list of strings or "
                          f"a comma-separated string); got {value!r}")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"InjectionSettings.{name} must hold tool names (strings); got "
                              f"{item!r}")
        if item.strip():
            names.append(item.strip())
    return tuple(names)


@dataclass(frozen=True, slots=True)
class InjectionAnnotation:
    """What the injection detector found for one event, for the stages after it."""

    flagged: bool = False
    score: float = 0.0
    conversation_flagged: bool = False
    conversation_risk: float = 0.0
    # This event's flagged sources first, then the conversation's recent flagged sources.
    sources: tuple[SourceRef, ...] = ()
    indicators: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    taint: tuple[TaintMatch, ...] = ()
    # For tool calls: the tool's sink category ("network", "exec", "write", "pay", "configured").
    sink: str | None = None
    classifiers: tuple[tuple[str, float], ...] = field(default=())

    @property
    def tainted(self) -> bool:
        return bool(self.taint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged, "score": self.score,
            "conversation_flagged": self.conversation_flagged,
            "conversation_risk": self.conversation_risk,
            "sources": [s.to_dict() for s in self.sources],
            "indicators": list(self.indicators),
            "evidence": [e.to_dict() for e in self.evidence[:_EVIDENCE_IN_FINDING]],
            "taint": [t.to_dict() for t in self.taint], "sink": self.sink,
            "classifiers": dict(self.classifiers),
        }


_CLEAN = InjectionAnnotation()
_CLEAN_JUDGEMENT: tuple[ScanResult, float, tuple[tuple[str, float], ...]] = (EMPTY, 0.0, ())


@dataclass(slots=True)
class _Judged:
    """One scanned piece of an event."""

    source: SourceRef
    result: ScanResult
    score: float
    flagged: bool
    classifiers: tuple[tuple[str, float], ...]
    related: tuple[SourceRef, ...] = ()


class InjectionDetector:
    """The injection detector stage (``Detector`` protocol of the Guard pipeline)."""

    name = "injection"

    def __init__(
        self,
        settings: InjectionSettings | None = None,
        *,
        scanner: InjectionScanner | None = None,
        classifiers: Sequence[TextClassifier] = (),
    ) -> None:
        self.settings = settings or InjectionSettings()
        self.scanner = scanner or default_scanner()
        self.classifiers: list[TextClassifier] = list(classifiers)
        self.conversations = ConversationStore(self.settings.max_conversations)
        self.tools = ToolClassifier(self.settings.sensitive_tools, self.settings.safe_tools,
                                    heuristics=self.settings.tool_heuristics)
        # Counters for stats and tests: texts scanned in full, skipped by the pre-check,
        # skipped as already seen in the conversation.
        self.scanned = 0
        self.prechecked = 0
        self.deduplicated = 0
        # Texts the pre-check found clean (the scanner's memory of them, read here first) and
        # the annotation of calls in a clean conversation, per tool.
        self._clean_texts = self.scanner.clean_texts
        self._tail_pieces = self.settings.tail_pieces
        self._clean_calls: dict[str | None, InjectionAnnotation] = {}
        # The Guard's policy stages and baseline the sink names were last taken from.
        self._sources: tuple[Any, Any] | None = None

    def _sync_sinks(self, guard: Guard) -> None:
        """Take sink names from the Guard's policy files (lists ``sensitive_tools`` and
        ``safe_tools``) and from its learned profile (tools seen with side effects), again
        whenever its policy stages or baseline are replaced (two identity checks otherwise)."""
        policies, baseline = guard.policies, guard.baseline
        sources = self._sources
        if sources is not None and sources[0] is policies and sources[1] is baseline:
            return
        self._sources = (policies, baseline)
        sensitive: list[Any] = []
        safe: list[Any] = []
        learned: dict[str, str] = {}
        try:
            for stage in policies:
                lists = getattr(stage, "lists", None)
                if isinstance(lists, dict):
                    sensitive.extend(lists.get("sensitive_tools", ()))
                    safe.extend(lists.get("safe_tools", ()))
            if baseline is not None:
                learned = side_effects(getattr(baseline, "profile", None))
        except Exception as exc:
            internal_error("injection sink sources", exc)
        self.tools.set_sources(sensitive=sensitive, safe=safe, learned=learned)
        self._clean_calls = {}

    def _clean_call(self, tool: str | None) -> InjectionAnnotation:
        """The annotation of a call to ``tool`` in a clean conversation, kept per tool."""
        sink = self.tools.category(tool)
        annotation = _CLEAN if sink is None else InjectionAnnotation(sink=sink)
        if len(self._clean_calls) >= _CLEAN_CALLS_LIMIT:
            self._clean_calls.clear()
        self._clean_calls[tool] = annotation
        return annotation

    def add_classifier(self, classifier: TextClassifier) -> None:
        """Add a model-based classifier; its score and the scanner's are combined (max)."""
        self.classifiers.append(classifier)

    @property
    def evicted(self) -> int:
        """Conversations dropped from the bounded store so far."""
        return self.conversations.evicted

    # -- the Detector protocol ---------------------------------------------------------------
    def inspect(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        kind = getattr(event, "kind", None)
        if kind == "tool_call":
            if event.phase == "call":
                self._tool_call(event, verdict, guard)
            else:
                self._tool_result(event, verdict, guard)
        elif kind == "retrieval":
            if event.phase == "response" and event.documents:
                self._judge(event, verdict, guard, self._document_pieces(event), False)
        elif kind == "turn":
            ctx = event.context
            source = SourceRef("turn", f"turn {ctx.turn}", ctx.turn)
            conversation_id = ctx.conversation_id
            state = self.conversations.get(conversation_id) if conversation_id else None
            if state is not None and event.text:
                with state.lock:
                    state.add_user_text(event.text, source)
            self._judge(event, verdict, guard, [(event.text, "turn", source)], False,
                        state=state, lookup=False)
        elif kind == "model_call":
            pieces = self._model_pieces(event)
            if pieces:
                self._judge(event, verdict, guard, pieces, False)

    # -- tool results ----------------------------------------------------------------------------
    def _tool_result(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        text = event.result
        if text is None and event.error:
            # A tool that raised: frameworks that recover (a ToolNode handling tool errors) tell
            # the model the error's text, which can carry what the tool read.
            text = event.error
        if type(text) is not str:
            text = _text_of(text)
        pieces: list[tuple[str, SourceKind, SourceRef]]
        if not text or self.classifiers:
            pieces = [(text, "tool_result", _tool_result_source(event))] if text else []
            self._judge(event, verdict, guard, pieces, True)
            return
        # The common case first, with nothing built that it does not need: a text the pre-check
        # clears, outside a conversation or in a clean one. Every step here is counted: on an
        # agent's thread each costs. In a clean conversation, the clean text it was given last,
        # again, needs nothing at all: it is in the tail and judged (read without the lock: a
        # flag racing with this is as if it came just after).
        ctx = event.context
        conversation_id = ctx.conversation_id
        state = self.conversations.get(conversation_id) if conversation_id else None
        turn = ctx.turn
        if (state is not None and state.last_clean == text and state.last_channel == "content"
                and not (state.flagged or state.indicators)
                and (turn is None or turn <= state.last_turn)):
            self.prechecked += 1
            verdict.annotations[ANNOTATION_KEY] = _CLEAN
            return
        # A repeated clean text is found in the pre-check's memory at once.
        needs_scan = text not in self._clean_texts and self.scanner.quick_check(text)
        if not needs_scan and (state is None or state.add_clean(
                text, "content", None, turn, self._tail_pieces, _CLEAN_JUDGEMENT,
                _tool_result_source, event)):
            self.prechecked += 1
            verdict.annotations[ANNOTATION_KEY] = _CLEAN
            return
        pieces = [(text, "tool_result", _tool_result_source(event))]
        self._judge(event, verdict, guard, pieces, True, state=state, lookup=False,
                    precheck=needs_scan)

    # -- pieces of untrusted text --------------------------------------------------------------

    def _document_pieces(self, event: Any) -> list[tuple[str, SourceKind, SourceRef]]:
        pieces: list[tuple[str, SourceKind, SourceRef]] = []
        turn = event.context.turn
        for index, document in enumerate(event.documents):
            text = document.content
            if not text:
                continue
            doc_id = document.id or document.source or f"#{index}"
            pieces.append((text, "document", SourceRef(
                "document", str(doc_id), turn, document_id=str(doc_id),
                retriever=event.retriever)))
        return pieces

    def _model_pieces(self, event: Any) -> list[tuple[str, SourceKind, SourceRef]]:
        turn = event.context.turn
        pieces: list[tuple[str, SourceKind, SourceRef]] = []
        if event.phase == "request":
            # Tool names by call id, from the assistant's requests (a Bedrock toolResult or an
            # Anthropic tool_result block names its call, not its tool); built when needed.
            names: dict[str, str] | None = None
            for index, message in enumerate(event.messages):
                if not message.content:
                    continue
                role = message.role.lower()
                if role in _TOOL_ROLES:
                    call_id = message.tool_call_id
                    tool = message.name
                    if not tool and call_id:
                        if names is None:
                            names = _tool_names(event.messages)
                        tool = names.get(call_id)
                    ref = call_id or tool or f"message {index}"
                    pieces.append((message.content, "tool_message", SourceRef(
                        "tool_message", str(ref), turn, tool=tool, call_id=call_id)))
                elif role == "document":
                    # A file or search result attached to the user's message (Bedrock document
                    # and searchResult blocks): what it says is not what the user typed.
                    name = message.name or f"attachment {index}"
                    pieces.append((message.content, "document", SourceRef(
                        "document", name, turn, document_id=name)))
        elif self.settings.scan_model_output and event.output:
            for message in event.output:
                if message.content:
                    pieces.append((message.content, "model_output",
                                   SourceRef("model_output", event.model or "model", turn)))
        return pieces

    # -- judging text ----------------------------------------------------------------------------
    def _score(self, text: str, kind: SourceKind, checked: bool = False
               ) -> tuple[ScanResult, float, tuple[tuple[str, float], ...]]:
        """The text's scan result, score and classifier votes; ``checked``: the pre-check was
        already asked and said the text needs the full scan."""
        scanner = self.scanner
        if checked or scanner.quick_check(text):
            self.scanned += 1
            result = scanner.scan(text, source=kind)
        else:
            self.prechecked += 1
            result = EMPTY
        score = result.score
        votes: list[tuple[str, float]] = []
        for classifier in self.classifiers:
            verdict = self._classify(classifier, text, kind, result.score)
            if verdict is not None:
                votes.append((classifier.name, round(verdict.score, 3)))
                score = max(score, min(1.0, max(0.0, verdict.score)))
        return result, round(score, 3), tuple(votes)

    def _classify(self, classifier: TextClassifier, text: str, kind: SourceKind,
                  heuristic: float) -> ClassifierVerdict | None:
        sources = getattr(classifier, "sources", None)
        if sources is not None and kind not in sources:
            return None
        if heuristic < float(getattr(classifier, "gate", 0.0)):
            return None
        if len(text) < int(getattr(classifier, "min_chars", 16)):
            return None
        limit = int(getattr(classifier, "max_chars", 8192))
        if len(text) > limit:
            text = text[: limit // 2] + "\n" + text[-(limit // 2):]
        try:
            return classifier.classify(text, source=kind)
        except Exception as exc:
            internal_error(f"injection classifier {getattr(classifier, 'name', classifier)!s}", exc)
            return None

    def _judge(self, event: Any, verdict: Verdict, guard: Guard,
               pieces: Sequence[tuple[str, SourceKind, SourceRef]], blockable: bool, *,
               state: ConversationState | None = None, lookup: bool = True,
               precheck: bool | None = None) -> None:
        """Judge ``pieces`` of ``event`` and report. ``lookup=False``: ``state`` is the
        conversation's, looked up by the caller. ``precheck``: for a single piece, what the
        pre-check already answered (``True``: it needs the full scan)."""
        settings = self.settings
        ctx = event.context
        if lookup:
            conversation_id = ctx.conversation_id
            state = self.conversations.get(conversation_id) if conversation_id else None
        transient = state is None and len(pieces) > 1
        if transient:
            # No conversation: the pieces of this one event (the chunks of one retrieval, the
            # tool messages of one request) are still joined, in a state kept for it alone.
            state = ConversationState()
        taint = settings.taint and not transient
        if precheck is not None and len(pieces) != 1:
            precheck = None
        if precheck is None and len(pieces) == 1 and self._clean_fast(pieces[0], state):
            verdict.annotations[ANNOTATION_KEY] = _CLEAN
            return
        judged: list[_Judged] = []
        fragments: list[tuple[ScanResult, list[SourceRef]]] = []
        risk_crossed: list[SourceRef] = []
        risk = 0.0
        conversation_flagged = False
        recent: list[SourceRef] = []
        for text, kind, source in pieces:
            before = None
            if state is not None:
                with state.lock:
                    before = state.judged_before(text, _CHANNELS.get(kind))
            if before is not None and state is not None:
                # The same text again (a tool result quoted in the next model request, a result
                # repeating a retrieved document): judged once. A tool result can still be
                # withheld, so it is reported again; elsewhere it was reported already.
                self.deduplicated += 1
                result, score, votes = before
                if not blockable or score < settings.flag_threshold:
                    continue
                source = _with_score(source, score)
                item = _Judged(source, result, score, True, votes)
                with state.lock:
                    item.related = tuple(s for s in state.quoted_sources(text)
                                         if s.key != source.key)
                judged.append(item)
                continue
            if precheck is False:
                self.prechecked += 1
                result, score, votes = _CLEAN_JUDGEMENT
            else:
                result, score, votes = self._score(text, kind, precheck is True)
            flagged = score >= settings.flag_threshold
            source = _with_score(source, score)
            item = _Judged(source, result, score, flagged, votes)
            judged.append(item)
            if state is None:
                continue
            with state.lock:
                state.record(text, _CHANNELS.get(kind), (_kept(result), score, votes))
            channel = _CHANNELS.get(kind)
            fragment = self._fragments(state, channel, text, result, kind, source) \
                if channel is not None else None
            with state.lock:
                turn = state.turn_of(source.turn)
                if flagged:
                    item.related = tuple(s for s in state.quoted_sources(text)
                                         if s.key != source.key)
                    state.flag(source, text)
                    if taint:
                        state.taint.add(text, source)
                if fragment is not None:
                    fragments.append(fragment)
                    keys = {s.key: s for s in fragment[1]}
                    for involved in fragment[1]:
                        state.flag(involved, "")
                    if taint:
                        for piece in state.all_pieces():
                            if piece.source.key in keys:
                                state.taint.add(piece.tail, keys[piece.source.key])
                        state.taint.add(text[:_TAIL], keys.get(source.key, source))
                evidence = list(result.evidence) + (list(fragment[0].evidence) if fragment else [])
                if evidence:
                    state.absorb(evidence, turn, settings.decay, source)
                if channel is not None and len(text) >= 8:
                    state.remember(channel, Piece(text[-_TAIL:], source, result.open_tail),
                                   settings.tail_pieces)
                risk = state.current_risk(turn, settings.decay)
                if risk >= settings.flag_threshold and not state.alerted_risk:
                    state.alerted_risk = True
                    if not flagged and fragment is None:
                        risk_crossed = [_with_score(s, max(s.score, risk))
                                        for s in state.contributors(turn, settings.decay)]
                        keys = {s.key: s for s in risk_crossed}
                        for contributor in risk_crossed:
                            state.flag(contributor, "")
                        if taint:
                            for piece in state.all_pieces():
                                if piece.source.key in keys:
                                    state.taint.add(piece.tail, keys[piece.source.key])
                elif risk < settings.flag_threshold * 0.5:
                    state.alerted_risk = False
                recent = state.recent_flagged(turn, settings.escalation_turns)
                conversation_flagged = bool(recent) or risk >= settings.flag_threshold
        if transient:
            # What the pieces complete together is reported; there is no conversation to flag.
            risk, conversation_flagged, recent, risk_crossed = 0.0, False, [], []
        elif not judged and state is not None:
            with state.lock:
                turn = state.turn_of(ctx.turn)
                risk = state.current_risk(turn, settings.decay)
                recent = state.recent_flagged(turn, settings.escalation_turns)
                conversation_flagged = bool(recent) or risk >= settings.flag_threshold
        self._annotate_and_report(event, verdict, guard, judged, fragments, risk_crossed, risk,
                                  conversation_flagged, recent, blockable)

    def _clean_fast(self, piece: tuple[str, SourceKind, SourceRef],
                    state: ConversationState | None) -> bool:
        """The common case, cheaply: one text with nothing the scanner could report, in a
        conversation with nothing flagged and no open phrase to complete. Returns ``False`` when
        the full path must run."""
        text, kind, source = piece
        if self.classifiers or self.scanner.quick_check(text):
            return False
        if state is not None and not state.add_clean(
                text, _CHANNELS.get(kind), source, source.turn, self.settings.tail_pieces,
                _CLEAN_JUDGEMENT):
            return False
        self.prechecked += 1
        return True

    def _fragments(self, state: ConversationState, channel: str, text: str, result: ScanResult,
                   kind: SourceKind, source: SourceRef
                   ) -> tuple[ScanResult, list[SourceRef]] | None:
        """Rescan the end of the previous pieces joined with the start of this one, when either
        side has an anchor that a neighbour could complete; report what only the join shows."""
        with state.lock:
            previous = list(state.pieces.get(channel, ()))
        if not previous:
            return None
        if not (result.anchors or any(p.open_tail for p in previous)):
            return None
        parts = [p.tail for p in previous] + [text[:_TAIL]]
        owners = [p.source for p in previous] + [source]
        bounds: list[tuple[int, int]] = []
        offset = 0
        for part in parts:
            bounds.append((offset, offset + len(part)))
            offset += len(part) + 1
        joined = "\n".join(parts)
        joined_result = self.scanner.scan(joined, source=kind)
        crossing: list[Evidence] = []
        involved: list[SourceRef] = []
        for evidence in joined_result.evidence:
            inside = [i for i, (lo, hi) in enumerate(bounds)
                      if evidence.start < hi and evidence.end > lo]
            # Only what the new piece completes: joins among older pieces were judged before.
            if len(inside) > 1 and len(parts) - 1 in inside:
                crossing.append(evidence)
                for i in inside:
                    if all(owners[i].key != s.key for s in involved):
                        involved.append(owners[i])
        if not crossing:
            return None
        score = combine([*crossing, *result.evidence])
        if score < self.settings.flag_threshold:
            return None
        involved = [_with_score(s, max(s.score, score)) for s in involved]
        fragment = ScanResult(score=score, evidence=tuple(crossing), length=len(joined),
                              scanned=len(joined), anchors=joined_result.anchors,
                              checks=joined_result.checks)
        return fragment, involved

    # -- tool calls --------------------------------------------------------------------------------
    def _tool_call(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        ctx = event.context
        conversation_id = ctx.conversation_id
        state = self.conversations.peek(conversation_id) if conversation_id else None
        if state is None:
            verdict.annotations[ANNOTATION_KEY] = _CLEAN
            return
        sources = self._sources
        if sources is None or sources[0] is not guard.policies or sources[1] is not guard.baseline:
            self._sync_sinks(guard)
        if not (state.flagged or state.indicators) and state.taint.empty:
            # A clean conversation: nothing to escalate, nothing tainted, one shared annotation.
            turn = ctx.turn
            if turn is not None and turn > state.last_turn:
                with state.lock:
                    state.turn_of(turn)
            annotation = self._clean_calls.get(event.tool)
            if annotation is None:
                annotation = self._clean_call(event.tool)
            verdict.annotations[ANNOTATION_KEY] = annotation
            return
        settings = self.settings
        sink = self.tools.category(event.tool)
        with state.lock:
            turn = state.turn_of(ctx.turn)
            risk = state.current_risk(turn, settings.decay) if state.indicators else 0.0
            recent = state.recent_flagged(turn, settings.escalation_turns)
            matches = state.taint.match(event.arguments, state.user_values()) \
                if settings.taint and state.taint else []
        conversation_flagged = bool(recent) or risk >= settings.flag_threshold
        verdict.annotations[ANNOTATION_KEY] = InjectionAnnotation(
            flagged=False, score=0.0, conversation_flagged=conversation_flagged,
            conversation_risk=risk, sources=tuple(recent), taint=tuple(matches), sink=sink,
        )
        enforce = guard.mode == "enforce"
        if matches:
            # A value from the user's own (flagged) turn blocks only at high confidence, as an
            # escalation does: the user may simply have changed their mind ("forget what I said,
            # send it to ..."); a flagged document or tool result needs no more than the flag.
            strong = [m for m in matches if m.source.score >= (
                settings.block_threshold if m.source.kind == "turn" else settings.flag_threshold)]
            top = (strong or matches)[0]
            severity: Severity = "high" if sink else "medium"
            block = enforce and bool(sink) and settings.block_taint and bool(strong)
            reason = (f"argument {top.argument!r} of tool {event.tool} carries "
                      f"{_KIND_LABELS.get(top.kind, 'a value')} from untrusted content "
                      f"({top.source.describe()})")
            evidence = {"tool": event.tool, "call_id": event.call_id, "sink": sink,
                        "sink_from": self.tools.origin(event.tool),
                        "matches": [m.to_dict() for m in matches[:8]],
                        "conversation_risk": risk}
            decision = (Decision.block if block else Decision.alert)(
                reason, severity, rule_id="taint-argument", category="taint", evidence=evidence)
            verdict.add(guard.finding_for(event, decision))
        if recent and sink:
            strongest = max(s.score for s in recent)
            confident = max(strongest, risk) >= settings.block_threshold
            block = enforce and confident
            severity = "high" if confident else "medium"
            reason = (f"sensitive tool {event.tool} ({sink}) called after untrusted content was "
                      f"flagged in this conversation: {recent[0].describe()}")
            evidence = {"tool": event.tool, "call_id": event.call_id, "sink": sink,
                        "sink_from": self.tools.origin(event.tool),
                        "sources": [s.to_dict() for s in recent[:8]],
                        "conversation_risk": risk}
            decision = (Decision.block if block else Decision.alert)(
                reason, severity, rule_id="injection-escalation", category="injection",
                evidence=evidence)
            verdict.add(guard.finding_for(event, decision))

    # -- output ------------------------------------------------------------------------------------
    def _annotate_and_report(
        self, event: Any, verdict: Verdict, guard: Guard, judged: list[_Judged],
        fragments: list[tuple[ScanResult, list[SourceRef]]], risk_crossed: list[SourceRef],
        risk: float, conversation_flagged: bool, recent: list[SourceRef], blockable: bool,
    ) -> None:
        settings = self.settings
        flagged = [j for j in judged if j.flagged]
        score = max((j.score for j in judged), default=0.0)
        for fragment, _ in fragments:
            score = max(score, fragment.score)
        sources: list[SourceRef] = [j.source for j in flagged]
        for _, involved in fragments:
            sources.extend(s for s in involved if s not in sources)
        sources.extend(s for s in recent if s not in sources)
        evidence: list[Evidence] = []
        for item in judged:
            evidence.extend(item.result.evidence)
        for fragment, _ in fragments:
            evidence.extend(fragment.evidence)
        verdict.annotations[ANNOTATION_KEY] = InjectionAnnotation(
            flagged=bool(flagged or fragments), score=score,
            conversation_flagged=conversation_flagged, conversation_risk=risk,
            sources=tuple(sources), indicators=tuple(dict.fromkeys(e.indicator for e in evidence)),
            evidence=tuple(evidence[:64]),
            classifiers=tuple(vote for item in judged for vote in item.classifiers),
        ) if (judged or conversation_flagged) else _CLEAN
        enforce = guard.mode == "enforce"
        for item in flagged:
            confident = item.score >= settings.block_threshold
            block = enforce and blockable and confident
            indicators = ", ".join(item.result.indicators[:4]) or "classifier"
            reason = (f"prompt injection indicators in {item.source.describe()} "
                      f"(score {item.score:.2f}: {indicators})")
            details: dict[str, Any] = {
                "score": item.score, "source": item.source.to_dict(),
                "indicators": list(item.result.indicators),
                "evidence": [e.to_dict() for e in item.result.evidence[:_EVIDENCE_IN_FINDING]],
                "conversation_risk": risk,
            }
            if item.related:
                details["quotes"] = [s.to_dict() for s in item.related]
                reason += f"; it carries {item.related[0].describe()}"
            if item.result.sampled:
                details["sampled"] = {"length": item.result.length,
                                      "scanned": item.result.scanned}
            if item.result.anchors_capped:
                details["anchor_cap_reached"] = True
            if item.classifiers:
                details["classifiers"] = dict(item.classifiers)
            decision = (Decision.block if block else Decision.alert)(
                reason, _severity(item.score, confident), rule_id="injection-detected",
                category="injection", evidence=details)
            verdict.add(guard.finding_for(event, decision))
        for fragment, involved in fragments:
            confident = fragment.score >= settings.block_threshold
            block = enforce and blockable and confident
            names = "; ".join(s.describe() for s in involved)
            reason = (f"instruction split across untrusted pieces ({names}), "
                      f"score {fragment.score:.2f}")
            details = {
                "score": fragment.score, "sources": [s.to_dict() for s in involved],
                "indicators": list(fragment.indicators),
                "evidence": [e.to_dict() for e in fragment.evidence[:_EVIDENCE_IN_FINDING]],
                "conversation_risk": risk,
            }
            decision = (Decision.block if block else Decision.alert)(
                reason, _severity(fragment.score, confident), rule_id="injection-fragments",
                category="injection", evidence=details)
            verdict.add(guard.finding_for(event, decision))
        if risk_crossed:
            reason = (f"injection risk accumulated across the conversation reached {risk:.2f} "
                      f"(from {'; '.join(s.describe() for s in risk_crossed[:4])})")
            details = {"conversation_risk": risk,
                       "sources": [s.to_dict() for s in risk_crossed[:8]]}
            decision = Decision.alert(reason, _severity(risk, risk >= settings.block_threshold),
                                      rule_id="injection-conversation-risk", category="injection",
                                      evidence=details)
            verdict.add(guard.finding_for(event, decision))


def _tool_result_source(event: Any) -> SourceRef:
    call_id = event.call_id
    return SourceRef("tool_result", f"{event.tool}#{call_id}" if call_id else event.tool,
                     event.context.turn, tool=event.tool, call_id=call_id)


def _kept(result: ScanResult) -> ScanResult:
    """A judgement as the conversation remembers it for a repeat of the text: the first piece
    of evidence of each indicator (the same score and indicators; a conversation that meets many
    dense flagged texts keeps kilobytes per text, not the full evidence of each)."""
    if len(result.evidence) <= _EVIDENCE_IN_FINDING:
        return result
    first: dict[str, Evidence] = {}
    for evidence in result.evidence:
        first.setdefault(evidence.indicator, evidence)
    if len(first) == len(result.evidence):
        return result
    return replace(result, evidence=tuple(first.values()))


def _tool_names(messages: Sequence[Any]) -> dict[str, str]:
    """Tool names by call id, from the tool calls of a request's assistant messages."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls[:_MAX_CALLS]:
            if isinstance(call, dict):
                call_id, name = call.get("id"), call.get("name")
                if isinstance(call_id, str) and isinstance(name, str) and name:
                    names[call_id] = name
    return names


def _severity(score: float, confident: bool) -> Severity:
    if score >= 0.95:
        return "critical"
    return "high" if confident else "medium"


def _with_score(source: SourceRef, score: float) -> SourceRef:
    if score == source.score:
        return source
    return SourceRef(source.kind, source.ref, source.turn, score, source.document_id,
                     source.retriever, source.tool, source.call_id)


def _text_of(value: Any) -> str:
    """The text a tool result puts in front of the model, bounded: strings as they are, the
    string leaves of structured results joined by newlines (a content block by its text alone).

    A structure too large to read whole is read from both ends, as the scanner reads a long
    text: values past the front walk's budget (the last records of a long API response) are
    still read. Nothing here costs more than the budgets, whatever the size of a container,
    and an object that raises when its text is asked for is skipped, not fatal."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return _decoded(value, _MAX_TEXT)
    if isinstance(value, (int, float, bool)):
        return ""
    head, cut = _walk(value, _MAX_STEPS, _MAX_TEXT - _TAIL_TEXT, backward=False)
    text = "\n".join(head)
    if cut:
        tail, _ = _walk(value, _TAIL_STEPS, _TAIL_TEXT, backward=True)
        if tail:
            text += "\n" + "\n".join(reversed(tail))
    return text


def _walk(value: Any, steps: int, chars: int, *, backward: bool) -> tuple[list[str], bool]:
    """The string leaves of ``value`` met first (from its end when ``backward``, in reverse
    order), within ``steps`` values visited and ``chars`` characters; and whether anything was
    left unread."""
    parts: list[str] = []
    size = 0
    cut = False
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        if steps <= 0 or size >= chars:
            return parts, True
        item, depth = stack.pop()
        steps -= 1
        try:
            if isinstance(item, str):
                if item:
                    if len(item) > chars - size:
                        item = _ends(item, chars - size)
                    parts.append(item)
                    size += len(item)
                continue
            if item is None or isinstance(item, (int, float, bool)):
                continue
            if isinstance(item, (bytes, bytearray)):
                parts.append(_decoded(item, chars - size))
                size += len(parts[-1])
                continue
            if depth >= _MAX_DEPTH:
                cut = True
                continue
            children: list[Any]
            if isinstance(item, dict):
                # Backwards, the dict's own view (a subclass's items() may not reverse).
                pairs = reversed(dict.items(item)) if backward else iter(item.items())
                children = []
                for key, child in islice(pairs, steps):
                    if key == "type" and isinstance(child, str) and child.isidentifier():
                        # A discriminator ({"type": "text", "text": ...}): a content block reads
                        # as its text alone, as it does in the next model request.
                        continue
                    # A long key is text the model reads too; a short one is a field name.
                    if backward:
                        children.append(child)
                    if isinstance(key, str) and len(key) > 24:
                        children.append(key)
                    if not backward:
                        children.append(child)
            elif isinstance(item, (list, tuple)):
                children = list(reversed(item[max(len(item) - steps, 0):])) if backward \
                    else list(item[:steps])
            elif isinstance(item, (set, frozenset)):
                children = list(islice(item, steps))
            else:
                text = None
                for name in _TEXT_ATTRIBUTES:
                    text = getattr(item, name, None)
                    if text:
                        break
                if isinstance(text, (str, list, tuple)):
                    stack.append((text, depth + 1))
                continue
            if len(item) > steps:
                cut = True  # more children than the budget left: the other walk reads the rest
        except Exception:
            continue  # an object that cannot say what it holds is not read
        stack.extend((child, depth + 1) for child in reversed(children))
    return parts, cut


def _ends(text: str, room: int) -> str:
    """The first and last characters of ``text`` that fit in ``room`` (an injection is as likely
    at the end of a long value as at its start)."""
    if room <= 1:
        return text[:max(room, 0)]
    half = room // 2
    return text[:half] + "\n" + text[len(text) - (room - half - 1):]


def _decoded(data: bytes | bytearray, room: int) -> str:
    """Bytes as the text they hold (UTF-8, invalid sequences replaced), both ends when long."""
    if len(data) <= room:
        return bytes(data).decode("utf-8", "replace")
    half = room // 2
    return (bytes(data[:half]).decode("utf-8", "replace") + "\n"
            + bytes(data[len(data) - half:]).decode("utf-8", "replace"))
