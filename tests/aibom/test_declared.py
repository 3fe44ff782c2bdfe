"""Declared dependencies: requirements (includes, hashes, markers), pyproject, lock files, models."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentguard.aibom import DeclaredError, load_declared
from agentguard.aibom._declared import (
    load_models_allowlist,
    parse_poetry_lock,
    parse_pyproject,
    parse_requirements,
    parse_uv_lock,
)

ROOT = Path(__file__).resolve().parents[2]


def test_requirements_follow_includes_hashes_and_markers(tmp_path: Path) -> None:
    """A requirements file declares its own and its -r includes' packages with hashes, pins,
    normalised names and markers evaluated for this interpreter; -c constraints declare nothing."""
    (tmp_path / "base.txt").write_text("PyYAML>=6  # parsing\n-c constraints.txt\n")
    (tmp_path / "constraints.txt").write_text("urllib3<3\n")
    (tmp_path / "requirements.txt").write_text(
        "--index-url https://pypi.org/simple\n"
        "-r base.txt\n"
        "Requests[socks]==2.32.3 \\\n"
        "    --hash=sha256:AAAA --hash=sha256:bbbb\n"
        'pywin32>=300; sys_platform == "win32"\n'
        "-e git+https://example.org/repo.git#egg=Local_Tool\n"
        "zope.interface @ https://example.org/zope.interface-6.0.tar.gz\n"
    )
    declared = parse_requirements(str(tmp_path / "requirements.txt"))
    assert set(declared.packages) == {"pyyaml", "requests", "pywin32", "local-tool",
                                      "zope-interface"}
    requests = declared.packages["requests"]
    assert requests.version == "2.32.3"
    assert requests.hashes == ["sha256:aaaa", "sha256:bbbb"]
    assert requests.sources == [f"{tmp_path / 'requirements.txt'}:3"]
    assert declared.packages["pyyaml"].sources == [f"{tmp_path / 'base.txt'}:1"]
    assert not declared.declares("pywin32")  # its marker excludes Linux
    assert declared.declares("PyYAML") and declared.declares("requests")
    assert "urllib3" not in declared.packages


def test_requirements_errors_name_file_and_line(tmp_path: Path) -> None:
    """A line that is not a requirement, or an include that does not exist, fails with file:line."""
    bad = tmp_path / "requirements.txt"
    bad.write_text("requests\nthis is not ! a requirement\n")
    with pytest.raises(DeclaredError, match=r"requirements.txt:2: not a requirement"):
        parse_requirements(str(bad))
    bad.write_text("-r missing.txt\n")
    with pytest.raises(DeclaredError, match=r"missing\.txt: cannot read"):
        parse_requirements(str(bad))


def test_requirements_include_cycle_terminates(tmp_path: Path) -> None:
    """Requirements files that include each other are each read once."""
    (tmp_path / "a.txt").write_text("-r b.txt\nrich\n")
    (tmp_path / "b.txt").write_text("-r a.txt\npsutil\n")
    assert set(parse_requirements(str(tmp_path / "a.txt")).packages) == {"rich", "psutil"}


def test_pyproject_of_this_project() -> None:
    """This project's own pyproject.toml declares its core and optional dependencies."""
    declared = parse_pyproject(str(ROOT / "pyproject.toml"))
    for name in ("pydantic", "wrapt", "cyclonedx-python-lib", "langchain-core", "pytest", "boto3"):
        assert declared.declares(name), name
    assert "agentguard" not in declared.packages  # "agentguard[langchain,...]" is itself
    assert declared.packages["pydantic"].sources[0].startswith(str(ROOT / "pyproject.toml") + ":")


def test_lock_files(tmp_path: Path) -> None:
    """uv.lock and poetry.lock declare every locked package with its version and hashes."""
    (tmp_path / "uv.lock").write_text(
        'version = 1\nrequires-python = ">=3.10"\n\n'
        '[[package]]\nname = "Rich"\nversion = "13.7.1"\nsource = { registry = "https://pypi.org/simple" }\n'
        'sdist = { url = "https://x/rich.tar.gz", hash = "sha256:9BE3", size = 1 }\n'
        'wheels = [{ url = "https://x/rich.whl", hash = "sha256:4edb", size = 1 }]\n\n'
        '[[package]]\nname = "psutil"\nversion = "5.9.8"\nsource = { registry = "https://pypi.org/simple" }\n'
    )
    (tmp_path / "poetry.lock").write_text(
        '[[package]]\nname = "numpy"\nversion = "2.0.0"\ndescription = ""\noptional = false\n'
        'python-versions = ">=3.9"\nfiles = [\n    {file = "numpy.whl", hash = "sha256:0123"},\n]\n'
    )
    uv = parse_uv_lock(str(tmp_path / "uv.lock"))
    assert uv.locked
    assert uv.packages["rich"].version == "13.7.1"
    assert uv.packages["rich"].hashes == ["sha256:9be3", "sha256:4edb"]
    assert uv.packages["rich"].sources == [f"{tmp_path / 'uv.lock'}:5"]
    assert uv.packages["psutil"].version == "5.9.8"
    poetry = parse_poetry_lock(str(tmp_path / "poetry.lock"))
    assert poetry.packages["numpy"].hashes == ["sha256:0123"]
    merged = load_declared([tmp_path / "uv.lock", tmp_path / "poetry.lock"])
    assert set(merged.packages) == {"rich", "psutil", "numpy"} and merged.locked


def test_models_allowlist_yaml_and_json(tmp_path: Path) -> None:
    """A models allow-list is read from YAML or JSON; hashes are normalised; unknown fields are
    refused with the file and the field named."""
    (tmp_path / "models.yaml").write_text(
        "models:\n  - id: anthropic.claude-3-haiku-*\n    provider: aws.bedrock\n"
        "  - path: '*/adapter.safetensors'\n    sha256: SHA256:ABCDEF\n    source: hf://org/adapter\n")
    allow = load_models_allowlist(str(tmp_path / "models.yaml"))
    assert allow.models[0].id == "anthropic.claude-3-haiku-*"
    assert allow.models[1].sha256 == "abcdef"
    (tmp_path / "models.json").write_text('[{"id": "gpt-4o", "sha": "x"}]')
    with pytest.raises(DeclaredError, match=r"models.json: invalid models allow-list: models.0.sha"):
        load_models_allowlist(str(tmp_path / "models.json"))


def test_numeric_digest_in_yaml_is_refused(tmp_path: Path) -> None:
    """An unquoted all-digit digest, which YAML reads as a number, is refused with advice to
    quote it rather than silently compared as a different value."""
    (tmp_path / "models.yaml").write_text(f"models:\n  - sha256: {'1' * 64}\n")
    with pytest.raises(DeclaredError, match=r"models\.0\.sha256: .*quote it in YAML"):
        load_models_allowlist(str(tmp_path / "models.yaml"))
