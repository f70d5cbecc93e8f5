"""Fuzzing every route of a real gateway (#15, Tests) with hypothesis, beyond what the OpenAPI
document describes (``test_openapi.py`` fuzzes from that): bodies that are random JSON,
near-valid requests with each known field given odd values, bytes that are not JSON, odd path
parameters, query strings and credentials (none, junk, a key, the admin or metrics token).
The routes are read from the app itself: a new route is fuzzed without a change here.

What must hold is in ``checks.py``. The examples per route are bounded
(``LLAMA_GATEWAY_FUZZ_EXAMPLES``, default 6) and the same on every run (derandomized).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.config import load_settings
from tests.fuzz.checks import check_answer
from tests.fuzz.conftest import ADMIN, METRICS
from tests.support.processes import Gateway

pytestmark = pytest.mark.llama

EXAMPLES = int(os.environ.get("LLAMA_GATEWAY_FUZZ_EXAMPLES", "6"))
#: Answers that never end on their own (server-sent events of the console).
ENDLESS = {"/ui/events"}
_PARAM = re.compile(r"\{(\w+):\w+\}")


def _routes() -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, read from the app."""
    app = create_app(load_settings({"backends": ["http://127.0.0.1:9"], "admin_token": "x"}))
    found = set()
    for route in app.routes:
        for method in getattr(route, "methods", ()):
            if method not in ("OPTIONS", "HEAD") and route.path not in ENDLESS:
                found.add((method, route.path))
    return sorted(found)


ROUTES = _routes()


@pytest.fixture(scope="module")
def fuzzed(fuzz_gateway: Callable[[], tuple[Gateway, str]]) -> tuple[Gateway, str]:
    return fuzz_gateway()


# -- what is sent -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
MODELS = st.sampled_from(["smollm2", "smol", "no-such-model", "", "../etc/passwd"]) | JSON
TEXT = st.text(max_size=40)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]) | JSON},
    optional={
        "content": TEXT | st.lists(st.fixed_dictionaries({"type": TEXT, "text": TEXT})) | JSON,
        "tool_calls": JSON,
        "name": JSON,
    },
)
#: Fields the surfaces read, each with plausible and implausible values.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "messages": st.lists(MESSAGE, max_size=3) | JSON,
    "prompt": TEXT | st.lists(TEXT, max_size=3) | JSON,
    "input": TEXT | st.lists(TEXT, max_size=3) | JSON,
    "content": TEXT | JSON,
    "query": TEXT | JSON,
    "documents": st.lists(TEXT, max_size=3) | JSON,
    "max_tokens": st.integers(-2, 8) | JSON,
    "max_completion_tokens": st.integers(-2, 8) | JSON,
    "max_output_tokens": st.integers(-2, 8) | JSON,
    "n_predict": st.integers(-2, 8) | JSON,
    "n": st.integers(-1, 3) | JSON,
    "stream": st.booleans() | JSON,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | JSON,
    "temperature": st.floats(-1, 3) | JSON,
    "top_p": JSON,
    "stop": TEXT | st.lists(TEXT, max_size=2) | JSON,
    "tools": JSON,
    "tool_choice": JSON,
    "response_format": JSON,
    "seed": JSON,
    "logprobs": JSON,
    "keep_alive": st.sampled_from(["5m", "0", "-1", "x"]) | st.integers(-1, 60) | JSON,
    "options": st.fixed_dictionaries({}, optional={"num_predict": st.integers(-2, 8)}) | JSON,
    "format": st.sampled_from(["json", ""]) | JSON,
    "system": TEXT | JSON,
    "images": JSON,
    "think": JSON,
    "raw": JSON,
    "suffix": JSON,
    "tokens": st.lists(st.integers(-5, 50_000), max_size=5) | JSON,
    "name": TEXT | JSON,
    "rpm": JSON,
    "tpm": JSON,
    "models": JSON,
}


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    body = {"model": draw(MODELS)}
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=5, unique=True)):
        body[field] = draw(FIELDS[field])
    if draw(st.booleans()):  # a valid generation stays short
        body.setdefault("max_tokens", 2)
        body.setdefault("n_predict", 2)
        body.setdefault("options", {"num_predict": 2})
    return body


BODIES = st.one_of(
    near_valid().map(lambda body: ("json", body)),
    JSON.map(lambda body: ("json", body)),
    st.binary(max_size=64).map(lambda raw: ("raw", raw)),
    st.just(("raw", b"")),
    st.just(("json", {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]})),
)
AUTH = st.sampled_from(["key", "admin", "metrics", "none", "junk", "basic"])
QUERY = st.dictionaries(st.sampled_from(["model", "status", "key", "limit", "q", "x"]), TEXT)


def _path(template: str, values: list[str]) -> str:
    replacements = iter(values)
    return _PARAM.sub(lambda _: quote(next(replacements), safe="") or "x", template)


def _headers(auth: str, key: str) -> dict[str, str]:
    return {
        "key": {"Authorization": f"Bearer {key}"},
        "admin": {"Authorization": f"Bearer {ADMIN}"},
        "metrics": {"Authorization": f"Bearer {METRICS}"},
        "none": {},
        "junk": {"Authorization": "Bearer sk-lg-not-a-key"},
        "basic": {"Authorization": "Basic Zm9vOmJhcg=="},
    }[auth]


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_survives_fuzzing(fuzzed: tuple[Gateway, str], method: str, template: str) -> None:
    gw, key = fuzzed

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples on every run: a failure here is reproducible
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        body=BODIES,
        auth=AUTH,
        query=QUERY,
        params=st.lists(st.text(min_size=0, max_size=30), min_size=3, max_size=3),
    )
    def one(body: tuple[str, Any], auth: str, query: dict[str, str], params: list[str]) -> None:
        path = _path(template, params)
        kind, payload = body
        headers = _headers(auth, key)
        with httpx.Client(base_url=gw.url, timeout=60) as client:
            if method in ("GET", "DELETE"):
                response = client.request(method, path, params=query, headers=headers)
            elif kind == "json":
                response = client.request(method, path, json=payload, headers=headers)
            else:
                headers = {**headers, "Content-Type": "application/json"}
                response = client.request(method, path, content=payload, headers=headers)
        check_answer(method, path, response.status_code, response.headers, response.content)

    one()
