"""The OpenAI request as the gateway sees it: the fields the gateway needs are read and
checked, and nothing more; every other field (tools, response_format, logprobs, images, …)
reaches the backend untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from gateway.units import parse_duration


class Endpoint(StrEnum):
    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"


#: Typical bytes per token of English text under BPE vocabularies; only for estimates.
BYTES_PER_TOKEN = 4
#: Completion tokens assumed when a request sets no ``max_tokens``.
DEFAULT_COMPLETION_ESTIMATE = 256

_REQUIRED = {
    Endpoint.CHAT: "messages",
    Endpoint.COMPLETIONS: "prompt",
    Endpoint.EMBEDDINGS: "input",
}


@dataclass(slots=True)
class ParsedRequest:
    endpoint: Endpoint
    model: str
    body: dict[str, Any]
    raw: bytes
    stream: bool
    #: The client asked for the usage chunk (``stream_options.include_usage``).
    wants_usage: bool
    max_tokens: int | None
    #: Seconds to keep the model loaded after this request (Ollama's ``keep_alive``;
    #: ``math.inf`` for -1); ``None``: the model's own. Not forwarded.
    keep_alive: float | None = None

    def upstream_body(self) -> bytes:
        """What the backend receives: the client's bytes, unless a stream must be asked for
        usage (so that every request is accounted) — then re-encoded once."""
        if not self.stream or self.wants_usage:
            return self.raw
        body = dict(self.body)
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return msgspec.json.encode(body)

    def prompt_size(self) -> int:
        """Bytes of prompt text: an upper bound on its tokens, before any chat template."""
        source = self.body.get(_REQUIRED[self.endpoint])
        return len(msgspec.json.encode(source))

    def estimated_tokens(self) -> int:
        """Tokens this request will likely cost, before it runs: what token limits charge
        and fair queueing weighs (corrected with the real count afterwards)."""
        prompt = self.prompt_size() // BYTES_PER_TOKEN
        if self.endpoint is Endpoint.EMBEDDINGS:
            return prompt
        return prompt + (self.max_tokens or DEFAULT_COMPLETION_ESTIMATE)


def parse(endpoint: Endpoint, raw: bytes) -> ParsedRequest:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")

    field = _REQUIRED[endpoint]
    if field not in body:
        raise InvalidRequest(f"Missing required parameter: '{field}'.", param=field)
    _check_field(endpoint, body[field])

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    if stream and endpoint is Endpoint.EMBEDDINGS:
        raise InvalidRequest("Embeddings cannot be streamed.", param="stream")

    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    wants_usage = bool(options and options.get("include_usage"))

    max_tokens = None
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(
                f"Invalid '{name}': expected an integer of at least 1, got {value!r}.",
                param=name,
            )
        max_tokens = value
    keep_alive = None
    if "keep_alive" in body:  # the gateway's field, not llama-server's: taken out here
        keep_alive = _keep_alive(body.pop("keep_alive"))
        raw = msgspec.json.encode(body)
    return ParsedRequest(endpoint, model, body, raw, stream, wants_usage, max_tokens, keep_alive)


def _keep_alive(value: Any) -> float:
    try:
        return parse_duration(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"Invalid 'keep_alive': expected a duration such as 30s, 5m, 1h, 0 or -1, "
            f"got {value!r}.",
            param="keep_alive",
        ) from None


def _check_field(endpoint: Endpoint, value: Any) -> None:
    if endpoint is Endpoint.CHAT:
        if not isinstance(value, list) or not value:
            raise _type_error("messages", "a non-empty array", value)
        for i, message in enumerate(value):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequest(
                    f"Invalid 'messages[{i}]': expected an object with a string 'role'.",
                    param=f"messages[{i}]",
                )
    elif endpoint is Endpoint.COMPLETIONS:
        if not (isinstance(value, str) or (isinstance(value, list) and value)):
            raise _type_error("prompt", "a string or a non-empty array", value)
    elif not (isinstance(value, str) or (isinstance(value, list) and value)):
        raise _type_error("input", "a string or a non-empty array", value)


def _type_error(param: str, expected: str, got: Any) -> InvalidRequest:
    kind = type(got).__name__ if got is not None else "null"
    message = f"Invalid type for '{param}': expected {expected}, got {kind}."
    return InvalidRequest(message, param=param)
