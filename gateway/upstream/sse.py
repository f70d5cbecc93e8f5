"""Relay a backend's server-sent events to the client as they arrive.

The bytes pass through as the network delivers them, cut only at event boundaries; no event
is decoded except the few that carry ``"usage"`` (the last ones of a stream) or an error.
That is how the gateway accounts every stream without per-chunk JSON work, and how it drops
the usage chunk it asked for on behalf of a client that did not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.upstream.client import UpstreamResponse

_EVENT_END = b"\n\n"
_DONE = b"data: [DONE]"
#: Byte patterns of the events worth decoding; quotes inside generated text are escaped,
#: so these match JSON keys only.
_MARKERS = (b'"usage"', b'"error"', b'"finish_reason":"', _DONE)


class StreamOutcome:
    """What a relayed stream carried, filled in as it passes."""

    __slots__ = ("done", "error", "finish_reasons", "first_byte_at", "usage")

    def __init__(self) -> None:
        self.usage: dict[str, Any] | None = None
        self.finish_reasons: list[str] = []
        self.error: dict[str, Any] | None = None
        self.done = False  # saw ``data: [DONE]``
        self.first_byte_at: float | None = None


def error_event(error: GatewayError) -> bytes:
    body = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    return b"data: " + msgspec.json.encode(body) + _EVENT_END


async def relay(
    upstream: UpstreamResponse, outcome: StreamOutcome, *, drop_usage: bool, clock
) -> AsyncIterator[bytes]:
    """Yield the stream in pieces that each end on an event boundary; fill ``outcome``."""
    pending = b""
    try:
        async for chunk in upstream.chunks():
            if outcome.first_byte_at is None:
                outcome.first_byte_at = clock()
            pending += chunk
            end = pending.rfind(_EVENT_END)
            if end < 0:
                continue
            complete, pending = pending[: end + 2], pending[end + 2 :]
            if any(marker in complete for marker in _MARKERS):
                complete = _inspect(complete, outcome, drop_usage)
            if complete:
                yield complete
    except GatewayError as exc:
        # The client already has a 200 and part of the stream: end it with an error event.
        outcome.error = {"message": exc.message, "type": exc.type}
        yield error_event(exc)
        return
    if not outcome.done and outcome.error is None:
        lost = GatewayError(
            "The backend closed the stream before it was complete.", code="upstream_incomplete"
        )
        lost.type = "upstream_error"
        outcome.error = {"message": lost.message, "type": lost.type}
        yield error_event(lost)


def _inspect(events: bytes, outcome: StreamOutcome, drop_usage: bool) -> bytes:
    """Read the usage, finish reasons and errors out of the rare events that carry them."""
    kept: list[bytes] = []
    for event in events.split(_EVENT_END)[:-1]:
        if event.startswith(_DONE):
            outcome.done = True
            kept.append(event)
            continue
        if not event.startswith(b"data: {"):
            kept.append(event)
            continue
        try:
            data = msgspec.json.decode(event[6:])
        except msgspec.DecodeError:
            kept.append(event)
            continue
        if "error" in data:
            outcome.error = data["error"]
        for choice in data.get("choices") or ():
            if choice.get("finish_reason"):
                outcome.finish_reasons.append(choice["finish_reason"])
        if data.get("usage"):
            outcome.usage = data["usage"]
            if drop_usage and not data.get("choices"):
                continue  # the client did not ask for this chunk; the gateway did
        kept.append(event)
    return b"".join(e + _EVENT_END for e in kept)
