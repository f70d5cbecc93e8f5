"""A client that goes away takes its request with it, streamed or not.

An ASGI server tells an app that its client left only through ``receive()`` — and once a
handler has read the body, nothing calls ``receive()`` again until a streamed answer starts.
So a request waiting in the fair queue, or a whole (non-streamed) answer being generated,
would keep its place and its slot for a client long gone. This middleware watches
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

__all__ = ["CLIENT_CLOSED", "DepartureMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DISCONNECT: Message = {"type": "http.disconnect"}
#: Seconds after the body was read before a task starts watching for the client's departure.
WATCH_AFTER = 0.05


class DepartureMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        departed = asyncio.Event()
        answering = False
        body_read = False
        watcher: asyncio.Task[None] | None = None
        waking: asyncio.TimerHandle | None = None
        handler = asyncio.current_task()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            departed.set()
            if not answering and handler is not None:
                handler.cancel()

        def start_watching() -> None:
            nonlocal watcher, waking
            if waking is not None:
                waking.cancel()
                waking = None
            if watcher is None:
                watcher = asyncio.get_running_loop().create_task(watch(), name="client-departure")

        async def app_receive() -> Message:
            nonlocal body_read, waking
            if body_read:  # the watcher reads the client from now on
                start_watching()
                await departed.wait()
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.disconnect":
                departed.set()
            elif not message.get("more_body", False):
                body_read = True
                waking = asyncio.get_running_loop().call_later(WATCH_AFTER, start_watching)
            return message

        async def app_send(message: Message) -> None:
            nonlocal answering
            if message["type"] == "http.response.start":
                answering = True
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except asyncio.CancelledError:
            if not departed.is_set():
                raise  # the server is shutting down: not ours to swallow
            _uncancel()
            telemetry = scope.get("state", {}).get("telemetry")
            if telemetry is not None:
                for close in list(telemetry.closers.values()):  # opened, never started
                    close()
                if telemetry.status is None:
                    telemetry.status = CLIENT_CLOSED
        finally:
            if waking is not None:
                waking.cancel()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _uncancel() -> None:
    """The handler's cancellation was this middleware's own: the request task goes on (to
    log the request), not cancelled."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
