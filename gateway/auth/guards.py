"""Who may call what.

- The API routes: every request carries an API key (``Authorization: Bearer``, or
  Anthropic's ``x-api-key``), unless the gateway was started with ``--no-auth``; the key
  found is left on ``request.state.api_key``.
- ``/metrics``: the metrics token as a Bearer, when one is set (Prometheus'
  ``authorization`` scrape setting sends it).
- ``/runners``, and the details of ``/ready``: the admin token, when one is set — they show
  backend addresses, model paths and pids. Without an admin token (the single-machine
  default, on loopback) they stay open.

Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.config import Settings
from gateway.errors import AuthenticationFailed
from gateway.store.apikeys import ApiKey
from gateway.telemetry.request import RequestTelemetry

#: The caller when auth is off: no limits, every model, its own fair share.
ANONYMOUS = ApiKey(id="anonymous", name="anonymous", created=0)


async def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    # Read off the scope, not through Litestar's ``state`` and ``headers`` (each builds an
    # object per access): every request the gateway forwards passes here.
    scope = connection.scope
    state = scope["state"]
    # The edge leaves one on API paths; a path it did not recognise as one must still be
    # served (or refused) cleanly, and the handlers read it too.
    telemetry = state.get("telemetry")
    if telemetry is None:
        telemetry = state["telemetry"] = RequestTelemetry.detached()
    authenticator = connection.app.state.authenticator
    if authenticator is None:
        state["api_key"] = ANONYMOUS
        return
    header = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = header or value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = api_key or value.decode("latin-1")
    if header is None and api_key:  # Anthropic's clients send their key so
        header = f"Bearer {api_key}"
    with telemetry.phase("auth"):
        key = await authenticator.authenticate(header)
    state["api_key"] = key
    state["key"] = key.name


def bearer_is(connection: ASGIConnection, token: str) -> bool:
    """Whether the request's ``Authorization: Bearer`` is ``token``."""
    scheme, _, given = connection.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _settings(connection: ASGIConnection) -> Settings:
    return connection.app.state["settings"]


def require_metrics_token(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    token = _settings(connection).metrics_token
    if token and not bearer_is(connection, token):
        raise AuthenticationFailed("Invalid or missing metrics token.")


def may_see_internals(connection: ASGIConnection) -> bool:
    """Backend addresses, model paths, pids: for the admin, or for all when there is none."""
    token = _settings(connection).admin_token
    return not token or bearer_is(connection, token)


def require_admin_token_if_set(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if not may_see_internals(connection):
        raise AuthenticationFailed("Invalid or missing admin token.")
