"""Build the Litestar app from :class:`Settings`: the parts of the request path are made in the
lifespan, handed to the handlers through dependencies, and taken down in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from gateway.admission.local import Admission
from gateway.api import health, openai
from gateway.api.dispatch import Dispatcher
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.config import Settings
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.routing.policies import make_policy
from gateway.runners.binary import find_llama_server
from gateway.runners.process import ProcessRunner
from gateway.telemetry.metrics import Metrics
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


async def _start_runners(settings: Settings) -> list[ProcessRunner]:
    if not settings.models:
        return []
    binary = find_llama_server(settings.llama_server_bin)
    runners = [
        ProcessRunner(spec, binary, api_key=settings.backend_api_key) for spec in settings.models
    ]
    results = await asyncio.gather(
        *(r.start(settings.runner_start_timeout) for r in runners), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await asyncio.gather(*(r.stop() for r in runners))
        raise failures[0]
    return runners


def _provide(value: Any) -> Provide:
    def dependency() -> Any:
        return value

    return Provide(dependency, use_cache=True, sync_to_thread=False)


def create_app(settings: Settings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app.state
        runners = await _start_runners(settings)
        pool: Pool = state.pool
        for url in settings.backends:
            pool.add(_backend(url, settings))
        for runner in runners:
            pool.add(_backend(runner.url, settings))
        await pool.probe_all()
        prober = asyncio.create_task(pool.run(), name="pool-probe")
        log.info(
            "gateway ready: %d backends, models %s", len(pool.backends), sorted(pool.ready_models())
        )
        try:
            yield
        finally:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
            await asyncio.gather(*(b.client.close() for b in pool.backends))
            await asyncio.gather(*(r.stop() for r in runners))

    metrics = Metrics()
    pool = Pool(
        aliases=settings.model_aliases,
        expected_models=[spec.model_id for spec in settings.models],
        probe_interval=settings.probe_interval,
        failure_threshold=settings.failure_threshold,
    )
    admission = Admission(queue_size=settings.queue_size, queue_timeout=settings.queue_timeout)
    pool.on_ready(admission.offer)
    dispatcher = Dispatcher(
        pool=pool, admission=admission, policy=make_policy(settings.routing), metrics=metrics
    )
    state = State(
        {
            "settings": settings,
            "metrics": metrics,
            "pool": pool,
            "admission": admission,
            "dispatcher": dispatcher,
        }
    )

    return Litestar(
        route_handlers=[*openai.ROUTES, *health.ROUTES],
        dependencies={name: _provide(value) for name, value in state.dict().items()},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=state,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        debug=False,
    )
