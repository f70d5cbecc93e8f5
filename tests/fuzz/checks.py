"""What must hold for every answer, whatever was sent (#15, Tests):

- no 5xx made by the gateway: never a 500; a 503 only with ``Retry-After`` (overload, no
  backend), a 502/504 only for an upstream fault; a backend's own 501 ("not supported by this
  model"), in llama-server's shape, passes through as the backend's word;
- every 4xx is JSON in the error shape of its surface (OpenAI, Anthropic, Ollama);
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
    elif status == 501:
        assert json.loads(body)["error"]["code"] == 501, sent  # llama-server's own
    elif status >= 500:
        assert status in (502, 504), sent
    if 400 <= status < 500:
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
