"""Traced framework streams (LangChain chat streams, LangGraph graph streams): the operation is
current while the stream computes each item, and ends exactly once.

The operation opens when the caller first asks for an item (a stream never read leaves no open
span), in the context the stream was asked for in (:func:`opened_in`): a web handler that asks
for a stream inside ``agentguard.conversation()`` and hands it to its server to read after the
block keeps the stream in that conversation, under the request's span.

A stream ends its operation when it is exhausted, when it fails, or when the caller closes or
drops it early, or cancels the task reading it (abandoned). An exception thrown into the traced
stream at an item it handed out (``throw`` / ``athrow``; asyncio cancels a stream its loop is
shutting down this way) is thrown on into the framework's own stream, as it would be without
agentguard in between.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode

from agentguard import semconv
from agentguard._context import attach_context, current_context, detach_context
from agentguard._errors import internal_error
from agentguard._guard import Operation, cancelled

__all__ = ["PLAIN", "StreamWatch", "adrive", "asked_in", "drive", "mark_failed", "opened_in"]

T = TypeVar("T")


class StreamWatch:
    """What a traced stream does with the items it hands out and how it ends its operation.

    The defaults end it plainly; a subclass may keep what it saw (the chunks of a chat answer)
    and end the operation with it.
    """

    def observe(self, item: Any) -> None:
        """An item the caller is about to receive."""

    def complete(self, op: Operation) -> None:
        """The stream was read to its end."""
        op.end()

    def abandoned(self, op: Operation) -> None:
        """The caller closed or dropped the stream before its end."""
        op.abandon()

    def failed(self, op: Operation, exc: BaseException) -> None:
        """Reading the stream raised ``exc`` (it propagates to the caller unchanged)."""
        op.fail(exc)


PLAIN = StreamWatch()


def mark_failed(op: Operation, exc: BaseException) -> None:
    """Give ``op``'s span the error of ``exc`` as :meth:`Operation.fail` does (an ``exception``
    event with the captured message, error status, ``error.type``) without ending it, so the
    caller can end it with what the operation produced before the failure."""
    try:
        capture = op.guard.capture
        span = op.span
        span.add_event("exception", capture.exception(exc, escaped=True))
        span.set_status(Status(StatusCode.ERROR, capture.error_status(exc)))
        span.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
    except Exception as err:
        internal_error("span error", err)


def asked_in() -> object:
    """The context a stream is asked for in (call when the framework's stream method is called),
    for :func:`opened_in`."""
    return current_context()


def opened_in(context: object, start: Callable[[], T]) -> T:
    """Run ``start`` (which opens a stream's operation) in ``context``, from :func:`asked_in`:
    the conversation, turn and parent span are those of the code that asked for the stream, not
    of whatever reads it (a web server's response loop, after the handler's blocks ended)."""
    token = attach_context(context)  # type: ignore[arg-type]
    try:
        return start()
    finally:
        detach_context(token)


def _ended_by(watch: StreamWatch, op: Operation, exc: BaseException,
              forwarded: BaseException | None) -> None:
    # What the caller threw in and got back (asyncio cancelling a stream its loop left behind),
    # and the cancellation of the task reading the stream (a cancelled ``ainvoke``, a timeout,
    # a client that went away) end the stream on the caller's side: abandoned, not failed.
    if exc is forwarded or cancelled(exc):
        watch.abandoned(op)
    else:
        watch.failed(op, exc)


def drive(op: Operation, inner: Iterator[Any], watch: StreamWatch = PLAIN) -> Iterator[Any]:
    """Yield from ``inner`` with ``op`` current while it runs; ``watch`` sees each item and ends
    ``op`` once (use with ``yield from``, which passes ``throw`` and ``close`` on to here)."""
    finished = False
    thrown: BaseException | None = None
    forwarded: BaseException | None = None
    try:
        while True:
            token = op.activate()
            try:
                if thrown is None:
                    item = next(inner)
                else:
                    error, thrown = thrown, None
                    forwarded = error
                    throw = getattr(inner, "throw", None)
                    if throw is None:
                        raise error
                    item = throw(error)
            except StopIteration:
                finished = True
                break
            finally:
                op.deactivate(token)
            watch.observe(item)
            try:
                yield item
            except GeneratorExit:
                raise
            except BaseException as error:
                thrown = error
    except GeneratorExit:
        watch.abandoned(op)
        raise
    except BaseException as exc:
        _ended_by(watch, op, exc, forwarded)
        raise
    finally:
        if not finished:
            close = getattr(inner, "close", None)
            if close is not None:
                token = op.activate()
                try:
                    close()
                finally:
                    op.deactivate(token)
    watch.complete(op)


async def adrive(start: Callable[[], tuple[Operation | None, AsyncIterator[Any]]],
                 watch: StreamWatch = PLAIN) -> AsyncGenerator[Any, None]:
    """The async counterpart of :func:`drive`, and the whole traced stream: ``start`` opens the
    operation and the framework's stream when the caller first asks for an item (so a stream
    never read leaves no open span); ``None`` as the operation means pass through untraced.

    One generator between the caller and the framework's stream, forwarding what is thrown in:
    a second one in between would meet asyncio's cancellation of an abandoned stream first and
    turn it into ``aclose()`` for the framework's, which LangGraph does not expect there.
    """
    op, inner = start()
    if op is None:
        async for item in inner:
            yield item
        return
    finished = False
    thrown: BaseException | None = None
    forwarded: BaseException | None = None
    try:
        while True:
            token = op.activate()
            try:
                if thrown is None:
                    item = await inner.__anext__()
                else:
                    error, thrown = thrown, None
                    forwarded = error
                    athrow = getattr(inner, "athrow", None)
                    if athrow is None:
                        raise error
                    item = await athrow(error)
            except StopAsyncIteration:
                finished = True
                break
            finally:
                op.deactivate(token)
            watch.observe(item)
            try:
                yield item
            except GeneratorExit:
                raise
            except BaseException as error:
                thrown = error
    except GeneratorExit:
        watch.abandoned(op)
        raise
    except BaseException as exc:
        _ended_by(watch, op, exc, forwarded)
        raise
    finally:
        if not finished:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                token = op.activate()
                try:
                    await aclose()
                finally:
                    op.deactivate(token)
    watch.complete(op)
