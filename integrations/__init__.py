"""Framework integrations: each turns framework calls into agentguard events and applies decisions.

An integration patches its framework when that framework is imported (now, if it already is),
through ``wrapt`` post-import hooks, and can be undone. Nothing here imports a framework at
module level.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import wrapt

from agentguard._errors import internal_error
from agentguard.integrations._base import UNPATCHED, Integration

__all__ = ["AVAILABLE", "Integration", "disable", "enable", "get", "installed"]

# name → "module:class". Modules are imported only when the integration is enabled.
AVAILABLE: dict[str, str] = {
    "langchain": "agentguard.integrations.langchain:LangChainIntegration",
    "langgraph": "agentguard.integrations.langgraph:LangGraphIntegration",
    # Bedrock (runtime and agents) and every other AWS call, sync and aiobotocore.
    "botocore": "agentguard.integrations.botocore:BotocoreIntegration",
}

_lock = threading.RLock()
_instances: dict[str, Integration] = {}
_hooked: set[tuple[str, str]] = set()


def get(name: str) -> Integration:
    """The integration instance for ``name`` (created on first use)."""
    with _lock:
        instance = _instances.get(name)
        if instance is None:
            module_name, _, class_name = AVAILABLE[name].partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            instance = cls()
            _instances[name] = instance
        return instance


def _hook(name: str, target: str) -> Any:
    def on_import(module: Any) -> None:
        with _lock:
            integration = _instances.get(name)
            if integration is None or not integration.wanted:
                return
            try:
                integration.patch_module(target, module)
            except Exception as exc:
                internal_error(f"integration {name} patching {target}", exc)

    return on_import


def enable(names: list[str]) -> None:
    """Patch the named integrations, now for frameworks already imported and later for the rest."""
    for name in names:
        integration = get(name)
        with _lock:
            integration.wanted = True
            for target in integration.targets:
                key = (name, target)
                if key in _hooked:
                    # The hook stays registered for good (wrapt cannot remove one); it re-patches
                    # only while the integration is wanted.
                    module = _imported(target)
                    if module is not None:
                        _hook(name, target)(module)
                    continue
                _hooked.add(key)
                wrapt.register_post_import_hook(_hook(name, target), target)


def _imported(target: str) -> Any:
    import sys

    return sys.modules.get(target)


def disable(names: list[str] | None = None) -> None:
    """Undo the patches of the named integrations (all when ``None``). Called by
    ``instrument()`` and ``uninstrument()``; from anywhere else, while the runtime sensor runs,
    it is tampering (reported, and refused in a tool call in enforce mode)."""
    from agentguard.sensors import _tamper

    _tamper.check_caller("agentguard._api", "agentguard.integrations.disable",
                         "removing agentguard's framework patches", UNPATCHED)
    with _lock:
        for name, integration in list(_instances.items()):
            if names is not None and name not in names:
                continue
            integration.wanted = False
            try:
                integration.unpatch()
            except Exception as exc:
                internal_error(f"integration {name} unpatch", exc)


def installed() -> dict[str, list[str]]:
    """Which integrations are patched, and into which framework modules."""
    with _lock:
        return {name: sorted(i.patched_modules) for name, i in _instances.items() if i.wanted}
