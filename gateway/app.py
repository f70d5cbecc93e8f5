"""Build the Litestar app from :class:`Settings`: the parts of the request path are made in the
lifespan, handed to the handlers through dependencies, and taken down in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.types import ControllerRouterHandler
from opentelemetry.sdk.trace import TracerProvider

from gateway.admission.leases import Admission
from gateway.api import admin, control, health, pull
from gateway.api import runners as runners_api
from gateway.api.edge import EdgeMiddleware
from gateway.auth.authenticator import Authenticator
from gateway.config import Settings
from gateway.console import ROUTES as CONSOLE_ROUTES
from gateway.console import Sampler
from gateway.exchange import Dispatcher
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.providers import Providers, build_providers
from gateway.routing.affinity import AffinityRouter
from gateway.routing.hooks import RoutingHooks
from gateway.routing.policies import make_policy
from gateway.runners.scheduler import Scheduler
from gateway.store.admission import AdmissionStore
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.limits import Limiter
from gateway.store.prefixes import AffinityStore
from gateway.surfaces import anthropic, native, ollama, openai
from gateway.surfaces.direct import DirectRoutes
from gateway.surfaces.errors import EXCEPTION_HANDLERS
from gateway.surfaces.openapi import OPENAPI_CONFIG
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.recent import RecentRequests
from gateway.telemetry.tracing import Tracing, build_tracer_provider
from gateway.upstream.client import BackendClient

log = logging.getLogger(__name__)


def _backend(url: str, settings: Settings) -> Backend:
    client = BackendClient(
        url,
        api_key=settings.backend_api_key,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
    )
    return Backend(url, client)


def _provide(value: Any) -> Provide:
    def dependency() -> Any:
        return value

    return Provide(dependency, use_cache=True, sync_to_thread=False)


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> Litestar:
    """``tracer_provider``: where spans go (a test's in-memory exporter); by default the OTLP
    exporter of ``settings.otlp_traces_endpoint``, or none (tracing off)."""
    if settings.models and not settings.backend_api_key:
        # Runners the gateway starts answer only the gateway: a fresh key each start, sent
        # by every backend client (a backend started without --api-key ignores it).
        settings = msgspec.structs.replace(settings, backend_api_key=secrets.token_urlsafe(32))
    own_provider = tracer_provider is None
    if own_provider:
        tracer_provider = build_tracer_provider(
            settings.otlp_traces_endpoint, service_name=settings.otel_service_name
        )
    tracing = Tracing(tracer_provider)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        pool: Pool = state.pool
        scheduler: Scheduler = state.scheduler
        providers: Providers = state.providers
        await providers.start()  # --backend, labelled containers, Kubernetes pods
        await scheduler.start()  # declared models: loads the preloaded ones
        await pool.probe_all()
        prober = asyncio.create_task(pool.run(), name="pool-probe")
        admitter = asyncio.create_task(state.admission.run(), name="admission")
        log.info(
            "gateway ready: %d backends, models %s", len(pool.backends), sorted(pool.ready_models())
        )
        try:
            yield
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            await state.admission.stop()
            await admitter
            await scheduler.close()
            await providers.close()
            await asyncio.gather(*(b.client.close() for b in pool.backends))
            await state.redis.aclose()
            if own_provider:
                await asyncio.to_thread(tracing.shutdown)  # flushes the last spans

    metrics = Metrics()
    redis = connect(settings.redis_url)
    pool = Pool(
        aliases=settings.model_aliases,
        expected_models=[spec.model_id for spec in settings.models],
        probe_interval=settings.probe_interval,
        failure_threshold=settings.failure_threshold,
    )
    admission = Admission(
        AdmissionStore(redis, lease_ttl=settings.lease_ttl, grant_ttl=settings.lease_ttl * 2 / 3),
        backends=pool.serving,
        by_name=pool.by_name,
        queue_size=settings.queue_size,
        queue_timeout=settings.queue_timeout,
        lease_ttl=settings.lease_ttl,
    )
    pool.on_ready(admission.offer)
    scheduler = Scheduler(
        settings,
        pool=pool,
        inflight=admission.inflight,
        make_backend=lambda url: _backend(url, settings),
        on_restart=lambda model: metrics.runner_restarts.labels(model).inc(),
    )
    providers = Providers(build_providers(settings), pool, lambda url: _backend(url, settings))
    key_store = KeyStore(redis)
    authenticator = Authenticator(key_store)
    routing = RoutingHooks()
    if settings.routing == "affinity":
        affinity_store = AffinityStore(
            redis, ttl=settings.affinity_ttl, max_entries=settings.affinity_max_entries
        )
        routing = AffinityRouter(affinity_store, metrics, pin_slots=settings.affinity_pin_slots)
    dispatcher = Dispatcher(
        pool=pool,
        admission=admission,
        policy=make_policy(settings.routing),
        authenticator=authenticator,
        limiter=Limiter(redis),
        metrics=metrics,
        routing=routing,
    )
    # The console's view of the last requests and its plots' samples (this process only).
    recent = RecentRequests()
    sampler = Sampler(pool, admission, declared=[spec.model_id for spec in settings.models])
    state = State(
        {
            "settings": settings,
            "redis": redis,
            "metrics": metrics,
            "pool": pool,
            "admission": admission,
            "dispatcher": dispatcher,
            "scheduler": scheduler,
            "providers": providers,
            "key_store": key_store,
            "recent": recent,
            "sampler": sampler,
            # The guard reads this; None lets every caller in as "anonymous" (--no-auth).
            "authenticator": None if settings.no_auth else authenticator,
        }
    )
    routes: list[ControllerRouterHandler] = [
        openai.ROUTER,
        anthropic.ANTHROPIC_ROUTER,
        native.NATIVE_ROUTER,
        ollama.OLLAMA_ROUTER,
        pull.PULL_ROUTER,  # Ollama's /api/pull: needs the admin token
        *health.ROUTES,
        *runners_api.ROUTES,
        *CONSOLE_ROUTES,
    ]
    if settings.admin_token:
        routes += admin.ROUTES
        routes += control.ROUTES

    app = Litestar(
        route_handlers=routes,
        dependencies={name: _provide(value) for name, value in state.dict().items()},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan, sampler.lifespan],
        state=state,
        request_max_body_size=settings.max_body_bytes,
        cors_config=_cors(settings),
        openapi_config=OPENAPI_CONFIG,
        logging_config=None,  # the CLI configures logging (JSON), once for the process
        debug=False,
    )
    # Plain ASGI around the whole app: what every request meets before the router, and every
    # answer on its way out (request id, telemetry, client departures, security headers);
    # within it, the POSTs that carry a request to a backend skip the router's walk.
    direct = DirectRoutes(app, cors=bool(settings.cors_origins))
    app.asgi_handler = EdgeMiddleware(  # type: ignore[assignment]
        direct, tracing=tracing, max_url_bytes=settings.max_url_bytes, recorder=recent
    )
    return app


def _cors(settings: Settings) -> CORSConfig | None:
    """Browsers on the listed origins may call the API (keys go as Bearer, not cookies)."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=settings.cors_origins,
        allow_headers=["*"],
        expose_headers=["x-request-id", "retry-after", "x-ratelimit-remaining-requests"],
    )
