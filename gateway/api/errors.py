"""Every refusal leaves in OpenAI's error shape — ``{"error": {"message", "type", "param",
"code"}}`` — with its status and, where waiting helps, ``Retry-After``. This is the one place
where exceptions become error responses.
"""

from __future__ import annotations

import logging
import math

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from gateway.errors import BackendError, GatewayError

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


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=body, status_code=status, media_type="application/json", headers=headers
    )


def gateway_error(request: Request, exc: GatewayError) -> Response:
    _count(request, exc.status)
    if isinstance(exc, BackendError):
        # The backend's own word: its status and body, as they came.
        return Response(content=exc.body, status_code=exc.status, media_type=exc.content_type)
    headers = dict(exc.headers or {})
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return _json(error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers)


def http_error(request: Request, exc: HTTPException) -> Response:
    """Litestar's own refusals (unknown path, wrong method, body too large)."""
    status = exc.status_code
    type_, code = _HTTP_TYPES.get(status, ("server_error", None))
    message = exc.detail
    if status == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}"
    elif status == 413:
        message = "The request body is larger than this gateway accepts."
    return _json(error_body(message, type_, code), status, getattr(exc, "headers", None))


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    _count(request, 500)
    return _json(
        error_body("The gateway failed to process the request.", "server_error", None),
        HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _count(request: Request, status: int) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and request.url.path.startswith("/v1/"):
        state = request.scope.get("state", {})
        labels = (state.get("model", "unknown"), state.get("key", "none"), "")
        metrics.requests.labels(*labels, str(status)).inc()


EXCEPTION_HANDLERS = {
    GatewayError: gateway_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
