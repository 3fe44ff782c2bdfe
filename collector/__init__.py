"""The node-side collector (kernel sensor, OTLP receiver, correlation). Imports nothing from
``agentguard.integrations``."""

from __future__ import annotations

__all__: list[str] = []
