"""Module loads: whether an import is the first load of a top-level package, and who ships it.

The ``import`` audit event fires before the import system looks for the module, for every name
not yet in ``sys.modules`` (including optional imports that then fail). A top-level package is
reported once per process: when its name is mapped to an installed distribution, when it is part
of the standard library and can be found, or when a finder on ``sys.meta_path`` can find it (a
module from a plain directory, such as one a tool just wrote). Names nobody can find are failed
probes, not loads, and are retried at most every :data:`MISSING_RETRY` seconds.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import sys
import time
from typing import NamedTuple

from agentguard._errors import internal_error
from agentguard.sensors import _state

__all__ = ["MAX_SEEN", "ModuleInfo", "first_load", "prime"]

MAX_SEEN = 16384
MAX_MISSING = 4096
MISSING_RETRY = 30.0
# A module found in site-packages but missing from the distribution map re-reads the map, at most
# this often (reading it takes about a tenth of a second).
REFRESH_INTERVAL = 30.0

_STDLIB: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ()))
_BUILTIN: frozenset[str] = frozenset(sys.builtin_module_names)


class ModuleInfo(NamedTuple):
    """A top-level module about to be loaded for the first time."""

    name: str
    distribution: str | None
    version: str | None
    origin: str  # "distribution", "stdlib", "builtin" or "path"
    file: str | None
    candidates: tuple[str, ...]  # every distribution shipping the name (namespace packages)


def _read_distributions() -> dict[str, list[str]]:
    """What ``importlib.metadata.packages_distributions()`` answers (top-level name ->
    distribution names), read about five times faster: it parses every METADATA file as an
    e-mail message and builds a path object for every installed file, ~0.3 s for 250
    distributions on ``instrument()``; here the name is the first ``Name:`` header and a RECORD
    file is scanned as text."""
    try:
        mapping: dict[str, list[str]] = {}
        for dist in importlib.metadata.distributions():
            tops = (dist.read_text("top_level.txt") or "").split() or _inferred(dist)
            if not tops:
                continue
            name = _name(dist)
            for top in tops:
                mapping.setdefault(top, []).append(name)
        return mapping
    except Exception as exc:
        internal_error("sensor distributions", exc)
        return {}


def _name(dist: importlib.metadata.Distribution) -> str:
    """``dist.metadata["Name"]``: the first ``Name`` header (the e-mail parser only when the
    header is missing or folded over several lines)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text:
        end = text.find("\n\n")
        lines = (text if end < 0 else text[:end]).splitlines()
        for index, line in enumerate(lines):
            if line[:5].lower() == "name:":
                folded = index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t")
                if not folded:
                    return line[5:].lstrip(" \t")
                break
    name: str = dist.metadata["Name"]
    return name


def _inferred(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level names a distribution without ``top_level.txt`` installs, as
    ``importlib.metadata`` infers them from its files: each ``.py`` file's first path part, or
    its name without the suffix at the top."""
    record = dist.read_text("RECORD")
    if record is None:  # egg-info and other layouts: the general (slower) reading
        return {f.parts[0] if len(f.parts) > 1 else f.with_suffix("").name
                for f in dist.files or () if f.suffix == ".py"}
    tops: set[str] = set()
    for row in csv.reader(record.splitlines()):
        if not row or not row[0].endswith(".py"):
            continue
        path = row[0]
        first, slash, _ = path.partition("/")
        if first in ("", ".") or path == ".py":
            # Absolute and "./" paths, a bare ".py" (no suffix to a path object): as it reads
            # them.
            file = importlib.metadata.PackagePath(path)
            if file.suffix == ".py":
                tops.add(file.parts[0] if len(file.parts) > 1 else file.with_suffix("").name)
            continue
        tops.add(first if slash else first[:-3])
    return tops


def prime() -> None:
    """Remember the top-level modules loaded so far; read the installed distributions once."""
    seen = _state.modules_seen
    for name in list(sys.modules):
        if len(seen) >= MAX_SEEN:
            break
        seen.add(name.partition(".")[0])
    if _state.distributions is None:
        _state.distributions = _read_distributions()
        _state.distributions_read_at = time.monotonic()


def _version(distribution: str) -> str | None:
    versions = _state.versions
    if distribution in versions:
        return versions[distribution]
    try:
        version: str | None = importlib.metadata.version(distribution)
    except Exception:
        version = None
    if len(versions) < MAX_SEEN:
        versions[distribution] = version
    return version


def _spec_origin(top: str) -> tuple[bool, str | None]:
    """Whether a finder can find ``top``, and the file it would load."""
    try:
        spec = importlib.util.find_spec(top)
    except Exception:
        return False, None
    if spec is None:
        return False, None
    origin = spec.origin if spec.has_location else None
    if origin is None and spec.submodule_search_locations:
        locations = list(spec.submodule_search_locations)
        origin = locations[0] if locations else None
    return True, origin


def _resolve(top: str) -> ModuleInfo | None:
    mapping = _state.distributions or {}
    dists = mapping.get(top)
    if dists:
        unique = tuple(sorted(set(dists)))
        if len(unique) == 1:
            return ModuleInfo(top, unique[0], _version(unique[0]), "distribution", None, unique)
        return ModuleInfo(top, None, None, "distribution", None, unique)
    if top in _BUILTIN:
        return ModuleInfo(top, None, None, "builtin", None, ())
    found, origin = _spec_origin(top)
    if not found:
        return None
    if top in _STDLIB:
        return ModuleInfo(top, None, None, "stdlib", origin, ())
    if origin is not None and ("site-packages" in origin or "dist-packages" in origin) and \
            time.monotonic() - _state.distributions_read_at > REFRESH_INTERVAL:
        # Installed after the map was read (a tool ran pip): read it again, at most this often.
        _state.distributions = _read_distributions()
        _state.distributions_read_at = time.monotonic()
        dists = _state.distributions.get(top)
        if dists and len(set(dists)) == 1:
            return ModuleInfo(top, dists[0], _version(dists[0]), "distribution", origin,
                              (dists[0],))
    return ModuleInfo(top, None, None, "path", origin, ())


def first_load(name: str) -> ModuleInfo | None:
    """The module to report for an ``import`` of ``name``, or ``None`` when there is none.

    Only the first load of a top-level package is reported; submodules and packages already
    loaded (before or after the sensor started) are not.
    """
    top = name.partition(".")[0]
    seen = _state.modules_seen
    if top in seen:
        return None
    if top in sys.modules:
        if len(seen) < MAX_SEEN:
            seen.add(top)
        return None
    missing = _state.modules_missing
    tried = missing.get(top)
    if tried is not None and time.monotonic() - tried < MISSING_RETRY:
        return None
    with _state.busy():
        info = _resolve(top)
    if info is None:
        if len(missing) >= MAX_MISSING:
            missing.clear()
        missing[top] = time.monotonic()
        return None
    missing.pop(top, None)
    if len(seen) < MAX_SEEN:
        seen.add(top)
    return info
