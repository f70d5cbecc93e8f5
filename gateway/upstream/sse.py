"""Relay a backend's server-sent events to the client as they arrive.

The bytes pass through as the network delivers them, cut only at event boundaries; no event
is decoded except the few that carry usage, the end of the answer or an error — which ones,
the answer's format says (``formats.py``). That is how the gateway accounts every stream
without per-chunk JSON work, and how it drops the usage chunk it asked for on behalf of a
client that did not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from gateway.errors import GatewayError
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.formats import AnswerFormat, StreamOutcome

__all__ = ["StreamOutcome", "relay"]

_EVENT_END = b"\n\n"


async def relay(
    upstream: UpstreamResponse,
    outcome: StreamOutcome,
    *,
    drop_usage: bool,
    clock: Callable[[], float],
    answer_format: AnswerFormat | None = None,
    model: str = "",
) -> AsyncIterator[bytes]:
    """Yield the stream in pieces that each end on an event boundary; fill ``outcome``.
    ``model``: the model the client asked for, should the format need to write it."""
    fmt = answer_format or AnswerFormat()
    markers = fmt.markers
    pending = b""
    opened = False
    try:
        async for chunk in upstream.chunks():
            if outcome.first_byte_at is None:
                outcome.first_byte_at = clock()
            pending += chunk
            end = pending.rfind(_EVENT_END)
            if end < 0:
                continue
            complete, pending = pending[: end + 2], pending[end + 2 :]
            outcome.events += complete.count(_EVENT_END)
            if any(marker in complete for marker in markers):
                complete = _inspect(complete, outcome, drop_usage, fmt)
            if complete:
                if not opened:
                    opened = True
                    complete = fmt.opening(complete, model)
                yield complete
    except GatewayError as exc:
        # The client already has a 200 and part of the stream: end it with an error event.
        outcome.error = {"message": exc.message, "type": exc.type}
        yield fmt.error_event(exc.message, exc.type, exc.code)
        return
    if not outcome.done and outcome.error is None:
        message = "The backend closed the stream before it was complete."
        outcome.error = {"message": message, "type": "upstream_error"}
        yield fmt.error_event(message, "upstream_error", "upstream_incomplete")


def _inspect(events: bytes, outcome: StreamOutcome, drop_usage: bool, fmt: AnswerFormat) -> bytes:
    """Read the usage, finish reasons and errors out of the rare events that carry them."""
    kept: list[bytes] = []
    for event in events.split(_EVENT_END)[:-1]:
        name, data = _fields(event)
        if data is None or fmt.inspect(name, data, outcome, drop_usage):
            kept.append(event)
    return b"".join(e + _EVENT_END for e in kept)


def _fields(event: bytes) -> tuple[bytes | None, bytes | None]:
    """An event's ``event:`` name and ``data:`` payload (one data line, as llama-server
    writes them)."""
    name = data = None
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].lstrip()
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, data
