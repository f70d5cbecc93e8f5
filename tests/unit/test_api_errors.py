"""``gateway/surfaces/errors.py``: every refusal leaves in OpenAI's error shape with its status.

A tiny Litestar app with the gateway's exception handlers and one route per exception,
driven in-process by Litestar's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from gateway.errors import (
    BackendError,
    BackendFailed,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoBackend,
    PayloadTooLarge,
    QueueFull,
    QueueTimeout,
    RateLimited,
)
from gateway.surfaces.errors import EXCEPTION_HANDLERS

BACKEND_BODY = b'{"error":{"code":400,"message":"bad grammar","type":"invalid_request_error"}}'

RAISED: dict[str, Exception] = {
    "invalid": InvalidRequest("Invalid 'messages[2]': no role.", param="messages[2]"),
    "context": ContextLengthExceeded("The prompt needs 5000 tokens; the context holds 4096."),
    "model": ModelNotFound("The model 'gpt-4o' does not exist"),
    "large": PayloadTooLarge("too large"),
    "queue-full": QueueFull("The queue for model 'm' is full", retry_after=2.3),
    "queue-timeout": QueueTimeout("No slot became free", retry_after=0.2),
    "no-backend": NoBackend("No backend serves 'm'"),
    "limited": RateLimited(
        "Rate limit reached",
        retry_after=7,
        headers={"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0"},
    ),
    "backend": BackendError(400, BACKEND_BODY),
    "backend-text": BackendError(404, b"File Not Found", "text/plain"),
    "backend-failed": BackendFailed(503, b'{"error":{"code":503,"message":"Loading model"}}'),
    "boom": RuntimeError("secret internals: password=hunter2"),
}


@get("/raise/{name:str}")
async def raise_it(name: FromPath[str]) -> None:
    raise RAISED[name]


@post("/echo")
async def echo(request: Request) -> bytes:
    return await request.body()


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[AsyncTestClient]:
    app = Litestar(
        [raise_it, echo], exception_handlers=EXCEPTION_HANDLERS, request_max_body_size=64
    )
    async with AsyncTestClient(app) as test_client:
        yield test_client


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("name", "status", "type_", "code", "param"),
    [
        ("invalid", 400, "invalid_request_error", None, "messages[2]"),
        ("context", 400, "invalid_request_error", "context_length_exceeded", None),
        ("model", 404, "invalid_request_error", "model_not_found", None),
        ("large", 413, "invalid_request_error", "request_too_large", None),
        ("queue-full", 429, "rate_limit_error", "queue_full", None),
        ("queue-timeout", 503, "service_unavailable_error", "queue_timeout", None),
        ("no-backend", 503, "service_unavailable_error", "no_backend", None),
        ("limited", 429, "rate_limit_error", "rate_limit_exceeded", None),
    ],
)
async def test_gateway_errors(
    client: AsyncTestClient, name: str, status: int, type_: str, code: str | None, param: str | None
) -> None:
    error = _error(await client.get(f"/raise/{name}"), status)
    assert error == {
        "message": RAISED[name].args[0],
        "type": type_,
        "param": param,
        "code": code,
    }


@pytest.mark.parametrize("name", ["invalid", "context", "model", "large", "no-backend"])
async def test_no_retry_after_without_a_hint(client: AsyncTestClient, name: str) -> None:
    assert "retry-after" not in (await client.get(f"/raise/{name}")).headers


async def test_queue_full_retry_after_rounds_up(client: AsyncTestClient) -> None:
    response = await client.get("/raise/queue-full")
    assert response.headers["retry-after"] == "3"


async def test_retry_after_is_at_least_one_second(client: AsyncTestClient) -> None:
    response = await client.get("/raise/queue-timeout")
    assert response.headers["retry-after"] == "1"


async def test_rate_limited_carries_its_headers(client: AsyncTestClient) -> None:
    response = await client.get("/raise/limited")
    _error(response, 429)
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-limit-requests"] == "10"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_raising_does_not_leak_headers_into_the_exception() -> None:
    error = RateLimited("r", retry_after=1, headers={"x-ratelimit-remaining-requests": "0"})
    app = Litestar([], exception_handlers=EXCEPTION_HANDLERS)

    @get("/r")
    async def r() -> None:
        raise error

    app.register(r)
    async with AsyncTestClient(app) as test_client:
        await test_client.get("/r")
        await test_client.get("/r")
    assert error.headers == {"x-ratelimit-remaining-requests": "0"}


async def test_backend_error_passes_through(client: AsyncTestClient) -> None:
    response = await client.get("/raise/backend")
    assert response.status_code == 400
    assert response.content == BACKEND_BODY
    assert response.headers["content-type"] == "application/json"


async def test_backend_error_keeps_its_content_type(client: AsyncTestClient) -> None:
    response = await client.get("/raise/backend-text")
    assert response.status_code == 404
    assert response.content == b"File Not Found"
    # Litestar may add a charset parameter to text types; the type itself is the backend's.
    assert response.headers["content-type"].split(";")[0] == "text/plain"


async def test_backend_failure_passes_through(client: AsyncTestClient) -> None:
    response = await client.get("/raise/backend-failed")
    assert response.status_code == 503
    assert response.content == b'{"error":{"code":503,"message":"Loading model"}}'


async def test_unexpected_error_is_a_500_without_details(client: AsyncTestClient) -> None:
    response = await client.get("/raise/boom")
    error = _error(response, 500)
    assert error["type"] == "server_error"
    assert error["param"] is None
    assert error["code"] is None
    assert "secret" not in response.text
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text


async def test_plain_gateway_error_is_a_500(client: AsyncTestClient) -> None:
    RAISED["plain"] = GatewayError("something broke", code="upstream_incomplete")
    try:
        error = _error(await client.get("/raise/plain"), 500)
    finally:
        del RAISED["plain"]
    assert error == {
        "message": "something broke",
        "type": "server_error",
        "param": None,
        "code": "upstream_incomplete",
    }


async def test_unknown_path_is_404(client: AsyncTestClient) -> None:
    error = _error(await client.get("/v1/nothing-here"), 404)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "not_found"
    assert error["message"] == "Unknown request URL: GET /v1/nothing-here"


async def test_wrong_method_is_405(client: AsyncTestClient) -> None:
    response = await client.get("/echo")
    error = _error(response, 405)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
    assert "POST" in response.headers["allow"]


async def test_body_over_the_limit_is_413(client: AsyncTestClient) -> None:
    error = _error(await client.post("/echo", content=b"x" * 65), 413)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_too_large"


async def test_body_at_the_limit_passes(client: AsyncTestClient) -> None:
    response = await client.post("/echo", content=b"x" * 64)
    assert response.status_code == 201
    assert response.content == b"x" * 64
