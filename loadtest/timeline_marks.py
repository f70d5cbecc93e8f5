"""``python -m loadtest.timeline_marks serve …``: the gateway (``llama-gateway serve …``) with
a clock reading taken at each step of a request's path, for ``loadtest/timeline.py``.

The readings come from wrappers put around the gateway's own functions before it starts —
nothing in ``gateway/`` knows of them; together they add ~0.06 ms to a request at one
connection (wrk's p50, 1.08 → 1.145 ms against the plain gateway, 4 alternating rounds,
2026-12-04), a few µs each, as each adds a coroutine frame. They describe
one request at a time (a single ``current`` timeline), so they mean something only under one
connection sending one request after another. Every ``FLUSH_EVERY`` requests and when the
gateway exits, the timelines so far are appended to the file named by
``LLAMA_GATEWAY_TIMELINE``, a line per request: when it started (``time.perf_counter_ns()``,
the system's monotonic clock, which the driver reads too), then ``step:µs-since-the-start``
pairs.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

#: The steps in the order a request meets them, each with the reading that ends it.
STEPS = (
    ("start", "the edge is called (uvicorn has parsed the request's head)"),
    ("authorized", "the API key checked (its guard)"),
    ("body", "the body read"),
    ("parsed", "the body parsed into the request"),
    ("store_sent", "limits, routing and the lease asked for, the store called"),
    ("store_back", "the store's reply in: one round trip before the send"),
    ("upstream_sent", "the upstream request opened (headers and body handed to aiohttp)"),
    ("upstream_head", "the backend's status line and headers in"),
    ("upstream_body", "the backend's body read"),
    ("closing", "the answer read and decoded, the exchange closing"),
    ("settled", "the release and the settlement written to the store"),
    ("written", "the answer written to the client"),
    ("end", "the edge returns (the request's log line, its span)"),
)
FLUSH_EVERY = 500

current: list[tuple[str, int]] = []
done: list[list[tuple[str, int]]] = []


def mark(step: str) -> None:
    current.append((step, time.perf_counter_ns()))


def _flush() -> None:
    path = os.environ.get("LLAMA_GATEWAY_TIMELINE")
    if path is None:
        return
    with open(path, "a") as out:
        for timeline in done:
            first = timeline[0][1]
            steps = " ".join(f"{s}:{(t - first) / 1000:.1f}" for s, t in timeline)
            out.write(f"{first} {steps}\n")
    done.clear()


def _around(owner: Any, name: str, before: str | None, after: str | None) -> None:
    """Wrap the coroutine function ``owner.name`` with a reading before and after it."""
    inner: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(inner)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            mark(before)
        result = await inner(*args, **kwargs)
        if after is not None:
            mark(after)
        return result

    setattr(owner, name, wrapped)


def install() -> None:
    from gateway.api.edge import EdgeMiddleware
    from gateway.exchange import accounting, dispatch
    from gateway.surfaces import direct, proxy
    from gateway.upstream.client import BackendClient, UpstreamResponse

    edge_call = EdgeMiddleware.__call__

    async def edge(self: EdgeMiddleware, scope: Any, receive: Any, send: Any) -> None:
        current.clear()
        mark("start")
        try:
            await edge_call(self, scope, receive, send)
        finally:
            mark("end")
            if scope.get("method") == "POST":
                done.append(list(current))
                if len(done) >= FLUSH_EVERY:
                    _flush()

    EdgeMiddleware.__call__ = edge  # type: ignore[method-assign]
    _around(direct.DirectRoute, "authorize_connection", None, "authorized")
    _around(direct, "_body", None, "body")
    _around(proxy, "proxy", "parsed", None)
    _around(dispatch, "run", "store_sent", "store_back")  # (only _admit calls it there)
    _around(BackendClient, "open", "upstream_sent", "upstream_head")
    _around(UpstreamResponse, "read", None, "upstream_body")
    _around(dispatch.Dispatcher, "read_whole", None, "settled")
    _around(direct, "_whole", None, "written")
    close = accounting.Accountant.close

    def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("closing")
        return close(self, *args, **kwargs)

    accounting.Accountant.close = closing  # type: ignore[method-assign]
    atexit.register(_flush)


if __name__ == "__main__":
    install()
    from gateway.cli import main

    sys.argv[0] = "llama-gateway"
    sys.exit(main())
