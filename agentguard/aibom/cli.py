"""``agentguard aibom``: show, re-check and export a runtime AI-BOM; ``run --aibom`` options.

Sources: a document written by ``agentguard run --aibom`` or ``agentguard.aibom.write()``
(``--bom``), the inventory an agent sent a collector (``--db``, ``--agent``), or a findings file
(``--from-findings``: the supply-chain findings, BOM rules and the sensor's model-load rules, as a
partial BOM). ``--declared`` re-checks a document against other declarations; ``--vulns`` splits a
pip-audit / OSV report into loaded and installed-only packages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_parser", "add_run_options", "run_environment"]

_SUPPLY_RULES_PREFIX = ("BOM", "sensor-model-load-activity", "sensor-unsafe-pickle")
# A document or report larger than this is refused rather than read into memory.
MAX_INPUT_BYTES = 64 << 20


def add_run_options(run: argparse.ArgumentParser) -> None:
    """``agentguard run`` options: write the program's AI-BOM at exit."""
    run.add_argument("--aibom", dest="aibom", metavar="FILE",
                     help="write the program's runtime AI-BOM (CycloneDX JSON) to FILE at exit")
    run.add_argument("--aibom-declared", dest="aibom_declared", action="append", metavar="FILE",
                     help="declared dependencies (requirements*.txt, pyproject.toml, uv.lock, "
                          "poetry.lock); repeatable")
    run.add_argument("--aibom-models", dest="aibom_models", metavar="FILE",
                     help="models allow-list (YAML or JSON)")


def run_environment(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Put the ``--aibom*`` options of ``agentguard run`` into the child's environment.

    Declared files and the models allow-list apply without ``--aibom`` too (the findings, no
    document). Raises ``ValueError`` for a file name the environment cannot carry.
    """
    from agentguard.aibom._autorun import ENV_DECLARED, ENV_FILE, ENV_MODELS

    target = getattr(args, "aibom", None)
    if target:
        # Absolute: the program may change its working directory before it exits.
        env[ENV_FILE] = os.path.abspath(target)
    declared = getattr(args, "aibom_declared", None) or []
    for path in declared:
        if "," in path:
            # The variable is a comma-separated list, as every list setting of the configuration.
            raise ValueError(f"--aibom-declared {path}: a file name with a comma cannot be "
                             f"passed in {ENV_DECLARED}; rename or link the file")
    if declared:
        env[ENV_DECLARED] = ",".join(os.path.abspath(path) for path in declared)
    models = getattr(args, "aibom_models", None)
    if models:
        env[ENV_MODELS] = os.path.abspath(models)


def add_parser(commands: Any) -> None:
    """Register ``agentguard aibom`` on the CLI's sub-command set."""
    parser = commands.add_parser(
        "aibom", help="show or re-check a runtime AI-BOM (CycloneDX), and vulnerability reachability",
        description="Read a runtime AI-BOM written by 'agentguard run --aibom' (--bom), an "
                    "agent's inventory kept by a collector (--db), or the supply-chain findings "
                    "of a findings file (--from-findings); print it as a table or CycloneDX JSON.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bom", metavar="FILE", help="a CycloneDX document written at run time")
    source.add_argument("--from-findings", dest="from_findings", metavar="FILE",
                        help="a findings file (JSON lines, as written by --findings-file)")
    source.add_argument("--db", "--collector-db", dest="db", metavar="PATH",
                        help="a collector database: the inventories the agents sent it")
    parser.add_argument("--agent", metavar="NAME",
                        help="with --db: the agent (service name, pid, service@host:pid or #id); "
                             "without it, every agent is listed")
    parser.add_argument("--declared", action="append", metavar="FILE", default=[],
                        help="declared dependencies to check the document against; repeatable")
    parser.add_argument("--models", metavar="FILE", help="models allow-list (YAML or JSON)")
    parser.add_argument("--format", choices=["cyclonedx-json", "table"], default="table")
    parser.add_argument("--vulns", metavar="REPORT",
                        help="pip-audit or OSV JSON: mark each vulnerable package loaded or not")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(handler=_aibom)


def _properties(component: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for prop in component.get("properties") or ():
        found.setdefault(str(prop.get("name")), []).append(str(prop.get("value")))
    return found


def _read_json(path: str) -> Any:
    """The JSON value of a file; every way it can fail is a ``ValueError`` (or ``OSError``)
    naming the file."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise ValueError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 JSON: byte at offset {exc.start}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def _check_document(document: Any, source: str) -> dict[str, Any]:
    """``document`` when it has the shape of a CycloneDX JSON document as far as this command
    reads it (components and their properties), else a ``ValueError`` naming ``source``."""

    def refuse(what: str) -> ValueError:
        return ValueError(f"{source}: not a CycloneDX JSON document: {what}")

    if not isinstance(document, dict):
        kind = "an array" if isinstance(document, list) else "a string" \
            if isinstance(document, str) else "null" if document is None else "a number or boolean"
        raise refuse(f"{kind}, not an object")
    components = document.get("components")
    if components is None:
        return document
    if not isinstance(components, list):
        raise refuse("'components' is not an array")
    for index, component in enumerate(components):
        if not isinstance(component, dict):
            raise refuse(f"components[{index}] is not an object")
        properties = component.get("properties")
        if properties is None:
            continue
        if not isinstance(properties, list):
            raise refuse(f"components[{index}].properties is not an array")
        for number, prop in enumerate(properties):
            if not isinstance(prop, dict):
                raise refuse(f"components[{index}].properties[{number}] is not an object")
    return document


def _redeclare(document: dict[str, Any], declared_files: list[str], models: str | None) -> None:
    """Recompute ``agentguard:declared`` / ``agentguard:finding`` of library components."""
    from packaging.utils import canonicalize_name

    from agentguard.aibom._declared import load_declared
    from agentguard.aibom._environment import environment
    from agentguard.aibom._stage import RULE_UNDECLARED_PACKAGE

    declared = load_declared(declared_files, models)
    roots = {name for name, package in declared.packages.items() if package.applies}
    env = environment()
    allowed = set(roots) | env.closure(["agentguard"])
    if not declared.locked:
        allowed |= env.closure(roots)
    for component in document.get("components") or ():
        if component.get("type") != "library":
            continue
        props = _properties(component)
        if props.get("agentguard:loaded") == ["false"]:
            continue
        name = canonicalize_name(str(component.get("name")))
        kept = [p for p in component.get("properties") or ()
                if p.get("name") not in ("agentguard:declared", "agentguard:finding")]
        kept.append({"name": "agentguard:declared", "value": str(name in allowed).lower()})
        if name not in allowed:
            kept.append({"name": "agentguard:finding", "value": RULE_UNDECLARED_PACKAGE})
        component["properties"] = sorted(kept, key=lambda p: (p["name"], p["value"]))


def _from_findings(path: str) -> dict[str, Any]:
    """A partial CycloneDX document from the supply-chain findings of a findings file."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from pydantic import ValidationError

    from agentguard.aibom._cyclonedx import to_json
    from agentguard.aibom._text import is_sha256
    from agentguard.findings import Finding

    components: dict[str, Component] = {}
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is named by its number
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                finding = Finding.model_validate_json(line)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in error['loc']) or 'json'}: {error['msg']}"
                    for error in exc.errors()[:3])
                raise ValueError(f"{path}:{number}: not a finding: {problems}") from None
            if not finding.rule_id.startswith(_SUPPLY_RULES_PREFIX):
                continue
            evidence = finding.evidence if isinstance(finding.evidence, dict) else {}
            tag = Property(name="agentguard:finding", value=finding.rule_id)
            # Evidence is whatever the finding's writer put there: only text is taken as a name.
            distribution = _text_of(evidence.get("distribution"))
            if distribution is not None:
                ref = f"pkg:pypi/{distribution}"
                component = components.get(ref)
                if component is None:
                    component = Component(name=distribution,
                                          version=_text_of(evidence.get("version")), bom_ref=ref,
                                          type=ComponentType.LIBRARY)
                    components[ref] = component
                component.properties.add(tag)
                continue
            model = _text_of(evidence.get("path")) or _text_of(evidence.get("model")) or \
                _text_of(evidence.get("model_id"))
            if not model:
                continue
            ref = f"artifact:{model}"
            component = components.get(ref)
            if component is None:
                sha = evidence.get("sha256")
                sha = sha.lower() if isinstance(sha, str) else None
                sha = sha if is_sha256(sha) else None
                component = Component(
                    name=os.path.basename(str(model)) or str(model), bom_ref=ref,
                    type=ComponentType.MACHINE_LEARNING_MODEL,
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha)] if sha else [])
                component.properties.add(Property(name="agentguard:path", value=str(model)))
                components[ref] = component
            component.properties.add(tag)
    bom = Bom()
    for component in components.values():
        bom.components.add(component)
    result: dict[str, Any] = json.loads(to_json(bom))
    return result


def _text_of(value: Any) -> str | None:
    """``value`` when it is non-empty text (bounded), else ``None``."""
    return value[:2048] if isinstance(value, str) and value else None


def render_table(document: dict[str, Any]) -> str:
    """A plain-text table of a document's components (loaded first, findings marked)."""
    from agentguard.aibom._text import printable

    rows: list[tuple[str, str, str, str, str]] = []
    for component in document.get("components") or ():
        props = _properties(component)
        if props.get("agentguard:loaded") == ["false"]:
            continue
        kind = "model" if component.get("type") == "machine-learning-model" else "package"
        name = str(component.get("name", ""))
        if component.get("group"):
            name = f"{component['group']}/{name}"
        version = str(component.get("version") or "")
        where = ",".join(props.get("agentguard:tools", props.get("agentguard:first_tool", [])))
        if props.get("agentguard:preloaded") == ["true"]:
            where = where or "(start-up)"
        findings = ",".join(sorted(set(props.get("agentguard:finding", []))))
        role = props.get("agentguard:ai_framework", [""])[0]
        if role:
            kind = f"{kind}:{role}"
        # Names come from file names and other processes: nothing in them reaches the terminal
        # as a control sequence.
        rows.append((printable(kind), printable(name), printable(version), printable(where),
                     printable(findings)))
    rows.sort(key=lambda row: (not row[4], not row[0].startswith("model"), row[1].lower()))
    header = ("KIND", "NAME", "VERSION", "TOOLS", "FINDINGS")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
              for i in range(5)]
    widths = [min(width, 48) for width in widths]
    lines = ["  ".join(cell.ljust(widths[i])[:widths[i]] for i, cell in enumerate(header))]
    lines.extend("  ".join(cell.ljust(widths[i])[:max(widths[i], len(cell))]
                           for i, cell in enumerate(row)).rstrip() for row in rows)
    flagged = sum(1 for row in rows if row[4])
    lines.append(f"{len(rows)} components, {flagged} with findings")
    return "\n".join(lines)


def loaded_names(document: dict[str, Any]) -> set[str]:
    """The normalised names of the library components a document marks as loaded."""
    from packaging.utils import canonicalize_name

    return {canonicalize_name(str(component.get("name")))
            for component in document.get("components") or ()
            if component.get("type") == "library"
            and _properties(component).get("agentguard:loaded") != ["false"]}


def _aibom(args: argparse.Namespace) -> int:
    from agentguard.aibom._text import printable

    try:
        return _aibom_output(args)
    except BrokenPipeError:
        raise  # the reader went away: the command line's own handling, not an input error
    except OSError as exc:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename is not None and \
            exc.strerror else str(exc)
    except (_Refused, ValueError) as exc:  # DeclaredError too: it names the file and line
        message = str(exc)
    # One line: names in it come from files and other processes.
    print(f"agentguard aibom: {printable(message)}", file=sys.stderr)
    return 2


def _aibom_output(args: argparse.Namespace) -> int:
    from agentguard.aibom._text import printable
    from agentguard.aibom._vulns import reachability

    if args.db:
        found = _from_store(args)
        if isinstance(found, str):
            return _write(args, found)
        document = found
    elif args.bom:
        document = _check_document(_read_json(args.bom), args.bom)
    else:
        document = _from_findings(args.from_findings)
    if (args.db or args.bom) and (args.declared or args.models):
        _redeclare(document, args.declared, args.models)
    if args.format == "cyclonedx-json":
        text = json.dumps(document, indent=2, sort_keys=True)
    else:
        text = render_table(document)
    if args.vulns:
        # Read here, as a file whatever its name ("[audit].json" is a file, not JSON text).
        data = _read_json(args.vulns)
        try:
            result = reachability(data, loaded_names(document))
        except ValueError as exc:
            raise ValueError(f"{args.vulns}: {exc}") from None
        report = [result.summary()]
        report.extend(printable(f"  LOADED          {p.name} {p.version or ''}: "
                                f"{', '.join(p.vulnerabilities)}") for p in result.loaded)
        report.extend(printable(f"  installed-only  {p.name} {p.version or ''}: "
                                f"{', '.join(p.vulnerabilities)}") for p in result.installed_only)
        if args.format == "table":
            text = text + "\n\n" + "\n".join(report)
        else:
            print("\n".join(report), file=sys.stderr)
    return _write(args, text)


def _write(args: argparse.Namespace, text: str) -> int:
    if args.output:
        if os.path.isdir(args.output):
            raise ValueError(f"--output {args.output}: is a directory; name a file")
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text)
    return 0


class _Refused(Exception):
    """The command line names no single agent where one is needed."""


def _from_store(args: argparse.Namespace) -> dict[str, Any] | str:
    """One agent's document from a collector database, or (a table, several agents) the list."""
    from agentguard.aibom._collected import (
        document,
        label,
        list_agents,
        prefer_verified,
        select,
    )
    from agentguard.aibom._text import printable
    from agentguard.collector.store import StoreError

    try:
        agents = list_agents(args.db)
    except StoreError as exc:
        raise _Refused(str(exc)) from None
    chosen = select(agents, args.agent)
    if not chosen:
        known = ", ".join(label(agent) for agent in agents[:20]) or "none yet"
        wanted = f"no agent {args.agent!r}" if args.agent else "no agent inventories"
        raise _Refused(f"{args.db}: {wanted} (agents with an inventory: {known})")
    if args.format == "table" and not args.vulns and not args.agent and len(chosen) > 1:
        return render_agents(chosen)
    passed: list[dict[str, Any]] = []
    if args.agent:
        # A sender found on no process, or an earlier collector, may name the same service and
        # pid as a process the collector verified: that process's own inventory is the one meant.
        chosen, passed = prefer_verified(chosen)
    if len(chosen) > 1:
        names = ", ".join(label(agent) for agent in chosen[:20])
        raise _Refused(f"{args.db}: {len(chosen)} agents match; name one with --agent "
                       f"(service@host:pid or #id): {names}")
    [agent] = chosen
    if passed:
        # stderr: the document or table on stdout stays what it is.
        print(printable(f"agentguard aibom: --agent {args.agent}: showing {label(agent)}, not "
                        f"the unverified inventories that also match: "
                        f"{', '.join(label(other) for other in passed[:20])} (name one by #id)"),
              file=sys.stderr)
    elif not agent.get("verified"):
        print(printable(f"agentguard aibom: showing {label(agent)}, not an inventory of a "
                        f"process the collector verified"), file=sys.stderr)
    return document(args.db, agent)


def render_agents(agents: list[dict[str, Any]]) -> str:
    """A plain-text table of the agents whose inventories a collector keeps, each marked verified
    (sent by a process the collector found on its node) or not (and then whose claim it is)."""
    import datetime

    from agentguard.aibom._collected import describe, provenance
    from agentguard.aibom._text import printable

    header = ("ID", "AGENT", "ENTRIES", "LAST UPDATE", "STATE", "SOURCE")
    rows = []
    for agent in agents:
        last = datetime.datetime.fromtimestamp(int(agent["last_ns"]) / 1e9,
                                               datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        state = "exited" if agent["final"] else "running"
        if agent["gaps"]:
            state += f", {agent['gaps']} emissions missed"
        rows.append((f"#{agent['id']}", printable(describe(agent)), str(agent["entries"]), last,
                     state, printable(provenance(agent))))
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines.extend("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                 for row in rows)
    unverified = sum(1 for agent in agents if not agent.get("verified"))
    note = f" ({unverified} unverified: not sent by a process the collector found)" \
        if unverified else ""
    lines.append(f"{len(rows)} agents{note}; show one with --agent")
    return "\n".join(lines)
