"""The OpenAI routes: thin handlers that parse, dispatch and hand the answer back."""

from __future__ import annotations

import time

from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from gateway.api.dispatch import Dispatcher
from gateway.pool.pool import Pool
from gateway.requests import Endpoint, parse

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _proxy(endpoint: Endpoint, request: Request, dispatcher: Dispatcher) -> Response:
    parsed = parse(endpoint, await request.body())
    request.state.model = dispatcher.pool.label_for(parsed.model)
    request_id = request.headers.get("x-request-id")
    headers = {"X-Request-Id": request_id} if request_id else None
    exchange = await dispatcher.open(parsed, headers=headers)
    if parsed.stream:
        # The background task releases the lease even if the stream is never iterated
        # (client gone before the first byte); closing twice is a no-op.
        return Stream(
            dispatcher.stream(exchange),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
            background=BackgroundTask(dispatcher.close, exchange),
        )
    body = await dispatcher.read_whole(exchange)
    return Response(content=body, media_type="application/json")


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
async def list_models(pool: Pool) -> dict:
    """Every model a ready backend serves, under its reported id and each configured alias."""
    created = int(time.time())
    ready = pool.ready_models()
    data = []
    for model, backends in sorted(ready.items()):
        data.append(_model_card(model, created, backends, parent=None))
    for alias, target in sorted(pool.aliases.items()):
        if target in ready and alias not in ready:
            data.append(_model_card(alias, created, ready[target], parent=target))
    return {"object": "list", "data": data}


def _model_card(model_id: str, created: int, backends: list, parent: str | None) -> dict:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "llama-gateway",
        "parent": parent,
        "meta": {
            "backends": len(backends),
            "slots": sum(b.slots for b in backends),
            "n_ctx": max(b.n_ctx for b in backends),
        },
    }


ROUTES = [chat_completions, completions, embeddings, list_models]
