"""Anthropic's Messages API — ``POST /v1/messages`` (streamed or not) and
``POST /v1/messages/count_tokens`` — as llama-server serves it. Bodies pass through; the
key is accepted from ``x-api-key`` as Anthropic's SDKs send it (or ``Authorization:
Bearer``); ``anthropic-version`` and ``anthropic-beta`` are accepted (llama-server needs
neither); every refusal is in Anthropic's error shape, and a stream that breaks ends with an
``error`` event.
"""

from __future__ import annotations

from litestar import Request, Router

from gateway.auth.guards import require_api_key
from gateway.errors import InvalidRequest
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.surfaces import Surface
from gateway.surfaces.proxy import forwarding

__all__ = ["ANTHROPIC_ROUTER"]


def _read(endpoint: Endpoint, raw: bytes, request: Request) -> ParsedRequest:
    parsed = parse(endpoint, raw)
    system = parsed.body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: Input should be a string or a list of text blocks.")
    return parsed


ANTHROPIC_ROUTER = Router(
    path="/",
    route_handlers=[
        forwarding(
            "/v1/messages",
            Endpoint.MESSAGES,
            Surface.ANTHROPIC,
            read=_read,
            summary="Anthropic Messages, streamed or not",
        ),
        forwarding(
            "/v1/messages/count_tokens",
            Endpoint.MESSAGES_COUNT_TOKENS,
            Surface.ANTHROPIC,
            read=_read,
            summary="Count a Messages request's input tokens",
        ),
    ],
    guards=[require_api_key],
    opt={"surface": Surface.ANTHROPIC},
)
