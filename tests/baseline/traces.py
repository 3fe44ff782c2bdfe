"""Writing finished spans as OTLP/JSON files, the way exporters and the Collector write them."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_otlp"]

_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
          "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _collector_form(document: dict[str, Any]) -> dict[str, Any]:
    """Protobuf's JSON mapping → the OTLP/JSON the Collector's file exporter writes: hex trace
    and span ids, enums as integers."""
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                if "kind" in span:
                    span["kind"] = _KINDS[span["kind"]]
                code = (span.get("status") or {}).get("code")
                if code is not None:
                    span["status"]["code"] = _STATUS[code]
    return document


def write_otlp(spans: Sequence[Any], path: Path, *, batch: int = 7, collector: bool = False,
               compress: bool = False) -> Path:
    """Write ``spans`` as OTLP/JSON lines, ``batch`` spans per line (a trace may straddle lines),
    encoded by the OTLP exporter's own encoder."""
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    lines = []
    for start in range(0, len(spans), batch):
        document = json.loads(MessageToJson(encode_spans(list(spans[start:start + batch])),
                                            indent=None))
        if collector:
            document = _collector_form(document)
        lines.append(json.dumps(document))
    data = ("\n".join(lines) + "\n").encode()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path
