"""Configuration: keyword arguments, then ``AGENTGUARD_*`` variables, then ``OTEL_*``, then defaults."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentguard._content import CaptureMode

__all__ = ["Config", "ConfigError", "Mode", "collector_target", "resolve_config"]

Mode = Literal["learn", "monitor", "enforce"]

# keyword → environment variable (all of them documented in the README's configuration table).
ENV_VARS: dict[str, str] = {
    "service_name": "AGENTGUARD_SERVICE_NAME",
    "mode": "AGENTGUARD_MODE",
    "exporter": "AGENTGUARD_EXPORTER",
    "otlp_endpoint": "AGENTGUARD_OTLP_ENDPOINT",
    "otlp_protocol": "AGENTGUARD_OTLP_PROTOCOL",
    "collector_endpoint": "AGENTGUARD_COLLECTOR_ENDPOINT",
    "capture_content": "AGENTGUARD_CAPTURE_CONTENT",
    "max_content_length": "AGENTGUARD_MAX_CONTENT_LENGTH",
    "integrations": "AGENTGUARD_INTEGRATIONS",
    "disabled_integrations": "AGENTGUARD_DISABLED_INTEGRATIONS",
    "findings_file": "AGENTGUARD_FINDINGS_FILE",
    "fail_closed": "AGENTGUARD_FAIL_CLOSED",
    "max_queue_size": "AGENTGUARD_MAX_QUEUE_SIZE",
    "export_timeout": "AGENTGUARD_EXPORT_TIMEOUT",
    "policy": "AGENTGUARD_POLICY",
    "on_block": "AGENTGUARD_ON_BLOCK",
    "on_policy_error": "AGENTGUARD_ON_POLICY_ERROR",
    "builtin_rules": "AGENTGUARD_BUILTIN_RULES",
    "disabled_rules": "AGENTGUARD_DISABLED_RULES",
    "injection_detection": "AGENTGUARD_INJECTION_DETECTION",
    "runtime_sensor": "AGENTGUARD_RUNTIME_SENSOR",
    "propagate_context": "AGENTGUARD_PROPAGATE_CONTEXT",
    "profile": "AGENTGUARD_PROFILE",
    "aibom_declared": "AGENTGUARD_AIBOM_DECLARED",
    "aibom_models": "AGENTGUARD_AIBOM_MODELS",
    "aibom_block": "AGENTGUARD_AIBOM_BLOCK",
}

_LIST_FIELDS = {"integrations", "disabled_integrations", "disabled_rules", "policy",
                "aibom_declared"}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the setting and where it came from."""


class Config(BaseModel):
    """The resolved settings of one ``instrument()`` call."""

    # Frozen: the Guard and the sensor read it on every event; a tool cannot switch parts off
    # by assigning to it.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    service_name: str = "agent"
    mode: Mode = "monitor"
    exporter: Any = "otlp"
    exporter_explicit: bool = False
    otlp_endpoint: str | None = None
    otlp_protocol: Literal["grpc", "http/protobuf"] = "http/protobuf"
    # The node's agentguard collector: spans go there too (or only there, when no OTLP endpoint
    # is configured). See collector_target() for how the URL picks gRPC or HTTP.
    collector_endpoint: str | None = None
    capture_content: CaptureMode = "redacted"
    max_content_length: int = Field(4096, ge=64, le=1 << 20)
    integrations: list[str] | None = None
    disabled_integrations: list[str] = Field(default_factory=list)
    findings_file: str | None = None
    fail_closed: bool = False
    max_queue_size: int = Field(4096, ge=16, le=1 << 20)
    export_timeout: float = Field(10.0, gt=0, le=300)
    on_finding: Callable[..., Any] | None = None
    # Policy files (paths), callables and policy objects, in the order they were given.
    policy: list[Any] = Field(default_factory=list)
    # A blocked LangChain tool call: the model gets an error tool message, or the caller an exception.
    on_block: Literal["tool_message", "raise"] = "tool_message"
    # A policy that raises: None means allow in learn/monitor and block in enforce.
    on_policy_error: Literal["allow", "block"] | None = None
    builtin_rules: bool = True
    disabled_rules: list[str] = Field(default_factory=list)
    injection_detection: bool = True
    runtime_sensor: bool = True
    propagate_context: bool = True
    profile: str | None = None
    # Runtime AI-BOM: declared dependency files and a models allow-list to diff against.
    aibom_declared: list[str] = Field(default_factory=list)
    aibom_models: str | None = None
    aibom_block: bool = False

    @field_validator("exporter")
    @classmethod
    def _check_exporter(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in ("otlp", "console", "none"):
                raise ValueError("must be 'otlp', 'console', 'none' or a SpanExporter instance")
            return value
        if callable(getattr(value, "export", None)) and callable(getattr(value, "shutdown", None)):
            return value
        raise ValueError("must be 'otlp', 'console', 'none' or a SpanExporter instance")


    def collector_target(self) -> tuple[Literal["grpc", "http/protobuf"], str, bool]:
        """(protocol, exporter endpoint, TLS) of ``collector_endpoint`` (which must be set)."""
        assert self.collector_endpoint is not None
        return collector_target(self.collector_endpoint)

    @field_validator("collector_endpoint")
    @classmethod
    def _check_collector_endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            collector_target(value)
        return value


def collector_target(endpoint: str) -> tuple[Literal["grpc", "http/protobuf"], str, bool]:
    """How to reach a collector endpoint: (protocol, exporter endpoint, TLS).

    ``grpc://`` and ``grpcs://`` mean OTLP/gRPC; so does port 4317 (the OTLP gRPC port, also when
    written ``http://host:4317`` as gRPC exporters accept). Anything else is OTLP/HTTP protobuf
    (port 4318 by default), with ``/v1/traces`` appended when no path is given.
    """
    from urllib.parse import urlsplit

    text = endpoint.strip()
    parts = urlsplit(text if "://" in text else "//" + text)
    scheme = parts.scheme.lower()
    if scheme not in ("", "http", "https", "grpc", "grpcs"):
        raise ValueError("must be http(s)://HOST[:PORT][/PATH], grpc(s)://HOST[:PORT] or HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    host = parts.hostname
    if not host:
        raise ValueError("names no host")
    secure = scheme in ("https", "grpcs")
    netloc = f"[{host}]" if ":" in host else host
    if scheme in ("grpc", "grpcs") or port == 4317:
        return "grpc", f"{'https' if secure else 'http'}://{netloc}:{port or 4317}", secure
    path = parts.path.rstrip("/") or "/v1/traces"
    return ("http/protobuf", f"{'https' if secure else 'http'}://{netloc}:{port or 4318}{path}",
            secure)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def resolve_config(kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge explicit keyword arguments over the environment and defaults, and validate the result."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, variable in ENV_VARS.items():
        raw = env.get(variable)
        if raw is not None and raw.strip() != "":
            values[name] = _split(raw) if name in _LIST_FIELDS else raw.strip()
            sources[name] = f"environment variable {variable}"
    # Standard OpenTelemetry variables come after agentguard's own.
    if "service_name" not in values and env.get("OTEL_SERVICE_NAME"):
        values["service_name"] = env["OTEL_SERVICE_NAME"]
        sources["service_name"] = "environment variable OTEL_SERVICE_NAME"
    if "exporter" not in values and env.get("OTEL_TRACES_EXPORTER"):
        first = _split(env["OTEL_TRACES_EXPORTER"])[:1]
        if first:
            values["exporter"] = first[0]
            sources["exporter"] = "environment variable OTEL_TRACES_EXPORTER"
    if "otlp_protocol" not in values:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            if env.get(variable):
                values["otlp_protocol"] = env[variable].strip()
                sources["otlp_protocol"] = f"environment variable {variable}"
                break
    for name, value in kwargs.items():
        if value is None:
            continue
        if name not in Config.model_fields or name == "exporter_explicit":
            raise ConfigError(f"instrument() got an unknown setting {name!r}")
        values[name] = value
        sources[name] = f"argument {name}="
    # OTEL_TRACES_EXPORTER usually accompanies the application's own OpenTelemetry set-up; only a
    # choice made for agentguard adds an exporter to a provider the application owns.
    values["exporter_explicit"] = "exporter" in values and \
        sources["exporter"] != "environment variable OTEL_TRACES_EXPORTER"
    try:
        return Config(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            origin = sources.get(field, "default")
            problems.append(f"{field} (from {origin}): {error['msg']}; got {error.get('input')!r}")
        raise ConfigError("invalid agentguard configuration: " + "; ".join(problems)) from None
