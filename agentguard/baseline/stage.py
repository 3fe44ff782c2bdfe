"""The baseline stage of the Guard pipeline: learns in ``learn`` mode, scores otherwise.

In ``learn`` mode every event updates the profile (events that a detector already judged
suspicious are left out, so an attack seen while learning does not become normal). In
``monitor`` and ``enforce`` mode every event is scored: its deviations go to
``verdict.annotations["baseline"]`` for the policy stage, and each becomes a finding in category
``baseline``, a block when it is at least ``Thresholds.block_severity`` on a mature part of the
profile, an alert otherwise (monitor mode turns blocks into alerts).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from agentguard._errors import internal_error
from agentguard.baseline._learn import Learner
from agentguard.baseline._score import BaselineAnnotation, Deviation, Scorer
from agentguard.baseline._settings import Thresholds
from agentguard.baseline._turns import TurnTracker
from agentguard.baseline.profile import Profile, ProfileError
from agentguard.baseline.store import load_profile, merge_into_file, target_path
from agentguard.findings import SEVERITY_ORDER, Decision

if TYPE_CHECKING:
    from agentguard._guard import Guard, Verdict

__all__ = ["ANNOTATION_KEY", "Baseline", "configure", "finish"]

ANNOTATION_KEY = "baseline"
logger = logging.getLogger("agentguard")


class Baseline:
    """The baseline stage: a profile, learned into or scored against depending on the mode.

    Learning goes into a separate profile of what this process learned, added to the file on
    :meth:`save` (read, merge, write under a lock), so several processes can extend one file.
    """

    name = "baseline"

    def __init__(self, profile: Profile, *, path: str | None = None,
                 thresholds: Thresholds | None = None) -> None:
        self.path = path
        self.thresholds = thresholds or Thresholds()
        self._base = profile
        self._turns = TurnTracker()
        self._learner: Learner | None = None
        self._scorer: Scorer | None = None
        self._lock = threading.Lock()
        self._block_level = SEVERITY_ORDER[self.thresholds.block_severity]
        self._suspicious_level = SEVERITY_ORDER["high"]
        self._atexit = False
        # The profile file and its temporary and lock files (beside the file a symbolic link
        # points to): saving them is not the agent's doing.
        self._own_files: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        if path is not None:
            names = dict.fromkeys((os.path.abspath(path), os.path.realpath(path)))
            self._own_files = (tuple(names), tuple(
                os.path.join(directory, f".{name}.")
                for directory, name in map(os.path.split, names)))
        self.counters = {"learned": 0, "skipped": 0, "scored": 0, "deviations": 0,
                         "findings": 0, "saves": 0}

    # -- construction from the configuration ---------------------------------------------
    @classmethod
    def open(cls, path: str, *, mode: str, agent: str,
             thresholds: Thresholds | None = None) -> Baseline:
        """The stage for a profile file: loaded (``monitor``/``enforce``), or loaded if present
        and extended (``learn``). Raises :class:`ProfileError` naming the file."""
        exists = os.path.exists(path)
        if not exists:
            try:
                # The file is created where a symbolic link points, not beside the link.
                target = target_path(path)
            except OSError as exc:
                raise ProfileError(f"{path}: cannot use the profile: "
                                   f"{exc.strerror or exc}") from None
            link = f" (a symbolic link to {target})" if os.path.islink(path) else ""
            if mode != "learn":
                raise ProfileError(f"{path}: no such profile file{link} (learn one first with "
                                   "mode='learn', or with agentguard profile learn)")
            directory = os.path.dirname(target)
            if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
                raise ProfileError(f"{path}: cannot create the profile{link}: directory "
                                   f"{directory} does not exist or is not writable")
            return cls(Profile(agent=agent), path=path, thresholds=thresholds)
        profile = load_profile(path)
        if profile.agent != agent:
            raise ProfileError(f"{path}: the profile was learned for agent {profile.agent!r}, "
                               f"but this agent is {agent!r} (service_name)")
        stage = cls(profile, path=path, thresholds=thresholds)
        if mode != "learn":
            # Compiled now, so the first event does not pay for it, and so a profile that passed
            # the loader's checks but cannot be scored with fails here, naming the file, rather
            # than on every event.
            try:
                stage._make_scorer()
            except Exception as exc:
                raise ProfileError(f"{path}: the profile cannot be scored against "
                                   f"({type(exc).__name__}: {str(exc)[:200]})") from None
        return stage

    # -- the pipeline stage --------------------------------------------------------------
    def process(self, event: Any, verdict: Verdict, guard: Guard) -> None:
        if guard.mode == "learn":
            findings = verdict.findings
            if findings and (verdict.blocked or any(
                    SEVERITY_ORDER[f.severity] >= self._suspicious_level for f in findings)):
                self.learner().skip("suspicious")
                self.counters["skipped"] += 1
                return
            if self.learn(event):
                self.counters["learned"] += 1
            return
        deviations = self.score(event)
        if not deviations:
            return
        self.judge(event, deviations, verdict, guard)

    def learn(self, event: Any) -> bool:
        """Learn one event (returns ``False`` when it was skipped)."""
        learner = self.learner()
        agent = event.context.agent
        if agent is not None and agent != learner.profile.agent:
            learner.skip("other_agent")
            return False
        own = self._own_files
        if own is not None and event.kind == "file_open":
            path = str(event.path)
            if path in own[0] or path.startswith(own[1]):
                return False
        return learner.learn(event)

    def score(self, event: Any) -> list[Deviation]:
        """The deviations of one event from the profile."""
        scorer = self._scorer or self._make_scorer()
        self.counters["scored"] += 1
        agent = event.context.agent
        if agent is not None and agent != scorer.profile.agent:
            return []
        return scorer.score(event)

    def judge(self, event: Any, deviations: list[Deviation], verdict: Verdict,
              guard: Guard) -> None:
        """Annotate the verdict with the deviations and add a finding for each (the first
        ``max_findings`` by severity)."""
        ordered = sorted(deviations, key=lambda d: -SEVERITY_ORDER[d.severity])
        limit = self.thresholds.max_findings
        shown = ordered[:limit]
        verdict.annotations[ANNOTATION_KEY] = BaselineAnnotation(
            tuple(ordered), max(len(ordered) - limit, 0))
        self.counters["deviations"] += len(ordered)
        for deviation in shown:
            block = deviation.mature and SEVERITY_ORDER[deviation.severity] >= self._block_level
            evidence = deviation.to_dict()
            if len(ordered) > limit:
                evidence["more_deviations"] = len(ordered) - limit
            decision = Decision("block" if block else "alert", deviation.message,
                                deviation.severity, f"baseline-{deviation.rule}", "baseline",
                                evidence)
            verdict.add(guard.finding_for(event, decision))
            self.counters["findings"] += 1

    # -- state ---------------------------------------------------------------------------
    def learner(self) -> Learner:
        learner = self._learner
        if learner is None:
            with self._lock:
                if self._learner is None:
                    self._learner = Learner(Profile(agent=self._base.agent,
                                                    limits=self._base.limits), turns=self._turns)
                    if self.path is not None and not self._atexit:
                        _save_at_exit(self)
                        self._atexit = True
                learner = self._learner
        return learner

    def _make_scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                self._scorer = Scorer(self._base, self.thresholds, turns=self._turns)
            return self._scorer

    @property
    def learning(self) -> bool:
        """Whether this stage has learned anything not yet saved."""
        learner = self._learner
        return learner is not None and (learner.profile.events > 0 or len(self._turns) > 0
                                        or bool(learner.profile.skipped))

    @property
    def profile(self) -> Profile:
        """The profile as it stands: what was loaded plus what was learned since (a copy)."""
        learner = self._learner
        if learner is None:
            return self._base
        with learner.lock:
            return self._base.merge(learner.profile)

    def save(self, path: str | None = None, *, final: bool = True) -> Profile:
        """Add what was learned to the profile file (atomically) and return the saved profile.

        ``final`` also ends the turns in progress (their calls per turn are learned). Raises
        :class:`ProfileError` when the file is no longer a valid profile or cannot be written
        (its directory was removed); it is then left as it is, and what was learned stays in
        memory.
        """
        target = path or self.path
        if target is None:
            raise ProfileError("no profile file to save to")
        learner = self.learner()
        if final:
            learner.flush_turns()
        with learner.lock:
            learned = learner.profile
            if learned.events == 0 and not learned.skipped and os.path.exists(target):
                return self._base
            merged = merge_into_file(target, learned, self._base)
            self._base = merged
            learner.profile = Profile(agent=merged.agent, limits=merged.limits)
            self._scorer = None
        self.counters["saves"] += 1
        return merged


def _save_at_exit(stage: Baseline) -> None:
    """Save what ``stage`` learned when the interpreter exits (unless saved or dropped before)."""
    ref = weakref.ref(stage)

    def save() -> None:
        current = ref()
        if current is not None and current.learning:
            try:
                current.save()
            except Exception as exc:
                logger.warning("agentguard could not save the learned profile at exit: %s", exc)

    atexit.register(save)


def configure(guard: Guard, previous: Guard | None = None) -> None:
    """Attach the baseline stage ``guard.config.profile`` asks for.

    What a replaced guard learned is saved first, so a reconfigured process (``learn`` then
    ``monitor`` on the same file) scores against everything learned. Raises
    :class:`~agentguard.ConfigError` naming the file when it cannot be used.
    """
    from agentguard.config import ConfigError

    if previous is not None and previous is not guard:
        finish(previous)
    path = guard.config.profile
    if not path:
        return
    try:
        stage = Baseline.open(path, mode=guard.mode, agent=guard.config.service_name)
    except ProfileError as exc:
        raise ConfigError(f"profile (mode={guard.mode}): {exc}") from None
    except Exception as exc:
        # Anything else a profile file can cause still names the file, as a configuration error.
        raise ConfigError(f"profile (mode={guard.mode}): {path}: cannot be used "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    guard.set_baseline(stage)


def finish(guard: Guard) -> None:
    """Save what the guard's baseline learned (``uninstrument()``); problems are logged."""
    stage = guard.baseline
    if not isinstance(stage, Baseline) or stage.path is None:
        return
    if not stage.learning and os.path.exists(stage.path):
        return
    try:
        stage.save()
    except ProfileError as exc:
        logger.warning("agentguard did not save the learned profile: %s", exc)
    except Exception as exc:
        internal_error("baseline save", exc)
