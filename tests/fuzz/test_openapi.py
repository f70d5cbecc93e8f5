"""Fuzzing from the gateway's own OpenAPI document (``/openapi.json``) with schemathesis: for
every operation it documents, requests that follow the schema and requests that break it
(negative mode), sent to a real gateway over a real ``llama-server``, with the credentials
the route wants so that the fuzzing reaches past auth. What must hold is in ``checks.py``.

Bounded: ``LLAMA_GATEWAY_FUZZ_EXAMPLES`` examples per operation (default 6), derandomized.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.app import create_app
from gateway.config import load_settings
from tests.fuzz.checks import check_answer
from tests.fuzz.conftest import ADMIN, METRICS
from tests.support.processes import Gateway

pytestmark = pytest.mark.llama

EXAMPLES = int(os.environ.get("LLAMA_GATEWAY_FUZZ_EXAMPLES", "6"))


def _document() -> dict:
    """The document the gateway serves at ``/openapi.json``, built from the app itself (the
    live gateway below serves the same app)."""
    app = create_app(load_settings({"backends": ["http://127.0.0.1:9"], "admin_token": "x"}))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(_document()).exclude(
    # Server-sent events that never end; a pull that would write to disk.
    path=["/ui/events", "/api/pull"]
)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)


@pytest.fixture(scope="module")
def documented(fuzz_gateway: Callable[[], tuple[Gateway, str]]) -> tuple[Gateway, str]:
    gw, key = fuzz_gateway()
    served = httpx.get(f"{gw.url}/openapi.json", timeout=30)
    assert (
        served.status_code == 200 and served.json()["paths"].keys() == _document()["paths"].keys()
    )
    return gw, key


def _credentials(path: str, key: str) -> dict[str, str]:
    if path.startswith(("/admin", "/runners", "/ui", "/ready")):
        return {"Authorization": f"Bearer {ADMIN}"}
    if path == "/metrics":
        return {"Authorization": f"Bearer {METRICS}"}
    return {"Authorization": f"Bearer {key}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_documented_operation_survives_fuzzing(
    case: schemathesis.Case, documented: tuple[Gateway, str]
) -> None:
    gw, key = documented
    headers = {**_credentials(case.path, key), **(case.headers or {})}
    response = case.call(base_url=gw.url, headers=headers, timeout=60)
    # schemathesis' Response keeps every value of a header, in a list.
    headers = {name.lower(): values[0] for name, values in response.headers.items()}
    check_answer(case.method, case.formatted_path, response.status_code, headers, response.content)
