"""Take a parsed request down the path: resolve the model, check the caller may use it and is
within its limits, check the prompt fits, lease a slot on the backend the routing policy
prefers, and send it. ``api/accounting.py`` closes the exchange after the last byte.

A failure before the backend sent a byte is retried once on another backend; nothing has
reached the client yet. After the first byte a failure ends the stream with an error event.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

import msgspec

from gateway.admission.leases import Admission, Lease, Ticket
from gateway.api.accounting import Accountant, Exchange
from gateway.auth.authenticator import Authenticator
from gateway.errors import BackendFailed, UpstreamUnreachable
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.requests import ParsedRequest
from gateway.routing.affinity import AffinityRouter, Lookup
from gateway.routing.policies import Policy, Snapshot
from gateway.store.apikeys import ApiKey
from gateway.store.connection import round_trip
from gateway.store.limits import Limiter, LimitState
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.request import RequestTelemetry
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.sse import relay
from gateway.upstream.tokens import check_fits

log = logging.getLogger(__name__)


def _is_backend_fault(exc: Exception) -> bool:
    """Unreachable, or a gateway-ish 5xx: the backend's fault. A plain 500 is often the
    request's (llama-server answers 500 to some malformed fields): retried, not held against
    the backend."""
    return isinstance(exc, UpstreamUnreachable) or getattr(exc, "status", 0) in (502, 503, 504)


class Dispatcher:
    def __init__(
        self,
        *,
        pool: Pool,
        admission: Admission,
        policy: Policy,
        authenticator: Authenticator,
        limiter: Limiter,
        metrics: Metrics,
        affinity: AffinityRouter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.admission = admission
        self.policy = policy
        #: Prefix affinity (lookup, slot pinning, record); ``None`` unless routing by it.
        self.affinity = affinity
        self.authenticator = authenticator
        self.limiter = limiter
        self.clock = clock
        self.accountant = Accountant(
            admission=admission, limiter=limiter, metrics=metrics, clock=clock
        )

    async def open(
        self,
        request: ParsedRequest,
        *,
        key: ApiKey,
        headers: dict[str, str] | None = None,
        telemetry: RequestTelemetry | None = None,
    ) -> Exchange:
        started_at = self.clock()
        telemetry = telemetry or RequestTelemetry.detached()
        model = self.pool.resolve(request.model)
        with telemetry.phase("limits"):
            self.authenticator.check_model(key, model)
            estimate = request.estimated_tokens()
            limits, lookup = await self._admit(request, model, key, estimate)
        try:
            self.pool.demand(model, request.keep_alive)  # loads a declared model if needed
            await self._check_fits(model, request)
            lease, upstream = await self._send(
                model, request, key, limits, headers, telemetry, lookup
            )
        except BaseException:
            if limits.request_id is not None:
                await self.limiter.settle(key, estimate, 0, request_id=limits.request_id)
            raise
        telemetry.hold()  # the request's log line waits for the exchange to be accounted
        return Exchange(
            request, model, key, limits, lease, upstream, started_at, telemetry=telemetry
        )

    async def read_whole(self, exchange: Exchange) -> bytes:
        """The whole answer of a non-streamed request, accounted."""
        try:
            body = await exchange.upstream.read()
        except BaseException:
            self.close(exchange, status=502)
            raise
        try:
            answer = msgspec.json.decode(body)
            usage = answer.get("usage")
        except (msgspec.DecodeError, AttributeError):
            answer = usage = None
        if self.affinity is not None:
            self.affinity.answered(exchange.lease, answer)
        exchange.outcome.usage = usage
        if isinstance(answer, dict):  # for the trace's gen_ai.response.finish_reasons
            choices = answer.get("choices") or ()
            reasons = [c["finish_reason"] for c in choices if c.get("finish_reason")]
            exchange.outcome.finish_reasons = reasons
        exchange.outcome.done = True
        await self.close(exchange, status=200)
        return body

    async def stream(self, exchange: Exchange) -> AsyncIterator[bytes]:
        """The answer's events as they arrive; accounted when the stream ends or breaks off."""
        try:
            async for piece in relay(
                exchange.upstream,
                exchange.outcome,
                drop_usage=not exchange.request.wants_usage,
                clock=self.clock,
            ):
                yield piece
        finally:
            self.close(exchange)

    def close(self, exchange: Exchange, *, status: int | None = None):
        """Give the lease back and account the request, once, however it ended."""
        usage = exchange.outcome.usage
        record = None
        if self.affinity is not None:  # where its prefix now lives, sent with the release
            record = self.affinity.closing_command(exchange.lease, usage)
        closing = self.accountant.close(exchange, status=status, also=record)
        if self.affinity is not None and record is None:
            self.affinity.record_after(exchange.lease, closing, usage)
        return closing

    # -- steps ------------------------------------------------------------------------------

    async def _admit(
        self, request: ParsedRequest, model: str, key: ApiKey, estimate: int
    ) -> tuple[LimitState, Lookup | None]:
        """Check and charge the key's limits and look up where the prompt's prefix is cached:
        one round trip. Raises :class:`RateLimited`, or ``Unavailable`` without the store."""
        async with self.admission.store.redis.pipeline(transaction=False) as pipe:
            admitted = self.limiter.admit_command(pipe, key, estimate)
            ours = len(pipe)
            found = self.affinity.lookup_command(pipe, request, model) if self.affinity else None
            replies = await round_trip(pipe)
        lookup = found(replies[ours:]) if found is not None else None
        return admitted(replies[:ours]), lookup

    async def _check_fits(self, model: str, request: ParsedRequest) -> None:
        backends = self.pool.serving(model)
        if backends:
            widest = max(backends, key=lambda b: b.n_ctx)
            await check_fits(widest.client, request, widest.n_ctx)

    async def _send(
        self,
        model: str,
        request: ParsedRequest,
        key: ApiKey,
        limits: LimitState,
        headers: dict[str, str] | None,
        telemetry: RequestTelemetry,
        lookup: Lookup | None,
    ) -> tuple[Lease, UpstreamResponse]:
        """Lease a slot and open the upstream request; one retry elsewhere before a byte."""
        ticket = Ticket(key.id, key.weight, key.priority, max(1, request.estimated_tokens()))
        body = request.upstream_body()
        tried: set[Backend] = set()
        while True:
            with telemetry.phase("queue"):
                lease = await self._lease(model, frozenset(tried), ticket, request, lookup)
            self.accountant.metrics.queue_wait.labels(model).observe(lease.waited)
            backend = lease.backend
            # x-request-id and the upstream span's traceparent
            sent_headers = {**(headers or {}), **telemetry.upstream_headers(backend.name)}
            try:
                sent = self.affinity.body(lease, body) if self.affinity else body  # id_slot
                upstream = await backend.client.open(request.endpoint, sent, sent_headers)
            except (UpstreamUnreachable, BackendFailed) as exc:
                telemetry.end_upstream(exc.message)
                await self._give_back(lease)
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
                await self._give_back(lease)
                raise
            self.pool.record_success(backend)
            if limits.request_id is not None:
                lease.renewals.append(
                    functools.partial(
                        self.limiter.renew_command, key=key, request_id=limits.request_id
                    )
                )
            return lease, upstream

    async def _lease(
        self,
        model: str,
        exclude: frozenset[Backend],
        ticket: Ticket,
        request: ParsedRequest,
        lookup: Lookup | None,
    ) -> Lease:
        candidates = self.pool.serving(model)
        inflight = {b: self.admission.inflight(b) for b in candidates}
        if self.affinity is None:
            snapshot = Snapshot(inflight)
        else:  # where this request's prefix is cached (looked up with the limits check)
            snapshot = await self.affinity.snapshot(request, model, candidates, inflight, lookup)
        ordered = await self.policy.choose(candidates, snapshot)
        lease = await self.admission.acquire(model, ordered, exclude=exclude, ticket=ticket)
        if self.affinity is not None:
            self.affinity.place(request, model, snapshot, lease)
        return lease

    async def _give_back(self, lease: Lease) -> None:
        """Release a lease that never carried a response."""
        if self.affinity is not None:
            self.affinity.forget(lease)
        await self.admission.release(lease)
