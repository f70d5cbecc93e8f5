"""What must hold for every answer, whatever was sent (#15, Tests):

- no 5xx made by the gateway: never a 500; a 503 only with ``Retry-After`` (overload, no
  backend), a 502/504 only for an upstream fault, a 501 only for an operation not offered
  (an Ollama route the gateway does not serve; infill on a model without FIM tokens);
- every 4xx and 501 is JSON in the error shape of its surface (OpenAI, Anthropic, Ollama);
- every answer carries the security headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.surfaces import Surface, surface_of


def check_answer(
    method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    sent = f"{method} {path} -> {status}: {body[:400]!r}"
    assert headers.get("x-content-type-options") == "nosniff", sent
    assert headers.get("referrer-policy") == "no-referrer", sent
    assert status != 500 and status < 600, sent
    if status == 503:
        assert "retry-after" in {name.lower() for name in headers}, sent
    elif status >= 500:
        assert status in (501, 502, 504), sent
    if method == "HEAD":  # an answer to HEAD has no body, by definition
        return
    if 400 <= status < 500 or status == 501:
        assert headers.get("content-type", "").startswith("application/json"), sent
        check_shape(surface_of(path), json.loads(body), sent)


def check_shape(surface: Surface, body: Any, sent: str) -> None:
    assert isinstance(body, dict), sent
    if surface is Surface.OLLAMA:
        assert isinstance(body.get("error"), str) and body["error"], sent
    elif surface is Surface.ANTHROPIC:
        assert body.get("type") == "error", sent
        assert isinstance(body["error"]["message"], str) and body["error"]["type"], sent
    else:
        error = body.get("error")
        assert isinstance(error, dict), sent
        assert isinstance(error.get("message"), str) and error["message"], sent
        assert isinstance(error.get("type"), str), sent
