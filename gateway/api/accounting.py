"""Close an exchange once its last byte has passed (or the client has gone): give the lease
back and settle the key's limits with the real token counts — one Redis round trip — and
record the tokens per key, model and backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.client import Pipeline

from gateway.admission.leases import Admission, Lease
from gateway.pool.backend import Backend
from gateway.requests import ParsedRequest
from gateway.store.apikeys import ApiKey
from gateway.store.connection import round_trip
from gateway.store.limits import Limiter, LimitState
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.request import RequestTelemetry
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.sse import StreamOutcome

log = logging.getLogger(__name__)

#: Queues commands on the pipeline that closes an exchange; returns what to do with their
#: replies.
ClosingCommand = Callable[[Pipeline], Callable[[list[Any]], None]]

#: Status recorded for a request whose client went away before the end.
CLIENT_CLOSED = 499


@dataclass(eq=False)
class Exchange:
    """One request in flight on a backend: its lease, the open upstream answer, its clock."""

    request: ParsedRequest
    model: str
    key: ApiKey
    limits: LimitState
    lease: Lease
    upstream: UpstreamResponse
    started_at: float
    finished: bool = False
    outcome: StreamOutcome = field(default_factory=StreamOutcome)
    closing: asyncio.Future[None] | None = None
    telemetry: RequestTelemetry | None = None

    @property
    def backend(self) -> Backend:
        return self.lease.backend


class Accountant:
    def __init__(
        self,
        *,
        admission: Admission,
        limiter: Limiter,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.admission = admission
        self.limiter = limiter
        self.metrics = metrics
        self.clock = clock
        self._closing: set[asyncio.Future[None]] = set()

    def close(
        self,
        exchange: Exchange,
        *,
        status: int | None = None,
        also: ClosingCommand | None = None,
    ) -> asyncio.Future[None]:
        """Release and account ``exchange``, once, however it ended; ``also`` queues more
        commands on the same round trip (affinity's record).

        Runs as a task of its own: a stream cut off by a client disconnect is inside a
        cancelled scope, where any await would be cancelled again before the lease is back.
        """
        if exchange.closing is not None:
            return exchange.closing
        exchange.finished = True
        outcome = exchange.outcome
        if status is None:
            status = 200 if outcome.done else (502 if outcome.error else CLIENT_CLOSED)
        if outcome.done:
            exchange.upstream.finish()
        else:
            exchange.upstream.abort()  # llama-server cancels the task and frees the slot
        if exchange.telemetry is not None:  # ends the spans; the request's log line
            exchange.telemetry.exchange_closed(
                status=status,
                model=exchange.model,
                key=exchange.key.name,
                backend=exchange.backend.name,
                usage=outcome.usage,
                finish_reasons=outcome.finish_reasons,
                first_byte_at=outcome.first_byte_at,
                response_model=exchange.backend.model_id,
            )
        exchange.closing = asyncio.ensure_future(self._settle(exchange, status, also))
        self._closing.add(exchange.closing)
        exchange.closing.add_done_callback(self._closing.discard)
        return exchange.closing

    async def _settle(
        self, exchange: Exchange, status: int, also: ClosingCommand | None = None
    ) -> None:
        usage: dict[str, Any] = exchange.outcome.usage or {}
        actual = int(usage.get("total_tokens") or 0)
        limits = exchange.limits
        async with self.admission.store.redis.pipeline(transaction=False) as pipe:
            handle = self.admission.release_command(pipe, exchange.lease)
            self.limiter.settle_command(
                pipe, exchange.key, limits.estimated_tokens, actual, request_id=limits.request_id
            )
            ours = len(pipe)
            handle_also = also(pipe) if also is not None else None
            replies = await round_trip(pipe)
        handle(replies[0])
        if handle_also is not None:
            handle_also(replies[ours:])
        self._account(exchange, status, usage)

    def _account(self, exchange: Exchange, status: int, usage: dict[str, Any]) -> None:
        m, model, backend = self.metrics, exchange.model, exchange.backend.name
        labels = (model, exchange.key.name, backend)
        m.requests.labels(*labels, str(status)).inc()
        now = self.clock()
        m.request_duration.labels(model).observe(now - exchange.started_at)
        first = exchange.outcome.first_byte_at
        if first is not None and exchange.request.stream:
            m.time_to_first_token.labels(model).observe(first - exchange.started_at)
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        m.prompt_tokens.labels(*labels).inc(prompt)
        m.completion_tokens.labels(*labels).inc(completion)
        m.cached_prompt_tokens.labels(*labels).inc(cached)
        m.computed_prompt_tokens.labels(*labels).inc(max(prompt - cached, 0))
        if first is not None and completion > 1:
            m.time_per_output_token.labels(model).observe((now - first) / (completion - 1))
        log.debug(  # the request's log line is telemetry's (gateway.requests)
            "request done",
            extra={
                "model": model,
                "backend": backend,
                "key": exchange.key.name,
                "status": status,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
            },
        )
