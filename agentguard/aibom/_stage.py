"""The AI-BOM pipeline stage: records what loads into the inventory and diffs it against what is declared.

A :class:`~agentguard._guard.Detector` on the normal Guard path, so its findings go through the
same emission as every other (span events on the tool span, sinks, the mode: ``monitor`` never
blocks). It sees the runtime sensor's ``ModuleLoad`` and ``ModelLoad`` events and the
integrations' ``ModelCall`` events. A finding sink links the sensor's own model-load findings
(``sensor-model-load-activity``, ``sensor-unsafe-pickle``) to the artifact being loaded, rather
than reporting the same payload twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentguard._errors import internal_error
from agentguard.aibom._declared import AllowedModel, Declared, glob_match
from agentguard.aibom._environment import environment
from agentguard.aibom._inventory import DIRECTORY, PICKLE_FORMATS, Artifact, Inventory
from agentguard.findings import Decision, Finding

if TYPE_CHECKING:
    from agentguard._guard import Guard, Verdict

__all__ = [
    "RULES",
    "RULE_HASH_MISMATCH",
    "RULE_PICKLE_MODEL",
    "RULE_UNDECLARED_MODEL",
    "RULE_UNDECLARED_PACKAGE",
    "AibomStage",
    "Settings",
]

RULE_UNDECLARED_PACKAGE = "BOM001"
RULE_UNDECLARED_MODEL = "BOM002"
RULE_HASH_MISMATCH = "BOM003"
RULE_PICKLE_MODEL = "BOM004"
RULES: dict[str, str] = {
    RULE_UNDECLARED_PACKAGE: "distribution imported at runtime but not declared",
    RULE_UNDECLARED_MODEL: "model or adapter used at runtime but not on the models allow-list",
    RULE_HASH_MISMATCH: "model artifact digest does not match the allow-list",
    RULE_PICKLE_MODEL: "model loaded in a format that runs code while it loads (pickle family)",
}
# The sensor's findings about a load in progress, linked to the artifact (not repeated).
_SENSOR_LOAD_RULES = frozenset({"sensor-model-load-activity", "sensor-unsafe-pickle"})
MAX_REPORTED = 8192


@dataclass
class Settings:
    """What the stage compares against, and how loudly."""

    declared: Declared | None = None
    # Distributions agentguard itself needs are not the agent's to declare.
    ignore_own_dependencies: bool = True
    # Requirements/pyproject list direct dependencies: their installed requirements count too.
    transitive: bool = True
    # BOM001-BOM004 block (in enforce mode) instead of alerting.
    block: bool = False
    extra_allowed: list[str] = field(default_factory=list)
    # Seconds between emissions of the inventory as spans (None: configuration/environment/60).
    emit_interval: float | None = None


class AibomStage:
    """Detector: inventory every load and report what the declarations do not cover."""

    name = "aibom"

    def __init__(self, settings: Settings, inv: Inventory) -> None:
        self.settings = settings
        self.inventory = inv
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.allowed = self._allowed_distributions()
        # Artifacts loaded before their digest was known: judged once the hash thread has it.
        self._pending: dict[str, tuple[Any, Guard]] = {}

    # -- what counts as declared -------------------------------------------------------------
    def _allowed_distributions(self) -> frozenset[str] | None:
        """Normalised distributions the process may load, or ``None`` when nothing is declared."""
        declared = self.settings.declared
        if declared is None or not declared.packages:
            return None
        env = environment()
        roots = {name for name, package in declared.packages.items() if package.applies}
        allowed = set(roots)
        if self.settings.transitive and not declared.locked:
            allowed |= env.closure(roots)
        if self.settings.ignore_own_dependencies:
            allowed |= env.closure(["agentguard"])
        allowed.update(self.settings.extra_allowed)
        return frozenset(allowed)

    def _decide(self, reason: str, severity: Any, rule_id: str, evidence: dict[str, Any]
                ) -> Decision:
        factory = Decision.block if self.settings.block else Decision.alert
        return factory(reason, severity, rule_id=rule_id, category="supply-chain",
                       evidence=evidence)

    def _first(self, rule_id: str, key: str) -> bool:
        """Whether ``rule_id`` has not been reported for ``key`` yet (each fact is reported once)."""
        with self._lock:
            marker = (rule_id, key)
            if marker in self._reported:
                return False
            if len(self._reported) >= MAX_REPORTED:
                self._reported.clear()
            self._reported.add(marker)
            return True

    def reported(self) -> dict[tuple[str, str], list[str]]:
        """The rules reported so far, by inventory entry (kind, key), as the wire format keys them."""
        with self._lock:
            markers = sorted(self._reported)
        out: dict[tuple[str, str], list[str]] = {}
        for rule, key in markers:
            if rule == RULE_UNDECLARED_PACKAGE:
                where = ("library", key)
            elif key in self.inventory.artifacts:
                where = ("artifact", key)
            else:
                provider, _, model = key.partition(":")
                where = ("model", f"{'' if provider == 'None' else provider}:{model}")
            out.setdefault(where, []).append(rule)
        return out

    # -- the detector ------------------------------------------------------------------------
    def inspect(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        kind = getattr(event, "kind", None)
        if kind == "module_load":
            self._module(event, verdict, guard)
        elif kind == "model_load":
            self._artifact(event, verdict, guard)
        elif kind == "model_call" and getattr(event, "phase", "request") == "request":
            self._model_call(event, verdict, guard)

    def _module(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        new = self.inventory.record_module(event)
        allowed = self.allowed
        if allowed is None:
            return
        for name in new:
            if name in allowed or not self._first(RULE_UNDECLARED_PACKAGE, name):
                continue
            use = self.inventory.distributions.get(name)
            version = use.version if use is not None else event.version
            where = f" in tool {event.context.tool}" if event.context.tool else ""
            verdict.add(guard.finding_for(event, self._decide(
                f"{name} {version or ''}".rstrip() + f" was imported{where} but is not declared",
                "medium", RULE_UNDECLARED_PACKAGE,
                {"distribution": name, "version": version, "module": event.module,
                 "declared_files": list(self.settings.declared.files[:8])
                 if self.settings.declared else []},
            )))

    def _model_call(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        self.inventory.record_model_call(event)
        entries = self.entries()
        if not self.has_allowlist or not event.model:
            return
        model = str(event.model)
        provider = event.provider
        for entry in entries:
            if entry.id is not None and glob_match(entry.id, model) and \
                    (entry.provider is None or entry.provider == provider):
                return
        if self._first(RULE_UNDECLARED_MODEL, f"{provider}:{model}"):
            verdict.add(guard.finding_for(event, self._decide(
                f"model {model} ({provider or 'unknown provider'}) is not on the models allow-list",
                "high", RULE_UNDECLARED_MODEL, {"provider": provider, "model": model},
            )))

    def entries(self) -> list[AllowedModel]:
        declared = self.settings.declared
        return declared.model_entries() if declared is not None else []

    @property
    def has_allowlist(self) -> bool:
        """Whether a models allow-list was given (an empty one allows no model)."""
        declared = self.settings.declared
        return declared is not None and declared.models is not None

    def _artifact(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        artifact, _ = self.inventory.record_artifact(event)
        if artifact is None:
            return
        deferred = artifact.sha256 is None and event.path is not None and self.has_allowlist \
            and artifact.format != DIRECTORY
        if deferred:
            # Too large for the sensor to hash on the agent's thread: the allow-list is checked
            # when the hash thread has the digest (reported then, no longer blockable).
            with self._lock:
                if len(self._pending) < MAX_REPORTED:
                    self._pending[artifact.path] = (event, guard)
        else:
            with self._lock:
                self._pending.pop(artifact.path, None)
        for decision in self.judge_artifact(artifact, digest_known=not deferred):
            if decision.rule_id == RULE_PICKLE_MODEL and _builtin_pickle_rule(guard):
                continue  # the built-in policy pack already reports it; the BOM still lists it
            if self._first(decision.rule_id, artifact.path):
                verdict.add(guard.finding_for(event, decision))

    def hashed(self, artifact: Artifact) -> None:
        """Judge an artifact whose digest the hash thread just computed."""
        with self._lock:
            pending = self._pending.pop(artifact.path, None)
        if pending is None:
            return
        event, guard = pending
        from agentguard._guard import Verdict

        verdict = Verdict()
        for decision in self.judge_artifact(artifact):
            if decision.rule_id in (RULE_UNDECLARED_MODEL, RULE_HASH_MISMATCH) and \
                    self._first(decision.rule_id, artifact.path):
                late = Decision.alert(decision.reason + " (checked after it loaded)",
                                      decision.severity, rule_id=decision.rule_id,
                                      category=decision.category, evidence=decision.evidence)
                verdict.add(guard.finding_for(event, late))
        if verdict.findings:
            guard.emit(verdict, None)

    def judge_artifact(self, artifact: Artifact, *, digest_known: bool = True) -> list[Decision]:
        """The decisions about one loaded artifact, against the models allow-list.

        With ``digest_known=False`` only what does not depend on the digest is decided.
        """
        decisions: list[Decision] = []
        entries = self.entries()
        sha = artifact.sha256
        by_hash = [entry for entry in entries if entry.sha256 and sha and entry.sha256 == sha]
        evidence: dict[str, Any] = {"path": artifact.path, "format": artifact.format,
                                    "sha256": sha, "size": artifact.size,
                                    "model_id": artifact.model_id, "loader": artifact.source}
        if self.has_allowlist and not by_hash and digest_known:
            named = [entry for entry in entries if _names(entry, artifact)]
            pinned = [entry.sha256 for entry in named if entry.sha256 and _pins(entry, artifact)]
            revisions = [entry.revision for entry in named if entry.revision]
            if named and revisions and artifact.revision and artifact.revision not in revisions:
                # The seed's compromised uploader: the same repo id, a new revision.
                decisions.append(self._decide(
                    f"model {artifact.model_id or artifact.path} was fetched at revision "
                    f"{artifact.revision}, not the revision the allow-list pins", "critical",
                    RULE_HASH_MISMATCH, {**evidence, "revision": artifact.revision,
                                         "expected_revision": revisions[:8]}))
            elif named and pinned and sha is not None:
                decisions.append(self._decide(
                    f"model artifact {artifact.path} has sha256 {sha[:16]}…, not the digest the "
                    "allow-list pins", "critical", RULE_HASH_MISMATCH,
                    {**evidence, "expected_sha256": pinned[:8]}))
            elif not named:
                decisions.append(self._decide(
                    f"model artifact {artifact.path} is not on the models allow-list", "high",
                    RULE_UNDECLARED_MODEL, evidence))
        fmt = (artifact.format or "").lower()
        if fmt in PICKLE_FORMATS and not any(entry.allow_pickle for entry in by_hash):
            decisions.append(self._decide(
                f"model {artifact.path} is loaded in the {fmt} format, which runs code while it "
                "loads", "high", RULE_PICKLE_MODEL, evidence))
        return decisions

    # -- the sensor's load findings ----------------------------------------------------------
    def sink(self, finding: Finding) -> None:
        """Finding sink: link the sensor's findings about a load to the artifact being loaded."""
        if finding.rule_id not in _SENSOR_LOAD_RULES:
            return
        try:
            evidence = finding.evidence or {}
            self.inventory.link_activity(evidence.get("model"), {
                "rule_id": finding.rule_id, "action": finding.action,
                "severity": finding.severity, "title": finding.title, "tool": finding.tool,
                "trace_id": finding.trace_id, "span_id": finding.span_id,
                "timestamp": finding.timestamp,
            })
        except Exception as exc:
            internal_error("aibom sink", exc)


# The built-in policy pack's rule for pickle-family model loads.
_BUILTIN_PICKLE_RULE = "AG021"


def _builtin_pickle_rule(guard: Guard) -> bool:
    """Whether the built-in pack's pickle-model rule is on (then BOM004 is not a live finding)."""
    config = guard.config
    return bool(getattr(config, "builtin_rules", False)) and \
        _BUILTIN_PICKLE_RULE not in (getattr(config, "disabled_rules", None) or ())


def _id_matches(entry: AllowedModel, artifact: Artifact) -> bool:
    return entry.id is not None and artifact.model_id is not None and \
        glob_match(entry.id, artifact.model_id)


def _path_matches(entry: AllowedModel, artifact: Artifact) -> bool:
    """Whether the entry's path pattern matches the artifact; an id on the same entry must then
    name the artifact's model too, when the artifact has one (the same file name in another
    repo is another file)."""
    return entry.path is not None and glob_match(entry.path, artifact.path) and \
        (entry.id is None or artifact.model_id is None or _id_matches(entry, artifact))


def _names(entry: AllowedModel, artifact: Artifact) -> bool:
    """Whether an allow-list entry names this artifact (by path pattern or model id)."""
    return _path_matches(entry, artifact) or _id_matches(entry, artifact)


def _pins(entry: AllowedModel, artifact: Artifact) -> bool:
    """Whether the entry's digest applies to this artifact: an entry with a path pins only the
    files its path matches (the repo's other files are allowed by its id, not pinned to the
    digest of one of them); an entry without one pins what its id names."""
    if entry.path is not None:
        return _path_matches(entry, artifact)
    return _id_matches(entry, artifact)
