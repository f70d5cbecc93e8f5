"""What every chaos scenario uses: a flood of real requests that counts how each one ended, and
the processes it runs against (real llama-server runners, real Redis, real gateways started
through the command line), all on loopback.

Each request ends in exactly one of: **succeeded** (200 and a whole answer: a JSON body with
choices, or a stream that reached ``[DONE]``), **failed** with a status (a refusal: counted by
status, and whether a 429/503 carried ``Retry-After``), **hung** (no answer within the
request's deadline) or **lost** (the connection broke, or a 200 came with a broken body).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CHAT = {
    "model": "smollm2",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Name a colour."}],
}
#: Seconds a request may take before it counts as hung (the gateway's own deadlines —
#: queue timeout, upstream timeouts — are all shorter in the scenarios).
HUNG_AFTER = 60.0


@dataclass
class Tally:
    """How the requests of one scenario (or one part of it) ended."""

    name: str
    sent: int = 0
    succeeded: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    #: Why they failed: the error's ``code`` (or ``type``) from each refusal's body, counted.
    reasons: Counter[str] = field(default_factory=Counter)
    #: 429s and 503s without ``Retry-After``.
    without_retry_after: int = 0
    hung: int = 0
    lost: int = 0
    #: Seconds the slowest answered request took.
    slowest: float = 0.0
    #: What the scenario measured beside the counts (``"first 200 after restart": "0.1 s"``).
    notes: dict[str, str] = field(default_factory=dict)
    #: What the scenario expected and did not see; ``make chaos`` fails if any.
    problems: list[str] = field(default_factory=list)

    def expect(self, holds: bool, problem: str) -> None:
        if not holds:
            self.problems.append(problem)

    def expect_clean(self, *refusals: int) -> None:
        """None hung, none lost, every refusal one of ``refusals`` and with ``Retry-After``."""
        self.expect(self.hung == 0, f"{self.hung} hung")
        self.expect(self.lost == 0, f"{self.lost} lost")
        other = {s: n for s, n in self.failed.items() if s not in refusals}
        self.expect(not other, f"unexpected statuses {other}")
        missing = self.without_retry_after
        self.expect(missing == 0, f"{missing} refusals without Retry-After")

    def line(self) -> str:
        failed = ", ".join(f"{status}: {n}" for status, n in sorted(self.failed.items())) or "-"
        if self.reasons:
            failed += " (" + ", ".join(f"{r}: {n}" for r, n in self.reasons.most_common()) + ")"
        notes = "; ".join(f"{k}: {v}" for k, v in self.notes.items())
        return (
            f"{self.name:<30} sent {self.sent:>4}  succeeded {self.succeeded:>4}  "
            f"failed {{{failed}}}  hung {self.hung}  lost {self.lost}  "
            f"slowest {self.slowest:.1f} s"
            + (f"  no Retry-After {self.without_retry_after}" if self.without_retry_after else "")
            + (f"\n{'':<30} {notes}" if notes else "")
            + "".join(f"\n{'':<30} PROBLEM: {p}" for p in self.problems)
        )

    def add(self, response: httpx.Response, stream: bool) -> None:
        if response.status_code == 200:
            if _whole(response, stream):
                self.succeeded += 1
            else:
                self.lost += 1
            return
        self.failed[response.status_code] += 1
        self.reasons[_reason(response)] += 1
        if response.status_code in (429, 503) and "retry-after" not in response.headers:
            self.without_retry_after += 1


def _reason(response: httpx.Response) -> str:
    """A refusal's error code, as its body names it (any of the gateway's error shapes)."""
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, AttributeError):
        return "no JSON body"
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or "no code")
    return str(error)[:60] if error else "no error field"


def _whole(response: httpx.Response, stream: bool) -> bool:
    if stream:
        return "data: [DONE]" in response.text
    try:
        return bool(response.json().get("choices"))
    except (json.JSONDecodeError, AttributeError):
        return False


async def send(
    client: httpx.AsyncClient,
    tally: Tally,
    url: str,
    body: dict | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = HUNG_AFTER,
) -> None:
    """One request to ``url`` (a gateway's base URL), counted in ``tally``."""
    body = CHAT if body is None else body
    tally.sent += 1
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            response = await client.post(
                f"{url}/v1/chat/completions", json=body, headers=headers or {}
            )
    except TimeoutError:
        tally.hung += 1
        return
    except httpx.HTTPError:
        tally.lost += 1
        return
    tally.slowest = max(tally.slowest, time.monotonic() - started)
    tally.add(response, bool(body.get("stream")))


async def flood(
    tally: Tally,
    urls: list[str],
    *,
    clients: int,
    count: int,
    seconds: float,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    pause: float = 0.0,
    stop: asyncio.Event | None = None,
) -> None:
    """``clients`` concurrent clients, each sending one request after another (round robin over
    ``urls``) until ``count`` requests were sent, ``seconds`` passed or ``stop`` is set —
    bounded both ways."""
    deadline = time.monotonic() + seconds
    turn = iter(range(count))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in turn:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return
            await send(client, tally, urls[i % len(urls)], body, headers=headers)
            if pause:
                await asyncio.sleep(pause)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))


async def until(check, *, timeout: float, every: float = 0.05) -> float | None:
    """Seconds until ``check()`` (sync or async) is true, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - start
        await asyncio.sleep(every)
    return None


async def ready(url: str) -> bool:
    """Whether the gateway at ``url`` answers ``/ready`` with 200."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"{url}/ready")).status_code == 200
    except httpx.HTTPError:
        return False
