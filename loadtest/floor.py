"""The framework floor: the gateway's HTTP stack (Litestar on uvicorn with uvloop and
httptools, one pooled aiohttp session) relaying a request to the same upstream with nothing
else — no auth, limits, leases, routing, metrics or traces. What it sustains on one core is
the ceiling any gateway built on this stack can reach there; the overhead scenario measures it
beside the gateway.

``python -m loadtest.floor --port P --upstream URL``
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn
from litestar import Litestar, Request, Response, get, post


def app(upstream: str) -> Litestar:
    session: dict[str, aiohttp.ClientSession] = {}

    async def start() -> None:
        session["upstream"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop() -> None:
        await session["upstream"].close()

    @post("/v1/chat/completions", status_code=200)
    async def relay(request: Request) -> Response:
        async with session["upstream"].post(
            f"{upstream}/v1/chat/completions",
            data=await request.body(),
            headers={"Content-Type": "application/json"},
        ) as answer:
            body = await answer.read()
        return Response(body, status_code=answer.status, media_type="application/json")

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
