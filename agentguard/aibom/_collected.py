"""Inventories kept by a collector: the agents it heard from and each one's CycloneDX document.

The collector merges the agents' ``agentguard.aibom`` spans into its SQLite store, one inventory
per agent process as it verified it (host pid and process start; a sender found on no process of
the node in a namespace of its own). This module reads them back (read-only) and builds the
same CycloneDX 1.6 document the agent would have written itself, from what the agent reported:
no access to the agent's environment is needed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

__all__ = ["AgentInventory", "describe", "document", "label", "list_agents", "prefer_verified",
           "provenance", "select"]

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


def _source(agent: AgentInventory) -> str:
    """Whose inventory it is, as the collector knows it: ``"verified"`` (the process it found
    sent it), ``"legacy"`` (an earlier collector kept it by what its spans claimed) or
    ``"sender"`` (the claim of a sender it found on no process of its node)."""
    if agent.get("verified"):
        return "verified"
    owner = agent.get("owner")
    return "legacy" if owner is None or str(owner).startswith("legacy:") else "sender"


def provenance(agent: AgentInventory) -> str:
    """How the collector knows whose inventory it is: the process it verified sent it, a claim of
    a sender it found on no process of its node (with the sender's address), or an inventory an
    earlier collector kept by what its spans claimed."""
    source = _source(agent)
    if source == "verified":
        return f"verified: host pid {agent.get('host_pid')}"
    if source == "legacy":
        return "unverified: kept by an earlier collector"
    sender = agent.get("sender")
    return f"unverified: claim of sender {sender if sender is not None else '(address unknown)'}"


def label(agent: AgentInventory) -> str:
    """``#id service@host:pid (provenance)``: an inventory told apart from others that claim the
    same agent."""
    return f"#{agent['id']} {describe(agent)} ({provenance(agent)})"


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


def prefer_verified(chosen: list[AgentInventory]
                    ) -> tuple[list[AgentInventory], list[AgentInventory]]:
    """Of the inventories a selector matched, the one a verified process sent when it is the only
    such one, with those passed over; else all of them (nothing passed over)."""
    verified = [agent for agent in chosen if agent.get("verified")]
    if len(chosen) > 1 and len(verified) == 1:
        return verified, [agent for agent in chosen if not agent.get("verified")]
    return chosen, []


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
    # The pid and host above are what the agent's spans said; these say whether the collector
    # found that process on its node, or who made the claim.
    details.update(_identity(agent))
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


def _identity(agent: AgentInventory) -> dict[str, str]:
    """The metadata component's properties saying how the collector knows the inventory's
    process (see :func:`provenance`)."""
    source = _source(agent)
    if source == "verified":
        found = {"agentguard:verified": "true", "agentguard:host_pid": str(agent["host_pid"])}
        started = agent.get("process_started_ns")
        if isinstance(started, int):
            # Out of range: no time a clock reads, so none is said.
            with contextlib.suppress(OverflowError, OSError, ValueError):
                found["agentguard:process_started"] = datetime.datetime.fromtimestamp(
                    started / 1e9, datetime.timezone.utc).isoformat()
        return found
    if source == "legacy":
        return {"agentguard:verified": "false", "agentguard:legacy": "true"}
    sender = agent.get("sender")
    return {"agentguard:verified": "false",
            "agentguard:sender": str(sender) if sender is not None else "unknown"}
