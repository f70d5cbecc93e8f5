"""Load generators: open-loop at a fixed rate and closed-loop at a fixed concurrency (aiohttp),
and ``wrk`` for the highest request rates, where a Python client would be the bottleneck.

Every request ends in exactly one :class:`Sample`, whatever happens to it; a client timeout
bounds each one, so none can hang the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

from loadtest.procs import OTHER_CORES, pinned

#: Bytes that open a token's event in a chat or completion stream (not the role-only event).
_TOKEN_MARKERS = (b'"content":"', b'"text":"')


@dataclass(slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    label: str = ""
    #: Keep the generated text (multi-turn sessions send it back).
    collect: bool = False


@dataclass(slots=True)
class Sample:
    label: str
    sent_at: float  # perf_counter when the request left
    latency: float | None = None  # seconds to the last byte
    ttft: float | None = None  # seconds to the first token event (streams)
    status: int | None = None
    #: ``ok``, ``429``, ``503``, ``5xx``, ``4xx``, ``timeout``, ``error`` (connection) or
    #: ``stream_error`` (a 200 whose stream ended with an error event or without [DONE])
    outcome: str = "error"
    chunks: int = 0
    usage: dict | None = None
    timings: dict | None = None
    text: str = ""
    late: float = 0.0  # seconds the generator sent it after its scheduled time
    retryable: bool = False  # the server closed a reused connection before answering


def _outcome(status: int) -> str:
    if status == 200:
        return "ok"
    if status in (429, 503):
        return str(status)
    return "5xx" if status >= 500 else "4xx"


def _usage_event(tail: bytes) -> dict:
    """The last event that carries ``usage`` (with ``timings``, from llama-server)."""
    at = tail.rfind(b'"usage"')
    if at < 0:
        return {}
    start = tail.rfind(b"data: ", 0, at)
    end = tail.find(b"\n\n", at)
    if start < 0 or end < 0:
        return {}
    try:
        event = msgspec.json.decode(tail[start + 6 : end])
    except msgspec.DecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _text(body: bytes, chat: bool) -> str:
    """The generated text of a whole stream."""
    parts = []
    for event in body.split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        try:
            data = msgspec.json.decode(event[6:])
        except msgspec.DecodeError:
            continue
        for choice in data.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if piece:
                parts.append(piece)
    return "".join(parts)


async def send(session: aiohttp.ClientSession, request: Request, timeout: float) -> Sample:
    """One request, timed; never raises. A kept-alive connection the server closed before
    answering (llama-server does so after a stream) is retried once on a new one, as browsers
    do; the time lost stays in the sample."""
    sample = await _send(session, request, timeout, time.perf_counter())
    if sample.outcome == "error" and sample.status is None and sample.retryable:
        sample = await _send(session, request, timeout, sample.sent_at)
    return sample


async def _send(
    session: aiohttp.ClientSession, request: Request, timeout: float, sent_at: float
) -> Sample:
    sample = Sample(request.label, sent_at)
    try:
        async with asyncio.timeout(timeout):
            async with session.post(request.url, data=request.body, headers=request.headers) as r:
                sample.status = r.status
                if not request.stream or r.status != 200:
                    body = await r.read()
                    if r.status == 200:
                        _read_whole(sample, body, request.collect)
                else:
                    tail, previous_nl, events, pieces = b"", False, 0, []
                    async for piece in r.content.iter_any():
                        if sample.ttft is None and any(m in piece for m in _TOKEN_MARKERS):
                            sample.ttft = time.perf_counter() - sample.sent_at
                        events += piece.count(b"\n\n") + (previous_nl and piece[:1] == b"\n")
                        previous_nl = piece[-1:] == b"\n"
                        tail = (tail + piece)[-8192:]
                        if request.collect:
                            pieces.append(piece)
                    sample.chunks = events
                    last = _usage_event(tail)
                    sample.usage, sample.timings = last.get("usage"), last.get("timings")
                    if request.collect:
                        sample.text = _text(
                            b"".join(pieces), b"chat/completions" in request.url.encode()
                        )
                    if b"data: [DONE]" not in tail or b'data: {"error"' in tail:
                        sample.outcome = "stream_error"
                        sample.latency = time.perf_counter() - sample.sent_at
                        return sample
        sample.latency = time.perf_counter() - sample.sent_at
        sample.outcome = _outcome(sample.status)
    except TimeoutError:
        sample.outcome = "timeout"
    except aiohttp.ClientConnectionError:  # disconnected, reset, or the write failed
        sample.outcome = "error"
        sample.retryable = sample.status is None
    except (aiohttp.ClientError, OSError):
        sample.outcome = "error"
    return sample


def _read_whole(sample: Sample, body: bytes, collect: bool) -> None:
    try:
        answer = msgspec.json.decode(body)
        sample.usage, sample.timings = answer.get("usage"), answer.get("timings")
        if collect:
            choice = (answer.get("choices") or [{}])[0]
            sample.text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    except (msgspec.DecodeError, AttributeError, IndexError):
        pass


def session(connections: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )


@contextlib.contextmanager
def no_collector() -> Iterator[None]:
    """The load generator's garbage collector off while it measures: a full collection of
    its heap (every sample so far, the report's data) stopped it for 35-130 ms at a time,
    and the answers it read late counted as the gateway's latency — more so for the
    contenders measured last, when the heap is biggest."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def open_loop(
    make: Callable[[int], Request],
    *,
    rate: float,
    duration: float,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """Send ``make(i)`` at ``rate`` per second for ``duration`` seconds, whatever the answers
    do (open loop: a slow server does not slow the arrivals). Waits for every answer."""
    count = max(1, int(rate * duration))
    tasks: list[asyncio.Task[Sample]] = []
    with no_collector():
        async with session() as client:
            t0 = time.perf_counter() + 0.05
            for i in range(count):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                late = max(0.0, time.perf_counter() - due)
                task = asyncio.create_task(send(client, make(i), timeout))
                task.add_done_callback(_set_late(late))
                if progress:
                    task.add_done_callback(lambda _t: progress(1))
                tasks.append(task)
            return list(await asyncio.gather(*tasks))


def _set_late(late: float) -> Callable[[asyncio.Task[Sample]], None]:
    def callback(task: asyncio.Task[Sample]) -> None:
        if not task.cancelled():
            task.result().late = late

    return callback


async def closed_loop(
    make: Callable[[int], Request],
    *,
    concurrency: int,
    duration: float,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Sample], float]:
    """``concurrency`` workers, each sending as soon as its previous answer is in, for
    ``duration`` seconds. Returns the samples and the seconds actually measured."""
    samples: list[Sample] = []
    counter = iter(range(10**12))
    with no_collector():
        async with session(concurrency) as client:
            start = time.perf_counter()
            stop = start + duration

            async def worker() -> None:
                while time.perf_counter() < stop:
                    samples.append(await send(client, make(next(counter)), timeout))
                    if progress:
                        progress(1)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return samples, time.perf_counter() - start


# -- wrk ---------------------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(
    url: str, body: bytes, headers: dict[str, str], *, connections: int, duration: float
) -> dict:
    """Closed-loop maximum rate with ``wrk`` (pinned off the gateway's core): requests/s,
    latency percentiles (ms) and the count of non-2xx answers and socket errors."""
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_SCRIPT.format(body=body.decode(), headers=lines))
        args = pinned(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            OTHER_CORES,
        )
        out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict:
    result: dict = {"requests_per_s": None, "requests": 0, "non_2xx": 0, "socket_errors": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result["requests_per_s"] = round(float(m.group(1)), 1)
    if m := re.search(r"(\d+) requests in", out):
        result["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result["non_2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result["socket_errors"] = sum(int(g) for g in m.groups())
    for p, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        result[f"p{p}_ms"] = round(float(value) * _UNITS[unit], 3)
    return result
