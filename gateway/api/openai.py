"""The OpenAI routes: thin handlers that parse, dispatch and hand the answer back."""

from __future__ import annotations

import time

from litestar import Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from gateway.api.dispatch import Dispatcher
from gateway.api.guards import require_api_key
from gateway.pool.pool import Pool
from gateway.requests import Endpoint, parse
from gateway.runners.scheduler import Scheduler

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _proxy(endpoint: Endpoint, request: Request, dispatcher: Dispatcher) -> Response:
    parsed = parse(endpoint, await request.body())
    request.state.model = dispatcher.pool.label_for(parsed.model)
    telemetry = request.state.telemetry  # request id, spans, log line (telemetry/request.py)
    telemetry.describe(
        model=request.state.model, max_tokens=parsed.max_tokens, stream=parsed.stream
    )
    exchange = await dispatcher.open(parsed, key=request.state.api_key, telemetry=telemetry)
    limit_headers = exchange.limits.headers()
    if parsed.stream:
        # The background task releases the lease even if the stream is never iterated
        # (client gone before the first byte); closing twice is a no-op.
        return Stream(
            dispatcher.stream(exchange),
            media_type="text/event-stream",
            headers={**_SSE_HEADERS, **limit_headers},
            background=BackgroundTask(dispatcher.close, exchange),
        )
    body = await dispatcher.read_whole(exchange)
    return Response(content=body, media_type="application/json", headers=limit_headers)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.CHAT, request, dispatcher)


@post("/v1/completions", status_code=200)
async def completions(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.COMPLETIONS, request, dispatcher)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.EMBEDDINGS, request, dispatcher)


@get("/v1/models")
async def list_models(pool: Pool, scheduler: Scheduler) -> dict:
    """Every model a ready backend serves and every declared one (with its state: loaded,
    loading, unloaded, failed), under its id and each alias."""
    created = int(time.time())
    ready = pool.ready_models()
    declared = {status["id"]: status for status in scheduler.models()}
    data = []
    for model in sorted(set(ready) | set(declared)):
        data.append(_model_card(model, created, ready.get(model, []), None, declared.get(model)))
    for alias, target in sorted(pool.aliases.items()):
        known = target in ready or target in declared
        if known and alias not in ready and alias not in declared:
            card = _model_card(alias, created, ready.get(target, []), target, declared.get(target))
            data.append(card)
    return {"object": "list", "data": data}


def _model_card(
    model_id: str, created: int, backends: list, parent: str | None, declared: dict | None
) -> dict:
    replicas = declared["replicas"] if declared else {"ready": len(backends)}
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "llama-gateway",
        "parent": parent,
        "meta": {
            "state": declared["state"] if declared else "loaded",
            "replicas": replicas,
            "backends": len(backends),
            "slots": sum(b.slots for b in backends),
            "n_ctx": max((b.n_ctx for b in backends), default=0),
        },
    }


ROUTER = Router(
    path="/",
    route_handlers=[chat_completions, completions, embeddings, list_models],
    guards=[require_api_key],
)
