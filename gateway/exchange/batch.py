"""Requests that would fill several slots at once — a batch of prompts on
``/v1/completions``, or ``n`` > 1 choices — are split into one request per slot, each with its
own lease, queue place and limits charge, and their answers merged into one. Sent whole, such
a request would hold one lease while occupying many slots (another admitted request then
waits inside llama-server's own queue), and its usage would count one prompt's tokens.

Bounds: at most :data:`MAX_PARTS` slots per request; a streamed request must fit one slot
(one prompt, ``n`` = 1) — each part of a split stream would need its own stream. Each part
counts as a request against the key's requests per minute.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from gateway.exchange.accounting import Exchange
from gateway.exchange.dispatch import Dispatcher
from gateway.requests import Endpoint, ParsedRequest, parse
from gateway.store.apikeys import ApiKey
from gateway.telemetry.request import RequestTelemetry

__all__ = ["MAX_PARTS", "read_parts", "split"]

#: Slots one request may fill (prompts x n).
MAX_PARTS = 64


def split(request: ParsedRequest) -> list[ParsedRequest] | None:
    """The one-slot requests ``request`` is made of; ``None`` when it fills one slot."""
    if request.endpoint not in (Endpoint.CHAT, Endpoint.COMPLETIONS):
        return None
    body = request.body
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidRequest(
            f"Invalid 'n': expected an integer of at least 1, got {n!r}.", param="n"
        )
    prompt = body.get("prompt")
    batch = request.endpoint is Endpoint.COMPLETIONS and _is_batch(prompt)
    prompts: list[Any] = list(prompt) if batch and prompt is not None else [prompt]
    count = len(prompts) * n
    if count == 1:
        return None
    param = "prompt" if batch else "n"
    if request.stream:
        raise InvalidRequest(
            "A streamed request must fill one slot: send one prompt with n = 1 per stream.",
            param=param,
        )
    if count > MAX_PARTS:
        raise InvalidRequest(
            f"This request asks for {count} completions (prompts x n); the gateway takes at "
            f"most {MAX_PARTS} in one request.",
            param=param,
        )
    parts = []
    for one in prompts:
        part = {k: v for k, v in body.items() if k != "n"}
        if batch:
            part["prompt"] = one
        parts.extend([parse(request.endpoint, msgspec.json.encode(part))] * n)
    return parts


def _is_batch(prompt: Any) -> bool:
    """A list of prompts (strings, or token lists), not one prompt given as token ids."""
    return isinstance(prompt, list) and len(prompt) > 0 and not isinstance(prompt[0], int)


async def read_parts(
    dispatcher: Dispatcher,
    parts: list[ParsedRequest],
    *,
    key: ApiKey,
    telemetry: RequestTelemetry,
) -> tuple[bytes, dict[str, str]]:
    """Send every part down the path at once and merge their answers: the choices in order
    (``index`` = prompt x n + choice), the usage summed. A part that fails fails the whole,
    and the others are closed."""
    opening = [
        asyncio.ensure_future(dispatcher.open(p, key=key, telemetry=telemetry)) for p in parts
    ]
    try:
        opened = await asyncio.gather(*opening, return_exceptions=True)
    except BaseException:  # the client left: parts already answered must give their slots back
        _close_opened(dispatcher, opening)
        raise
    failed = [e for e in opened if isinstance(e, BaseException)]
    if failed:
        _close_opened(dispatcher, opening)
        raise failed[0]
    exchanges = [e for e in opened if isinstance(e, Exchange)]
    bodies = await asyncio.gather(*(dispatcher.read_whole(e) for e in exchanges))
    headers = exchanges[-1].limits.headers()
    return msgspec.json.encode(_merge([msgspec.json.decode(b) for b in bodies])), headers


def _close_opened(dispatcher: Dispatcher, opening: list[asyncio.Task[Exchange]]) -> None:
    """Close (499) the parts whose exchange opened, when the whole fails or is cancelled;
    parts still opening are cancelled and clean up after themselves."""
    for task in opening:
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            dispatcher.close(task.result(), status=499)


def _merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(answers[0])
    choices = []
    for i, answer in enumerate(answers):
        for choice in answer.get("choices") or ():
            choices.append({**choice, "index": i})
    merged["choices"] = choices
    usages = [a.get("usage") or {} for a in answers]
    usage: dict[str, Any] = {
        name: sum(int(u.get(name) or 0) for u in usages)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    cached = sum(
        int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0) for u in usages
    )
    usage["prompt_tokens_details"] = {"cached_tokens": cached}
    merged["usage"] = usage
    return merged
