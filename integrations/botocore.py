"""AWS through botocore: Bedrock model and agent calls, and every other AWS API call an agent makes.

Target: ``botocore.client.BaseClient._make_api_call`` (and aiobotocore's
``AioBaseClient._make_api_call``, which replaces it for async clients). Every generated client
method (``s3.put_object``, ``bedrock_runtime.converse``, ...) goes through it exactly once per
call, before retries, signing and parsing, so one wrapper sees each logical call once, with the
caller's own parameters, and sees its final outcome after botocore's retries.

* bedrock-runtime ``Converse``, ``ConverseStream``, ``InvokeModel``,
  ``InvokeModelWithResponseStream``: ``chat {model}`` spans, ``embeddings {model}`` for an
  embedding model, ``generate_content {model}`` for an image generation model
  (:mod:`._bedrock_runtime`). While a LangChain chat span is current (``ChatBedrockConverse`` /
  ``ChatBedrock`` calling boto3), they are that span's own request and produce nothing more.
  ``StartAsyncInvoke`` of a video generation model: ``generate_content {model}``, judged as a
  model call and as a cloud call (the S3 destination of the video).
* bedrock-agent-runtime ``InvokeAgent``, ``Retrieve``, ``RetrieveAndGenerate``: agent and
  retrieval spans, RETURN_CONTROL tool calls (:mod:`._bedrock_agent`).
* Every other call: a ``CloudCall`` event and an ``aws.{service}.{Operation}`` CLIENT span with
  the resource it touches (:mod:`._aws_resources`), judged before the request is sent; a block
  raises :class:`~agentguard.CloudCallBlocked` and nothing is sent.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from agentguard import _state, semconv
from agentguard._context import current_frame
from agentguard._errors import internal_error
from agentguard._guard import Guard, Operation
from agentguard.findings import CloudCallBlocked, ToolCallBlocked
from agentguard.integrations._aws_call import (
    CallerError,
    CallInfo,
    Handler,
    error_code,
    response_metadata,
)
from agentguard.integrations._aws_resources import (
    ResourceParam,
    extract_resources,
    register_resource_extractor,
    register_resource_params,
    safe_parameters,
)
from agentguard.integrations._base import Integration
from agentguard.integrations._bedrock_agent import HANDLERS as _AGENT_HANDLERS
from agentguard.integrations._bedrock_agent import pending_return_control
from agentguard.integrations._bedrock_runtime import HANDLERS as _RUNTIME_HANDLERS

__all__ = [
    "BotocoreIntegration",
    "ResourceParam",
    "register_resource_extractor",
    "register_resource_params",
]

# The frame key the LangChain integration sets while its chat span is current.
_SUPPRESS_CHAT = "chat"

_SUPPRESS_INSTRUMENTATION_KEY: str | None
try:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
except ImportError:  # pragma: no cover - moved in some future release
    _SUPPRESS_INSTRUMENTATION_KEY = None

_HANDLERS: dict[str, dict[str, Handler]] = {
    "bedrock-runtime": _RUNTIME_HANDLERS,
    "bedrock-agent-runtime": _AGENT_HANDLERS,
}


def _skip() -> bool:
    # Exporters and other instrumentations mark their own calls (an exporter that signs its
    # requests with botocore must not trace its own export).
    return _SUPPRESS_INSTRUMENTATION_KEY is not None and bool(
        otel_context.get_value(_SUPPRESS_INSTRUMENTATION_KEY))


def _call_info(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallInfo:
    operation = args[0] if args else kwargs["operation_name"]
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    return CallInfo(instance, instance.meta.service_model.service_name, str(operation),
                    params if isinstance(params, dict) else {})


def _handler(call: CallInfo) -> Handler | None:
    handlers = _HANDLERS.get(call.service)
    handler = handlers.get(call.operation) if handlers is not None else None
    if handler is None:
        return None
    try:
        return handler if handler.takes(call) else None
    except Exception as exc:
        internal_error(f"botocore {call.operation} handler", exc)
        return None


def _annotate_current(result: Any) -> None:
    """Give the LangChain chat span that owns this Bedrock call the AWS request id."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            _, request_id, _ = response_metadata(result)
            if request_id:
                span.set_attribute(semconv.AWS_REQUEST_ID, request_id)
    except Exception as exc:
        internal_error("botocore annotate", exc)


# -- cloud calls -----------------------------------------------------------------------------------

def _start_cloud(guard: Guard, call: CallInfo) -> Operation | None:
    try:
        resource, attrs = extract_resources(call.service, call.operation, call.params)
        attrs.update(call.rpc_attributes())
        return guard.start_cloud_call(
            call.service, call.operation, provider="aws", region=call.region, resource=resource,
            parameters=safe_parameters(call.params) if guard.has_stages else None,
            attributes=attrs)
    except CloudCallBlocked:
        raise
    except Exception as exc:
        internal_error("botocore cloud call start", exc)
        if guard.fails_closed:
            raise CloudCallBlocked(guard.internal_failure_finding(
                "cloud call start", exc, kind="cloud_call"),
                f"{call.service}.{call.operation}") from exc
        return None


def _end_cloud(op: Operation, result: Any) -> None:
    status, request_id, metadata = response_metadata(result)
    attrs: dict[str, Any] = {}
    retries = metadata.get("RetryAttempts")
    if isinstance(retries, int) and retries:
        attrs[semconv.AG_CLOUD_RETRY_ATTEMPTS] = retries
    headers = metadata.get("HTTPHeaders")
    if isinstance(headers, dict) and headers.get("x-amz-id-2"):
        attrs[semconv.AWS_EXTENDED_REQUEST_ID] = str(headers["x-amz-id-2"])
    op.end_cloud_call(status, request_id=request_id, attributes=attrs)


def _fail_cloud(op: Operation, exc: BaseException) -> None:
    response = getattr(exc, "response", None)
    status, request_id, metadata = response_metadata(response)
    code = error_code(exc)
    attrs: dict[str, Any] = {semconv.RPC_RESPONSE_STATUS_CODE: code} if response else {}
    retries = metadata.get("RetryAttempts")
    if isinstance(retries, int) and retries:
        attrs[semconv.AG_CLOUD_RETRY_ATTEMPTS] = retries
    op.end_cloud_call(status, request_id=request_id, error=code, exception=exc, attributes=attrs)


# -- the wrappers ----------------------------------------------------------------------------------

def _prepare(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> tuple[CallInfo, Handler | None, bool] | None:
    """The call, its handler and whether LangChain already traces it; ``None``: pass through."""
    if _skip():
        return None
    try:
        call = _call_info(instance, args, kwargs)
    except Exception as exc:
        internal_error("botocore call info", exc)
        return None
    handler = _handler(call)
    owned = handler is not None and handler.model_call and \
        _SUPPRESS_CHAT in current_frame().suppressed
    return call, handler, owned


def _start(guard: Guard, handler: Handler, call: CallInfo) -> Any:
    try:
        return handler.start(guard, call)
    except ToolCallBlocked:
        raise
    except Exception as exc:
        internal_error(f"botocore {call.operation} start", exc)
        return None


def _done_failed(state: Any, exc: Exception, where: str) -> None:
    internal_error(f"botocore {where} end", exc)
    if not state.op.ended:
        state.op.end()


def _api_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return wrapped(*args, **kwargs)
    prepared = _prepare(instance, args, kwargs)
    if prepared is None:
        return wrapped(*args, **kwargs)
    call, handler, owned = prepared
    if owned:  # a Bedrock model call a LangChain chat span is already tracing
        result = wrapped(*args, **kwargs)
        _annotate_current(result)
        return result
    if handler is None:
        return _cloud_call(guard, call, wrapped, args, kwargs)
    state = _start(guard, handler, call)
    if state is None:
        return wrapped(*args, **kwargs)
    token = state.op.activate()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        try:
            handler.error(state, exc)
        except Exception as err:
            _done_failed(state, err, call.operation)
        raise
    finally:
        state.op.deactivate(token)
    caller_error: BaseException | None = None
    try:
        handler.done(state, result, False)
    except CallerError as caller:
        caller_error = caller.error
    except ToolCallBlocked:
        raise
    except Exception as exc:
        _done_failed(state, exc, call.operation)
    if caller_error is not None:
        # Raised outside the handler above, so its chain stays botocore's own.
        raise caller_error
    return result


def _cloud_call(guard: Guard, call: CallInfo, wrapped: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    op = _start_cloud(guard, call)
    if op is None:
        return wrapped(*args, **kwargs)
    token = op.activate()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _fail_cloud(op, exc)
        raise
    finally:
        op.deactivate(token)
    _end_cloud(op, result)
    return result


async def _aio_api_call(wrapped: Any, instance: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
    guard = _state.guard
    if guard is None:
        return await wrapped(*args, **kwargs)
    prepared = _prepare(instance, args, kwargs)
    if prepared is None:
        return await wrapped(*args, **kwargs)
    call, handler, owned = prepared
    if owned:
        result = await wrapped(*args, **kwargs)
        _annotate_current(result)
        return result
    if handler is None:
        op = _start_cloud(guard, call)
        if op is None:
            return await wrapped(*args, **kwargs)
        token = op.activate()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _fail_cloud(op, exc)
            raise
        finally:
            op.deactivate(token)
        _end_cloud(op, result)
        return result
    state = _start(guard, handler, call)
    if state is None:
        return await wrapped(*args, **kwargs)
    token = state.op.activate()
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        try:
            handler.error(state, exc)
        except Exception as err:
            _done_failed(state, err, call.operation)
        raise
    finally:
        state.op.deactivate(token)
    caller_error: BaseException | None = None
    try:
        await handler.adone(state, result)
    except CallerError as caller:
        caller_error = caller.error
    except ToolCallBlocked:
        raise
    except Exception as exc:
        _done_failed(state, exc, call.operation)
    if caller_error is not None:
        raise caller_error
    return result


class BotocoreIntegration(Integration):
    """Every botocore (and aiobotocore) client call."""

    name = "botocore"
    targets = ("botocore.client", "aiobotocore.client")

    def patch_module(self, target: str, module: Any) -> None:
        if target == "botocore.client":
            self.wrap(module.BaseClient, "_make_api_call", _api_call)
        elif target == "aiobotocore.client":
            self.wrap(module.AioBaseClient, "_make_api_call", _aio_api_call)
        self.patched_modules.add(target)

    def _unpatch(self) -> None:
        super()._unpatch()
        # RETURN_CONTROL calls whose results never came back end with the integration.
        pending_return_control.clear()
