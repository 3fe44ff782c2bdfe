"""Proxies for botocore response streams: the caller sees the same objects, agentguard follows along.

An event stream (``ConverseStream``, ``InvokeModelWithResponseStream``, ``InvokeAgent``) is
wrapped in a ``wrapt`` proxy (``isinstance`` checks and every other attribute still reach the
real stream). Iterating it hands each event to a :class:`StreamFollower`, which ends the
operation once: when the stream is exhausted, when it fails, when it is closed, or when the
proxy is garbage collected before its end (abandoned). A follower may raise
:class:`~agentguard.ToolCallBlocked` from ``observe``; the event is then not handed out.

A non-streaming ``InvokeModel`` body is read in full by the integration and handed back as a
fresh body over the same bytes (:func:`buffered_body`, :func:`buffered_aio_body`).
"""

from __future__ import annotations

import functools
import io
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import wrapt

from agentguard._errors import internal_error
from agentguard.findings import ToolCallBlocked

__all__ = [
    "StreamFollower",
    "TracedAioEventStream",
    "TracedEventStream",
    "buffered_aio_body",
    "buffered_body",
]


class StreamFollower:
    """Watches one response stream and ends its operation exactly once."""

    __slots__ = ("broken", "done")

    def __init__(self) -> None:
        self.done = False
        # Set after an internal error while observing: later events are passed through unseen.
        self.broken = False

    # -- to implement ------------------------------------------------------------------------
    def observe(self, event: Any) -> None:
        """One event the caller is about to receive (may raise ToolCallBlocked)."""

    def complete(self) -> None:
        """The stream was read to its end."""

    def failed(self, exc: BaseException) -> None:
        """Reading the stream raised ``exc`` (it propagates to the caller unchanged)."""

    def abandoned(self) -> None:
        """The caller closed or dropped the stream before its end."""

    # -- called by the proxies ---------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        if self.done or self.broken:
            return
        try:
            self.observe(event)
        except ToolCallBlocked as blocked:
            self.on_error(blocked)
            raise
        except Exception as exc:
            self.broken = True
            internal_error("aws stream event", exc)

    def on_complete(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.complete()
        except Exception as exc:
            internal_error("aws stream end", exc)

    def on_error(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.failed(exc)
        except Exception as err:
            internal_error("aws stream failure", err)

    def on_abandon(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.abandoned()
        except Exception as exc:
            internal_error("aws stream abandon", exc)


class TracedEventStream(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """A botocore ``EventStream`` whose events a follower sees as the caller reads them."""

    def __init__(self, wrapped: Any, follower: StreamFollower) -> None:
        super().__init__(wrapped)
        self._self_follower = follower
        # Runs when the proxy is collected; does nothing if the stream already ended.
        weakref.finalize(self, follower.on_abandon)

    def __iter__(self) -> Iterator[Any]:
        # A generator method: while the caller holds the iterator, it holds the proxy too, so
        # the proxy is not collected (and the stream not taken as abandoned) mid-iteration.
        follower = self._self_follower
        try:
            for event in self.__wrapped__:
                follower.on_event(event)
                yield event
        except GeneratorExit:
            # The caller left the loop; botocore lets it iterate again later, so the stream is
            # abandoned only when it is closed or collected.
            raise
        except BaseException as exc:
            follower.on_error(exc)
            raise
        follower.on_complete()

    def close(self) -> None:
        self._self_follower.on_abandon()
        self.__wrapped__.close()


class TracedAioEventStream(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """An aiobotocore ``AioEventStream`` whose events a follower sees as the caller reads them."""

    def __init__(self, wrapped: Any, follower: StreamFollower) -> None:
        super().__init__(wrapped)
        self._self_follower = follower
        weakref.finalize(self, follower.on_abandon)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_events()

    async def _self_events(self) -> AsyncIterator[Any]:
        follower = self._self_follower
        try:
            async for event in self.__wrapped__:
                follower.on_event(event)
                yield event
        except GeneratorExit:
            raise
        except BaseException as exc:
            follower.on_error(exc)
            raise
        follower.on_complete()

    def close(self) -> None:
        self._self_follower.on_abandon()
        self.__wrapped__.close()


def buffered_body(data: bytes) -> Any:
    """A botocore ``StreamingBody`` over ``data`` (what the caller reads instead of the socket)."""
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


@functools.cache
def _aio_body_class() -> type:
    from aiobotocore.response import AioStreamingBodyBase as Base

    class BufferedAioBody(wrapt.ObjectProxy):  # type: ignore[type-arg]
        """The original aiobotocore body, its content served from memory."""

        # The base class's iteration helpers, run with the proxy as ``self``, so they read
        # through the buffered ``read`` below.
        readlines = Base.readlines
        iter_lines = Base.iter_lines
        iter_chunks = Base.iter_chunks
        __aiter__ = Base.__aiter__
        __anext__ = Base.__anext__
        anext = Base.__anext__

        def __init__(self, wrapped: Any, data: bytes) -> None:
            super().__init__(wrapped)
            self._self_buffer = io.BytesIO(data)

        async def read(self, amt: int | None = None) -> bytes:
            return self._self_buffer.read(-1 if amt is None else amt)

        async def readinto(self, b: bytearray) -> int:
            return self._self_buffer.readinto(b)

        def readable(self) -> bool:
            return True

        def tell(self) -> int:
            return self._self_buffer.tell()

        async def __aenter__(self) -> Any:
            return self

        async def __aexit__(self, *exc_info: Any) -> None:
            await self.__wrapped__.aclose()

    return BufferedAioBody


def buffered_aio_body(original: Any, data: bytes) -> Any:
    """``original`` (an aiobotocore body already read to its end) serving ``data`` again."""
    return _aio_body_class()(original, data)
