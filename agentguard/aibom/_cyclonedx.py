"""The inventory as a CycloneDX 1.6 document: libraries, machine-learning models, dependencies, evidence.

Everything comes from what the process loaded (the runtime inventory); the declarations only add
``agentguard:declared`` and the diff findings per component. Properties use the ``agentguard:``
namespace; evidence ``occurrences`` say where and when each thing was loaded and by which tool
call.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Iterable
from typing import Any

from agentguard.aibom._declared import Declared
from agentguard.aibom._environment import Environment, environment
from agentguard.aibom._inventory import AI_FRAMEWORKS, Artifact, Inventory, Seen, needs_digest
from agentguard.aibom._stage import RULE_UNDECLARED_PACKAGE, AibomStage, Settings
from agentguard.aibom._text import faithful, is_sha256, path_bytes_hex, timestamp

__all__ = ["to_bom", "to_json"]

MAX_OCCURRENCES = 8


def _iso(value: float) -> str:
    """An ISO 8601 time, or ``unknown`` for a number no clock gives (another process's report)."""
    seconds = timestamp(value)
    if seconds is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _seen_properties(seen: Seen) -> list[tuple[str, str]]:
    props = [("agentguard:first_seen", _iso(seen.first_seen)),
             ("agentguard:load_count", str(seen.count))]
    if seen.tool:
        props.append(("agentguard:first_tool", seen.tool))
    if seen.trace_id:
        props.append(("agentguard:trace_id", seen.trace_id))
    if seen.span_id:
        props.append(("agentguard:span_id", seen.span_id))
    if seen.conversation_id:
        props.append(("agentguard:conversation_id", seen.conversation_id))
    return props


def _occurrence_context(seen: Seen, what: str) -> str:
    parts = [f"{what} first at {_iso(seen.first_seen)}"]
    if seen.tool:
        parts.append(f"in tool {seen.tool}")
    if seen.span_id:
        parts.append(f"span {seen.span_id}")
    return " ".join(parts)


def to_bom(inv: Inventory, settings: Settings | Declared | None = None, *,
           service_name: str = "agent", include_installed: bool = False,
           env: Environment | None = None, agent: dict[str, str] | None = None) -> Any:
    """Build the ``cyclonedx.model.bom.Bom`` of this process's inventory, judged against
    ``settings`` (or just declarations, with the default settings).

    ``agent``: the properties of the agent when the inventory is another process's (read from a
    collector's store, with ``env`` rebuilt from what it reported); else this process's.
    """
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
    from packageurl import PackageURL

    env = env or environment()
    if not isinstance(settings, Settings):
        settings = Settings(declared=settings)
    declared = settings.declared
    stage = AibomStage(settings, inv)
    allowed = stage.allowed

    def props(items: Iterable[tuple[str, str | None]]) -> list[Property]:
        return [Property(name=name, value=value) for name, value in items if value is not None]

    here = [("agentguard:pid", str(os.getpid())), ("agentguard:python", platform.python_version()),
            ("agentguard:executable", sys.executable)]
    app = Component(name=service_name, type=ComponentType.APPLICATION, bom_ref="agent",
                    properties=props(sorted(agent.items()) if agent is not None else here))
    components: list[Component] = []
    refs: dict[str, Component] = {}
    with inv.lock:
        distributions = list(inv.distributions.values())
        models = list(inv.models.values())
        artifacts = list(inv.artifacts.values())
        downloads = list(inv.downloads.values())
        local_modules = dict(inv.local_modules)

    for use in sorted(distributions, key=lambda u: u.name):
        dist = env.distributions.get(use.name)
        display = dist.display_name if dist is not None else use.name
        version = use.version or (dist.version if dist is not None else None)
        items: list[tuple[str, str | None]] = [
            ("agentguard:loaded", "true"), ("agentguard:preloaded", str(use.preloaded).lower()),
            ("agentguard:modules", ",".join(use.modules))]
        if not use.preloaded:
            items.extend(_seen_properties(use.seen))
        if use.tools:
            items.append(("agentguard:tools", ",".join(use.tools)))
        role = AI_FRAMEWORKS.get(use.name)
        if role is not None:
            items.append(("agentguard:ai_framework", role))
        if allowed is not None:
            items.append(("agentguard:declared", str(use.name in allowed).lower()))
            if use.name not in allowed:
                items.append(("agentguard:finding", RULE_UNDECLARED_PACKAGE))
        occurrences = [Occurrence(
            location=(dist.location if dist is not None and dist.location else use.name),
            symbol=module,
            additional_context=_occurrence_context(use.seen, "imported"),
        ) for module in use.modules[:MAX_OCCURRENCES]]
        ref = f"pkg:pypi/{use.name}@{version}" if version else f"pkg:pypi/{use.name}"
        component = Component(
            name=display, version=version, type=ComponentType.LIBRARY, bom_ref=ref,
            purl=PackageURL(type="pypi", name=use.name, version=version or None),
            description=dist.summary if dist is not None else None,
            properties=props(items),
            evidence=ComponentEvidence(occurrences=occurrences) if occurrences else None,
        )
        components.append(component)
        refs[use.name] = component

    if include_installed:
        for name, dist in sorted(env.distributions.items()):
            if name in refs:
                continue
            ref = f"pkg:pypi/{name}@{dist.version}"
            component = Component(
                name=dist.display_name, version=dist.version, type=ComponentType.LIBRARY,
                bom_ref=ref, purl=PackageURL(type="pypi", name=name, version=dist.version or None),
                properties=props([("agentguard:loaded", "false"),
                                  ("agentguard:ai_framework", AI_FRAMEWORKS.get(name))]))
            components.append(component)
            refs[name] = component

    for model in sorted(models, key=lambda m: (m.provider or "", m.model)):
        items = [("agentguard:model_kind", "called"), *_seen_properties(model.seen)]
        if model.provider:
            items.append(("agentguard:provider", model.provider))
        if model.tools:
            items.append(("agentguard:tools", ",".join(model.tools)))
        decisions = _model_call_findings(stage, model.provider, model.model)
        if stage.has_allowlist:
            items.append(("agentguard:declared", str(not decisions).lower()))
        items.extend(("agentguard:finding", rule) for rule in decisions)
        components.append(Component(
            name=model.model, group=model.provider, type=ComponentType.MACHINE_LEARNING_MODEL,
            bom_ref=f"model:{model.provider or 'unknown'}:{model.model}", properties=props(items),
            evidence=ComponentEvidence(occurrences=[Occurrence(
                location=f"{model.provider or 'unknown'}:{model.model}",
                additional_context=_occurrence_context(model.seen, "called"))]),
        ))

    for artifact in sorted(artifacts, key=lambda a: a.path):
        components.append(_artifact_component(stage, artifact, declared))

    for download in sorted(downloads, key=lambda d: (d.repo_id, d.filename or "")):
        items = [("agentguard:model_kind", "hub-download"), ("agentguard:library", download.library),
                 *_seen_properties(download.seen)]
        if download.filename:
            items.append(("agentguard:filename", download.filename))
        if download.local_path:
            items.append(("agentguard:local_path", download.local_path))
        components.append(Component(
            name=download.repo_id, version=download.revision,
            type=ComponentType.MACHINE_LEARNING_MODEL,
            bom_ref=f"hub:{download.repo_id}@{download.revision or 'main'}:{download.filename or ''}",
            purl=_hub_purl(download.repo_id, download.revision),
            properties=props(items),
        ))

    bom_props: list[tuple[str, str | None]] = [("agentguard:service_name", service_name),
                 ("agentguard:inventory_started", _iso(inv.started)),
                 ("agentguard:installed_distributions",
                  None if agent is not None else str(len(env.distributions))),
                 ("agentguard:loaded_distributions", str(len(distributions))),
                 ("agentguard:local_modules", ",".join(sorted(local_modules)[:64]))]
    if declared is not None:
        bom_props.append(("agentguard:declared_files", ",".join(declared.files[:32])))
    counts = inv.counts()
    for key, value in counts["dropped"].items():
        if value:
            bom_props.append((f"agentguard:dropped_{key}", str(value)))
    bom = Bom(metadata=BomMetaData(component=app, timestamp=datetime.datetime.now(
        datetime.timezone.utc), properties=props(bom_props)))
    for component in components:
        bom.components.add(component)
    # The agent depends on everything it loaded; each library on the loaded libraries it requires.
    bom.register_dependency(app, components)
    for name, component in refs.items():
        dist = env.distributions.get(name)
        if dist is None:
            continue
        needed = [refs[req] for req in dist.requires if req in refs and req != name]
        bom.register_dependency(component, needed)
    return bom


def _hub_purl(repo_id: str, revision: str | None) -> Any:
    from packageurl import PackageURL

    namespace, _, name = repo_id.rpartition("/")
    return PackageURL(type="huggingface", namespace=namespace or None, name=name,
                      version=revision or None)


def _model_call_findings(stage: AibomStage, provider: str | None, model: str) -> list[str]:
    if not stage.has_allowlist:
        return []
    entries = stage.entries()
    from agentguard.aibom._declared import glob_match

    for entry in entries:
        if entry.id is not None and glob_match(entry.id, model) and \
                (entry.provider is None or entry.provider == provider):
            return []
    return ["BOM002"]


def _artifact_component(stage: AibomStage, artifact: Artifact, declared: Declared | None) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence

    # A file name that is not UTF-8 is written with \xNN escapes, its bytes kept beside it.
    path = faithful(artifact.path)
    items: list[tuple[str, str]] = [("agentguard:model_kind", "artifact"),
                                    ("agentguard:path", path),
                                    *_seen_properties(artifact.seen)]
    raw = path_bytes_hex(artifact.path)
    if raw is not None:
        items.append(("agentguard:path_bytes_hex", raw))
    if artifact.format:
        items.append(("agentguard:format", artifact.format))
    if artifact.size is not None:
        items.append(("agentguard:size", str(artifact.size)))
    if artifact.source:
        items.append(("agentguard:loader", artifact.source))
    if artifact.revision:
        items.append(("agentguard:revision", artifact.revision))
    if artifact.hashed_bytes is not None:
        items.append(("agentguard:sha256_prefix_bytes", str(artifact.hashed_bytes)))
    if needs_digest(artifact):
        # Built before the hash thread reached it (settle_timeout): no digest, and it says so.
        items.append(("agentguard:sha256_pending", "true"))
    decisions = [d.rule_id for d in stage.judge_artifact(artifact)]
    if stage.has_allowlist:
        items.append(("agentguard:declared", str("BOM002" not in decisions).lower()))
    items.extend(("agentguard:finding", rule) for rule in decisions)
    for entry in artifact.activity:
        rule = entry.get("rule_id") or entry.get("kind")
        items.append(("agentguard:load_activity", f"{rule}: {entry.get('title', '')}".strip()))
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256)] \
        if is_sha256(artifact.sha256) and artifact.hashed_bytes is None else []
    name = artifact.model_id or os.path.basename(path) or path
    return Component(
        name=name, type=ComponentType.MACHINE_LEARNING_MODEL,
        # The bytes keep two names apart that escape alike (a literal "\xff" and the byte).
        bom_ref=f"artifact:{path}" + (f"#{raw}" if raw is not None else ""), hashes=hashes,
        properties=[Property(name=k, value=v) for k, v in items],
        evidence=ComponentEvidence(occurrences=[Occurrence(
            location=path,
            additional_context=_occurrence_context(artifact.seen, f"loaded by {artifact.source}"),
        )]),
    )


def to_json(bom: Any) -> str:
    """Serialise a ``Bom`` as CycloneDX 1.6 JSON (valid UTF-8: no lone surrogates)."""
    from cyclonedx.output.json import JsonV1Dot6

    text = str(JsonV1Dot6(bom).output_as_string(indent=2))
    # The serialiser writes every non-ASCII character as a \u escape, a lone surrogate (a file
    # name, an executable path, a tool name that was not UTF-8) too, which a strict UTF-8 reader
    # refuses. Rare: looked for before paying for a second pass.
    if "\\ud" in text or "\\uD" in text:
        text = json.dumps(_faithful_strings(json.loads(text)), indent=2)
    return text


def _faithful_strings(value: Any) -> Any:
    if isinstance(value, str):
        return faithful(value)
    if isinstance(value, list):
        return [_faithful_strings(item) for item in value]
    if isinstance(value, dict):
        return {faithful(key): _faithful_strings(item) for key, item in value.items()}
    return value
