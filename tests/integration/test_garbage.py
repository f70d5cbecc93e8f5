"""A served request leaves no reference cycle behind: its objects go with their last reference,
not at the garbage collector's next pass. Each request used to leave two cycles (the request's
scope state and its telemetry pointing at each other; an exchange and the closer its
telemetry kept for it), some fifty objects a request: at a few hundred requests a second the
collector ran every half second and each pass held the event loop 5-11 ms — the p99.

The app runs in-process (Litestar's test client) over a real llama-server, so the collector
that is asked is the gateway's own."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.config import load_settings
from tests.support.processes import LlamaServer

CHAT = [{"role": "user", "content": "Name one colour."}]
#: The gateway's own per-request objects; none may be found only by the collector.
PER_REQUEST = {"RequestTelemetry", "Exchange", "ParsedRequest", "LimitState", "Lease"}


async def test_requests_leave_no_reference_cycles(backends: list[LlamaServer]) -> None:
    admin = {"Authorization": "Bearer admin-token"}
    settings = load_settings(
        {"backends": [backends[0].url], "admin_token": "admin-token"}, environ={}
    )
    async with AsyncTestClient(create_app(settings), timeout=120) as http:
        for _ in range(300):
            if (await http.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        created = await http.post("/admin/keys", json={"name": "cycles"}, headers=admin)
        secret = {"Authorization": f"Bearer {created.json()['key']}"}

        async def serve_some() -> None:
            chat = {"model": "smollm2", "messages": CHAT, "max_tokens": 3}
            asked = [
                ("/v1/chat/completions", chat),
                ("/v1/chat/completions", {**chat, "stream": True}),
                ("/v1/chat/completions", {**chat, "n": 2}),  # split over two slots
                ("/v1/messages", chat),  # Anthropic's
                ("/api/chat", {**chat, "stream": False, "options": {"num_predict": 3}}),
                (
                    "/api/generate",
                    {"model": "smollm2", "prompt": "Hi", "options": {"num_predict": 3}},
                ),
            ]
            for path, body in asked:
                answer = await http.post(path, json=body, headers=secret)
                assert answer.status_code == 200, (path, answer.text)

        await serve_some()  # first requests fill caches and pools, which are kept
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage
        try:
            await serve_some()
            await asyncio.sleep(0.5)  # the last settlements' round trips
            gc.collect()
            found = Counter(type(thing).__name__ for thing in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    left = {name: n for name, n in found.items() if name in PER_REQUEST}
    assert left == {}, f"per-request objects in reference cycles: {left}"
