"""Who may see what (#15 items 6 and 12), on a gateway started as a team would: API keys on,
an admin token, a metrics token, one CORS origin; real backends, the real command line.

- ``/metrics`` wants the metrics token; ``/runners`` and ``/ready``'s backend list the admin
  token; ``/ready``'s status code is the same for every probe.
- Every answer carries ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.
- CORS: the listed origin is allowed, another is not.
- ``//v1/models`` without a key is a 401 in OpenAI's shape, not a 500.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import Gateway, LlamaServer

ADMIN = "edge-admin-token"
METRICS = "edge-metrics-token"
ORIGIN = "https://chat.example.com"


@pytest.fixture(scope="module")
def guarded(backends: list[LlamaServer]) -> Iterator[Gateway]:
    gw = Gateway(
        "--backend",
        backends[0].url,
        "--admin-token",
        ADMIN,
        env={"LLAMA_GATEWAY_METRICS_TOKEN": METRICS, "LLAMA_GATEWAY_CORS_ORIGINS": ORIGIN},
    )
    try:
        yield gw.start()
    finally:
        gw.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_metrics_need_the_metrics_token(guarded: Gateway, backends: list[LlamaServer]) -> None:
    _openai_error(httpx.get(f"{guarded.url}/metrics"), 401)
    _openai_error(httpx.get(f"{guarded.url}/metrics", headers=_bearer(ADMIN)), 401)
    scraped = httpx.get(f"{guarded.url}/metrics", headers=_bearer(METRICS))
    assert scraped.status_code == 200
    assert "llama_gateway_backend_up" in scraped.text


def test_ready_shows_backends_only_to_the_admin(
    guarded: Gateway, backends: list[LlamaServer]
) -> None:
    anyone = httpx.get(f"{guarded.url}/ready")
    admin = httpx.get(f"{guarded.url}/ready", headers=_bearer(ADMIN))
    assert anyone.status_code == admin.status_code == 200
    assert anyone.json() == {"status": "ready", "store": True}
    address = backends[0].url.removeprefix("http://")
    assert address not in anyone.text
    assert [b["backend"] for b in admin.json()["backends"]] == [address]


def test_runners_need_the_admin_token(guarded: Gateway) -> None:
    _openai_error(httpx.get(f"{guarded.url}/runners"), 401)
    _openai_error(httpx.get(f"{guarded.url}/runners", headers=_bearer(METRICS)), 401)
    shown = httpx.get(f"{guarded.url}/runners", headers=_bearer(ADMIN))
    assert shown.status_code == 200 and set(shown.json()) >= {"models", "runners"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/runners"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/no/such/path"),
        ("DELETE", "/v1/models"),
        ("GET", "/admin/keys"),
    ],
)
def test_every_answer_carries_the_security_headers(
    guarded: Gateway, method: str, path: str
) -> None:
    response = httpx.request(method, f"{guarded.url}{path}")
    assert response.headers["x-content-type-options"] == "nosniff", response.status_code
    assert response.headers["referrer-policy"] == "no-referrer"


def test_double_slash_path_without_a_key_is_a_401_not_a_500(guarded: Gateway) -> None:
    for path in ("//v1/models", "//v1//chat/completions", "/v1//models"):
        method = "POST" if "chat" in path else "GET"
        error = _openai_error(httpx.request(method, f"{guarded.url}{path}", json={}), 401)
        assert error["code"] == "invalid_api_key"


def test_cors_allows_the_listed_origin_only(guarded: Gateway) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = httpx.options(
        f"{guarded.url}/v1/chat/completions", headers={"Origin": ORIGIN, **preflight}
    )
    assert allowed.status_code in (200, 204), allowed.text
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    other = httpx.options(
        f"{guarded.url}/v1/chat/completions",
        headers={"Origin": "https://evil.example", **preflight},
    )
    assert "access-control-allow-origin" not in other.headers
    simple = httpx.get(f"{guarded.url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_is_off_by_default(gateway: Gateway) -> None:
    """The session gateway sets no origins: no CORS header for any origin."""
    answer = httpx.options(
        f"{gateway.url}/v1/chat/completions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in answer.headers
