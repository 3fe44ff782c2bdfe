"""Bedrock model ids through real botocore against the local Bedrock server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentguard import aibom
from agentguard.aibom import _inventory
from tests.bedrock_server import Reply
from tests.integrations.bedrock.conftest import _bedrock_server, bedrock, runtime

__all__ = ["_bedrock_server", "bedrock", "runtime"]  # fixtures used by the tests below

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
_USER = [{"role": "user", "content": [{"text": "Summarise ticket 9."}]}]


def test_bedrock_model_ids_against_allowlist(tmp_path: Path, bom_guard: Any, bedrock: Any,
                                             runtime: Any) -> None:
    """Converse calls are inventoried by Bedrock model id; a model outside the allow-list's
    globs (for the aws.bedrock provider) is reported once, an allowed one is not."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: anthropic.claude-3-5-haiku-*\n    provider: aws.bedrock\n")
    _, found = bom_guard(enable={"models_allowlist": models})
    client = runtime()
    for model in (HAIKU, NOVA, NOVA):
        bedrock.push(Reply("ok"))
        client.converse(modelId=model, messages=_USER)
    undeclared = [f for f in found if f.rule_id == "BOM002"]
    assert [(f.kind, f.evidence) for f in undeclared] == \
        [("model_call", {"provider": "aws.bedrock", "model": NOVA})]
    inv = _inventory.inventory()
    assert inv.models[("aws.bedrock", NOVA)].seen.count == 2
    assert ("aws.bedrock", HAIKU) in inv.models
    document = aibom.build()
    refs = {c["bom-ref"] for c in document["components"] if c["type"] == "machine-learning-model"}
    assert refs == {f"model:aws.bedrock:{HAIKU}", f"model:aws.bedrock:{NOVA}"}
    boto = next(c for c in document["components"] if c["name"] == "botocore")
    assert {"name": "agentguard:ai_framework", "value": "model-provider"} in boto["properties"]
