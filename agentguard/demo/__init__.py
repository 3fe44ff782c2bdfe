"""The demo behind ``agentguard demo`` / ``make demo`` (needs the ``langchain`` extra)."""

from __future__ import annotations

__all__: list[str] = []
