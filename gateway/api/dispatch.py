"""Take a parsed request down the path: resolve the model, check the prompt fits, lease a slot
on the backend the routing policy prefers, send it, and — once the last byte has passed —
give the lease back and account the tokens.

A failure before the backend sent a byte is retried once on another backend; nothing has
reached the client yet. After the first byte a failure ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.admission.local import Admission, Lease
from gateway.errors import BackendFailed, UpstreamUnreachable
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.requests import ParsedRequest
from gateway.routing.policies import Policy, Snapshot
from gateway.telemetry.metrics import Metrics
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.sse import StreamOutcome, relay
from gateway.upstream.tokens import check_fits

log = logging.getLogger(__name__)

#: Status recorded for a request whose client went away before the end.
CLIENT_CLOSED = 499


def _is_backend_fault(exc: Exception) -> bool:
    """Unreachable, or a gateway-ish 5xx: the backend's fault. A plain 500 is often the
    request's (llama-server answers 500 to some malformed fields): retried, not held against
    the backend."""
    return isinstance(exc, UpstreamUnreachable) or getattr(exc, "status", 0) in (502, 503, 504)


@dataclass(eq=False)
class Exchange:
    """One request in flight on a backend: its lease, the open upstream answer, its clock."""

    request: ParsedRequest
    model: str
    key: str
    lease: Lease
    upstream: UpstreamResponse
    started_at: float
    finished: bool = False
    outcome: StreamOutcome = field(default_factory=StreamOutcome)
    closing: asyncio.Future[None] | None = None

    @property
    def backend(self) -> Backend:
        return self.lease.backend


class Dispatcher:
    def __init__(
        self,
        *,
        pool: Pool,
        admission: Admission,
        policy: Policy,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.admission = admission
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self._closing: set[asyncio.Future[None]] = set()

    async def open(
        self, request: ParsedRequest, *, key: str = "none", headers: dict[str, str] | None = None
    ) -> Exchange:
        started_at = self.clock()
        model = self.pool.resolve(request.model)
        await self._check_fits(model, request)
        body = request.upstream_body()
        tried: set[Backend] = set()
        while True:
            lease = await self._lease(model, frozenset(tried))
            self.metrics.queue_wait.labels(model).observe(lease.waited)
            backend = lease.backend
            try:
                upstream = await backend.client.open(request.endpoint, body, headers)
            except (UpstreamUnreachable, BackendFailed) as exc:
                await self.admission.release(lease)
                if _is_backend_fault(exc):
                    self.pool.record_failure(backend, exc.message)
                tried.add(backend)
                others = [b for b in self.pool.serving(model) if b not in tried]
                if len(tried) > 1 or not others:
                    raise
                log.warning(
                    "retrying on another backend after %s failed: %s", backend.name, exc.message
                )
                continue
            except BaseException:
                await self.admission.release(lease)
                raise
            self.pool.record_success(backend)
            return Exchange(request, model, key, lease, upstream, started_at)

    async def read_whole(self, exchange: Exchange) -> bytes:
        """The whole answer of a non-streamed request, accounted."""
        try:
            body = await exchange.upstream.read()
        except BaseException:
            self.close(exchange, status=502)
            raise
        try:
            usage = msgspec.json.decode(body).get("usage")
        except (msgspec.DecodeError, AttributeError):
            usage = None
        exchange.outcome.usage = usage
        exchange.outcome.done = True
        await self.close(exchange, status=200)
        return body

    async def stream(self, exchange: Exchange) -> AsyncIterator[bytes]:
        """The answer's events as they arrive; accounted when the stream ends or breaks off."""
        outcome = exchange.outcome
        try:
            async for piece in relay(
                exchange.upstream,
                outcome,
                drop_usage=not exchange.request.wants_usage,
                clock=self.clock,
            ):
                yield piece
        finally:
            self.close(exchange)

    def close(self, exchange: Exchange, *, status: int | None = None) -> asyncio.Future[None]:
        """Give the lease back and account the request, once, however it ended.

        Runs as a task of its own: a stream cut off by a client disconnect is inside a
        cancelled scope, where any await would be cancelled again before the lease is back.
        """
        if exchange.finished:
            return exchange.closing
        exchange.finished = True

        outcome = exchange.outcome
        if status is None:
            status = 200 if outcome.done else (502 if outcome.error else CLIENT_CLOSED)
        if outcome.done:
            exchange.upstream.finish()
        else:
            exchange.upstream.abort()  # llama-server cancels the task and frees the slot
        exchange.closing = asyncio.ensure_future(self._finish(exchange, status))
        self._closing.add(exchange.closing)
        exchange.closing.add_done_callback(self._closing.discard)
        return exchange.closing

    async def _finish(self, exchange: Exchange, status: int) -> None:
        await self.admission.release(exchange.lease)
        self._account(exchange, status)

    # -- steps ------------------------------------------------------------------------------

    async def _check_fits(self, model: str, request: ParsedRequest) -> None:
        backends = self.pool.serving(model)
        if backends:
            widest = max(backends, key=lambda b: b.n_ctx)
            await check_fits(widest.client, request, widest.n_ctx)

    async def _lease(self, model: str, exclude: frozenset[Backend]) -> Lease:
        candidates = self.pool.serving(model)
        snapshot = Snapshot({b: self.admission.inflight(b) for b in candidates})
        ordered = await self.policy.choose(candidates, snapshot)
        return await self.admission.acquire(model, ordered, exclude=exclude)

    def _account(self, exchange: Exchange, status: int) -> None:
        m, model, backend = self.metrics, exchange.model, exchange.backend.name
        labels = (model, exchange.key, backend)
        m.requests.labels(*labels, str(status)).inc()
        now = self.clock()
        m.request_duration.labels(model).observe(now - exchange.started_at)
        outcome = exchange.outcome
        first = outcome.first_byte_at
        if first is not None and exchange.request.stream:
            m.time_to_first_token.labels(model).observe(first - exchange.started_at)
        usage: dict[str, Any] = outcome.usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        m.prompt_tokens.labels(*labels).inc(prompt)
        m.completion_tokens.labels(*labels).inc(completion)
        m.cached_prompt_tokens.labels(*labels).inc(cached)
        if first is not None and completion > 1:
            m.time_per_output_token.labels(model).observe((now - first) / (completion - 1))
        log.info(
            "request done",
            extra={
                "model": model,
                "backend": backend,
                "status": status,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
            },
        )
