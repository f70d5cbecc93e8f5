"""Every refusal leaves in the shape of the API its client speaks, with its status and, where
waiting helps, ``Retry-After``. This is the one place where exceptions become error responses.

- OpenAI: ``{"error": {"message", "type", "param", "code"}}``
- Anthropic: ``{"type": "error", "error": {"type", "message"}}``
- Ollama: ``{"error": "<message>"}``

A backend's own error answer passes through unchanged on the OpenAI surface (llama-server
speaks it); on the others its message is carried over into that surface's shape.
"""

from __future__ import annotations

import logging
import math

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from gateway.errors import BackendError, GatewayError
from gateway.surfaces import Surface, surface_of
from gateway.telemetry.request import API_PATHS

__all__ = ["EXCEPTION_HANDLERS", "error_body"]

log = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", None),
}

#: Anthropic's error ``type`` for each status (its API reference, "Errors").
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    408: "invalid_request_error",
    414: "invalid_request_error",
    431: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    *,
    status: int = 400,
    surface: Surface = Surface.OPENAI,
) -> bytes:
    """The error body of ``surface`` for one refusal."""
    if surface is Surface.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return msgspec.json.encode({"type": "error", "error": {"type": kind, "message": message}})
    if surface is Surface.OLLAMA:
        return msgspec.json.encode({"error": message})
    return msgspec.json.encode(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=body, status_code=status, media_type="application/json", headers=headers
    )


def _surface(request: Request) -> Surface:
    handler = request.scope.get("route_handler")
    return surface_of(request.url.path, handler.opt if handler is not None else None)


def gateway_error(request: Request, exc: GatewayError) -> Response:
    _count(request, exc.status)
    surface = _surface(request)
    if isinstance(exc, BackendError):
        if surface is Surface.OPENAI:
            # The backend's own word: its status and body, as they came.
            return Response(content=exc.body, status_code=exc.status, media_type=exc.content_type)
        message = exc.backend_message
        return _json(error_body(message, "", None, status=exc.status, surface=surface), exc.status)
    headers = dict(exc.headers or {})
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    body = error_body(
        exc.message, exc.type, exc.code, exc.param, status=exc.status, surface=surface
    )
    return _json(body, exc.status, headers)


def http_error(request: Request, exc: HTTPException) -> Response:
    """Litestar's own refusals (unknown path, wrong method, body too large)."""
    status = exc.status_code
    type_, code = _HTTP_TYPES.get(status, ("server_error", None))
    message = exc.detail
    if status == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}"
    elif status == 413:
        message = "The request body is larger than this gateway accepts."
    body = error_body(message, type_, code, status=status, surface=_surface(request))
    return _json(body, status, getattr(exc, "headers", None))


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    _count(request, 500)
    message = "The gateway failed to process the request."
    body = error_body(message, "server_error", None, status=500, surface=_surface(request))
    return _json(body, HTTP_500_INTERNAL_SERVER_ERROR)


def _count(request: Request, status: int) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and request.url.path.startswith(API_PATHS):
        state = request.scope.get("state", {})
        labels = (state.get("model", "unknown"), state.get("key", "none"), "")
        metrics.requests.labels(*labels, str(status)).inc()


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
