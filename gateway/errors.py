"""The gateway's exceptions: every refusal the request path can raise, with its HTTP status
and the fields of OpenAI's error body. ``surfaces/errors.py`` turns them into responses, in
one place, in the shape of the API the client speaks. Each class says whether the failure
may be retried on another backend (``retryable``) and whether it is the backend's fault
(``backends_fault``).

    GatewayError
    ├── InvalidRequest            400 invalid_request_error
    │   └── ContextLengthExceeded 400 code=context_length_exceeded
    ├── AuthenticationFailed      401 code=invalid_api_key
    ├── PermissionDenied          403 code=model_not_allowed
    ├── ModelNotFound             404 code=model_not_found
    ├── KeyNotFound               404 code=key_not_found (the admin API)
    ├── PayloadTooLarge           413
    ├── RateLimited               429 code=rate_limit_exceeded, Retry-After, x-ratelimit-*
    │   └── QueueFull             429 code=queue_full
    ├── Unavailable               503 Retry-After
    │   ├── QueueTimeout          503 code=queue_timeout
    │   └── NoBackend             503 code=no_backend
    ├── UpstreamUnreachable       502 code=upstream_unreachable (before the first byte)
    └── BackendError              the backend's own status and body, passed through
        └── BackendFailed         a 5xx answer before the first byte: retried elsewhere once

    RunnerError                   a runner could not be started (not a refusal: the
                                  scheduler keeps it as the model's last error)
"""

from __future__ import annotations

import json
import re
from typing import Any


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    #: Another backend may succeed where this one failed (nothing reached the client yet).
    retryable = False
    #: The backend is to blame (counted towards its circuit breaker), not the request.
    backends_fault = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        #: Extra response headers (e.g. ``x-ratelimit-*``).
        self.headers = headers


class InvalidRequest(GatewayError):
    """The request is malformed: bad JSON, a missing or mistyped field."""

    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    """The prompt cannot fit the model's context (checked before queueing)."""

    code = "context_length_exceeded"


class AuthenticationFailed(GatewayError):
    """No key, or an unknown, expired or revoked one."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """The key's allow-list leaves this model out."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    """No backend serves the model and none is declared."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    """The body is over ``max_body_bytes``."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """A limit or budget of the key refused; ``Retry-After`` says when to come back."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class QueueFull(RateLimited):
    """The model's fair queue has no room (the flooding key's newest waiter goes first)."""

    code = "queue_full"


class Unavailable(GatewayError):
    """The gateway cannot serve now (its store is unreachable, no backend is ready)."""

    status = 503
    type = "service_unavailable_error"
    code = "service_unavailable"


class QueueTimeout(Unavailable):
    """No slot became free within the queue deadline."""

    code = "queue_timeout"


class NoBackend(Unavailable):
    """No backend of the model is ready."""

    code = "no_backend"


class UpstreamUnreachable(GatewayError):
    """The backend could not be reached, or failed, before it sent a byte: safe to retry.

    ``detail`` (also ``str(exc)``) names the backend's address and the cause: for logs and
    admin views only. ``message``, the part a client reads, names no internal address.
    """

    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"
    retryable = True
    backends_fault = True
    #: What a client is told, whatever the cause: runner URLs must not leave the gateway.
    client_message = "The model backend could not be reached; try again."

    def __init__(self, detail: str, *, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message or self.client_message, **kwargs)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class BackendError(GatewayError):
    """The backend answered with an error; its status and body go to the client as they are."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        super().__init__(f"backend answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
        # A plain 500 is often the request's (llama-server answers 500 to some malformed
        # fields); a gateway-ish 5xx is the backend's.
        self.backends_fault = status in (502, 503, 504)

    @property
    def backend_message(self) -> str:
        """The message of the backend's body (llama-server's ``{"error": {"message"}}``)."""
        try:
            decoded = json.loads(self.body)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            error = decoded.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return error["message"]
            if isinstance(error, str):
                return error
        text = self.body.decode(errors="replace").strip()
        return text[:500] or f"The backend answered {self.status}."


#: llama-server's words for a field it could not read: its 500 is then the request's fault.
_MALFORMED = re.compile(
    r"failed to parse|expected '|json\.exception|type must be|invalid (type|value|argument)"
    r"|_M_range_check|out of range",  # a token id past the vocabulary, for one
    re.IGNORECASE,
)


class BackendFailed(BackendError):
    """A 5xx answer before any byte reached the client: another backend may do better —
    unless its message shows the request was malformed (:attr:`blames_request`)."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        super().__init__(status, body, content_type)
        self.retryable = not self.blames_request

    @property
    def blames_request(self) -> bool:
        return self.status == 500 and bool(_MALFORMED.search(self.backend_message))


class KeyNotFound(GatewayError):
    """No API key has this id."""

    status = 404
    type = "invalid_request_error"
    code = "key_not_found"


class RunnerError(RuntimeError):
    """A runner cannot be started: missing binary or model, or it died while loading."""
