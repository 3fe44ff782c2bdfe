"""The installed environment, read once: distributions, versions, requirements, module owners.

``importlib.metadata`` scans every ``sys.path`` entry on each query; a process with a few hundred
distributions pays that once here (one pass over ``distributions()``) and reads dictionaries
afterwards. A tool may run ``pip install`` later: :meth:`Environment.discover` re-reads the one
``sys.path`` entry a module without a known owner comes from, when that directory changed since it
was read; :func:`refresh` reads everything again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import stat
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from agentguard._errors import internal_error
from agentguard.sensors._modules import pth_tops, read_metadata

__all__ = ["Environment", "InstalledDistribution", "environment", "refresh"]

MAX_CLOSURE = 4096
# Re-reads of a sys.path entry for modules no known distribution ships: at most this many per
# process, and each entry at most this often (a re-read of a site-packages with a few hundred
# distributions takes tens of milliseconds, on the thread that imports).
MAX_REREADS = 64
REREAD_INTERVAL = 1.0


@dataclass(slots=True)
class InstalledDistribution:
    """One installed distribution: its names, version, location and requirements."""

    name: str  # normalised (PEP 503)
    display_name: str
    version: str
    location: str | None
    requires: tuple[str, ...] = ()  # normalised names of requirements that apply here
    summary: str | None = None
    license: str | None = None
    top_level: tuple[str, ...] = field(default_factory=tuple)


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    for extra in ("", *extras):
        try:
            if marker.evaluate({"extra": extra}):
                return True
        except Exception:
            return True
    return False


class Environment:
    """An index of the installed distributions and which top-level modules each ships."""

    def __init__(self, *, read: bool = True) -> None:
        self.distributions: dict[str, InstalledDistribution] = {}
        self.module_owners: dict[str, tuple[str, ...]] = {}
        self.stdlib: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ())) | \
            frozenset(sys.builtin_module_names)
        self._raw_requires: dict[str, list[Requirement]] = {}
        # sys.path entry -> (its modification time when read, when it was last re-read).
        self._entries: dict[str, tuple[int, float]] = {}
        self._discover_lock = threading.Lock()
        self.rereads = 0
        if read:
            self._entries = {entry: (mtime, 0.0) for entry in sys.path
                             if (mtime := _mtime(entry)) is not None}
            self._read()

    @classmethod
    def recorded(cls, distributions: Iterable[InstalledDistribution]) -> Environment:
        """An environment known only from what an agent reported (another process, another host)."""
        env = cls(read=False)
        owners: dict[str, set[str]] = {}
        for dist in distributions:
            env.distributions.setdefault(dist.name, dist)
            for top in dist.top_level:
                owners.setdefault(top, set()).add(dist.name)
        env.module_owners = {top: tuple(sorted(names)) for top, names in owners.items()}
        return env

    def _read(self) -> None:
        self.module_owners = self._index(importlib.metadata.distributions(), self.distributions)

    def _index(self, found: Iterable[importlib.metadata.Distribution],
               into: dict[str, InstalledDistribution]) -> dict[str, tuple[str, ...]]:
        """Add the distributions of ``found`` not in ``into`` yet; their module owners."""
        owners: dict[str, set[str]] = {}
        for dist in found:
            try:
                # Bounded, and lenient with bytes that are not UTF-8 (a Latin-1 author name).
                headers = _headers(read_metadata(dist, "METADATA") or
                                   read_metadata(dist, "PKG-INFO") or "")
                display = (headers.get("name") or [""])[0]
                if not display:
                    continue
                name = canonicalize_name(display)
                if name in into:
                    continue  # an earlier sys.path entry shadows this one, as the import system does
                requirements: list[Requirement] = []
                for text in headers.get("requires-dist", ()):
                    try:
                        requirements.append(Requirement(text))
                    except InvalidRequirement:
                        continue
                self._raw_requires[name] = requirements
                try:
                    location: str | None = str(dist.locate_file(""))
                except Exception:
                    location = None
                tops = _top_level(dist)
                for top in tops:
                    owners.setdefault(top, set()).add(name)
                license_text = _first(headers, "license-expression") or _first(headers, "license")
                into[name] = InstalledDistribution(
                    name=name, display_name=display, version=(headers.get("version") or [""])[0],
                    location=location,
                    requires=tuple(canonicalize_name(r.name) for r in requirements
                                   if _applies(r, ())),
                    summary=_first(headers, "summary"),
                    license=license_text if license_text and len(license_text) < 100 else None,
                    top_level=tuple(sorted(tops)),
                )
            except Exception as exc:
                internal_error("aibom environment", exc)
        return {top: tuple(sorted(names)) for top, names in owners.items()}

    def owner(self, module: str) -> tuple[str, ...]:
        """The normalised names of the distributions that ship top-level ``module``."""
        return self.module_owners.get(module.partition(".")[0], ())

    def discover(self, module: str) -> tuple[str, ...]:
        """:meth:`owner`, and on a miss for a module found on a ``sys.path`` entry outside the
        standard library, the owner after re-reading that entry's distributions if the directory
        changed since it was read (a tool ran ``pip install``, then imported what it installed).

        Bounded: :data:`MAX_REREADS` re-reads per process, each entry at most every
        :data:`REREAD_INTERVAL` seconds.
        """
        owners = self.owner(module)
        top = module.partition(".")[0]
        if owners or not top or top in self.stdlib or self.rereads >= MAX_REREADS:
            return owners
        entry = _entry_of(top)
        mtime = _mtime(entry) if entry is not None else None
        if entry is None or mtime is None:
            return owners
        with self._discover_lock:
            owners = self.owner(module)  # another thread may have re-read it meanwhile
            known = self._entries.get(entry)
            now = time.monotonic()
            if owners or (known is not None and (known[0] == mtime or
                                                 now - known[1] < REREAD_INTERVAL)) or \
                    self.rereads >= MAX_REREADS:
                return owners
            self.rereads += 1
            self._entries[entry] = (mtime, now)
            # Copies replaced whole: readers iterating the old dictionaries are not disturbed.
            distributions = dict(self.distributions)
            try:
                added = self._index(importlib.metadata.distributions(path=[entry]),
                                    distributions)
            except Exception as exc:
                internal_error("aibom environment re-read", exc)
                return owners
            merged = dict(self.module_owners)
            for name, new in added.items():
                merged[name] = tuple(sorted(set(merged.get(name, ())) | set(new)))
            self.distributions = distributions
            self.module_owners = merged
            return self.owner(module)

    def closure(self, roots: Iterable[str], *, with_extras: bool = False) -> set[str]:
        """``roots`` and every installed distribution they require, transitively (bounded).

        With ``with_extras`` a root's requirements under any of its extras count too (a project
        that installs ``agentguard[dev]`` declares what the extra brings).
        """
        seen: set[str] = set()
        stack: list[str] = [canonicalize_name(root) for root in roots]
        first = set(stack)
        while stack and len(seen) < MAX_CLOSURE:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            requires: list[str]
            if with_extras and name in first:
                requires = [canonicalize_name(r.name) for r in self._raw_requires.get(name, ())]
            else:
                dist = self.distributions.get(name)
                requires = list(dist.requires) if dist is not None else []
            stack.extend(req for req in requires if req not in seen)
        return seen


def _mtime(entry: str) -> int | None:
    """The modification time of a ``sys.path`` directory (``None``: not a readable directory)."""
    try:
        info = os.stat(entry or ".")
    except (OSError, ValueError):
        return None
    return info.st_mtime_ns if stat.S_ISDIR(info.st_mode) else None


def _entry_of(top: str) -> str | None:
    """The ``sys.path`` entry top-level module ``top`` is (or would be) loaded from."""
    module = sys.modules.get(top)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(top)
        except Exception:  # a finder that fails, a name that is not a module
            return None
    if spec is None:
        return None
    origin = spec.origin if spec.has_location else None
    if origin is None and spec.submodule_search_locations:
        locations = list(spec.submodule_search_locations)
        origin = locations[0] if locations else None
    if not origin:
        return None
    best: str | None = None
    for entry in list(sys.path):
        if not isinstance(entry, str):
            continue
        root = os.path.abspath(entry or ".")
        if origin.startswith(root.rstrip(os.sep) + os.sep) and \
                (best is None or len(root) > len(os.path.abspath(best or "."))):
            best = entry
    return best


def _first(headers: dict[str, list[str]], key: str) -> str | None:
    values = headers.get(key)
    return values[0] if values else None


def _headers(text: str) -> dict[str, list[str]]:
    """The header fields of a core-metadata file (lower-case keys), without its long description.

    ``Distribution.metadata`` runs the e-mail parser over the whole file, description included,
    on every call; the headers alone are all an inventory needs.
    """
    fields: dict[str, list[str]] = {}
    key: str | None = None
    for line in text.split("\n"):
        if not line.strip():
            break
        if line[:1] in (" ", "\t") and key is not None:
            values = fields[key]
            values[-1] = values[-1] + " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields.setdefault(key, []).append(value.strip())
    return fields


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """Top-level import names a distribution ships (``top_level.txt``, else its ``RECORD``, else
    the directories its ``.pth`` files put on ``sys.path``: an editable install)."""
    text = read_metadata(dist, "top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    tops: set[str] = set()
    record = read_metadata(dist, "RECORD")
    for line in (record or "").splitlines():
        path = line.split(",", 1)[0].strip('"')
        head, sep, _ = path.partition("/")
        if not head or head.endswith((".dist-info", ".egg-info", ".data")) or \
                head in ("..", "__pycache__"):
            continue
        if not sep:
            if head.endswith(".py"):
                tops.add(head[:-3])
            elif head.endswith((".so", ".pyd")):
                tops.add(head.partition(".")[0])
        elif "." not in head and "-" not in head:
            tops.add(head)
    return tops or pth_tops(dist, record)


_lock = threading.Lock()
_cached: Environment | None = None


def environment() -> Environment:
    """The environment index, read on first use and cached."""
    global _cached
    cached = _cached
    if cached is not None:
        return cached
    with _lock:
        if _cached is None:
            _cached = Environment()
        return _cached


def refresh() -> Environment:
    """Read the installed distributions again."""
    global _cached
    with _lock:
        _cached = Environment()
        return _cached
