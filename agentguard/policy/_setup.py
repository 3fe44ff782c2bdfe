"""Configuration → policy stages: policy files loaded, rules disabled, the built-in pack added."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentguard.config import ConfigError
from agentguard.policy._errors import rule_id_hint

if TYPE_CHECKING:
    from agentguard._guard import Guard

__all__ = ["attach_policies", "builtin_rule_ids", "load_policy_items"]


def builtin_rule_ids() -> frozenset[str]:
    """Ids of every built-in rule."""
    from agentguard.policy._policy import builtin_source

    return frozenset(rule.id for rule in builtin_source().document.rules)


def load_policy_items(items: Sequence[Any]) -> list[Any]:
    """``policy=`` items in order, with every file path loaded (all paths into one policy, so
    they share lists and macros) at the place of the first path; raises ``PolicyError``."""
    from agentguard._guard import PolicyStage
    from agentguard.policy._policy import Policy

    stages: list[Any] = []
    paths: list[str] = []
    first_path = -1
    for item in items:
        if isinstance(item, (str, bytes, os.PathLike)):
            if first_path < 0:
                first_path = len(stages)
                stages.append(None)
            paths.append(os.fsdecode(item))
        elif isinstance(item, PolicyStage) or callable(item):
            stages.append(item)
        else:
            raise ConfigError(f"policy: {item!r} is neither a file path, a callable nor a "
                              "policy object")
    if paths:
        policy = Policy.from_files(paths)
        # attach_policies merges the built-in rules into this one: one rule set, one evaluation
        # per event, instead of a second policy.
        policy.origin = "config-files"
        stages[first_path] = policy
    return stages


# Rule ids of the other stages (detectors, runtime sensor, AI-BOM, the Guard itself), which
# ``disabled_rules`` switches off too; the Guard drops their findings.
STAGE_RULE_IDS = frozenset({
    "injection-detected", "injection-fragments", "injection-conversation-risk",
    "injection-escalation", "taint-argument",
    "sensor-tamper", "sensor-unsafe-pickle", "sensor-model-load-activity",
    "BOM001", "BOM002", "BOM003", "BOM004", "BOM005",
    "policy-error",
})
# Baseline deviations are reported as ``baseline-<kind>``.
STAGE_RULE_PREFIXES = ("baseline-",)


def attach_policies(guard: Guard) -> None:
    """Apply ``disabled_rules`` to the guard's policies and add the built-in pack."""
    from agentguard.policy._policy import Policy

    config = guard.config
    user = [stage for stage in guard.policies if isinstance(stage, Policy)]
    builtin_ids = builtin_rule_ids()
    known = set(builtin_ids)
    for policy in user:
        known |= policy.known_ids
    known |= STAGE_RULE_IDS
    unknown = [rule_id for rule_id in config.disabled_rules
               if rule_id not in known and not rule_id.startswith(STAGE_RULE_PREFIXES)]
    if unknown:
        hints = [f"{u!r}: {h}" for u, h in ((u, rule_id_hint(u, known)) for u in unknown) if h]
        raise ConfigError(
            f"disabled_rules: unknown rule id(s) {', '.join(map(repr, unknown))}; built-in rules "
            f"are {min(builtin_ids)}..{max(builtin_ids)}" + (f" ({'; '.join(hints)})" if hints
                                                             else ""))
    disabled = frozenset(config.disabled_rules)
    builtin = config.builtin_rules and not any(policy.includes_builtin for policy in user)
    files = next((stage for stage in user if stage.origin == "config-files"), None)
    stages = list(guard.policies)
    for index, stage in enumerate(stages):
        if not isinstance(stage, Policy):
            continue
        if builtin and stage is files:
            others = [policy for policy in user if policy is not files]
            stages[index] = stage.with_builtin(disabled=disabled, overlays=others)
        elif disabled:
            stages[index] = stage.without(disabled)
    guard.replace_policies(stages)
    if builtin and files is None:
        guard.add_policy(Policy.builtin(disabled=disabled, overlays=user))
