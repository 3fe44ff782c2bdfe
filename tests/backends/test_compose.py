"""The Jaeger and Tempo compose files under deploy/compose/ are valid Compose files, and what
docs/backends.md tells users to set (OTLP endpoints, collector forwarding, UI addresses, Phoenix
settings) agrees with the ports and configuration those files and the Phoenix test really use."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from agentguard.collector.settings import CollectorSettings
from tests.backends.phoenix import PHOENIX_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "backends.md"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILES = {"Jaeger": "jaeger.yaml", "Grafana Tempo": "tempo.yaml"}
# Jaeger's fixed ports: UI and query API, OTLP/gRPC, OTLP/HTTP (with COLLECTOR_OTLP_ENABLED).
JAEGER_PORTS = {"ui": 16686, "grpc": 4317, "http": 4318}
GRAFANA_PORT = 3000
LOOPBACK_URL = re.compile(r"(?:https?|grpcs?)://(?:127\.0\.0\.1|localhost):\d+[^\s'`\"),]*")


@dataclass(frozen=True)
class Published:
    """One published port of a compose service."""

    service: str
    host_ip: str | None
    host_port: int
    container_port: int


def _load_compose(path: Path) -> dict[str, Any]:
    """A compose file, validated against the Compose specification, as plain data."""
    compose = PyCompose.from_yaml(path.read_text())
    compose.validate()
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _published(compose: dict[str, Any]) -> dict[int, Published]:
    """Host port → what it publishes, over every service."""
    found: dict[int, Published] = {}
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            parts = str(entry).split("/")[0].split(":")
            container = int(parts[-1])
            host = int(parts[-2]) if len(parts) >= 2 else container
            host_ip = parts[-3] if len(parts) == 3 else None
            assert host not in found, f"host port {host} published twice"
            found[host] = Published(name, host_ip, host, container)
    return found


def _tempo_config(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Tempo service's name and its configuration file (the one it is started with)."""
    (name,) = [n for n, s in compose["services"].items()
               if s["image"].startswith("grafana/tempo") and "command" in s]
    service = compose["services"][name]
    (flag,) = [arg for arg in service["command"] if arg.startswith("-config.file=")]
    target = flag.split("=", 1)[1]
    (source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    config: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / source).read_text())
    return name, config


def _served_ports(compose: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Service name → the container ports it serves, by purpose (ui, grpc, http, api)."""
    served: dict[str, dict[str, int]] = {}
    for name, service in compose["services"].items():
        image = service["image"]
        if image.startswith("jaegertracing/"):
            assert service["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
            served[name] = dict(JAEGER_PORTS)
        elif image.startswith("grafana/grafana"):
            served[name] = {"ui": GRAFANA_PORT}
    if any(s["image"].startswith("grafana/tempo") for s in compose["services"].values()):
        name, config = _tempo_config(compose)
        protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
        served[name] = {
            "api": int(config["server"]["http_listen_port"]),
            **{protocol: int(protocols[protocol]["endpoint"].rsplit(":", 1)[1])
               for protocol in ("grpc", "http")},
        }
        for protocol in ("grpc", "http"):
            # Inside the container it must listen on every interface, or the published port
            # reaches nothing (Tempo's receivers default to localhost).
            assert protocols[protocol]["endpoint"].startswith("0.0.0.0:")
    return served


def _sections(doc: str) -> dict[str, str]:
    """``## Heading`` → its text."""
    parts = re.split(r"^## (.+)$", doc, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _code(section: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.DOTALL))


def _endpoint_settings(text: str) -> list[tuple[str, str, str]]:
    """(what, protocol, URL) for each OTLP endpoint the text tells the user to set or forward to."""
    found: list[tuple[str, str, str]] = []
    for line in _code(text).splitlines():
        grpc = "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in line
        for url in re.findall(r"OTEL_EXPORTER_OTLP_ENDPOINT=(\S+)", line):
            found.append(("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc" if grpc else "http", url))
        for url in re.findall(r"--forward[ =](\S+)", line):
            found.append(("--forward", "grpc" if url.startswith("grpc") else "http", url))
    return found


def _port(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None, url
    return port


def _check_compose_section(title: str, section: str, compose_file: str) -> list[str]:
    problems: list[str] = []
    if f"docker compose -f deploy/compose/{compose_file} up" not in section:
        problems.append(f"{title}: no 'docker compose -f deploy/compose/{compose_file} up'")
    compose = _load_compose(COMPOSE_DIR / compose_file)
    published = _published(compose)
    served = _served_ports(compose)
    for host, entry in published.items():
        if entry.host_ip != "127.0.0.1":
            problems.append(f"{title}: port {host} is published beyond loopback")
    settings = _endpoint_settings(section)
    if {protocol for _, protocol, _ in settings} != {"grpc", "http"} or \
            not any(what == "--forward" for what, _, _ in settings):
        problems.append(f"{title}: expected HTTP and gRPC endpoints and a --forward, got {settings}")
    for what, protocol, url in settings:
        target = published.get(_port(url))
        if target is None:
            problems.append(f"{title}: {what}={url}: port not published by {compose_file}")
        elif served.get(target.service, {}).get(protocol) != target.container_port:
            problems.append(f"{title}: {what}={url} reaches {target.service}:"
                            f"{target.container_port}, not its OTLP/{protocol} port")
        if what == "--forward" and urllib.parse.urlsplit(url).path not in ("", "/v1/traces"):
            problems.append(f"{title}: --forward {url}: the OTLP/HTTP path is /v1/traces")
    for url in LOOPBACK_URL.findall(section):
        target = published.get(_port(url))
        if target is None or target.container_port not in served.get(target.service, {}).values():
            problems.append(f"{title}: {url} is no port {compose_file} publishes for a service")
    return problems


def _check_phoenix_section(section: str) -> list[str]:
    problems: list[str] = []
    code = _code(section)
    settings = dict(re.findall(r"\b(PHOENIX_[A-Z_]+)=(\S+)", code))
    for key, value in PHOENIX_ENVIRONMENT.items():
        if settings.get(key) != value:
            problems.append(f"Phoenix: {key}={settings.get(key)!r}, the tests run with {value!r}")
    if settings.get("PHOENIX_HOST") != "127.0.0.1":
        problems.append("Phoenix: PHOENIX_HOST is not loopback")
    http_port = int(settings.get("PHOENIX_PORT", 6006))
    grpc_port = int(settings.get("PHOENIX_GRPC_PORT", 4317))
    collector_ports = {int(CollectorSettings.model_fields[name].default.rsplit(":", 1)[1])
                       for name in ("otlp_grpc", "otlp_http")}
    if grpc_port in collector_ports or http_port in collector_ports:
        problems.append(f"Phoenix: ports {http_port}/{grpc_port} collide with the collector's")
    endpoints = _endpoint_settings(section)
    if {protocol for _, protocol, _ in endpoints} != {"grpc", "http"}:
        problems.append(f"Phoenix: expected HTTP and gRPC endpoints, got {endpoints}")
    for what, protocol, url in endpoints:
        expected = grpc_port if protocol == "grpc" else http_port
        if _port(url) != expected:
            problems.append(f"Phoenix: {what}={url}: OTLP/{protocol} is on port {expected}")
        if what == "--forward" and urllib.parse.urlsplit(url).path != "/v1/traces":
            problems.append(f"Phoenix: --forward {url}: Phoenix takes OTLP/HTTP at /v1/traces")
    projects = re.findall(r"openinference\.project\.name=(\S+)", code)
    queries = re.findall(r"https?://[^/\s]+/v1/projects/([^/]+)/spans", code)
    if not projects or not queries or set(queries) != set(projects):
        problems.append(f"Phoenix: the REST example reads {queries}, the project set is {projects}")
    for url in LOOPBACK_URL.findall(section):
        if _port(url) not in (http_port, grpc_port):
            problems.append(f"Phoenix: {url} is on neither Phoenix port")
    return problems


def problems(doc: str) -> list[str]:
    """Every disagreement between the page and the files and settings it describes."""
    sections = _sections(doc)
    found: list[str] = []
    for title, compose_file in COMPOSE_FILES.items():
        if title not in sections:
            found.append(f"no '## {title}' section")
            continue
        found += _check_compose_section(title, sections[title], compose_file)
    if "Phoenix" not in sections:
        found.append("no '## Phoenix' section")
    else:
        found += _check_phoenix_section(sections["Phoenix"])
    # The opening examples hold for both compose files, and reach the collector's default port.
    intro = sections.get("Two ways in", "")
    for compose_file in COMPOSE_FILES.values():
        published = _published(_load_compose(COMPOSE_DIR / compose_file))
        served = _served_ports(_load_compose(COMPOSE_DIR / compose_file))
        for what, protocol, url in _endpoint_settings(intro):
            target = published.get(_port(url))
            if target is None or served.get(target.service, {}).get(protocol) != \
                    target.container_port:
                found.append(f"Two ways in: {what}={url} does not reach {compose_file}'s OTLP")
    collector_http = CollectorSettings.model_fields["otlp_http"].default.rsplit(":", 1)[1]
    if f"AGENTGUARD_COLLECTOR_ENDPOINT=http://127.0.0.1:{collector_http}" not in intro:
        found.append("Two ways in: the collector endpoint is not its default OTLP/HTTP listener")
    return found


def test_compose_files_are_valid_compose() -> None:
    """Every compose file under deploy/ parses and validates against the Compose specification."""
    for path in [*sorted(COMPOSE_DIR.glob("*.yaml")), ROOT / "deploy" / "docker-compose.yaml"]:
        data = yaml.safe_load(path.read_text())
        if "services" not in data:
            continue  # Tempo's own configuration and Grafana's data source, not compose files.
        _load_compose(path)
    assert {"jaeger.yaml", "tempo.yaml"} <= {p.name for p in COMPOSE_DIR.glob("*.yaml")}


def test_a_broken_compose_file_is_caught() -> None:
    """A misspelt key or a malformed port mapping fails validation (the check can fail)."""
    good = (COMPOSE_DIR / "jaeger.yaml").read_text()
    for broken in (good.replace("    ports:", "    port:"),
                   good.replace('"127.0.0.1:14318:4318"', '"127.0.0.1:14318:otlp"')):
        assert broken != good
        with pytest.raises(ValueError):
            PyCompose.from_yaml(broken).validate()


def test_docs_agree_with_the_compose_files_and_phoenix_settings() -> None:
    """Each endpoint, forward target and UI address docs/backends.md gives is published by the
    compose file for that purpose, and its Phoenix settings are the ones the Phoenix test uses."""
    assert problems(DOC.read_text()) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("--forward http://127.0.0.1:14318\n```\n\nOpen", "--forward http://127.0.0.1:14319\n```\n\nOpen",
     "Jaeger: --forward=http://127.0.0.1:14319: port not published"),
    ("Grafana is at `http://localhost:3000`", "Grafana is at `http://localhost:3001`",
     "Grafana Tempo: http://localhost:3001 is no port"),
    ("PHOENIX_TELEMETRY_ENABLED=false", "PHOENIX_TELEMETRY_ENABLED=true",
     "Phoenix: PHOENIX_TELEMETRY_ENABLED='true'"),
    ("--forward http://127.0.0.1:6006/v1/traces", "--forward http://127.0.0.1:6006/traces",
     "Phoenix: --forward http://127.0.0.1:6006/traces"),
    ("PHOENIX_GRPC_PORT=14317", "PHOENIX_GRPC_PORT=4317", "collide with the collector's"),
])
def test_a_page_that_disagrees_is_caught(old: str, new: str, expected: str) -> None:
    """Changing a port, a path or a Phoenix setting on the page alone is reported (the check
    can fail)."""
    doc = DOC.read_text()
    assert old in doc
    reported = problems(doc.replace(old, new))
    assert any(expected in problem for problem in reported), reported


def test_grpc_endpoint_on_the_http_port_is_caught() -> None:
    """Telling users to send OTLP/gRPC to a backend's OTLP/HTTP port is reported."""
    doc = DOC.read_text()
    old = "OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14317"
    assert doc.count(old) >= 2
    reported = problems(doc.replace(old, old.replace("14317", "14318")))
    assert any("Jaeger" in p and "not its OTLP/grpc port" in p for p in reported), reported
    assert any("Grafana Tempo" in p and "not its OTLP/grpc port" in p for p in reported), reported


def test_tempo_storage_volume_and_grafana_data_source_agree() -> None:
    """Tempo keeps its data in the volume the init step hands to its user, and Grafana's
    provisioned data source points at Tempo's service and API port."""
    compose = _load_compose(COMPOSE_DIR / "tempo.yaml")
    services = compose["services"]
    name, config = _tempo_config(compose)
    tempo = services[name]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in tempo["volumes"]}
    volume_root = next(target for target, source in mounts.items() if source in compose["volumes"])
    storage = config["storage"]["trace"]
    assert storage["backend"] == "local"
    for path in (storage["wal"]["path"], storage["local"]["path"]):
        assert path.startswith(volume_root + "/"), path
    (init,) = [s for s in services.values() if s.get("entrypoint", [None])[0] == "chown"]
    assert init["image"] == tempo["image"]
    assert init["entrypoint"][-1] == volume_root
    assert any(v == f"{mounts[volume_root]}:{volume_root}" for v in init["volumes"])
    assert tempo["depends_on"]["tempo-init"]["condition"] == "service_completed_successfully"

    (grafana,) = [s for s in services.values() if s["image"].startswith("grafana/grafana")]
    (mount,) = [v for v in grafana["volumes"] if ":/etc/grafana/provisioning/datasources/" in v]
    datasources = yaml.safe_load((COMPOSE_DIR / mount.split(":")[0]).read_text())["datasources"]
    (source,) = [d for d in datasources if d["type"] == "tempo"]
    url = urllib.parse.urlsplit(source["url"])
    assert url.hostname == name and url.port == config["server"]["http_listen_port"]


def test_jaeger_files_share_one_port_scheme() -> None:
    """deploy/compose/jaeger.yaml and deploy/docker-compose.yaml run the same Jaeger on the same
    ports, and that file's collector forwards to the OTLP/HTTP port its Jaeger publishes."""
    alone = _load_compose(COMPOSE_DIR / "jaeger.yaml")
    stack = _load_compose(ROOT / "deploy" / "docker-compose.yaml")
    assert alone["services"]["jaeger"]["image"] == stack["services"]["jaeger"]["image"]

    def mapping(compose: dict[str, Any]) -> set[tuple[int, int]]:
        return {(p.host_port, p.container_port) for p in _published(compose).values()}

    assert mapping(alone) == mapping(stack)
    (forward,) = [a.split("=", 1)[1] for a in stack["services"]["collector"]["command"]
                  if a.startswith("--forward=")]
    target = _published(stack)[_port(forward)]
    assert (target.service, target.container_port) == ("jaeger", JAEGER_PORTS["http"])


def test_readme_backend_commands_match_the_compose_files() -> None:
    """Where the README starts a compose file, the addresses on that line are ports the file
    publishes, and the OTLP endpoints in the same block reach each started backend's OTLP port."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.DOTALL)
              if "docker compose -f deploy/compose/" in b]
    assert blocks, "the README starts no compose file"
    for block in blocks:
        started = re.findall(r"docker compose -f deploy/compose/(\S+\.yaml) up", block)
        composes = {name: _load_compose(COMPOSE_DIR / name) for name in started}
        for line in block.splitlines():
            for name in re.findall(r"docker compose -f deploy/compose/(\S+\.yaml) up", line):
                published, served = _published(composes[name]), _served_ports(composes[name])
                for url in LOOPBACK_URL.findall(line):
                    target = published.get(_port(url))
                    assert target is not None, f"README: {url} is not published by {name}"
                    assert target.container_port in served[target.service].values()
        for what, protocol, url in _endpoint_settings(f"```\n{block}```"):
            for name, compose in composes.items():
                target = _published(compose).get(_port(url))
                assert target is not None and \
                    _served_ports(compose)[target.service][protocol] == target.container_port, \
                    f"README: {what}={url} does not reach {name}'s OTLP/{protocol}"
