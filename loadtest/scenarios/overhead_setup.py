"""What the overhead scenario's steps share: their sizes, the contenders, the request each
sends, and how a contender's CPU time is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from loadtest import load

ADMIN_TOKEN = "loadtest-admin"
HIGH_LIMITS = {"rpm": 10**9, "tpm": 10**12}


@dataclass(frozen=True)
class Size:
    rates: tuple[int, ...]
    rate_seconds: float
    wrk_seconds: float
    wrk_connections: int
    relay_seconds: float
    relay_streams: int
    relay_tokens: int
    real_requests: int
    real_tokens: int
    warm_up: int
    profile_seconds: float
    #: Rounds, and seconds per contender in each, of the one-connection latency step.
    single_rounds: int = 3
    single_seconds: float = 4.0

    @classmethod
    def of(cls, smoke: bool) -> Size:
        if smoke:
            return cls((20,), 0.5, 1.0, 16, 0.5, 4, 200, 2, 4, 3, 1.0, 1, 1.0)
        return cls((50, 100, 200), 8.0, 8.0, 64, 8.0, 32, 1000, 30, 16, 20, 8.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chat(
    url: str, model: str, *, stream: bool, max_tokens: int, key: str | None, label: str
) -> load.Request:
    body: dict = {
        "model": model,
        "messages": [{"role": "user", "content": "Say something short about gateways."}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return load.Request(
        f"{url}/v1/chat/completions", msgspec.json.encode(body), headers, stream, label
    )


class Contender:
    def __init__(self, name: str, url: str, key: str | None, pid: int | None = None) -> None:
        self.name, self.url, self.key, self.pid = name, url, key, pid


def answered(samples: list[load.Sample]) -> list[load.Sample]:
    return [s for s in samples if s.outcome == "ok" and s.latency is not None]


def failures(samples: list[load.Sample]) -> int:
    return sum(1 for s in samples if s.outcome != "ok")


async def warm_up(contenders: list[Contender], model: str, count: int = 20) -> None:
    """Open the connections and fill the caches (the gateway's key cache, connection pools)
    before anything is measured."""
    async with load.session() as client:
        for c in contenders:
            for stream in (False, True):
                for _ in range(count):
                    await load.send(
                        client,
                        chat(c.url, model, stream=stream, max_tokens=4, key=c.key, label=c.name),
                        30,
                    )
