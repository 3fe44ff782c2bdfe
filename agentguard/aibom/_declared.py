"""What a project declares: packages from requirements, pyproject and lock files, and its models.

Every parser returns plain records with the file and line each name came from, so a finding can
say where a package *should* have been declared. Names are normalised (PEP 503) with
``packaging``; markers are evaluated for this interpreter, and a requirement whose marker does not
apply is kept but marked, so it neither declares the package nor is silently lost.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "AllowedModel",
    "Declared",
    "DeclaredError",
    "DeclaredPackage",
    "ModelAllowList",
    "load_declared",
    "load_models_allowlist",
    "parse_poetry_lock",
    "parse_pyproject",
    "parse_requirements",
    "parse_uv_lock",
]

MAX_INCLUDE_DEPTH = 8
MAX_FILE_BYTES = 8 << 20
MAX_PACKAGES = 20000
MAX_MODELS = 4096

_HASH = re.compile(r"--hash[=\s]+([A-Za-z0-9_]+):([0-9A-Fa-f]+)")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9_.\-]+)")
# Options of a requirements file that name no package (index settings, build flags).
_SKIP_OPTIONS = ("-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links",
                 "--pre", "--trusted-host", "--prefer-binary", "--only-binary", "--no-binary",
                 "--require-hashes", "--use-feature", "-Z", "--always-unzip", "--config-settings",
                 "--global-option", "--no-deps")


class DeclaredError(ValueError):
    """A declared-dependency or model allow-list file cannot be read; names the file and line."""


class DeclaredPackage(BaseModel):
    """One package a project declares, with where it was declared."""

    name: str  # normalised (PEP 503)
    specifier: str = ""
    version: str | None = None  # the exact version when pinned (``==`` or a lock file)
    hashes: list[str] = Field(default_factory=list)  # "sha256:<hex>"
    applies: bool = True  # False when its environment marker excludes this interpreter
    sources: list[str] = Field(default_factory=list)  # "file:line"


class AllowedModel(BaseModel):
    """An allow-list entry: a model id, an artifact hash or path pattern, and where it may come from."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None  # model id or glob (a Bedrock model id, a hub repo id, a chat model name)
    provider: str | None = None
    sha256: str | None = None
    path: str | None = None  # glob matched against the artifact's absolute path
    source: str | None = None  # where it may come from (hub repo, URL, "local")
    revision: str | None = None
    allow_pickle: bool = False  # a reviewed artifact in a pickle-family format

    @field_validator("sha256", "id", "revision", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            # YAML reads an unquoted all-digit digest (or "1e10...") as a number.
            raise ValueError(f"must be a string; quote it in YAML (read as {type(value).__name__})")
        return value


class ModelAllowList(BaseModel):
    """The models file: the models and artifacts a project allows."""

    model_config = ConfigDict(extra="forbid")

    models: list[AllowedModel] = Field(default_factory=list, max_length=MAX_MODELS)


class Declared(BaseModel):
    """Everything declared: packages by normalised name, the models allow-list, the files read."""

    packages: dict[str, DeclaredPackage] = Field(default_factory=dict)
    models: ModelAllowList | None = None
    files: list[str] = Field(default_factory=list)
    # A lock file lists the whole dependency closure; requirements and pyproject list only the
    # direct dependencies, whose installed requirements are then declared too (see closure).
    locked: bool = False

    def add(self, package: DeclaredPackage) -> None:
        existing = self.packages.get(package.name)
        if existing is None:
            if len(self.packages) < MAX_PACKAGES:
                self.packages[package.name] = package
            return
        existing.sources.extend(package.sources[:4])
        existing.hashes.extend(h for h in package.hashes if h not in existing.hashes)
        existing.applies = existing.applies or package.applies
        if existing.version is None:
            existing.version = package.version
        if not existing.specifier:
            existing.specifier = package.specifier

    def merge(self, other: Declared) -> None:
        for package in other.packages.values():
            self.add(package.model_copy(deep=True))
        self.files.extend(other.files)
        self.locked = self.locked or other.locked
        if other.models is not None:
            if self.models is None:
                self.models = ModelAllowList()
            self.models.models.extend(other.models.models)

    def declares(self, name: str) -> bool:
        """Whether the (normalised) distribution ``name`` is declared for this interpreter."""
        package = self.packages.get(canonicalize_name(name))
        return package is not None and package.applies

    # -- models ------------------------------------------------------------------------------
    def model_entries(self) -> list[AllowedModel]:
        return self.models.models if self.models is not None else []


def _read_text(path: str) -> str:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise DeclaredError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} limit")
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DeclaredError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:  # grew since it was measured
        raise DeclaredError(f"{path}: larger than the {MAX_FILE_BYTES} bytes limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DeclaredError(f"{path}:{line}: not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start}") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a TOML table (absent: empty), else a :class:`DeclaredError`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeclaredError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _array(value: Any, where: str) -> list[Any]:
    """``value`` when it is a TOML array (absent: empty), else a :class:`DeclaredError`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DeclaredError(f"{where}: expected an array, got {type(value).__name__}")
    return value


def _marker_applies(marker: Marker | None) -> bool:
    if marker is None:
        return True
    try:
        return bool(marker.evaluate({"extra": ""}))
    except Exception:
        return True  # a marker naming something this interpreter cannot evaluate: keep it


def _from_requirement(text: str, where: str, hashes: Sequence[str] = ()) -> DeclaredPackage:
    requirement = Requirement(text)
    pinned = None
    for spec in requirement.specifier:
        if spec.operator in ("==", "===") and "*" not in spec.version:
            pinned = spec.version
    return DeclaredPackage(
        name=canonicalize_name(requirement.name), specifier=str(requirement.specifier),
        version=pinned, hashes=list(hashes), applies=_marker_applies(requirement.marker),
        sources=[where],
    )


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with ``\\`` continuations joined and comments removed, with the first line's number."""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = raw
        # A comment starts at "#" at the line start or after whitespace (not a URL fragment).
        if line.lstrip().startswith("#"):
            line = ""
        else:
            cut = re.search(r"\s#", line)
            if cut is not None:
                line = line[:cut.start()]
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            yield start, joined
    if pending.strip():
        yield start, pending.strip()


def parse_requirements(path: str, _depth: int = 0, _seen: set[str] | None = None) -> Declared:
    """A pip requirements file, following ``-r`` includes (``-c`` constraints declare nothing)."""
    path = os.path.abspath(path)
    seen = _seen if _seen is not None else set()
    declared = Declared(files=[path])
    if path in seen:
        return declared
    seen.add(path)
    if _depth > MAX_INCLUDE_DEPTH:
        raise DeclaredError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
    base = os.path.dirname(path)
    for number, line in _logical_lines(_read_text(path)):
        where = f"{path}:{number}"
        hashes = [f"{alg.lower()}:{value.lower()}" for alg, value in _HASH.findall(line)]
        body = _HASH.sub("", line).strip()
        head, _, rest = body.partition(" ")
        if head in ("-r", "--requirement") or head.startswith(("-r", "--requirement=")):
            target = rest.strip() if head in ("-r", "--requirement") else \
                head.split("=", 1)[1] if head.startswith("--requirement=") else head[2:]
            if not target:
                raise DeclaredError(f"{where}: -r without a file name")
            declared.merge(parse_requirements(os.path.join(base, target), _depth + 1, seen))
            continue
        if head in ("-c", "--constraint") or head.startswith(("-c", "--constraint=")):
            continue
        if head.startswith(_SKIP_OPTIONS):
            continue
        if head in ("-e", "--editable"):
            egg = _EGG.search(rest)
            if egg is not None:
                declared.add(DeclaredPackage(name=canonicalize_name(egg.group(1)), sources=[where]))
            continue  # a local editable path names no distribution without building it
        try:
            declared.add(_from_requirement(body, where, hashes))
        except InvalidRequirement as exc:
            if body.startswith(("-", ".", "/")) or "://" in body:
                # A bare URL or local path: only an "#egg=" fragment names its distribution.
                egg = _EGG.search(body)
                if egg is not None:
                    declared.add(DeclaredPackage(name=canonicalize_name(egg.group(1)),
                                                 sources=[where]))
                continue
            raise DeclaredError(f"{where}: not a requirement: {body[:120]!r} ({exc})") from None
    return declared


def _toml(path: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(_read_text(path))
        return data
    except tomllib.TOMLDecodeError as exc:
        raise DeclaredError(f"{path}: invalid TOML: {exc}") from None


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 0


def parse_pyproject(path: str) -> Declared:
    """``[project]`` dependencies and optional dependencies, PEP 735 groups, Poetry's tables."""
    path = os.path.abspath(path)
    text = _read_text(path)
    data = _toml(path)
    declared = Declared(files=[path])
    items: list[str] = []
    project = _table(data.get("project"), f"{path}: [project]")
    items.extend(_array(project.get("dependencies"), f"{path}: project.dependencies"))
    optional = _table(project.get("optional-dependencies"),
                      f"{path}: [project.optional-dependencies]")
    for extra, group in optional.items():
        items.extend(_array(group, f"{path}: project.optional-dependencies.{extra}"))
    groups = _table(data.get("dependency-groups"), f"{path}: [dependency-groups]")
    for name, group in groups.items():
        # PEP 735: a group also holds {include-group = "..."} tables, which name no package.
        items.extend(item for item in _array(group, f"{path}: dependency-groups.{name}")
                     if isinstance(item, str))
    own = canonicalize_name(str(project.get("name") or "")) if project.get("name") else None
    for item in items:
        if not isinstance(item, str):
            raise DeclaredError(f"{path}: a dependency must be a string, got {item!r:.120}")
        where = f"{path}:{_line_of(text, item)}"
        try:
            package = _from_requirement(item, where)
        except InvalidRequirement as exc:
            raise DeclaredError(f"{where}: not a requirement: {item!r} ({exc})") from None
        if package.name != own:  # "myproject[extra]" in a group refers to the project itself
            declared.add(package)
    poetry = _table(_table(data.get("tool"), f"{path}: [tool]").get("poetry"),
                    f"{path}: [tool.poetry]")
    tables = [_table(poetry.get("dependencies"), f"{path}: [tool.poetry.dependencies]"),
              _table(poetry.get("dev-dependencies"), f"{path}: [tool.poetry.dev-dependencies]")]
    for name, group in _table(poetry.get("group"), f"{path}: [tool.poetry.group]").items():
        where = f"{path}: [tool.poetry.group.{name}]"
        tables.append(_table(_table(group, where).get("dependencies"), where))
    for table in tables:
        for name in table:
            if name.lower() == "python":
                continue
            declared.add(DeclaredPackage(name=canonicalize_name(name),
                                         sources=[f"{path}:{_line_of(text, name)}"]))
    return declared


def _lock_packages(path: str, hash_key: str | None) -> Declared:
    text = _read_text(path)
    data = _toml(path)
    declared = Declared(files=[path], locked=True)
    for index, entry in enumerate(_array(data.get("package"), f"{path}: package")):
        where = f"{path}: package[{index}]"
        entry = _table(entry, where)
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        hashes: list[str] = []
        if hash_key == "uv":
            for artifact in [entry.get("sdist") or {},
                             *_array(entry.get("wheels"), f"{where}.wheels")]:
                value = artifact.get("hash") if isinstance(artifact, dict) else None
                if isinstance(value, str):
                    hashes.append(value.lower())
        else:
            for artifact in _array(entry.get("files"), f"{where}.files"):
                value = artifact.get("hash") if isinstance(artifact, dict) else None
                if isinstance(value, str):
                    hashes.append(value.lower())
        version = entry.get("version")
        if version is not None and not isinstance(version, str):
            raise DeclaredError(f"{where}.version: expected a string, got {version!r:.60}")
        needle = f'name = "{name}"'
        declared.add(DeclaredPackage(
            name=canonicalize_name(name), version=str(version) if version else None,
            specifier=f"=={version}" if version else "", hashes=hashes[:64],
            sources=[f"{path}:{_line_of(text, needle)}"],
        ))
    return declared


def parse_uv_lock(path: str) -> Declared:
    """``uv.lock``: every locked package, its version and artifact hashes."""
    return _lock_packages(os.path.abspath(path), "uv")


def parse_poetry_lock(path: str) -> Declared:
    """``poetry.lock``: every locked package, its version and file hashes."""
    return _lock_packages(os.path.abspath(path), "poetry")


def load_models_allowlist(path: str) -> ModelAllowList:
    """A models allow-list (YAML or JSON): ``{"models": [{"id": ..., "sha256": ...}, ...]}``."""
    text = _read_text(path)
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise DeclaredError(f"{path}: cannot parse: {exc}") from None
    if isinstance(data, list):
        data = {"models": data}
    try:
        allow = ModelAllowList.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()[:10])
        raise DeclaredError(f"{path}: invalid models allow-list: {problems}") from None
    for entry in allow.models:
        if entry.sha256 is not None:
            entry.sha256 = entry.sha256.lower().removeprefix("sha256:")
    return allow


def load_declared(paths: Sequence[str | os.PathLike[str]] = (),
                  models_allowlist: str | os.PathLike[str] | ModelAllowList | None = None
                  ) -> Declared:
    """Read every declared-dependency file (by its name) and the optional models allow-list."""
    declared = Declared()
    for item in paths:
        path = os.fspath(item)
        base = os.path.basename(path)
        if base == "pyproject.toml":
            part = parse_pyproject(path)
        elif base == "uv.lock":
            part = parse_uv_lock(path)
        elif base == "poetry.lock":
            part = parse_poetry_lock(path)
        elif base.endswith((".yaml", ".yml", ".json")) and "model" in base:
            declared.merge(Declared(models=load_models_allowlist(path), files=[path]))
            continue
        else:
            part = parse_requirements(path)
        declared.merge(part)
    if isinstance(models_allowlist, ModelAllowList):
        declared.merge(Declared(models=models_allowlist))
    elif models_allowlist is not None:
        path = os.fspath(models_allowlist)
        declared.merge(Declared(models=load_models_allowlist(path), files=[path]))
    return declared


def glob_match(pattern: str, value: str) -> bool:
    """Case-sensitive glob match (model ids and paths keep their case)."""
    return fnmatch.fnmatchcase(value, pattern)
