"""Make trace files with OpenInference and OpenLLMetry instrumenting a real LangChain agent.

Run as ``python -m tests.baseline.make_traces DIR`` (instrumentors patch LangChain for the whole
process, so the tests run this in a child process). Writes ``openinference.jsonl`` and
``openllmetry.jsonl`` (OTLP/JSON lines), and ``openinference-pretty.json`` (one pretty-printed
document).
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.baseline.traces import write_otlp
from tests.baseline.workload import Workload, run_in_agent


def _record(instrumentor: object, conversations: int, seed: int) -> list[object]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)  # type: ignore[attr-defined]
    workload = Workload(seed)
    for n in range(conversations):
        run_in_agent(workload.conversation(), f"conv-{seed}-{n}")
    instrumentor.uninstrument()  # type: ignore[attr-defined]
    return list(exporter.get_finished_spans())


def main(directory: str) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    out = Path(directory)
    spans = _record(LangChainInstrumentor(), 40, seed=3)
    write_otlp(spans, out / "openinference.jsonl")
    few = _record(LangChainInstrumentor(), 3, seed=9)
    (out / "openinference-pretty.json").write_text(MessageToJson(encode_spans(few), indent=2))
    spans = _record(LangchainInstrumentor(), 15, seed=4)
    write_otlp(spans, out / "openllmetry.jsonl", collector=True)


if __name__ == "__main__":
    main(sys.argv[1])
