"""``surfaces/direct.py``: which requests are answered without Litestar's router, and which
are left to it — in process, on the app's real routes, with what is left to Litestar
recorded instead of routed. (That the answers match Litestar's is
``tests/integration/test_direct_routes.py``.)"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar

from gateway.app import create_app
from gateway.config import Settings
from gateway.surfaces.direct import DirectRoutes

OLLAMA = {"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"}
DIRECT = OLLAMA | {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/responses/input_tokens",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/completion",
    "/infill",
    "/embedding",
    "/tokenize",
    "/detokenize",
    "/apply-template",
    "/v1/rerank",
    "/v1/reranking",
    "/rerank",
    "/reranking",
}


def _app(**settings: Any) -> tuple[Litestar, DirectRoutes, list[str]]:
    app = create_app(Settings(backends=["http://127.0.0.1:9"], **settings))
    direct = app.asgi_handler.app  # type: ignore[attr-defined]  # within the edge
    assert isinstance(direct, DirectRoutes)
    reached: list[str] = []

    async def litestar(scope: dict, receive: Any, send: Any) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    direct.inner = litestar
    return app, direct, reached


async def _call(
    app: Litestar, method: str, path: str, headers: list[tuple[bytes, bytes]] = ()
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def test_every_route_that_carries_a_request_to_a_backend_is_answered_directly() -> None:
    _, direct, _ = _app(admin_token="t")
    assert set(direct.routes) == DIRECT


@pytest.mark.parametrize("path", sorted(DIRECT))
async def test_a_post_to_a_direct_route_never_reaches_the_router(path: str) -> None:
    """Without a key it is refused — by the route's own guard, in its surface's shape."""
    app, _, reached = _app(admin_token="t")
    status, headers, body = await _call(app, "POST", path)
    assert reached == []
    assert status == 401
    assert headers[b"content-type"] == b"application/json"
    error = msgspec.json.decode(body)
    if path.startswith("/v1/messages"):
        assert error["type"] == "error" and error["error"]["type"] == "authentication_error"
    elif path in OLLAMA:
        assert isinstance(error["error"], str) and error["error"]
    else:
        assert error["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/chat/completions", []),  # another method: Litestar's 405
        ("OPTIONS", "/v1/chat/completions", []),  # a CORS preflight
        ("POST", "/v1/chat/completions/", []),  # another path (Litestar's trailing slash)
        ("POST", "/v1/models", []),
        ("POST", "/api/show", []),  # a model view: no backend
        ("POST", "/v1/chat/completions", [(b"origin", b"https://app.example.com")]),
    ],
)
async def test_everything_else_is_litestar_s(
    method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    app, _, reached = _app(admin_token="t", cors_origins=["https://app.example.com"])
    status, _, _ = await _call(app, method, path, headers)
    assert (status, reached) == (204, [f"{method} {path}"])


async def test_without_cors_a_browser_s_post_is_answered_directly() -> None:
    """No origins configured: Litestar would add nothing for an ``Origin`` either."""
    app, _, reached = _app(admin_token="t")
    status, _, _ = await _call(app, "POST", "/v1/chat/completions", [(b"origin", b"https://x")])
    assert (status, reached) == (401, [])
