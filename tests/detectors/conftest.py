"""Detector tests judge the detector's own findings: the policy engine's built-in rules are off
unless a test turns them on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import agentguard
from agentguard.detectors import InjectionScanner

# The local Bedrock server and its clients, for the Bedrock scenarios here.
from tests.integrations.bedrock.conftest import _bedrock_server, bedrock, runtime  # noqa: F401


@pytest.fixture
def guarded(guarded: Callable[..., agentguard.Guard]) -> Callable[..., agentguard.Guard]:
    def start(**kwargs: Any) -> agentguard.Guard:
        kwargs.setdefault("builtin_rules", False)
        return guarded(**kwargs)

    return start


@pytest.fixture(scope="module")
def scanner() -> InjectionScanner:
    """A scanner with the default settings, shared by a module's tests."""
    return InjectionScanner()
