"""Does a prompt fit the backend's context? Answered *before* the request waits for a slot,
because llama-server only checks once a slot takes the task — after the queue.

Short prompts are waved through without a round trip: a token covers at least one byte, so a
prompt of fewer bytes than the context (plus room for the chat template) always fits. Longer
ones are counted exactly by the backend's tokenizer, which needs no slot.
"""

from __future__ import annotations

import msgspec

from gateway.errors import ContextLengthExceeded, GatewayError
from gateway.requests import Endpoint, ParsedRequest
from gateway.upstream.client import BackendClient

#: Tokens a chat template may add: a default system prompt plus a few per message.
TEMPLATE_ALLOWANCE = 128
PER_MESSAGE_ALLOWANCE = 8


def surely_fits(request: ParsedRequest, n_ctx: int) -> bool:
    allowance = TEMPLATE_ALLOWANCE
    if request.endpoint is Endpoint.CHAT:
        allowance += PER_MESSAGE_ALLOWANCE * len(request.body["messages"])
    return request.prompt_size() + allowance < n_ctx


async def check_fits(client: BackendClient, request: ParsedRequest, n_ctx: int) -> None:
    """Raise :class:`ContextLengthExceeded` if the prompt cannot fit ``n_ctx`` tokens."""
    if n_ctx <= 0 or surely_fits(request, n_ctx):
        return
    try:
        counts = await _count(client, request)
    except GatewayError:
        return  # cannot count now: let the backend judge, as it would without the gateway
    # Generation needs one free position; embeddings may fill the context exactly.
    limit = n_ctx if request.endpoint is Endpoint.EMBEDDINGS else n_ctx - 1
    longest = max(counts)
    if longest > limit:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, your "
            f"{'messages' if request.endpoint is Endpoint.CHAT else 'prompt'} resulted in "
            f"{longest} tokens. Please reduce the length of the prompt.",
            param="messages" if request.endpoint is Endpoint.CHAT else "prompt",
        )


async def _count(client: BackendClient, request: ParsedRequest) -> list[int]:
    if request.endpoint is Endpoint.CHAT:
        answer = await _post_json(client, "/v1/chat/completions/input_tokens", request.raw)
        return [int(answer["input_tokens"])]
    field = "prompt" if request.endpoint is Endpoint.COMPLETIONS else "input"
    value = request.body[field]
    # A list of strings is a batch: each must fit. A list of ints is one tokenized prompt.
    if isinstance(value, list) and value and not isinstance(value[0], int):
        texts = value
    else:
        texts = [value]
    counts = []
    for text in texts:
        if isinstance(text, list):  # already token ids
            counts.append(len(text))
            continue
        body = msgspec.json.encode({"content": text, "add_special": True})
        answer = await _post_json(client, "/tokenize", body)
        counts.append(len(answer["tokens"]))
    return counts


async def _post_json(client: BackendClient, path: str, body: bytes) -> dict:
    response = await client.open(path, body)
    return msgspec.json.decode(await response.read())
