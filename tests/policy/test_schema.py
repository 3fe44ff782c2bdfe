"""The published JSON Schema of the policy format (docs/policy-schema.json)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentguard.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "policy-schema.json"


def test_committed_schema_is_up_to_date() -> None:
    """docs/policy-schema.json is exactly what scripts/gen_policy_schema.py generates."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_policy_schema.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schema_describes_the_format() -> None:
    """The schema is draft 2020-12, forbids unknown keys and knows every condition operator."""
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    condition = schema["$defs"]["Condition"]["properties"]
    for key in ("all", "any", "not", "macro", "field", "equals", "in", "not_in", "contains",
                "glob", "regex", "cidr", "gt", "lte", "exists", "length", "count", "transform"):
        assert key in condition, key


def _doc_examples() -> list[str]:
    text = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)


def test_documentation_examples_are_valid_policies() -> None:
    """Every YAML example in docs/policy.md loads, and validates against the schema."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    examples = _doc_examples()
    assert len(examples) >= 10
    for example in examples:
        Policy.from_yaml(example, name="docs example")
        jsonschema.validate(yaml.safe_load(example), schema)
