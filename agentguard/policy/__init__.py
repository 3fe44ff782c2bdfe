"""Declarative policies: YAML rules that alert on or block what an agent does.

A policy file has rules (a match on event kind, agent and tool, conditions on the event's
fields, optional rate limits and sequence conditions), reusable lists and macros, and overrides
of rules defined elsewhere. The built-in pack (``builtin.yaml``, rule ids ``AG001``...) is loaded
by default; see ``docs/policy.md`` for the format and every built-in rule.

Importing this package is cheap: PyYAML is imported only when a policy is parsed.
"""

from __future__ import annotations

from agentguard.policy._errors import PolicyError, PolicyIssue
from agentguard.policy._policy import Policy, RuleExplanation, RuleInfo

__all__ = ["Policy", "PolicyError", "PolicyIssue", "RuleExplanation", "RuleInfo"]
