"""``python -m loadtest.profile_closed_loop``: one gateway on ``redis://`` in front of the
emulator, pinned to its core, under a closed loop of 16 connections; prints the requests per
second and py-spy's shares (by area, and the top functions by self time). A quicker look than
``make bench`` at where one request's CPU goes (py-spy must be installed)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp

from loadtest import profile
from loadtest.procs import Emulator, Gateway, RedisServer

BODY = {"model": "emulated", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def closed_loop(url: str, key: str, seconds: float, connections: int = 16) -> float:
    """Requests per second of ``connections`` clients sending one request after another."""
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:

        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(f"{url}/v1/chat/completions", json=BODY) as answer:
                    await answer.read()
                    done += 1

        await asyncio.gather(*(client() for _ in range(connections)))
    return done / seconds


def main(seconds: float = 8.0) -> None:
    with Emulator(slots=128) as emulator, RedisServer() as redis:
        extra = ("--redis-url", redis.redis_url, "--queue-size", "4096", "--probe-interval", "2")
        with Gateway([emulator.url], admin_token="profile", extra=extra) as gateway:
            key = gateway.create_key("profile", rpm=10**6, tpm=10**9)
            asyncio.run(closed_loop(gateway.url, key, 3))  # warm up
            found: dict = {}
            sampler = threading.Thread(
                target=lambda: found.update(profile.record(gateway.pid, seconds) or {})
            )
            sampler.start()
            rate = asyncio.run(closed_loop(gateway.url, key, seconds))
            sampler.join()
    print(f"requests/s: {rate:.0f}")
    print("areas:", json.dumps(found.get("areas")))
    print("self:", json.dumps(found.get("self")))


if __name__ == "__main__":
    main()
