"""Ollama's API, translated at the edge: ``/api/chat``, ``/api/generate``, ``/api/embed`` and
``/api/embeddings`` become the OpenAI requests llama-server serves and take the same path as
the OpenAI routes (auth, limits, fair queue, routing, accounting); ``/api/tags``, ``/api/ps``
and ``/api/show`` describe the models; ``/``, ``HEAD /`` and ``/api/version`` answer the
probes Ollama clients send first. Refusals leave as ``{"error": "…"}`` (``surfaces/errors``).

Reading requests: :mod:`.ollama_requests`; writing answers: :mod:`.ollama_answers`; the
model views' routes and facts: :mod:`.ollama_models`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, head, route
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.response import Stream

from gateway.auth.guards import require_api_key
from gateway.config import Settings
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Unavailable,
    UpstreamUnreachable,
)
from gateway.exchange import Dispatcher, Exchange
from gateway.pool.pool import Pool
from gateway.requests import parse
from gateway.runners.scheduler import Scheduler
from gateway.runners.state import ModelState
from gateway.surfaces import Surface
from gateway.surfaces.direct import direct_post
from gateway.surfaces.ollama_answers import AnswerTranslator, created_at, embed_answer, ndjson
from gateway.surfaces.ollama_models import context_per_request, ps, resolve_model, show, tags
from gateway.surfaces.ollama_requests import (
    OllamaRequest,
    read_body,
    read_chat,
    read_embed,
    read_generate,
)
from gateway.surfaces.openapi import documented

__all__ = ["OLLAMA_API_VERSION", "OLLAMA_ROUTER"]

#: The Ollama release whose API this surface follows. Clients read it to decide what they
#: may send (tools, structured outputs, thinking), so it is Ollama's number, not the gateway's.
OLLAMA_API_VERSION = "0.12.0"
_NDJSON = "application/x-ndjson"
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_LOAD_POLL = 0.1
#: OpenAPI: a JSON body this surface reads itself, refusals in Ollama's shape.
_DOCUMENTED = documented(None, Surface.OLLAMA)


# -- probes (no key) ------------------------------------------------------------------------


@get("/", media_type="text/plain", sync_to_thread=False)
def root() -> str:
    return "Ollama is running"


@head("/", media_type="text/plain", sync_to_thread=False)
def root_head() -> None:
    return None


@get("/api/version", sync_to_thread=False)
def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION}


# -- generation -----------------------------------------------------------------------------


async def _generate(
    request: Request,
    state: State,
    body: bytes,
    *,
    read: Callable[[dict[str, Any]], OllamaRequest],
    chat: bool,
) -> Response:
    started_at = time.monotonic()
    dispatcher: Dispatcher = state.dispatcher
    scheduler: Scheduler = state.scheduler
    settings: Settings = state.settings
    asked = read(read_body(body))
    model = resolve_model(dispatcher.pool, asked.model)
    request.state.model = model
    if asked.endpoint is None:  # no prompt: load (or, with keep_alive 0, unload) the model
        return await _load_or_unload(request, asked, model, dispatcher, scheduler, settings, chat)
    _check_context(asked, model, dispatcher.pool, scheduler)
    if asked.has_images:
        await _check_vision(asked.model, model, dispatcher.pool, scheduler)
    exchange, load_seconds = await _open(request, asked, model, dispatcher)
    translator = AnswerTranslator(
        asked.model, chat=chat, started_at=started_at, load_seconds=load_seconds
    )
    translator.sent()
    headers = exchange.limits.headers()
    if asked.stream:
        # The background task releases the lease even if the stream is never iterated.
        return Stream(
            _ndjson(dispatcher, exchange, translator),
            media_type=_NDJSON,
            headers={**_STREAM_HEADERS, **headers},
            background=BackgroundTask(dispatcher.close, exchange),
        )
    async for piece in dispatcher.stream(exchange):
        translator.feed(piece)
    return _json(translator.whole(), headers)


async def _ndjson(
    dispatcher: Dispatcher, exchange: Exchange, translator: AnswerTranslator
) -> AsyncIterator[bytes]:
    async for piece in dispatcher.stream(exchange):
        for obj in translator.feed(piece):
            yield ndjson(obj)  # an error that broke the stream, too: {"error": "…"}
    if translator.error is None:
        yield ndjson(translator.final())


async def _open(
    request: Request, asked: OllamaRequest, model: str, dispatcher: Dispatcher
) -> tuple[Exchange, float]:
    """Send the translated request down the path; also the seconds it waited for a load."""
    assert asked.endpoint is not None
    asked.body["model"] = model  # the name as resolved (``name:latest`` → ``name``)
    parsed = parse(asked.endpoint, asked.encode())
    telemetry = request.state.telemetry
    telemetry.describe(model=model, max_tokens=parsed.max_tokens, stream=asked.stream)
    loading = not dispatcher.pool.serving(model)
    opened_at = time.monotonic()
    exchange = await dispatcher.open(parsed, key=request.state.api_key, telemetry=telemetry)
    # Waiting for a runner to load includes any queueing behind it: an upper bound.
    return exchange, (time.monotonic() - opened_at) if loading else 0.0


async def _load_or_unload(
    request: Request,
    asked: OllamaRequest,
    model: str,
    dispatcher: Dispatcher,
    scheduler: Scheduler,
    settings: Settings,
    chat: bool,
) -> Response:
    """Ollama's empty request: load the model and answer once it is loaded, or with
    ``keep_alive: 0`` unload it (what ``ollama stop`` sends)."""
    dispatcher.authenticator.check_model(request.state.api_key, model)
    if asked.unloads:
        try:
            scheduler.unload(model)
        except ModelNotFound:
            raise InvalidRequest(
                f"model '{asked.model}' is served by a backend the gateway does not run, "
                "so the gateway cannot unload it",
                param="keep_alive",
            ) from None
        reason = "unload"
    else:
        dispatcher.pool.demand(model, asked.keep_alive)
        await _wait_loaded(model, dispatcher.pool, scheduler, settings.runner_start_timeout)
        reason = "load"
    answer: dict[str, Any] = {"model": asked.model, "created_at": created_at()}
    if chat:
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    answer.update(done=True, done_reason=reason)
    return _json(answer)


async def _wait_loaded(model: str, pool: Pool, scheduler: Scheduler, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pool.serving(model):
        entry = scheduler.entries.get(model)
        if entry is not None and entry.state is ModelState.FAILED:
            first_line = (entry.last_error or "").splitlines()[:1]
            raise Unavailable(f"model '{model}' failed to load: {''.join(first_line)}")
        if time.monotonic() >= deadline:
            raise Unavailable(f"model '{model}' did not load within {timeout:.0f} s")
        await asyncio.sleep(_LOAD_POLL)


# -- embeddings -----------------------------------------------------------------------------


async def _embed(request: Request, state: State, body: bytes, *, legacy: bool) -> Response:
    started_at = time.monotonic()
    dispatcher: Dispatcher = state.dispatcher
    scheduler: Scheduler = state.scheduler
    asked = read_embed(read_body(body), legacy=legacy)
    model = resolve_model(dispatcher.pool, asked.model)
    request.state.model = model
    _check_context(asked, model, dispatcher.pool, scheduler)
    exchange, load_seconds = await _open(request, asked, model, dispatcher)
    answer = await dispatcher.read_whole(exchange)
    try:
        out = embed_answer(
            asked.model,
            answer,
            started_at=started_at,
            load_seconds=load_seconds,
            dimensions=asked.dimensions,
        )
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        raise UpstreamUnreachable(
            "the embeddings answer was not JSON of the expected shape",
            message="The backend's embeddings answer could not be read.",
        ) from None
    if legacy:
        return _json({"embedding": out["embeddings"][0]})
    return _json(out, exchange.limits.headers())


# -- model management Ollama has and the gateway leaves to its config ----------------------


class NotSupported(GatewayError):
    status = 501
    type = "not_supported_error"


@route(
    ["/create", "/copy", "/delete", "/push", "/blobs/{digest:str}"],
    http_method=["POST", "DELETE", "HEAD"],
    status_code=501,
)
async def model_management(request: Request) -> None:
    """Clear refusals for Ollama's model-store routes (Open WebUI offers their buttons)."""
    raise NotSupported(
        f"{request.method} {request.url.path} is not supported: llama-gateway serves the "
        "models declared in its config and pulled with /api/pull; it does not create, copy, "
        "delete or push them"
    )


# -- checks ---------------------------------------------------------------------------------


def _check_context(asked: OllamaRequest, model: str, pool: Pool, scheduler: Scheduler) -> None:
    """``options.num_ctx`` cannot grow a runner's context (the gateway's config sets it): a
    request asking for more than a slot holds is refused rather than silently cut short."""
    if asked.num_ctx is None:
        return
    limit = context_per_request(model, pool, scheduler)
    if limit and asked.num_ctx > limit:
        raise InvalidRequest(
            f"num_ctx {asked.num_ctx} is larger than the {limit} tokens of context each "
            f"request of model '{asked.model}' gets (set by the gateway's runner config)",
            param="options.num_ctx",
        )


async def _check_vision(name: str, model: str, pool: Pool, scheduler: Scheduler) -> None:
    """Images need a runner with a multimodal projector; say so before queueing."""
    entry = scheduler.entries.get(model)
    if entry is not None:
        vision = bool(entry.spec.mmproj)
    else:
        backends = pool.serving(model)
        if not backends:
            return  # not known yet: the backend will judge
        try:
            props = await backends[0].client.get_json("/props", timeout=3.0)
        except GatewayError:
            return
        vision = bool((props.get("modalities") or {}).get("vision"))
    if not vision:
        raise InvalidRequest(
            f"model '{name}' does not take images: its runner has no multimodal projector (mmproj)",
            param="images",
        )


chat = direct_post(
    "/chat", partial(_generate, read=read_chat, chat=True), name="chat", operation_class=_DOCUMENTED
)
generate = direct_post(
    "/generate",
    partial(_generate, read=read_generate, chat=False),
    name="generate",
    operation_class=_DOCUMENTED,
)
embed = direct_post(
    "/embed", partial(_embed, legacy=False), name="embed", operation_class=_DOCUMENTED
)
# The older route: one ``prompt``, one ``embedding``.
embeddings = direct_post(
    "/embeddings", partial(_embed, legacy=True), name="embeddings", operation_class=_DOCUMENTED
)


def _json(obj: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=msgspec.json.encode(obj), media_type="application/json", headers=headers
    )


_API = Router(
    path="/api",
    route_handlers=[chat, generate, embed, embeddings, tags, ps, show, model_management],
    guards=[require_api_key],
)

OLLAMA_ROUTER = Router(
    path="/",
    route_handlers=[root, root_head, version, _API],
    opt={"surface": Surface.OLLAMA},
)
