"""Anthropic's Messages API — ``POST /v1/messages`` (streamed or not) and
``POST /v1/messages/count_tokens`` — as llama-server serves it. Bodies pass through; the
key is accepted from ``x-api-key`` as Anthropic's SDKs send it (or ``Authorization:
Bearer``); ``anthropic-version`` and ``anthropic-beta`` are accepted (llama-server needs
neither); every refusal is in Anthropic's error shape, and a stream that breaks ends with an
``error`` event.
"""

from __future__ import annotations

from litestar import Request, Response, Router, post

from gateway.api.guards import require_api_key
from gateway.errors import InvalidRequest
from gateway.exchange import Dispatcher
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.surfaces import Surface
from gateway.surfaces.openapi import documented
from gateway.surfaces.proxy import proxy

__all__ = ["ANTHROPIC_ROUTER"]


def _parse(endpoint: Endpoint, raw: bytes) -> ParsedRequest:
    parsed = parse(endpoint, raw)
    system = parsed.body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: Input should be a string or a list of text blocks.")
    return parsed


@post(
    "/v1/messages",
    status_code=200,
    operation_class=documented(Endpoint.MESSAGES, Surface.ANTHROPIC),
)
async def messages(request: Request, dispatcher: Dispatcher) -> Response:
    return await proxy(request, dispatcher, _parse(Endpoint.MESSAGES, await request.body()))


@post(
    "/v1/messages/count_tokens",
    status_code=200,
    operation_class=documented(Endpoint.MESSAGES_COUNT_TOKENS, Surface.ANTHROPIC),
)
async def count_tokens(request: Request, dispatcher: Dispatcher) -> Response:
    raw = await request.body()
    return await proxy(request, dispatcher, _parse(Endpoint.MESSAGES_COUNT_TOKENS, raw))


ANTHROPIC_ROUTER = Router(
    path="/",
    route_handlers=[messages, count_tokens],
    guards=[require_api_key],
    opt={"surface": Surface.ANTHROPIC},
)
