"""The inventory on the wire: ``agentguard.aibom`` span events out of the agent, entries back in.

One entry per inventoried thing (a distribution, a model called, a model artifact, a hub
download, a local module), flat and JSON-ready, so the agent can send what changed as span
events and the collector can store, merge and turn them back into an :class:`Inventory` and a
CycloneDX document without the agent's environment at hand. Both sides bound what they accept.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentguard.aibom._environment import Environment, InstalledDistribution
from agentguard.aibom._inventory import (
    Artifact,
    DistributionUse,
    HubDownload,
    Inventory,
    ModelUse,
    Seen,
    needs_digest,
)
from agentguard.aibom._text import faithful, is_sha256, path_bytes_hex, timestamp
from agentguard.semconv import int_value

__all__ = [
    "ATTR_FINAL",
    "ATTR_FULL",
    "ATTR_HOST",
    "ATTR_PART",
    "ATTR_PARTS",
    "ATTR_PENDING",
    "ATTR_PID",
    "ATTR_SEQUENCE",
    "ATTR_STARTED",
    "EVENT_ENTRY",
    "KINDS",
    "MAX_ENTRIES_PER_SPAN",
    "SPAN_NAME",
    "Entry",
    "bom_ref",
    "decode_event",
    "decode_span",
    "entries_of",
    "event_attributes",
    "rebuild",
]

SPAN_NAME = "agentguard.aibom"
EVENT_ENTRY = "agentguard.aibom.entry"
_PREFIX = "agentguard.aibom."
ATTR_SEQUENCE = "agentguard.aibom.sequence"
ATTR_PART = "agentguard.aibom.part"
ATTR_PARTS = "agentguard.aibom.parts"
ATTR_FULL = "agentguard.aibom.full"
ATTR_FINAL = "agentguard.aibom.final"
ATTR_STARTED = "agentguard.aibom.started"
ATTR_PENDING = "agentguard.aibom.pending"
ATTR_PID = "process.pid"
ATTR_HOST = "host.name"
ATTR_PYTHON = "agentguard.aibom.python"
ATTR_EXECUTABLE = "agentguard.aibom.executable"
_KIND = "agentguard.aibom.kind"
_KEY = "agentguard.aibom.key"

KINDS = ("library", "model", "artifact", "download", "module")
# Below the SDK's default of 128 events per span (OTEL_SPAN_EVENT_COUNT_LIMIT) and the
# collector's 256, so no entry of a span is cut by either.
MAX_ENTRIES_PER_SPAN = 100
MAX_TEXT = 2048
MAX_LIST = 32
MAX_FIELDS = 32
MAX_ACTIVITY_TEXT = 4096


@dataclass(frozen=True, slots=True)
class Entry:
    """One inventoried thing: its kind, its key within the kind, and its fields."""

    kind: str
    key: str
    data: Mapping[str, Any]

    def fingerprint(self) -> str:
        """What decides whether the entry changed since it was last sent (counts excluded)."""
        return json.dumps(self.data, sort_keys=True, default=str)


def _text(value: Any) -> str:
    """Bounded text that OTLP can carry (a name that was not UTF-8 with ``\\xNN`` escapes)."""
    text = faithful(str(value))
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT]


def _artifact_key(path: str) -> str:
    """An artifact's key: its path as text, with the path's bytes when the text had to escape
    them (two names that escape alike stay apart)."""
    raw = path_bytes_hex(path)
    return _text(path) if raw is None else f"{_text(path)}#{raw[:MAX_TEXT]}"


def _seen(seen: Seen) -> dict[str, Any]:
    data: dict[str, Any] = {"first_seen": seen.first_seen}
    for name in ("tool", "span_id", "trace_id", "conversation_id"):
        value = getattr(seen, name)
        if value:
            data[name] = _text(value)
    return data


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None and value != []}


def entries_of(inv: Inventory, env: Environment | None = None,
               findings: Mapping[tuple[str, str], list[str]] | None = None) -> list[Entry]:
    """Every entry of an inventory (copied under its lock, serialised outside it).

    ``findings``: the BOM rules reported per (kind, key), sent along so a reader of the
    collector's store sees them without the agent's declarations.
    """
    from agentguard.aibom._environment import environment

    env = env or environment()
    with inv.lock:
        distributions = [(use, list(use.modules), list(use.tools))
                         for use in inv.distributions.values()]
        models = [(use, list(use.tools)) for use in inv.models.values()]
        artifacts = [(artifact, [dict(item) for item in artifact.activity])
                     for artifact in inv.artifacts.values()]
        downloads = list(inv.downloads.values())
        local_modules = list(inv.local_modules.items())
    loaded = {use.name for use, _, _ in distributions}
    found = findings or {}
    out: list[Entry] = []
    for use, modules, tools in distributions:
        dist = env.distributions.get(use.name)
        data: dict[str, Any] = {
            "name": use.name, "display_name": dist.display_name if dist else use.name,
            "version": use.version or (dist.version if dist else None),
            "modules": [_text(m) for m in modules[:MAX_LIST]], "preloaded": use.preloaded,
            "tools": [_text(t) for t in tools[:MAX_LIST]],
            "requires": sorted(r for r in (dist.requires if dist else ()) if r in loaded)[:MAX_LIST],
            "top_level": list(dist.top_level[:MAX_LIST]) if dist else [],
            "location": _text(dist.location) if dist and dist.location else None,
            "summary": _text(dist.summary) if dist and dist.summary else None,
            "findings": found.get(("library", use.name), []),
            **({} if use.preloaded else _seen(use.seen)),
        }
        out.append(Entry("library", use.name, _clean(data)))
    for model, tools in models:
        key = f"{model.provider or ''}:{model.model}"
        out.append(Entry("model", _text(key), _clean({
            "provider": model.provider, "model": _text(model.model),
            "tools": [_text(t) for t in tools[:MAX_LIST]],
            "findings": found.get(("model", key), []), **_seen(model.seen)})))
    for artifact, activity in artifacts:
        raw = path_bytes_hex(artifact.path)
        out.append(Entry("artifact", _artifact_key(artifact.path), _clean({
            "path": _text(artifact.path), "path_bytes_hex": raw[:MAX_TEXT] if raw else None,
            "format": artifact.format, "size": artifact.size,
            "sha256": artifact.sha256, "hashed_bytes": artifact.hashed_bytes,
            "sha256_pending": True if needs_digest(artifact) else None,
            "source": artifact.source, "model_id": artifact.model_id,
            "revision": artifact.revision,
            "activity": json.dumps(activity, default=str)[:MAX_ACTIVITY_TEXT] if activity else None,
            "findings": found.get(("artifact", artifact.path), []), **_seen(artifact.seen)})))
    for download in downloads:
        key = f"{download.repo_id}@{download.revision or ''}:{download.filename or ''}"
        out.append(Entry("download", _text(key), _clean({
            "repo_id": _text(download.repo_id), "revision": download.revision,
            "filename": _text(download.filename) if download.filename else None,
            "local_path": _text(download.local_path) if download.local_path else None,
            "library": download.library, **_seen(download.seen)})))
    for name, seen in local_modules:
        out.append(Entry("module", _text(name), _clean({"name": _text(name), **_seen(seen)})))
    return out


def event_attributes(entry: Entry) -> dict[str, Any]:
    """An entry as span event attributes (OpenTelemetry values: scalars and lists of strings)."""
    attributes: dict[str, Any] = {_KIND: entry.kind, _KEY: entry.key}
    for name, value in entry.data.items():
        if isinstance(value, list):
            value = [str(item) for item in value]
        elif not isinstance(value, (str, bool, int, float)):
            value = str(value)
        attributes[_PREFIX + name] = value
    return attributes


def decode_event(attributes: Mapping[str, Any]) -> Entry | None:
    """An entry from span event attributes, as the collector decoded them; ``None`` if malformed."""
    kind = attributes.get(_KIND)
    key = attributes.get(_KEY)
    if kind not in KINDS or not isinstance(key, str) or not key:
        return None
    data: dict[str, Any] = {}
    for name, value in list(attributes.items())[:MAX_FIELDS + 2]:
        if not name.startswith(_PREFIX) or name in (_KIND, _KEY):
            continue
        if isinstance(value, str):
            value = value[:MAX_ACTIVITY_TEXT]
        elif isinstance(value, list):
            value = [str(item)[:MAX_TEXT] for item in value[:MAX_LIST]]
        elif not isinstance(value, (bool, int, float)):
            continue
        data[name[len(_PREFIX):]] = value
    return Entry(kind, key[:MAX_TEXT], data)


# What a process id and an emission sequence number can be (SQLite stores signed 64 bits).
_MAX_PID = 1 << 31
_MAX_SEQUENCE = 1 << 62


def _whole(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        return None
    return value


def decode_span(attributes: Mapping[str, Any], events: Iterable[tuple[str, int, Mapping[str, Any]]],
                service: str | None) -> dict[str, Any] | None:
    """The keyword arguments of ``Store.add_inventory`` for what one ``agentguard.aibom`` span
    (as the collector decoded it) says of itself, or ``None`` when it does not say which process
    it describes. The service, host and pid are the sender's word: the collector files the
    inventory under the process it verified sent the span (``process``, ``sender``)."""
    pid = _whole(attributes.get(ATTR_PID), 0, _MAX_PID)
    # A start time no clock gives (another process's report) tells no process apart.
    started = timestamp(attributes.get(ATTR_STARTED))
    sequence = _whole(attributes.get(ATTR_SEQUENCE), 0, _MAX_SEQUENCE)
    if pid is None or started is None or sequence is None:
        return None
    host = attributes.get(ATTR_HOST)
    info = {name[len(_PREFIX):]: value for name, value in attributes.items()
            if name.startswith(_PREFIX) and isinstance(value, (str, int, float, bool))}
    entries = []
    for name, _, event_attributes in events:
        if name != EVENT_ENTRY:
            continue
        entry = decode_event(event_attributes)
        if entry is not None:
            entries.append((entry.kind, entry.key, dict(entry.data)))
    return {"service": (service or "unknown_service")[:256],
            "host": host[:256] if isinstance(host, str) and host else "unknown",
            "pid": pid, "started": started, "sequence": sequence,
            "final": attributes.get(ATTR_FINAL) is True, "info": info, "entries": entries}


def bom_ref(entry: Entry) -> str:
    """The ``bom-ref`` the CycloneDX document gives this entry's component."""
    data = entry.data
    if entry.kind == "library":
        version = data.get("version")
        return f"pkg:pypi/{entry.key}@{version}" if version else f"pkg:pypi/{entry.key}"
    if entry.kind == "model":
        return f"model:{data.get('provider') or 'unknown'}:{data.get('model')}"
    if entry.kind == "artifact":
        raw = data.get("path_bytes_hex")
        return f"artifact:{data.get('path')}" + (f"#{raw}" if isinstance(raw, str) and raw else "")
    if entry.kind == "download":
        return f"hub:{data.get('repo_id')}@{data.get('revision') or 'main'}:" \
               f"{data.get('filename') or ''}"
    return f"module:{entry.key}"


def _str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def _int(data: Mapping[str, Any], name: str) -> int | None:
    value = int_value(data.get(name))
    return value if value is not None and value >= 0 else None  # sizes and counts


def _list(data: Mapping[str, Any], name: str) -> list[str]:
    value = data.get(name)
    return [str(item) for item in value] if isinstance(value, list) else []


def _seen_of(data: Mapping[str, Any], fallback: float) -> Seen:
    first = timestamp(data.get("first_seen"))
    first_seen = first if first is not None else fallback
    return Seen(first_seen=first_seen, last_seen=first_seen, tool=_str(data, "tool"),
                span_id=_str(data, "span_id"), trace_id=_str(data, "trace_id"),
                conversation_id=_str(data, "conversation_id"))


def rebuild(entries: Iterable[Entry], started: float) -> tuple[Inventory, Environment]:
    """An :class:`Inventory` and the :class:`Environment` it came from, out of stored entries."""
    inv = Inventory()
    # Stored before start times were checked on the way in: no clock gives such a number, and
    # times that fall back to it are unknown (NaN: written as "unknown", never as 1970).
    checked = timestamp(started)
    started = checked if checked is not None else math.nan
    inv.started = started
    dists: list[InstalledDistribution] = []
    for entry in entries:
        data = entry.data
        if entry.kind == "library":
            name = entry.key
            inv.distributions[name] = DistributionUse(
                name, _str(data, "version"), _seen_of(data, started),
                modules=_list(data, "modules"), preloaded=data.get("preloaded") is True,
                tools=_list(data, "tools"))
            dists.append(InstalledDistribution(
                name=name, display_name=_str(data, "display_name") or name,
                version=_str(data, "version") or "", location=_str(data, "location"),
                requires=tuple(_list(data, "requires")), summary=_str(data, "summary"),
                top_level=tuple(_list(data, "top_level"))))
        elif entry.kind == "model":
            model = _str(data, "model")
            if model:
                provider = _str(data, "provider")
                inv.models[(provider, model)] = ModelUse(provider, model, _seen_of(data, started),
                                                         _list(data, "tools"))
        elif entry.kind == "artifact":
            path = _str(data, "path") or entry.key
            raw = _str(data, "path_bytes_hex")
            if raw is not None:
                with contextlib.suppress(ValueError):  # the file name as the agent had it
                    path = os.fsdecode(bytes.fromhex(raw))
            sha = _str(data, "sha256")
            activity: list[dict[str, Any]] = []
            text = _str(data, "activity")
            if text:
                try:
                    parsed = json.loads(text)
                    activity = [item for item in parsed if isinstance(item, dict)] \
                        if isinstance(parsed, list) else []
                except ValueError:
                    activity = []
            inv.artifacts[path] = Artifact(
                path=path, format=_str(data, "format"), seen=_seen_of(data, started),
                size=_int(data, "size"), sha256=sha if is_sha256(sha) else None,
                hashed_bytes=_int(data, "hashed_bytes"), source=_str(data, "source"),
                model_id=_str(data, "model_id"), revision=_str(data, "revision"),
                activity=activity,
                # A digest the agent had not taken yet is pending; none at all, unavailable.
                hash_tried=data.get("sha256_pending") is not True)
        elif entry.kind == "download":
            repo = _str(data, "repo_id")
            if repo:
                key = (repo, _str(data, "revision"), _str(data, "filename"))
                inv.downloads[key] = HubDownload(repo, key[1], key[2], _str(data, "local_path"),
                                                 _str(data, "library") or "?",
                                                 _seen_of(data, started))
        elif entry.kind == "module":
            inv.local_modules[entry.key] = _seen_of(data, started)
    inv.snapshot_taken = True
    return inv, Environment.recorded(dists)
