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
import os
import re
import sys
import time
from collections.abc import Collection
from typing import NamedTuple

from agentguard._errors import internal_error
from agentguard._files import open_regular
from agentguard.sensors import _state

__all__ = ["MAX_METADATA_BYTES", "MAX_SEEN", "ModuleInfo", "first_load", "prime", "pth_tops",
           "read_metadata"]

MAX_SEEN = 16384
MAX_MISSING = 4096
MISSING_RETRY = 30.0
# A module found in site-packages but missing from the distribution map re-reads the map, at most
# this often (reading it takes about a tenth of a second).
REFRESH_INTERVAL = 30.0
# Bytes read of one metadata file of a distribution (METADATA, RECORD, top_level.txt): the
# largest real RECORD files are a few MiB; of a larger one only the lines within this are read.
MAX_METADATA_BYTES = 16 << 20
# Of an editable install's ``.pth`` files: bytes read of one, files read per distribution, and
# directory entries looked at per directory it names.
MAX_PTH_BYTES = 64 << 10
MAX_PTH_FILES = 8
MAX_PTH_ENTRIES = 4096

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


def read_metadata(dist: importlib.metadata.Distribution, filename: str) -> str | None:
    """``dist.read_text(filename)``, bounded and lenient: at most :data:`MAX_METADATA_BYTES`
    (up to the last whole line), bytes that are not UTF-8 replaced (an old installer's Latin-1
    author name must not hide the distribution); ``None`` when the file is missing or
    unreadable."""
    # The directory (or zip path) of a PathDistribution; another finder's distribution is read
    # its own way.
    folder = getattr(dist, "_path", None)
    if folder is None or not hasattr(folder, "joinpath"):
        try:
            return dist.read_text(filename)
        except (OSError, ValueError, KeyError):
            return None
    limit = MAX_METADATA_BYTES
    try:
        with folder.joinpath(filename).open("rb") as handle:
            data: bytes = handle.read(limit + 1)
    except (OSError, ValueError, KeyError):
        return None
    if len(data) > limit:
        data = data[:data.rfind(b"\n", 0, limit) + 1]
    return data.decode("utf-8", "replace")


def _read_distributions() -> dict[str, list[str]]:
    """What ``importlib.metadata.packages_distributions()`` answers (top-level name ->
    distribution names), read about five times faster: it parses every METADATA file as an
    e-mail message and builds a path object for every installed file, ~0.3 s for 250
    distributions on ``instrument()``; here the name is the first ``Name:`` header and a RECORD
    file is scanned as text. Unlike it, a distribution whose files cannot be read (not UTF-8,
    a folder where a file should be) costs only itself, and one without a name ships nothing."""
    mapping: dict[str, list[str]] = {}
    try:
        found = list(importlib.metadata.distributions())
    except Exception as exc:
        internal_error("sensor distributions", exc)
        return mapping
    for dist in found:
        try:
            tops: Collection[str] = (read_metadata(dist, "top_level.txt") or "").split()
            if not tops:
                record = read_metadata(dist, "RECORD")
                tops = _inferred(dist, record) or pth_tops(dist, record)
            if not tops:
                continue
            name = _name(dist)
            if not name:
                continue
            for top in tops:
                mapping.setdefault(top, []).append(name)
        except Exception as exc:
            internal_error("sensor distributions", exc)
    return mapping


def _name(dist: importlib.metadata.Distribution) -> str | None:
    """``dist.metadata["Name"]``; ``None`` when there is none."""
    return _header(dist, "name")


def _header(dist: importlib.metadata.Distribution, field: str) -> str | None:
    """``dist.metadata[field]``: the first such header (the e-mail parser only when it is folded
    over several lines); ``None`` when there is none."""
    text = read_metadata(dist, "METADATA") or read_metadata(dist, "PKG-INFO")
    if not text:
        return None
    end = text.find("\n\n")
    lines = (text if end < 0 else text[:end]).splitlines()
    size = len(field) + 1
    for index, line in enumerate(lines):
        if line[:size].lower() == f"{field}:":
            folded = index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t")
            if not folded:
                return line[size:].lstrip(" \t")
            break
    else:
        return None
    value: str | None = dist.metadata[field]
    return value


def _inferred(dist: importlib.metadata.Distribution, record: str | None) -> set[str]:
    """The top-level names a distribution without ``top_level.txt`` installs, as
    ``importlib.metadata`` infers them from its files (``record``: its RECORD, ``None`` when it
    has none): each ``.py`` file's first path part, or its name without the suffix at the top."""
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


def pth_tops(dist: importlib.metadata.Distribution, record: str | None) -> set[str]:
    """The top-level names a distribution puts on ``sys.path`` through the ``.pth`` files its
    ``record`` (its RECORD) lists: the packages and modules of each directory they name.

    An editable install by a ``.pth`` file (hatchling, flit, pdm, setuptools' "compat" mode)
    lists the ``.pth`` in its RECORD, not the modules, which stay in the project's source tree;
    ``site`` adds each line that is not an ``import`` statement, joined to the site directory.
    Bounded: :data:`MAX_PTH_FILES` files of up to :data:`MAX_PTH_BYTES`, the first
    :data:`MAX_PTH_ENTRIES` entries of a directory; a line naming the site directory itself (every
    distribution's modules) adds nothing."""
    if not record:
        return set()
    tops: set[str] = set()
    read = 0
    for row in csv.reader(record.splitlines()):
        if not row or "/" in row[0] or not row[0].endswith(".pth"):
            continue
        if read >= MAX_PTH_FILES:
            break
        read += 1
        try:
            pth = str(dist.locate_file(row[0]))
            handle, _ = open_regular(pth)
            with handle:
                text = handle.read(MAX_PTH_BYTES).decode("utf-8", "replace")
        except (OSError, ValueError):
            continue
        site = os.path.dirname(pth)
        for line in text.splitlines():
            line = line.rstrip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            folder = os.path.join(site, line)
            try:
                if os.path.samefile(folder, site):
                    continue
            except (OSError, ValueError):
                continue
            tops |= _directory_tops(folder)
    return tops


def _directory_tops(folder: str) -> set[str]:
    """The importable top-level names in ``folder``: packages (a directory with ``__init__``) and
    modules (source or extension), each an identifier."""
    tops: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_PTH_ENTRIES:
                    break
                name = entry.name
                if entry.is_dir():
                    if name.isidentifier() and any(
                            os.path.isfile(os.path.join(entry.path, init))
                            for init in ("__init__.py", "__init__.pyc")):
                        tops.add(name)
                    continue
                stem, dot, suffix = name.partition(".")
                if dot and stem.isidentifier() and (
                        suffix == "py" or suffix.endswith(("so", "pyd"))):
                    tops.add(stem)
    except (OSError, ValueError):
        pass
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
        # (Its METADATA read as the map's were: one that is not UTF-8 still has its version.)
        version = _header(importlib.metadata.distribution(distribution), "version")
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


_SEPARATORS = re.compile(r"[-_.]+")


def _distinct(dists: list[str]) -> tuple[str, ...]:
    """The distributions of a top-level name, each once: a distribution installed again in a
    later ``sys.path`` entry (``GoodPkg`` there, ``goodpkg`` here) is shadowed, as the import
    system shadows its modules, so the first copy names it."""
    kept: dict[str, str] = {}
    for dist in dists:
        kept.setdefault(_SEPARATORS.sub("-", dist).lower(), dist)
    return tuple(sorted(kept.values()))


def _resolve(top: str) -> ModuleInfo | None:
    mapping = _state.distributions or {}
    dists = mapping.get(top)
    if dists:
        unique = _distinct(dists)
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
        unique = _distinct(_state.distributions.get(top) or [])
        if len(unique) == 1:
            return ModuleInfo(top, unique[0], _version(unique[0]), "distribution", origin,
                              unique)
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
