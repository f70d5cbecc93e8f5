"""The console's routes: the page at ``/ui`` and its files, the login, the one event stream a
page keeps open (the pool, the plots' new points and the new requests, once a second), and the
key and request reads and changes it makes.

The page itself holds no data and is served to anyone; everything it shows comes from routes
behind :func:`~gateway.api.session.admin_or_session`. Every answer under ``/ui`` carries a
Content-Security-Policy that allows only the gateway's own scripts and styles, no inline code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, Router, delete, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from redis.asyncio import Redis

from gateway.api.session import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    admin_or_session,
    session_valid,
    sign_session,
    token_matches,
)
from gateway.config import Settings
from gateway.console.view import pool_view
from gateway.errors import AuthenticationFailed, InvalidRequest
from gateway.store.apikeys import KeyStore
from gateway.store.key_usage import read_usage
from gateway.telemetry.recent import RecentRequests

__all__ = ["CSP", "ROUTES"]

STATIC = resources.files("gateway.console") / "static"
#: Seconds between two events of a page's stream.
TICK = 1.0

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY"}
_NO_STORE = {**_HEADERS, "cache-control": "no-store"}


# -- the page and the session ----------------------------------------------------------------


@get("/", media_type=MediaType.HTML, sync_to_thread=False)
def page() -> Response[bytes]:
    """The one page (its tabs are ``#pool``, ``#keys``, ``#requests``, ``#playground``)."""
    return Response((STATIC / "index.html").read_bytes(), headers=_NO_STORE)


class _Login(msgspec.Struct, forbid_unknown_fields=True):
    token: str


@get("/api/session", sync_to_thread=False)
def session(request: Request, settings: NamedDependency[Settings]) -> Response[dict[str, Any]]:
    """What the page should show first: the login, or that the console is off."""
    token, cookie = settings.admin_token, request.cookies.get(SESSION_COOKIE)
    signed_in = bool(token and cookie and session_valid(token, cookie))
    return Response(
        {"enabled": bool(token), "signed_in": signed_in, "no_auth": settings.no_auth},
        headers=_NO_STORE,
    )


@post("/login", status_code=HTTP_204_NO_CONTENT)
async def login(
    request: Request, data: JSONBody[dict[str, Any]], settings: NamedDependency[Settings]
) -> Response[None]:
    token = settings.admin_token
    if not token:
        raise AuthenticationFailed("The console is off: start the gateway with --admin-token.")
    try:
        given = msgspec.convert(data, _Login).token
    except msgspec.ValidationError:
        raise InvalidRequest("Expected {'token': string}.", param="token") from None
    if not token_matches(token, given):
        raise AuthenticationFailed("Invalid admin token.")
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    cookie = Cookie(
        key=SESSION_COOKIE,
        value=sign_session(token),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return Response(None, cookies=[cookie], headers=_NO_STORE)


@post("/logout", status_code=HTTP_204_NO_CONTENT, sync_to_thread=False)
def logout() -> Response[None]:
    gone = Cookie(key=SESSION_COOKIE, value="", max_age=0, httponly=True, samesite="strict")
    return Response(None, cookies=[gone], headers=_NO_STORE)


# -- the live stream -------------------------------------------------------------------------


async def _events(request: Request) -> AsyncIterator[ServerSentEventMessage]:
    """One ``state`` event a second: the whole pool, plus what the page has not seen of the
    plots and the requests (all of them in the first event)."""
    state = request.app.state
    pool, admission, scheduler = state.pool, state.admission, state.scheduler
    metrics, recent, sampler = state.metrics, state.recent, state.sampler
    seen_request, seen_point = 0, 0.0
    while True:
        series = sampler.series(seen_point)
        requests = recent.since(seen_request)
        payload = {
            "time": time.time(),
            "pool": pool_view(
                pool=pool, admission=admission, scheduler=scheduler, metrics=metrics, recent=recent
            ),
            "series": series,
            "requests": requests,
        }
        if series["t"]:
            seen_point = series["t"][-1]
        if requests:
            seen_request = requests[-1]["seq"]
        yield ServerSentEventMessage(data=msgspec.json.encode(payload).decode(), event="state")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sampler.closing.wait(), TICK)
        if sampler.closing.is_set():
            return


@get("/events", guards=[admin_or_session])
async def events(request: Request) -> ServerSentEvent:
    stream = _events(request)
    return ServerSentEvent(stream, headers=_NO_STORE, retry_duration=2000)


# -- requests and keys -----------------------------------------------------------------------


@get("/api/requests", guards=[admin_or_session], sync_to_thread=False)
def requests(
    recent: NamedDependency[RecentRequests],
    status: FromQuery[str | None] = None,
    key: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
) -> dict[str, Any]:
    found = recent.query(status=status, key=key, model=model, limit=max(1, min(limit, 1000)))
    return {"object": "list", "data": found}


@get("/api/keys", guards=[admin_or_session])
async def list_keys(
    key_store: NamedDependency[KeyStore], redis: NamedDependency[Redis]
) -> dict[str, Any]:
    """Every key with its tokens used today and this month (UTC) beside its budgets."""
    api_keys = await key_store.list()
    usage = await read_usage(redis, [k for k in api_keys if not k.revoked])
    now = time.time()
    shown = []
    for key in api_keys:
        used = usage.get(key.id)
        shown.append(
            {
                **key.to_dict(),
                "state": key.state(now),
                "used_today": used.today if used else None,
                "used_month": used.month if used else None,
            }
        )
    return {"object": "list", "data": shown}


@post("/api/keys", guards=[admin_or_session], status_code=HTTP_201_CREATED)
async def create_key(
    data: JSONBody[dict[str, Any]], key_store: NamedDependency[KeyStore]
) -> Response[dict[str, Any]]:
    """The secret is in this answer only; the page shows it once and keeps it nowhere."""
    key, secret = await key_store.create(**data)
    return Response({"key": secret, **key.to_dict()}, headers=_NO_STORE)


@patch("/api/keys/{key_id:str}", guards=[admin_or_session])
async def update_key(
    key_id: FromPath[str], data: JSONBody[dict[str, Any]], key_store: NamedDependency[KeyStore]
) -> dict[str, Any]:
    return (await key_store.update(key_id, **data)).to_dict()


@delete("/api/keys/{key_id:str}", guards=[admin_or_session], status_code=HTTP_200_OK)
async def revoke_key(
    request: Request, key_id: FromPath[str], key_store: NamedDependency[KeyStore]
) -> dict[str, Any]:
    key = await key_store.revoke(key_id)
    authenticator = request.app.state.get("authenticator")
    if authenticator is not None:
        authenticator.forget()  # this replica stops taking the key now, not in a few seconds
    return key.to_dict()


ROUTES = [
    Router(
        "/ui",
        route_handlers=[
            page,
            session,
            login,
            logout,
            events,
            requests,
            list_keys,
            create_key,
            update_key,
            revoke_key,
            create_static_files_router(
                "/static",
                directories=[str(STATIC)],
                include_in_schema=False,
            ),
        ],
        response_headers=_HEADERS,
    )
]
