"""llama.cpp's own routes — ``/completion``, ``/infill``, ``/embedding``, ``/tokenize``,
``/detokenize``, ``/apply-template`` — and rerank (``/v1/rerank``, ``/v1/reranking``,
``/rerank``, ``/reranking``), on the same path as the OpenAI routes.

The backend is chosen by the body's ``model`` or a ``?model=`` query, as llama-server's own
router mode does, and defaults to the only model when one is served. Tokenizing, detokenizing
and applying a template occupy no slot: they take no lease, but still pass auth and the key's
request limits. Errors are OpenAI-shaped, as llama-server's own are.
"""

from __future__ import annotations

from litestar import Request, Router
from litestar.handlers import HTTPRouteHandler

from gateway.auth.guards import require_api_key
from gateway.errors import InvalidRequest
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.surfaces import Surface
from gateway.surfaces.proxy import forwarding

__all__ = ["NATIVE_ROUTER"]


def _read(endpoint: Endpoint, raw: bytes, request: Request) -> ParsedRequest:
    """The body, its model defaulting to ``?model=`` or to the only model served."""
    default = _default_model(request)
    try:
        return parse(endpoint, raw, default_model=default)
    except InvalidRequest as exc:
        if exc.param == "model" and default is None:
            raise InvalidRequest(
                "Several models are served: name one with 'model' in the body or ?model=.",
                param="model",
            ) from None
        raise


def _default_model(request: Request) -> str | None:
    """``?model=``, else the only model served; ``None`` when several are, so the body
    must name one."""
    asked: str | None = request.query_params.get("model")
    if asked:
        return asked
    models: set[str] = request.app.state.pool.known_models()
    return next(iter(models)) if len(models) == 1 else None


def _route(path: str | list[str], endpoint: Endpoint, summary: str) -> HTTPRouteHandler:
    return forwarding(path, endpoint, Surface.OPENAI, read=_read, summary=summary)


NATIVE_ROUTER = Router(
    path="/",
    route_handlers=[
        _route("/completion", Endpoint.COMPLETION, "llama.cpp completion, streamed or not"),
        _route("/infill", Endpoint.INFILL, "llama.cpp fill-in-the-middle"),
        _route("/embedding", Endpoint.EMBEDDING, "llama.cpp embeddings"),
        _route("/tokenize", Endpoint.TOKENIZE, "Tokenize (no slot)"),
        _route("/detokenize", Endpoint.DETOKENIZE, "Detokenize (no slot)"),
        _route("/apply-template", Endpoint.APPLY_TEMPLATE, "Apply the chat template (no slot)"),
        _route(
            ["/v1/rerank", "/v1/reranking", "/rerank", "/reranking"],
            Endpoint.RERANK,
            "Rerank documents (runners with --reranking)",
        ),
    ],
    guards=[require_api_key],
    opt={"surface": Surface.OPENAI},
)
