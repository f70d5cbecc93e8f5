"""A client that goes away takes its request with it, streamed or not.

An ASGI server tells an app that its client left only through ``receive()`` — and once a
handler has read the body, nothing calls ``receive()`` again until a streamed answer starts.
So a request waiting in the fair queue, or a whole (non-streamed) answer being generated,
would keep its place and its slot for a client long gone. A :class:`Departure` (one per
request that sends a body, made by the edge middleware, ``api/edge.py``) watches
``receive()`` for the client's departure from the moment the body is read; if the client
leaves before the answer has started, the handler is cancelled: a waiter leaves the queue, a
running request is aborted upstream (llama-server frees the slot), and the request is logged
and counted as 499. Once a streamed answer has started, the stream sees the departure itself
(Litestar's ``Stream`` listens for it) and ends the same way.

The watching starts :data:`WATCH_AFTER` seconds after the body was read (at once if the app
asks for the client itself): an answer that is out by then needs no watcher task at all,
and a client that leaves earlier is found out that much later — when nothing has been
generated for it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway.exchange.accounting import CLIENT_CLOSED
from gateway.telemetry.request import RequestTelemetry

__all__ = ["CLIENT_CLOSED", "WATCH_AFTER", "Departure", "watched"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

_DISCONNECT: Message = {"type": "http.disconnect"}
#: Seconds after the body was read before a task starts watching for the client's departure.
WATCH_AFTER = 0.05


def watched(method: str) -> bool:
    """Whether a request of ``method`` is watched: those that send a body (a GET or a HEAD
    holds no slot and takes no time worth cancelling)."""
    return method != "GET" and method != "HEAD"


class Departure:
    """One request's watch on its client: :meth:`receive` is the app's ``receive``; the edge
    calls :meth:`answering` when the answer starts, :meth:`absorb` when the handler was
    cancelled, and :meth:`stop` at the end."""

    __slots__ = (
        "_answering",
        "_body_read",
        "_handler",
        "_receive",
        "_waking",
        "_watcher",
        "departed",
    )

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._handler = asyncio.current_task()
        self._body_read = False
        self._answering = False
        self._watcher: asyncio.Task[None] | None = None
        self._waking: asyncio.TimerHandle | None = None
        #: Set once the client has gone.
        self.departed = asyncio.Event()

    async def receive(self) -> Message:
        if self._body_read:  # the watcher reads the client from now on
            self._start_watching()
            await self.departed.wait()
            return _DISCONNECT
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.departed.set()
        elif not message.get("more_body", False):
            self._body_read = True
            self._waking = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start_watching)
        return message

    def answering(self) -> None:
        """The answer has started: from now on a departure no longer cancels the handler
        (a stream sees it itself)."""
        self._answering = True

    def absorb(self, telemetry: RequestTelemetry | None) -> bool:
        """The handler was cancelled: if by this watch, the request goes on to be logged —
        what it opened is closed and it counts as 499 — and ``True``; ``False`` if the
        cancellation came from elsewhere (the server shutting down: not ours to swallow)."""
        if not self.departed.is_set():
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if telemetry is not None:
            for close in list(telemetry.closers.values()):  # opened, never started
                close()
            if telemetry.status is None:
                telemetry.status = CLIENT_CLOSED
        return True

    async def stop(self) -> None:
        if self._waking is not None:
            self._waking.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def _start_watching(self) -> None:
        if self._waking is not None:
            self._waking.cancel()
            self._waking = None
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="client-departure"
            )

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.departed.set()
        if not self._answering and self._handler is not None:
            self._handler.cancel()
