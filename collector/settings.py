"""Collector settings: command-line options over ``AGENTGUARD_COLLECTOR_*`` variables over a YAML
file over defaults. Errors name the setting and where its value came from (file and line)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["DEFAULT_FORWARD_QUEUE_BYTES", "DEFAULT_MAX_BATCH_BYTES", "CollectorSettings",
           "SettingsError", "default_db_path", "load_settings", "parse_hostport"]

ENV_PREFIX = "AGENTGUARD_COLLECTOR_"
_MIB = 1024 * 1024
# The forwarder's default bound on one export. OTLP receivers refuse a request above 4 MiB by
# default (gRPC's receive limit, kept by the OpenTelemetry Collector, Jaeger and this collector's
# own receiver); the headroom covers the gRPC frame and proxies that count more than the body.
DEFAULT_MAX_BATCH_BYTES = 4 * _MIB - 64 * 1024
# Serialized bytes of the requests waiting to be forwarded: what a backend outage may hold in
# memory (a parsed request takes two to four times its serialized size).
DEFAULT_FORWARD_QUEUE_BYTES = 64 * _MIB
_LIST_FIELDS = {"watch_pids", "policy"}


class SettingsError(ValueError):
    """A collector setting is invalid; the message names it and its source."""


def default_db_path() -> str:
    """``/var/lib/agentguard/collector.db`` for root, else under the user's state directory."""
    if os.geteuid() == 0:
        return "/var/lib/agentguard/collector.db"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(state, "agentguard", "collector.db")


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to a pair; ``ValueError`` naming the problem."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, int(port_text)


class CollectorSettings(BaseModel):
    """Everything ``agentguard collector run`` can be told."""

    model_config = ConfigDict(extra="forbid")

    db: str = Field(default_factory=default_db_path)
    # Listen addresses; "off" disables a transport. Loopback only unless told otherwise.
    otlp_grpc: str = "127.0.0.1:4317"
    otlp_http: str = "127.0.0.1:4318"
    # Required as "Authorization: Bearer <token>" on every OTLP request when set.
    token: str | None = None
    # Where enriched spans go: http(s)://host:port[/v1/traces] (OTLP/HTTP) or grpc://host:port.
    forward: str | None = None
    forward_queue: int = Field(2048, ge=1, le=1 << 20)
    # A request may be up to max_request_bytes, so a count alone bounds nothing.
    forward_queue_bytes: int = Field(DEFAULT_FORWARD_QUEUE_BYTES, ge=1024, le=16 * 1024 * _MIB)
    # Largest export sent onward: most OTLP receivers refuse more than 4 MiB.
    forward_max_batch_bytes: int = Field(DEFAULT_MAX_BATCH_BYTES, ge=1024, le=64 * _MIB)
    sensor: Literal["auto", "ebpf", "procfs", "none"] = "auto"
    bpftrace: str = "bpftrace"
    watch_pids: list[int] = Field(default_factory=list)
    watch_comm: str | None = None
    watch_cgroup: str | None = None
    # Processes the kernel program can watch at once (its watch map; each key 8 bytes of kernel
    # memory per map). A tree that keeps more alive leaves the rest unwatched, reported (AGK006).
    watch_map_size: int = Field(16384, ge=64, le=1 << 22)
    # Watch processes whose environment says they report to a collector (AGENTGUARD_* markers).
    discover: bool = True
    discover_interval: float = Field(1.0, gt=0, le=60)
    poll_interval: float = Field(0.2, gt=0, le=60)
    hold_seconds: float = Field(10.0, ge=0, le=600)
    max_request_bytes: int = Field(4 * _MIB, ge=1024, le=64 * _MIB)
    # Bytes of request bodies (after inflation) waiting for the core thread.
    max_queue_bytes: int = Field(32 * _MIB, ge=1024, le=16 * 1024 * _MIB)
    # An HTTP request (line, headers, body) must arrive whole within this of its first byte.
    request_timeout: float = Field(10.0, gt=0, le=600)
    # How long a stop may take to store what was accepted before it gives up and counts the rest.
    stop_timeout: float = Field(10.0, gt=0, le=3600)
    max_pending_events: int = Field(100_000, ge=100)
    queue_size: int = Field(65_536, ge=100)
    retention_days: float = Field(7.0, gt=0)
    max_events: int = Field(1_000_000, ge=1000)
    max_spans: int = Field(500_000, ge=1000)
    # Policy files / stages judged against kernel events (the library's own policy engine).
    policy: list[str] = Field(default_factory=list)
    builtin_rules: bool = True
    # A behavioural profile the library learned: kernel events are scored against it.
    profile: str | None = None
    # Where the collector's own counters go as OTLP metrics (same URL forms as forward).
    metrics: str | None = None
    metrics_interval: float = Field(10.0, gt=0)

    @field_validator("otlp_grpc", "otlp_http")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value.strip().lower() in ("off", "none", ""):
            return "off"
        parse_hostport(value)
        return value.strip()

    @field_validator("forward", "metrics")
    @classmethod
    def _check_forward(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://", "grpc://", "grpcs://")):
            raise ValueError("must start with http://, https://, grpc:// or grpcs://")
        return value.strip()

    @field_validator("watch_comm")
    @classmethod
    def _check_comm(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 15 or " " in value):
            raise ValueError("a process name (comm) is at most 15 characters without spaces")
        return value


def _yaml_with_lines(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read collector settings: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    lines = {key.value: key.start_mark.line + 1 for key, _ in node.value
             if isinstance(key, yaml.ScalarNode)}
    return {str(k).replace("-", "_"): v for k, v in data.items()}, \
        {k.replace("-", "_"): v for k, v in lines.items()}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> CollectorSettings:
    """Merge options (``overrides``, ``None`` meaning unset) over environment over YAML file."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        data, lines = _yaml_with_lines(path)
        for key, value in data.items():
            values[key] = value
            sources[key] = f"{path}:{lines.get(key, '?')}"
    for name in CollectorSettings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None or not raw.strip():
            continue
        values[name] = [item.strip() for item in raw.split(",") if item.strip()] \
            if name in _LIST_FIELDS else raw.strip()
        sources[name] = f"environment variable {ENV_PREFIX}{name.upper()}"
    for name, value in (overrides or {}).items():
        if value is None or (isinstance(value, list) and not value):
            continue
        values[name] = value
        sources[name] = f"option --{name.replace('_', '-')}"
    try:
        return CollectorSettings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            origin = sources.get(field, "default")
            message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{field} (from {origin}): {message}; got {error.get('input')!r}")
        raise SettingsError("invalid collector settings: " + "; ".join(problems)) from None
