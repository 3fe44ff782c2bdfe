"""What every traced AWS call shares: the call's identity, its handler, response metadata."""

from __future__ import annotations

from typing import Any

from agentguard import semconv
from agentguard._guard import Guard

__all__ = ["CallInfo", "CallerError", "Handler", "error_code", "record_response", "response_metadata"]


class CallerError(Exception):
    """Raised by a handler's ``done`` for an error that belongs to the caller (re-raised as is,
    outside any ``except`` block of agentguard's, so its chain is the library's own)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class CallInfo:
    """One ``_make_api_call``: client, service, operation and the caller's parameters."""

    __slots__ = ("client", "operation", "params", "region", "service", "service_id")

    def __init__(self, client: Any, service: str, operation: str, params: dict[str, Any]
                 ) -> None:
        self.client = client
        self.service = service
        self.operation = operation
        self.params = params
        meta = client.meta
        self.region: str | None = meta.region_name
        self.service_id = str(getattr(meta.service_model, "service_id", service))

    def rpc_attributes(self) -> dict[str, Any]:
        """The OpenTelemetry RPC attributes of an AWS SDK call."""
        attrs: dict[str, Any] = {
            semconv.RPC_SYSTEM: semconv.RPC_SYSTEM_AWS,
            semconv.RPC_SERVICE: self.service_id,
            semconv.RPC_METHOD: self.operation,
        }
        if self.region:
            attrs[semconv.AWS_REGION] = self.region
            attrs[semconv.CLOUD_REGION] = self.region
        return attrs


class Handler:
    """Turns one kind of AWS call into agentguard operations.

    ``start`` opens the operation (before the request is sent) and returns a state whose ``op``
    the driver makes current around the call; ``done`` / ``adone`` see the parsed response (and
    may swap a body or stream for a traced one); ``error`` sees the call's exception.
    """

    # A Bedrock model invocation: silent while a LangChain chat span is already tracing it.
    model_call = False

    def takes(self, call: CallInfo) -> bool:
        """Whether this handler traces ``call``; otherwise it is an ordinary cloud call."""
        return True

    def start(self, guard: Guard, call: CallInfo) -> Any:
        raise NotImplementedError

    def done(self, state: Any, result: Any, asynchronous: bool) -> None:
        state.op.end()

    async def adone(self, state: Any, result: Any) -> None:
        self.done(state, result, True)

    def error(self, state: Any, exc: BaseException) -> None:
        op = state.op
        response = _error_response(exc)
        if response is not None:
            record_response(op.span, response)
            op.span.set_attribute(semconv.RPC_RESPONSE_STATUS_CODE, error_code(exc))
        op.fail(exc)


def _error_response(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) else None


def response_metadata(result: Any) -> tuple[int | None, str | None, dict[str, Any]]:
    """HTTP status, request id and the whole ``ResponseMetadata`` of a parsed response."""
    metadata = result.get("ResponseMetadata") if isinstance(result, dict) else None
    if not isinstance(metadata, dict):
        return None, None, {}
    request_id = metadata.get("RequestId")
    if not request_id:
        headers = metadata.get("HTTPHeaders")
        if isinstance(headers, dict):
            request_id = headers.get("x-amzn-requestid") or headers.get("x-amz-request-id")
    status = metadata.get("HTTPStatusCode")
    return (status if isinstance(status, int) else None,
            str(request_id) if request_id else None, metadata)


def record_response(span: Any, result: Any) -> None:
    """Write request id, HTTP status and retry count of a response (or error) onto ``span``."""
    status, request_id, metadata = response_metadata(result)
    if request_id:
        span.set_attribute(semconv.AWS_REQUEST_ID, request_id)
    if status is not None:
        span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)
    retries = metadata.get("RetryAttempts")
    if isinstance(retries, int) and retries:
        span.set_attribute(semconv.AG_CLOUD_RETRY_ATTEMPTS, retries)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``AccessDenied``), else the exception's type."""
    response = _error_response(exc)
    if response is not None:
        error = response.get("Error")
        if isinstance(error, dict) and error.get("Code"):
            return str(error["Code"])
    return type(exc).__qualname__
