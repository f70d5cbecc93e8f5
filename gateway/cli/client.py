"""How the client commands reach a gateway: ``--url`` (``$LLAMA_GATEWAY_URL``, default the
local one) and ``--api-key`` (``$LLAMA_GATEWAY_API_KEY``), and how its refusals become one
line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from gateway.config import DEFAULT_PORT

__all__ = ["ClientError", "GatewayClient", "add_connection_flags", "fail"]

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


class ClientError(Exception):
    """Why a command could not do its job, in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("LLAMA_GATEWAY_URL", DEFAULT_URL),
        help=f"the gateway (env LLAMA_GATEWAY_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLAMA_GATEWAY_API_KEY"),
        help="an API key, if the gateway wants one (env LLAMA_GATEWAY_API_KEY)",
    )


def error_message(response: httpx.Response) -> str:
    """The message of an OpenAI (``{"error": {"message"}}``) or Ollama (``{"error": "…"}``)
    error body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body)


class GatewayClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0)
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace, timeout: float = 30.0) -> GatewayClient:
        return cls(args.url, args.api_key, timeout)

    def unreachable(self, exc: Exception) -> ClientError:
        return ClientError(
            f"cannot reach the gateway at {self.url} ({type(exc).__name__}); start one with "
            "`llama-gateway serve` (or `make run` in the checkout), or give --url"
        )

    def check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        message = error_message(response)
        code = 1
        if response.status_code == 401:
            message += " (give --api-key or set LLAMA_GATEWAY_API_KEY)"
        raise ClientError(f"the gateway answered {response.status_code}: {message}", code)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.check(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None

    def get_json(self, path: str) -> Any:
        return self.request("GET", path).json()

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body).json()

    def close(self) -> None:
        self.http.close()


def fail(exc: ClientError) -> int:
    print(f"llama-gateway: {exc}", file=sys.stderr)
    return exc.code
