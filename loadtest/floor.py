"""The framework floor: the gateway's HTTP stack (Litestar on uvicorn with uvloop and
httptools, one pooled aiohttp session) relaying a request — whole, or streamed chunk by
chunk — to the same upstream with nothing else: no auth, limits, leases, routing, metrics or
traces. What it sustains on one core is the ceiling any gateway built on this stack can reach
there, and the latency it adds is the cost of the one extra hop; the overhead scenario
measures it beside the gateway.

``python -m loadtest.floor --port P --upstream URL``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream


def app(upstream: str) -> Litestar:
    session: dict[str, aiohttp.ClientSession] = {}

    async def start() -> None:
        session["upstream"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop() -> None:
        await session["upstream"].close()

    def send(body: bytes):
        return session["upstream"].post(
            f"{upstream}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )

    async def chunks(body: bytes) -> AsyncIterator[bytes]:
        async with send(body) as answer:
            async for chunk in answer.content.iter_any():
                yield chunk

    @post("/v1/chat/completions", status_code=200)
    async def relay(request: Request) -> Response | Stream:
        body = await request.body()
        if msgspec.json.decode(body).get("stream"):
            return Stream(chunks(body), media_type="text/event-stream")
        async with send(body) as answer:
            whole = await answer.read()
        return Response(whole, status_code=answer.status, media_type="application/json")

    @get("/health")
    async def health() -> str:
        return "ok"

    return Litestar([relay, health], on_startup=[start], on_shutdown=[stop])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        app(args.upstream.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
