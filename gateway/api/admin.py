"""The admin API: ``/admin/keys`` to create, list, show, change and revoke API keys.

Guarded by ``Authorization: Bearer <admin token>`` (compared in constant time); the app
mounts :data:`ROUTES` only when an admin token is set, and the guard refuses everything when
none is. The handlers receive ``key_store`` by dependency injection; the guard reads the
settings from ``app.state.settings``. A key's secret appears once, in the answer to ``POST``;
no answer carries its hash.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from litestar import Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from gateway.config import Settings
from gateway.errors import AuthenticationFailed, KeyNotFound
from gateway.store.apikeys import KeyStore

log = logging.getLogger(__name__)


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state["settings"]
    token = settings.admin_token
    scheme, _sep, given = connection.headers.get("authorization", "").strip().partition(" ")
    if (
        not token
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        raise AuthenticationFailed("Invalid or missing admin token.")


@post("/", status_code=HTTP_201_CREATED)
async def create_key(
    data: JSONBody[dict[str, Any]], key_store: NamedDependency[KeyStore]
) -> dict[str, Any]:
    key, secret = await key_store.create(**data)
    log.info("created API key %s (%s)", key.id, key.name)
    record = key.to_dict()
    return {"id": key.id, "key": secret, **record}


@get("/")
async def list_keys(key_store: NamedDependency[KeyStore]) -> dict[str, Any]:
    return {"object": "list", "data": [key.to_dict() for key in await key_store.list()]}


@get("/{key_id:str}")
async def show_key(key_id: FromPath[str], key_store: NamedDependency[KeyStore]) -> dict[str, Any]:
    key = await key_store.get(key_id)
    if key is None:
        raise KeyNotFound(f"No API key with id '{key_id}'.", param="id")
    return key.to_dict()


@patch("/{key_id:str}")
async def update_key(
    key_id: FromPath[str], data: JSONBody[dict[str, Any]], key_store: NamedDependency[KeyStore]
) -> dict[str, Any]:
    key = await key_store.update(key_id, **data)
    log.info("changed API key %s (%s): %s", key.id, key.name, ", ".join(sorted(data)))
    return key.to_dict()


@delete("/{key_id:str}", status_code=HTTP_200_OK)
async def revoke_key(key_id: FromPath[str], key_store: NamedDependency[KeyStore]) -> dict[str, Any]:
    key = await key_store.revoke(key_id)
    log.info("revoked API key %s (%s)", key.id, key.name)
    return key.to_dict()


ROUTES = [
    Router(
        "/admin/keys",
        route_handlers=[create_key, list_keys, show_key, update_key, revoke_key],
        guards=[admin_guard],
    )
]
