"""Inventories kept by a collector: the agents it heard from and each one's CycloneDX document.

The collector merges the agents' ``agentguard.aibom`` spans into its SQLite store, one inventory
per agent process as it verified it (host pid and process start; a sender found on no process of
the node in a namespace of its own). This module reads them back (read-only) and builds the
same CycloneDX 1.6 document the agent would have written itself, from what the agent reported:
no access to the agent's environment is needed.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

__all__ = ["AgentInventory", "describe", "document", "list_agents", "select"]

AgentInventory = dict[str, Any]


def list_agents(path: str) -> list[AgentInventory]:
    """The agents with an inventory in the collector database at ``path``, newest first."""
    from agentguard.collector.store import Store

    store = Store(path, readonly=True)
    try:
        return store.inventories()
    finally:
        store.close()


def describe(agent: AgentInventory) -> str:
    """``service@host:pid``, how people name an agent on the command line."""
    return f"{agent['service']}@{agent['host']}:{agent['pid']}"


def select(agents: list[AgentInventory], selector: str | None) -> list[AgentInventory]:
    """The agents a ``--agent`` value names: a service name, a pid, ``service@host:pid`` or the
    store's agent id; all of them without a selector."""
    if not selector:
        return agents
    chosen = []
    for agent in agents:
        names = {str(agent["service"]), str(agent["pid"]), describe(agent), f"#{agent['id']}",
                 f"{agent['service']}:{agent['pid']}"}
        if selector in names:
            chosen.append(agent)
    return chosen


def document(path: str, agent: AgentInventory) -> dict[str, Any]:
    """The CycloneDX 1.6 document (a JSON-ready dict) of one agent's stored inventory.

    Components carry the BOM findings the agent reported (``agentguard:finding``); the stored
    inventory's own bookkeeping (last update, missed emissions, dropped entries) is on the
    document's metadata.
    """
    from cyclonedx.model import Property

    from agentguard.aibom._cyclonedx import to_bom, to_json
    from agentguard.aibom._wire import Entry, bom_ref, rebuild
    from agentguard.collector.store import Store

    store = Store(path, readonly=True)
    try:
        rows = store.inventory_entries(int(agent["id"]))
    finally:
        store.close()
    entries = [Entry(row["kind"], row["key"], row["data"]) for row in rows]
    inv, env = rebuild(entries, float(agent["started"]))
    info = agent.get("info") or {}
    details = {"agentguard:pid": str(agent["pid"]), "agentguard:host": str(agent["host"])}
    for name in ("python", "executable"):
        if isinstance(info.get(name), str):
            details[f"agentguard:{name}"] = info[name]
    bom = to_bom(inv, None, service_name=str(agent["service"]), env=env, agent=details)
    findings = {bom_ref(entry): entry.data.get("findings") for entry in entries}
    for component in bom.components:
        rules = findings.get(component.bom_ref.value)
        if isinstance(rules, list):
            for rule in rules[:16]:
                component.properties.add(Property(name="agentguard:finding", value=str(rule)))
    last = datetime.datetime.fromtimestamp(int(agent["last_ns"]) / 1e9, datetime.timezone.utc)
    for name, value in (("agentguard:collected_last_update", last.isoformat()),
                        ("agentguard:collected_sequence", str(agent["sequence"])),
                        ("agentguard:collected_missed_emissions", str(agent["gaps"])),
                        ("agentguard:collected_dropped_entries", str(agent["dropped"])),
                        ("agentguard:collected_final", str(bool(agent["final"])).lower())):
        bom.metadata.properties.add(Property(name=name, value=value))
    result: dict[str, Any] = json.loads(to_json(bom))
    return result
