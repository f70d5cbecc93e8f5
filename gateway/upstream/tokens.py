"""Does a prompt fit the backend's context? Answered *before* the request waits for a slot,
because llama-server only checks once a slot takes the task — after the queue.

Short prompts are waved through without a round trip: a token covers at least one byte, so a
prompt of fewer bytes than the context (plus room for the chat template) always fits. Longer
ones are counted exactly by the backend's tokenizer, which needs no slot: chat, Messages and
Responses by their own token-counting routes, raw prompts by ``/tokenize``. In a batch of
prompts only the ones long enough to be in doubt are counted, together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.errors import ContextLengthExceeded, GatewayError
from gateway.requests import Endpoint, ParsedRequest
from gateway.upstream.client import BackendClient

#: Tokens a chat template may add: a default system prompt plus a few per message.
TEMPLATE_ALLOWANCE = 128
PER_MESSAGE_ALLOWANCE = 8

#: The backend route that counts a whole request's prompt, by endpoint.
_COUNTERS = {
    Endpoint.CHAT: "/v1/chat/completions/input_tokens",
    Endpoint.MESSAGES: "/v1/messages/count_tokens",
    Endpoint.RESPONSES: "/v1/responses/input_tokens",
}
#: Endpoints whose prompts are raw text, counted with ``/tokenize``.
_TOKENIZED = (Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS, Endpoint.COMPLETION, Endpoint.EMBEDDING)
#: The parameter a refusal names, by endpoint.
_PARAMS = {Endpoint.CHAT: "messages", Endpoint.MESSAGES: "messages", Endpoint.RESPONSES: "input"}


def _allowance(request: ParsedRequest) -> int:
    messages = request.body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    return TEMPLATE_ALLOWANCE + PER_MESSAGE_ALLOWANCE * count


def surely_fits(request: ParsedRequest, n_ctx: int) -> bool:
    return request.prompt_size() + _allowance(request) < n_ctx


async def check_context(client: BackendClient, request: ParsedRequest, n_ctx: int) -> None:
    """Raise :class:`ContextLengthExceeded` if the prompt cannot fit ``n_ctx`` tokens."""
    endpoint = request.endpoint
    if n_ctx <= 0 or (endpoint not in _COUNTERS and endpoint not in _TOKENIZED):
        return
    if surely_fits(request, n_ctx):
        return
    try:
        counts = await _count(client, request, n_ctx)
    except GatewayError:
        return  # cannot count now: let the backend judge, as it would without the gateway
    # Generation needs one free position; embeddings may fill the context exactly.
    generates = request.spec.generates
    limit = n_ctx - 1 if generates else n_ctx
    longest = max(counts, default=0)
    if longest > limit:
        param = _PARAMS.get(endpoint, "prompt" if generates else "input")
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, your "
            f"{'messages' if param == 'messages' else 'prompt'} resulted in {longest} tokens. "
            "Please reduce the length of the prompt.",
            param=param,
        )


async def _count(client: BackendClient, request: ParsedRequest, n_ctx: int) -> list[int]:
    counter = _COUNTERS.get(request.endpoint)
    if counter is not None:
        answer = await _post_json(client, counter, request.raw)
        return [int(answer["input_tokens"])]
    field = request.spec.prompt or "prompt"
    value = request.body[field]
    # A list of strings is a batch: each must fit. A list of ints is one tokenized prompt.
    texts: list[Any] = value if _is_batch(value) else [value]
    counts = [len(t) for t in texts if isinstance(t, list)]  # already token ids
    in_doubt = [
        t for t in texts if isinstance(t, str) and len(t.encode()) + TEMPLATE_ALLOWANCE >= n_ctx
    ]
    counts += await asyncio.gather(*(_tokens(client, text) for text in in_doubt))
    return counts


def _is_batch(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and not isinstance(value[0], int)


async def _tokens(client: BackendClient, text: str) -> int:
    body = msgspec.json.encode({"content": text, "add_special": True})
    return len((await _post_json(client, "/tokenize", body))["tokens"])


async def _post_json(client: BackendClient, path: str, body: bytes) -> dict:
    response = await client.open(path, body)
    return msgspec.json.decode(await response.read())
