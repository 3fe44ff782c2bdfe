"""Bedrock at its edges through real botocore: streams that break mid-way, and Bedrock agents'
failure reasons under each content capture mode."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

import pytest
from botocore.exceptions import EventStreamError
from opentelemetry.trace import StatusCode

from agentguard.events import ModelCall
from tests.bedrock_server import AgentEvents, Reply, agent_chunk, agent_trace, event_message
from tests.genai import plain

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
_USER = [{"role": "user", "content": [{"text": "Summarise the ticket."}]}]
# A secret a Lambda action group's error quotes (the documented example key pair).
_KEY = "AKIAIOSFODNN7EXAMPLE"


def _responses(seen: list[Any]) -> list[ModelCall]:
    return [e for e in seen if isinstance(e, ModelCall) and e.phase == "response"]


def test_a_converse_stream_that_breaks_keeps_what_the_caller_read(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A throttling exception event mid-stream reaches the caller unchanged; the span fails with
    the AWS error code and still carries, and has the Guard judge, the answer read so far."""
    seen: list[Any] = []
    guarded(policy=lambda event: seen.append(event))
    bedrock.push(Reply("alpha beta gamma delta", fail_after=3,
                       exception="throttlingException"))
    stream = runtime().converse_stream(modelId=CLAUDE, messages=_USER)["stream"]
    received = []
    with pytest.raises(EventStreamError) as info:
        for event in stream:
            received.append(event)
    assert info.value.response["Error"]["Code"] == "throttlingException"
    assert len(received) == 3

    span = spans.one(f"chat {CLAUDE}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "EventStreamError"
    assert span.attributes["rpc.response.status_code"] == "throttlingException"
    assert [e.name for e in span.events] == ["exception"]
    assert plain(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": "alpha beta"}]
    responses = _responses(seen)
    assert len(responses) == 1 and responses[0].output[0].content == "alpha beta"


def test_an_invoke_model_stream_that_breaks_keeps_what_the_caller_read(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """InvokeModelWithResponseStream failing after some chunks fails its span with the error
    code and keeps the decoded text and usage read before the break."""
    guarded()
    bedrock.push(Reply("one two three four", fail_after=4, exception="modelStreamErrorException"))
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "count"}]})
    response = runtime().invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    with pytest.raises(EventStreamError):
        for _ in response["body"]:
            pass
    span = spans.one(f"chat {CLAUDE}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["rpc.response.status_code"] == "modelStreamErrorException"
    assert span.attributes["gen_ai.usage.input_tokens"] == 11
    assert plain(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": "one two"}]


def test_a_stream_that_breaks_before_any_answer_is_only_an_error(
        guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A stream broken before any answer arrived fails its span without an empty output."""
    guarded()
    bedrock.push(Reply("never sent", fail_after=0))
    stream = runtime().converse_stream(modelId=NOVA, messages=_USER)["stream"]
    with pytest.raises(EventStreamError):
        list(stream)
    span = spans.one(f"chat {NOVA}")
    assert span.status.status_code is StatusCode.ERROR
    assert "gen_ai.output.messages" not in span.attributes


def _failed_run(reason: str) -> AgentEvents:
    return AgentEvents([
        agent_trace(failureTrace={"traceId": "f-0", "failureReason": reason}),
        agent_chunk("Sorry, something went wrong."),
    ])


@pytest.mark.parametrize("mode", ["redacted", "hash", "none"])
def test_a_bedrock_agent_failure_reason_is_captured_as_content(
        mode: str, guarded: Any, spans: Any, bedrock: Any, runtime: Any) -> None:
    """A Bedrock agent's failure reason (a Lambda error quoting its input) is content: redacted
    by default, hashed or left out as capture_content says, never exported as it came."""
    guarded(capture_content=mode)
    reason = f"Lambda raised: could not connect with key {_KEY}"
    bedrock.push(_failed_run(reason))
    response = runtime("bedrock-agent-runtime").invoke_agent(
        agentId="AGENT1", agentAliasId="ALIAS1", sessionId="s-1", inputText="refund",
        enableTrace=True)
    list(response["completion"])
    root = spans.one("invoke_agent AGENT1")
    [failure] = [e for e in root.events if e.name == "agentguard.bedrock.failure"]
    assert failure.attributes["agentguard.bedrock.trace_id"] == "f-0"
    message = failure.attributes.get("message")
    assert _KEY not in str(message)
    if mode == "redacted":
        assert message is not None and message.startswith("Lambda raised: could not connect")
    elif mode == "hash":
        assert message is not None and message.startswith("sha256:")
    else:
        assert message is None


class _RawEndpoint:
    """An HTTP endpoint that answers every request with the bytes given, then leaves the
    connection hanging (``drop=False``: a model endpoint that stalls mid-response) or drops it
    (a connection reset mid-stream)."""

    def __init__(self, response: bytes, *, drop: bool = False) -> None:
        self._response = response
        self._drop = drop
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._connections: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._sock.accept()
                self._connections.append(connection)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(self._response)
                if self._drop:
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40,
            config=Config(read_timeout=0.5, retries={"total_max_attempts": 1}))

    def close(self) -> None:
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()
        self._sock.close()


def test_a_body_that_times_out_reaches_the_caller_with_its_own_exception_chain(
        guarded: Any, spans: Any) -> None:
    """An InvokeModel body that times out while agentguard reads it raises botocore's own
    ReadTimeoutError from invoke_model, chained to urllib3's error as botocore chains it, with no
    agentguard exception in its chain; the span fails."""
    from botocore.exceptions import ReadTimeoutError

    guarded()
    server = _RawEndpoint(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 400\r\nx-amzn-RequestId: stall-1\r\n\r\n"
                          b'{"content": [')
    try:
        client = server.client("bedrock-runtime")
        with pytest.raises(ReadTimeoutError) as info:
            client.invoke_model(modelId=CLAUDE, body=json.dumps({
                "anthropic_version": "bedrock-2023-05-31", "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}]}))
    finally:
        server.close()
    error = info.value
    assert not error.__suppress_context__
    assert type(error.__context__).__module__.startswith("urllib3")
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and len(chain) < 8:
        chain.append(link)
        link = link.__cause__ or link.__context__
    assert not any(type(e).__module__.startswith("agentguard") for e in chain)
    span = spans.one(f"chat {CLAUDE}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "ReadTimeoutError"


def test_an_agent_stream_cut_off_keeps_the_answer_the_caller_read(guarded: Any,
                                                                  spans: Any) -> None:
    """An InvokeAgent stream whose connection drops mid-answer raises the transport's error to
    the caller unchanged; the agent span fails and keeps the part of the answer that arrived."""
    from urllib3.exceptions import ProtocolError

    guarded()
    messages = [event_message("chunk", {"bytes": b"Refunded "}),
                event_message("chunk", {"bytes": b"order "})]
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\n"
            b"Transfer-Encoding: chunked\r\nx-amzn-RequestId: cut-1\r\n\r\n")
    body = b"".join(f"{len(m):x}\r\n".encode() + m + b"\r\n" for m in messages)
    server = _RawEndpoint(head + body, drop=True)
    received = []
    try:
        response = server.client("bedrock-agent-runtime").invoke_agent(
            agentId="AGENT1", agentAliasId="ALIAS1", sessionId="s-2", inputText="refund 42")
        with pytest.raises(ProtocolError):
            for event in response["completion"]:
                received.append(event["chunk"]["bytes"])
    finally:
        server.close()
    assert received == [b"Refunded ", b"order "]
    root = spans.one("invoke_agent AGENT1")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "ProtocolError"
    assert plain(root.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": "Refunded order "}]
