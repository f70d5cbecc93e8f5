"""The OpenAI routes — chat and text completions, embeddings, Responses, models: thin
handlers that parse, dispatch and hand the answer back as the backend wrote it."""

from __future__ import annotations

import time
from typing import Any

from litestar import Router, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from gateway.auth.guards import require_api_key
from gateway.errors import ModelNotFound
from gateway.pool.pool import Pool
from gateway.requests import Endpoint
from gateway.runners.scheduler import Scheduler
from gateway.surfaces import Surface
from gateway.surfaces.proxy import forwarding


def _route(path: str, endpoint: Endpoint, summary: str) -> HTTPRouteHandler:
    return forwarding(path, endpoint, Surface.OPENAI, summary=summary)


ROUTES = [
    _route("/v1/chat/completions", Endpoint.CHAT, "Chat completions, streamed or not"),
    _route("/v1/completions", Endpoint.COMPLETIONS, "Text completions"),
    _route("/v1/embeddings", Endpoint.EMBEDDINGS, "Embeddings (runners with --embeddings)"),
    # Stateless, as llama-server serves it: no previous_response_id store.
    _route("/v1/responses", Endpoint.RESPONSES, "Responses, streamed or not"),
    _route("/v1/responses/input_tokens", Endpoint.RESPONSES_INPUT_TOKENS, "Count input tokens"),
]


@get("/v1/models")
async def list_models(pool: NamedDependency[Pool], scheduler: NamedDependency[Scheduler]) -> dict:
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


@get("/v1/models/{model_id:path}")
async def retrieve_model(
    model_id: FromPath[str], pool: NamedDependency[Pool], scheduler: NamedDependency[Scheduler]
) -> dict[str, Any]:
    """One model in OpenAI's shape; 404 ``model_not_found`` for a model nobody serves."""
    wanted = model_id.lstrip("/")
    listed: dict[str, Any] = await list_models.fn(pool=pool, scheduler=scheduler)
    for card in listed["data"]:
        if card["id"] == wanted:
            return dict(card)
    raise ModelNotFound(f"The model '{wanted}' does not exist", param="model")


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
    route_handlers=[*ROUTES, list_models, retrieve_model],
    opt={"surface": Surface.OPENAI},
    guards=[require_api_key],
)
