"""Who may call the OpenAI routes: every request carries an API key, unless the gateway was
started with ``--no-auth``; the key found is left on ``request.state.api_key``."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.store.apikeys import ApiKey

#: The caller when auth is off: no limits, every model, its own fair share.
ANONYMOUS = ApiKey(id="anonymous", name="anonymous", created=0)


async def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    authenticator = connection.app.state.authenticator
    if authenticator is None:
        connection.state.api_key = ANONYMOUS
        return
    with connection.state.telemetry.phase("auth"):
        key = await authenticator.authenticate(connection.headers.get("authorization"))
    connection.state.api_key = key
    connection.state.key = key.name
