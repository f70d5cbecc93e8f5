"""Close an exchange once its last byte has passed (or the client has gone): give the lease
back and settle the key's limits with the real token counts — one Redis round trip — and
record the tokens per key, model and backend.

What a request is charged: the usage its answer reported; for an answer whose API reports no
tokens, the estimate it was admitted with; for a stream cut before its usage, the prompt as
estimated plus one token per event relayed — what the client did receive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.admission.leases import Admission, Lease
from gateway.pool.backend import Backend
from gateway.requests import BYTES_PER_TOKEN, ParsedRequest
from gateway.store.apikeys import ApiKey
from gateway.store.commands import Command, run
from gateway.store.limits import Limiter, LimitState
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.request import RequestTelemetry
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.formats import StreamOutcome
from gateway.usage import Usage

log = logging.getLogger(__name__)

#: Status recorded for a request whose client went away before the end (nginx's).
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
    #: Resolved once the release and the settlement are written to the store (see close).
    settlement_sent: asyncio.Future[None] | None = None
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
        also: Command[Any] | None = None,
    ) -> asyncio.Future[None]:
        """Release and account ``exchange``, once, however it ended; ``also`` rides on the
        same round trip (affinity's record).

        Runs as a task of its own: a stream cut off by a client disconnect is inside a
        cancelled scope, where any await would be cancelled again before the lease is back.
        ``exchange.settlement_sent`` is resolved once the release and the settlement are
        written to the store, before their replies are in: whatever the store is sent after
        that (the client's next request, on any replica) finds them done.
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
        usage = outcome.usage if outcome.usage is not None else _relayed(exchange)
        if exchange.telemetry is not None:  # ends the spans; the request's log line
            exchange.telemetry.exchange_closed(
                status=status,
                model=exchange.model,
                key=exchange.key.name,
                backend=exchange.backend.name,
                usage=usage,
                finish_reasons=outcome.finish_reasons,
                first_byte_at=outcome.first_byte_at,
                response_model=exchange.backend.model_id,
            )
        sent = exchange.settlement_sent = asyncio.get_running_loop().create_future()
        exchange.closing = asyncio.ensure_future(self._settle(exchange, status, usage, also, sent))
        self._closing.add(exchange.closing)
        exchange.closing.add_done_callback(self._closing.discard)
        return exchange.closing

    async def _settle(
        self,
        exchange: Exchange,
        status: int,
        usage: Usage | None,
        also: Command[Any] | None,
        sent: asyncio.Future[None],
    ) -> None:
        limits = exchange.limits
        charged = usage.total if usage is not None else limits.estimated_tokens
        redis = self.admission.store.redis
        try:
            release = self.admission.release(exchange.lease)
            settle = self.limiter.settle(
                exchange.key, limits.estimated_tokens, charged, request_id=limits.request_id
            )
            await run(redis, release, settle, *([also] if also is not None else []), sent=sent)
        finally:
            if not sent.done():
                sent.set_result(None)
        self._account(exchange, status, usage or Usage())

    def _account(self, exchange: Exchange, status: int, usage: Usage) -> None:
        model, backend = exchange.model, exchange.backend.name
        series = self.metrics.series(model, exchange.key.name, backend)
        series.answered(status)
        now = self.clock()
        series.request_duration.observe(now - exchange.started_at)
        first = exchange.outcome.first_byte_at
        if first is not None and exchange.request.stream:
            series.time_to_first_token.observe(first - exchange.started_at)
        series.prompt_tokens.inc(usage.prompt)
        series.completion_tokens.inc(usage.completion)
        series.cached_prompt_tokens.inc(usage.cached)
        series.computed_prompt_tokens.inc(max(usage.prompt - usage.cached, 0))
        if first is not None and usage.completion > 1:
            series.time_per_output_token.observe((now - first) / (usage.completion - 1))
        if log.isEnabledFor(logging.DEBUG):  # the extra dict is built only for a reader
            log.debug(  # the request's log line is telemetry's (gateway.requests)
                "request done",
                extra={
                    "model": model,
                    "backend": backend,
                    "key": exchange.key.name,
                    "status": status,
                    "prompt_tokens": usage.prompt,
                    "completion_tokens": usage.completion,
                    "cached_tokens": usage.cached,
                },
            )


def _relayed(exchange: Exchange) -> Usage | None:
    """What a stream cut before its usage gave the client: its prompt, as estimated, and a
    token per event relayed (llama-server streams one token an event). ``None`` for an
    answer that was complete, or never streamed: its API reports no tokens."""
    outcome = exchange.outcome
    if outcome.done or not exchange.request.stream or not outcome.events:
        return None
    return Usage(exchange.request.prompt_size() // BYTES_PER_TOKEN, outcome.events)
