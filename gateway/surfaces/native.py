"""llama.cpp's own routes — ``/completion``, ``/infill``, ``/embedding``, ``/tokenize``,
``/detokenize``, ``/apply-template`` — and rerank (``/v1/rerank``, ``/v1/reranking``,
``/rerank``, ``/reranking``), on the same path as the OpenAI routes.

The backend is chosen by the body's ``model`` or a ``?model=`` query, as llama-server's own
router mode does, and defaults to the only model when one is served. Tokenizing, detokenizing
and applying a template occupy no slot: they take no lease, but still pass auth and the key's
request limits. Errors are OpenAI-shaped, as llama-server's own are.
"""

from __future__ import annotations

from litestar import Request, Response, Router, post

from gateway.api.guards import require_api_key
from gateway.errors import InvalidRequest
from gateway.exchange import Dispatcher
from gateway.requests import Endpoint, parse
from gateway.surfaces import Surface
from gateway.surfaces.openapi import documented
from gateway.surfaces.proxy import proxy

__all__ = ["NATIVE_ROUTER"]


def _default_model(request: Request, dispatcher: Dispatcher) -> str | None:
    """``?model=``, else the only model served; ``None`` when several are, so the body
    must name one."""
    asked = request.query_params.get("model")
    if asked:
        return asked
    models = dispatcher.pool.known_models()
    return next(iter(models)) if len(models) == 1 else None


async def _proxy(endpoint: Endpoint, request: Request, dispatcher: Dispatcher) -> Response:
    raw = await request.body()
    default = _default_model(request, dispatcher)
    try:
        parsed = parse(endpoint, raw, default_model=default)
    except InvalidRequest as exc:
        if exc.param == "model" and default is None:
            raise InvalidRequest(
                "Several models are served: name one with 'model' in the body or ?model=.",
                param="model",
            ) from None
        raise
    return await proxy(request, dispatcher, parsed)


@post(
    "/completion", status_code=200, operation_class=documented(Endpoint.COMPLETION, Surface.OPENAI)
)
async def completion(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.COMPLETION, request, dispatcher)


@post("/infill", status_code=200, operation_class=documented(Endpoint.INFILL, Surface.OPENAI))
async def infill(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.INFILL, request, dispatcher)


@post("/embedding", status_code=200, operation_class=documented(Endpoint.EMBEDDING, Surface.OPENAI))
async def embedding(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.EMBEDDING, request, dispatcher)


@post("/tokenize", status_code=200, operation_class=documented(Endpoint.TOKENIZE, Surface.OPENAI))
async def tokenize(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.TOKENIZE, request, dispatcher)


@post(
    "/detokenize", status_code=200, operation_class=documented(Endpoint.DETOKENIZE, Surface.OPENAI)
)
async def detokenize(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.DETOKENIZE, request, dispatcher)


@post(
    "/apply-template",
    status_code=200,
    operation_class=documented(Endpoint.APPLY_TEMPLATE, Surface.OPENAI),
)
async def apply_template(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.APPLY_TEMPLATE, request, dispatcher)


@post(
    ["/v1/rerank", "/v1/reranking", "/rerank", "/reranking"],
    status_code=200,
    operation_class=documented(Endpoint.RERANK, Surface.OPENAI),
)
async def rerank(request: Request, dispatcher: Dispatcher) -> Response:
    return await _proxy(Endpoint.RERANK, request, dispatcher)


NATIVE_ROUTER = Router(
    path="/",
    route_handlers=[completion, infill, embedding, tokenize, detokenize, apply_template, rerank],
    guards=[require_api_key],
    opt={"surface": Surface.OPENAI},
)
