"""Take a parsed request down the path: resolve the model, check the caller may use it and is
within its limits, check the prompt fits, lease a slot on the backend the routing policy
prefers, and send it. ``accounting.py`` closes the exchange after the last byte.

Where the routing policy's first choice does not wait for the affinity lookup (one ready
backend, or a policy that reads none), a free slot is asked for in the limits check's round
trip, and given back if the limits refuse: one round trip before the send, not two
(``docs/admission.md``, "One round trip before the send").

A failure before the backend sent a byte is retried once on another backend when the failure
says it may be (``GatewayError.retryable``); nothing has reached the client yet. After the
first byte a failure ends the stream with an error event in the answer's own format.

Requests that occupy no slot (tokenize, count tokens, apply a template) take no lease and
no queue: ``forward.py`` checks the key's request limits and sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, NamedTuple, NoReturn, cast

import msgspec

from gateway.admission.leases import Admission, Attempt, Lease, Ticket
from gateway.auth.authenticator import Authenticator
from gateway.errors import BackendFailed, GatewayError, InvalidRequest
from gateway.exchange.accounting import CLIENT_CLOSED, Accountant, Exchange
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.requests import ParsedRequest
from gateway.routing.hooks import RoutingHooks
from gateway.routing.policies import Policy, Snapshot
from gateway.store.apikeys import ApiKey
from gateway.store.commands import Command, run
from gateway.store.limits import Limiter, LimitState
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.request import RequestTelemetry
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.formats import format_of
from gateway.upstream.sse import relay
from gateway.upstream.tokens import check_context

log = logging.getLogger(__name__)

#: Backends one request is tried on before its failure reaches the client.
ATTEMPTS = 2


class _HandedOff(asyncio.CancelledError):
    """The client left while its whole answer was being generated: the request is cancelled
    for the client, but the answer's upstream request runs on — llama-server does not stop a
    non-streamed task when its client goes — and :meth:`Dispatcher._finish_unheard` gives
    the slot back and settles the limits once it ends, so the slot is never leased twice."""


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
        routing: RoutingHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.admission = admission
        self.policy = policy
        #: What routing does around each request beyond choosing (prefix affinity).
        self.routing = routing or RoutingHooks()
        self.authenticator = authenticator
        self.limiter = limiter
        self.clock = clock
        self.accountant = Accountant(
            admission=admission, limiter=limiter, metrics=metrics, clock=clock
        )
        #: Answers whose clients left, running to their end (see _HandedOff).
        self._background: set[asyncio.Future[None]] = set()

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
        estimate = request.estimated_tokens()
        ticket = Ticket(key.id, key.weight, key.priority, max(1, estimate))
        with telemetry.phase("limits"):
            self.authenticator.check_model(key, model)
            limits, lookup, early = await self._admit(request, model, key, estimate, ticket)
        try:
            try:
                self.pool.demand(model, request.keep_alive)  # loads a declared model if needed
                await self._check_fits(model, request)
            except BaseException:
                if early is not None:
                    await self._give_back(early.lease)
                raise
            lease, upstream = await self._send(
                model, request, key, limits, headers, telemetry, lookup, started_at, ticket, early
            )
        except _HandedOff:
            raise  # settled when its upstream request ends
        except BaseException:
            await self.limiter.settle(key, estimate, 0, request_id=limits.request_id)
            raise
        telemetry.hold()  # the request's log line waits for the exchange to be accounted
        exchange = Exchange(
            request, model, key, limits, lease, upstream, started_at, telemetry=telemetry
        )
        telemetry.closers[exchange] = lambda: self.close(exchange, status=CLIENT_CLOSED)
        return exchange

    async def read_whole(self, exchange: Exchange, *, status: int = 200) -> bytes:
        """The whole answer of a non-streamed request, accounted (with ``status``)."""
        try:
            body = await exchange.upstream.read()
        except asyncio.CancelledError:  # the client left (api/departures.py)
            self.close(exchange, status=CLIENT_CLOSED)
            raise
        except BaseException:
            self.close(exchange, status=502)
            raise
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            answer = None
        answer_format = format_of(exchange.request.endpoint)
        self.routing.answered(exchange.lease, answer)
        exchange.outcome.usage = answer_format.usage(answer)
        exchange.outcome.finish_reasons = answer_format.finish_reasons(answer)
        exchange.outcome.done = True
        # The answer waits until the release and the settlement are written to the store: the
        # client's next request must find this one settled (a key allowed one at a time was
        # refused otherwise). The store runs what reaches it in order, so the answer need not
        # wait for their replies too (a round trip).
        # (Cancelled here, only that wait ends: the closing task runs on.)
        self.close(exchange, status=status)
        await cast(asyncio.Future[None], exchange.settlement_sent)
        return body

    async def stream(self, exchange: Exchange) -> AsyncIterator[bytes]:
        """The answer's events as they arrive; accounted when the stream ends or breaks off."""
        try:
            async for piece in relay(
                exchange.upstream,
                exchange.outcome,
                drop_usage=not exchange.request.wants_usage,
                clock=self.clock,
                answer_format=format_of(exchange.request.endpoint),
                model=exchange.request.model,
            ):
                yield piece
        finally:
            self.close(exchange)

    def close(self, exchange: Exchange, *, status: int | None = None) -> asyncio.Future[None]:
        """Give the lease back and account the request, once, however it ended."""
        if exchange.telemetry is not None:  # (its closer refers to it: a cycle until then)
            exchange.telemetry.closers.pop(exchange, None)
        usage = exchange.outcome.usage
        record = self.routing.record(exchange.lease, usage)  # rides on the release
        closing = self.accountant.close(exchange, status=status, also=record)
        if record is None:
            self.routing.record_after(exchange.lease, closing, usage)
        return closing

    # -- steps ------------------------------------------------------------------------------

    async def _admit(
        self, request: ParsedRequest, model: str, key: ApiKey, estimate: int, ticket: Ticket
    ) -> tuple[LimitState, object, _Early | None]:
        """Check and charge the key's limits, look up where the prompt's prefix is cached and,
        when no lookup can change the order of the candidates (one candidate, or a policy
        that reads none), ask for a free slot on the first: one round trip. Raises
        :class:`RateLimited`, or ``Unavailable`` without the store."""
        commands: list[Command[Any]] = [self.limiter.admit(key, estimate)]
        lookup = self.routing.lookup(request, model)
        if lookup is not None:
            commands.append(lookup)
        attempt, lease_asked, inflight = await self._first_try(model, ticket, lookup is None)
        if lease_asked is not None:
            commands.append(lease_asked)
        try:
            results = await run(self.admission.store.redis, *commands)
        except BaseException:
            if attempt is not None:  # refused, or the client left: the slot goes back
                await self.admission.withdraw(attempt)
            raise
        limits, found = results[0], results[1] if lookup is not None else None
        lease = results[-1] if attempt is not None else None
        return limits, found, None if lease is None else _Early(lease, inflight)

    async def _first_try(
        self, model: str, ticket: Ticket, no_lookup: bool
    ) -> tuple[Attempt | None, Command[Lease | None] | None, dict[Backend, int]]:
        """A lease to ask for beside the limits check — if a lookup's answer cannot change
        which candidate comes first — and the load the policy chose from."""
        candidates = self.pool.serving(model)
        if not candidates or not (no_lookup or len(candidates) == 1):
            return None, None, {}
        inflight = {b: self.admission.inflight(b) for b in candidates}
        ordered = await self.policy.choose(candidates, Snapshot(inflight))
        return *self.admission.try_acquire(model, ordered, ticket=ticket), inflight

    async def _check_fits(self, model: str, request: ParsedRequest) -> None:
        backends = self.pool.serving(model)
        if backends:
            widest = max(backends, key=lambda b: b.n_ctx)
            await check_context(widest.client, request, widest.n_ctx)

    async def _send(
        self,
        model: str,
        request: ParsedRequest,
        key: ApiKey,
        limits: LimitState,
        headers: dict[str, str] | None,
        telemetry: RequestTelemetry,
        lookup: object,
        started_at: float,
        ticket: Ticket,
        early: _Early | None,
    ) -> tuple[Lease, UpstreamResponse]:
        """Lease a slot (or take the one granted beside the limits check) and open the
        upstream request; one retry elsewhere before a byte."""
        body = request.upstream_body()
        tried: set[Backend] = set()
        while True:
            if early is not None:
                lease = early.lease
                telemetry.phases["queue"] = 0.0  # (its log line: it did not wait; no span)
                await self._place(request, model, early.inflight, lookup, lease)
                early = None
            else:
                with telemetry.phase("queue"):
                    lease = await self._lease(model, frozenset(tried), ticket, request, lookup)
            self.accountant.metrics.queue_wait.labels(model).observe(lease.waited)
            backend = lease.backend
            # x-request-id and the upstream span's traceparent
            sent_headers = {
                **(headers or {}),
                **telemetry.upstream_headers(backend.name, slot=self.routing.slot(lease)),
            }
            sent = self.routing.body(lease, body)  # with id_slot, when a slot is pinned
            opening = backend.client.open(request.endpoint, sent, sent_headers)
            # A non-streamed answer's upstream request outlives a client that leaves (see
            # _HandedOff): it runs as a task of its own, shielded. A stream's is aborted when
            # its relay ends, so it needs none.
            task = None if request.stream else asyncio.ensure_future(opening)
            try:
                upstream = await (opening if task is None else asyncio.shield(task))
            except asyncio.CancelledError:
                if task is None:
                    await self._give_back(lease)
                    raise
                unheard = (request, model, key, limits, lease, started_at)
                self._spawn(self._finish_unheard(task, *unheard))
                raise _HandedOff() from None
            except GatewayError as exc:
                telemetry.end_upstream(str(exc))
                await self._give_back(lease)
                self.judge(backend, exc)
                tried.add(backend)
                others = [b for b in self.pool.serving(model) if b not in tried]
                if not exc.retryable or len(tried) >= ATTEMPTS or not others:
                    raise_for_client(exc)
                log.warning("retrying on another backend after %s failed: %s", backend.name, exc)
                continue
            except BaseException:
                await self._give_back(lease)
                raise
            self.pool.record_success(backend)
            if limits.request_id is not None:
                lease.renewals.append(
                    lambda pipe: self.limiter.renew(key, limits.request_id).queue_on(pipe)
                )
            return lease, upstream

    async def _lease(
        self,
        model: str,
        exclude: frozenset[Backend],
        ticket: Ticket,
        request: ParsedRequest,
        lookup: object,
    ) -> Lease:
        candidates = self.pool.serving(model)
        inflight = {b: self.admission.inflight(b) for b in candidates}
        snapshot = await self.routing.snapshot(request, model, inflight, lookup)
        ordered = await self.policy.choose(candidates, snapshot)
        lease = await self.admission.acquire(model, ordered, exclude=exclude, ticket=ticket)
        self.routing.placed(request, model, snapshot, lease)
        return lease

    async def _place(
        self,
        request: ParsedRequest,
        model: str,
        inflight: dict[Backend, int],
        lookup: object,
        lease: Lease,
    ) -> None:
        """Tell routing where a lease granted beside the limits check went, as :meth:`_lease`
        does for one it waited for: from the load the candidates were ordered by."""
        snapshot = await self.routing.snapshot(request, model, inflight, lookup)
        self.routing.placed(request, model, snapshot, lease)

    async def _finish_unheard(
        self,
        opening: asyncio.Future[UpstreamResponse],
        request: ParsedRequest,
        model: str,
        key: ApiKey,
        limits: LimitState,
        lease: Lease,
        started_at: float,
    ) -> None:
        """Wait out the answer of a client that left, then give its slot back and account
        what it cost (status 499)."""
        try:
            upstream = await opening
        except BaseException:
            await self._give_back(lease)
            await self.limiter.settle(key, limits.estimated_tokens, 0, request_id=limits.request_id)
            return
        exchange = Exchange(request, model, key, limits, lease, upstream, started_at)
        with contextlib.suppress(GatewayError):
            await self.read_whole(exchange, status=CLIENT_CLOSED)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def judge(self, backend: Backend, exc: GatewayError) -> None:
        """Count a failure against ``backend``'s circuit breaker when it is its fault."""
        if exc.backends_fault:
            self.pool.record_failure(backend, str(exc))

    async def _give_back(self, lease: Lease) -> None:
        """Release a lease that never carried a response."""
        self.routing.forget(lease)
        await self.admission.release(lease)


class _Early(NamedTuple):
    """A lease granted beside the limits check, and the load its candidates were ordered by."""

    lease: Lease
    inflight: dict[Backend, int]


def raise_for_client(exc: GatewayError) -> NoReturn:
    """Raise what the client is told of a failure: a backend's 500 that names a malformed
    field is the request's fault, so a 400 with the backend's words."""
    if isinstance(exc, BackendFailed) and exc.blames_request:
        raise InvalidRequest(exc.backend_message) from exc
    raise exc
