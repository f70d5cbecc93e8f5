"""The admin API through Litestar's AsyncTestClient: the key lifecycle, the guard, and every
error in OpenAI's shape."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.testing import AsyncTestClient

from gateway.api.admin import ROUTES
from gateway.auth import Authenticator
from gateway.config import Settings
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.surfaces.errors import EXCEPTION_HANDLERS

TOKEN = "admin-secret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def build_app(store_url: str, admin_token: str | None = TOKEN) -> Litestar:
    """The admin routes as the gateway mounts them, plus ``/whoami`` to try a key."""
    settings = Settings(admin_token=admin_token, redis_url=store_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # AsyncTestClient runs the app on a loop of its own: its Redis client is made there.
        client = connect(store_url)
        app.state.key_store = KeyStore(client)
        app.state.authenticator = Authenticator(app.state.key_store, cache_ttl=0, miss_ttl=0)
        yield
        await client.aclose()

    @get("/whoami")
    async def whoami(
        request: Request, authenticator: NamedDependency[Authenticator]
    ) -> dict[str, str]:
        key = await authenticator.authenticate(request.headers.get("authorization"))
        return {"id": key.id}

    def from_state(name: str) -> Provide:
        def provide(state: State) -> Any:
            return state[name]

        return Provide(provide, sync_to_thread=False)

    return Litestar(
        route_handlers=[*ROUTES, whoami],
        dependencies={
            name: from_state(name) for name in ("key_store", "settings", "authenticator")
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
    )


@pytest.fixture
async def http(store_url: str, client: redis.Redis) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(build_app(store_url)) as test_client:
        yield test_client


def assert_error(body: Any, type_: str, code: str | None) -> str:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (type_, code)
    assert isinstance(error["message"], str) and error["message"]
    return error["message"]


async def test_key_lifecycle(http: AsyncTestClient) -> None:
    created = await http.post(
        "/admin/keys", json={"name": "alice", "rpm": 60, "models": ["smollm2"]}, headers=ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    assert list(body)[:2] == ["id", "key"]
    assert body["key"].startswith("sk-lg-")
    assert (body["name"], body["rpm"], body["models"], body["revoked_at"]) == (
        "alice",
        60,
        ["smollm2"],
        None,
    )
    assert "sha256" not in created.text and "hash" not in created.text
    key_id, secret = body["id"], body["key"]

    whoami = await http.get("/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert whoami.status_code == 200 and whoami.json() == {"id": key_id}

    listed = await http.get("/admin/keys", headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json()["object"] == "list"
    assert [k["id"] for k in listed.json()["data"]] == [key_id]
    assert secret not in listed.text and "sha256" not in listed.text

    shown = await http.get(f"/admin/keys/{key_id}", headers=ADMIN)
    assert shown.status_code == 200
    assert shown.json()["name"] == "alice" and "key" not in shown.json()

    patched = await http.patch(
        f"/admin/keys/{key_id}", json={"rpm": None, "tpm": 5000, "weight": 2.5}, headers=ADMIN
    )
    assert patched.status_code == 200
    assert (patched.json()["rpm"], patched.json()["tpm"], patched.json()["weight"]) == (
        None,
        5000,
        2.5,
    )

    revoked = await http.delete(f"/admin/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["id"] == key_id and revoked.json()["revoked_at"] is not None

    refused = await http.get("/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert_error(refused.json(), "invalid_request_error", "invalid_api_key")
    assert secret not in refused.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer"}],
)
async def test_the_guard_refuses_without_the_admin_token(
    http: AsyncTestClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys/key_x"),
        ("PATCH", "/admin/keys/key_x"),
        ("DELETE", "/admin/keys/key_x"),
    ]:
        response = await http.request(method, path, headers=headers, json={"name": "x"})
        assert response.status_code == 401, (method, path)
        message = assert_error(response.json(), "invalid_request_error", "invalid_api_key")
        assert TOKEN not in message
    listed = await http.get("/admin/keys", headers=ADMIN)
    assert listed.json()["data"] == []  # the refused POSTs made nothing


async def test_no_admin_token_configured_refuses_everything(
    store_url: str, client: redis.Redis
) -> None:
    async with AsyncTestClient(build_app(store_url, admin_token=None)) as http:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            response = await http.get("/admin/keys", headers=headers)
            assert response.status_code == 401


async def test_unknown_ids_are_404(http: AsyncTestClient) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await http.request(
            method, "/admin/keys/key_nope", headers=ADMIN, json={"rpm": 1}
        )
        assert response.status_code == 404, method
        message = assert_error(response.json(), "invalid_request_error", "key_not_found")
        assert "key_nope" in message
        assert response.json()["error"]["param"] == "id"


@pytest.mark.parametrize(
    ("method", "body", "param"),
    [
        ("POST", {"name": "x", "rpm": -1}, "rpm"),
        ("POST", {"name": "x", "rpm": "sixty"}, "rpm"),
        ("POST", {"name": "x", "owner": "me"}, "owner"),
        ("POST", {"rpm": 5}, "name"),
        ("POST", {"name": "x", "self": 1}, "self"),
        ("PATCH", {"weight": 0}, "weight"),
        ("PATCH", {"key_id": "key_other"}, "key_id"),
        ("PATCH", {"disabled": "no"}, "disabled"),
        ("PATCH", {}, None),
    ],
)
async def test_bad_bodies_are_400(
    http: AsyncTestClient, method: str, body: dict[str, Any], param: str | None
) -> None:
    created = await http.post("/admin/keys", json={"name": "target"}, headers=ADMIN)
    path = "/admin/keys" if method == "POST" else f"/admin/keys/{created.json()['id']}"
    response = await http.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 400
    assert_error(response.json(), "invalid_request_error", None)
    assert response.json()["error"]["param"] == param


async def test_a_body_that_is_not_an_object_is_400(http: AsyncTestClient) -> None:
    for content in (b"[1, 2]", b"{not json"):
        response = await http.post(
            "/admin/keys",
            content=content,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert_error(response.json(), "invalid_request_error", None)
