"""The node-side collector: eBPF sensor, OTLP receiver, correlation, incidents, store, forwarding.

Run it with ``agentguard collector run`` (or ``agentguard-collector``); see ``docs/collector.md``.
Importing this package is free: the parts load when used, and need the ``collector`` extra.
Imports nothing from ``agentguard.integrations``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentguard.collector.daemon import Collector, CollectorError
    from agentguard.collector.settings import CollectorSettings, SettingsError, load_settings

__all__ = ["Collector", "CollectorError", "CollectorSettings", "SettingsError", "load_settings"]

_LAZY = {
    "Collector": "agentguard.collector.daemon",
    "CollectorError": "agentguard.collector.daemon",
    "CollectorSettings": "agentguard.collector.settings",
    "SettingsError": "agentguard.collector.settings",
    "load_settings": "agentguard.collector.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentguard.collector' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
