"""The botocore integration: patched once, undone fully, before or after ``import botocore``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentguard
from agentguard import integrations
from tests.bedrock_server import Reply

ROOT = Path(__file__).resolve().parents[3]
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
_USER = [{"role": "user", "content": [{"text": "hi"}]}]


def test_double_instrument_gives_one_span_per_call(guarded: Any, spans: Any, bedrock: Any,
                                                  runtime: Any) -> None:
    """Calling instrument() twice patches botocore once: one chat span per Converse call."""
    guarded()
    guarded()
    bedrock.push(Reply("once"))
    runtime().converse(modelId=CLAUDE, messages=_USER)
    assert len(spans.all()) == 1


def test_uninstrument_restores_botocore_and_aiobotocore(guarded: Any, spans: Any, bedrock: Any,
                                                        runtime: Any) -> None:
    """After uninstrument() both ``_make_api_call`` methods are the originals; nothing is traced."""
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    sync_original = BaseClient.__dict__["_make_api_call"]
    async_original = AioBaseClient.__dict__["_make_api_call"]
    guarded()
    assert BaseClient.__dict__["_make_api_call"] is not sync_original
    assert AioBaseClient.__dict__["_make_api_call"] is not async_original
    assert integrations.installed()["botocore"] == ["aiobotocore.client", "botocore.client"]
    agentguard.uninstrument()
    assert BaseClient.__dict__["_make_api_call"] is sync_original
    assert AioBaseClient.__dict__["_make_api_call"] is async_original
    bedrock.push(Reply("plain"))
    runtime().converse(modelId=CLAUDE, messages=_USER)
    assert spans.all() == []


def test_disabled_integration_leaves_botocore_alone(guarded: Any, spans: Any, bedrock: Any,
                                                   runtime: Any) -> None:
    """``disabled_integrations=["botocore"]`` traces no AWS call."""
    from botocore.client import BaseClient

    original = BaseClient.__dict__["_make_api_call"]
    guarded(disabled_integrations=["botocore"])
    assert BaseClient.__dict__["_make_api_call"] is original
    bedrock.push(Reply("x"))
    runtime().converse(modelId=CLAUDE, messages=_USER)
    assert spans.all() == []


_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
from tests.bedrock_server import BedrockServer, Reply
server = BedrockServer().start()
{first}
{second}
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
client = boto3.client("bedrock-runtime", endpoint_url=server.url, region_name="us-east-1",
                      aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
server.push(Reply("hello"))
client.converse(modelId="amazon.nova-micro-v1:0",
                messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}])
agentguard.uninstrument()
print(json.dumps([s.name for s in exporter.get_finished_spans()]))
server.stop()
"""
_INSTRUMENT = """
import agentguard
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
agentguard.instrument(exporter=exporter, runtime_sensor=False)
assert "botocore" not in sys.modules or {imported}
"""
_IMPORT = "import boto3"


@pytest.mark.parametrize("order", ["instrument-first", "import-first"])
def test_instrument_before_or_after_importing_botocore(order: str) -> None:
    """instrument() traces Bedrock whether it runs before or after ``import boto3``."""
    if order == "instrument-first":
        first, second = _INSTRUMENT.format(imported=False), _IMPORT
    else:
        first, second = _IMPORT, _INSTRUMENT.format(imported=True)
    code = _SCRIPT.format(root=str(ROOT), first=first, second=second)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTGUARD_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == '["chat amazon.nova-micro-v1:0"]'


def test_importing_agentguard_does_not_import_botocore() -> None:
    """``import agentguard`` (and its integration registry) leaves botocore unimported."""
    code = "import sys, agentguard, agentguard.integrations; print('botocore' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
