"""The request as the gateway sees it, whichever API the client speaks: the fields the gateway
needs are read and checked, and nothing more; every other field (tools, response_format,
logprobs, images, …) reaches the backend untouched.

Each endpoint the gateway forwards is a row of :data:`SPECS`: which field carries the prompt,
whether the request generates tokens and occupies a slot, which field caps its output. The
surfaces (``gateway/surfaces/``) parse with :func:`parse` and the steps below read only the
:class:`ParsedRequest` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from gateway.units import parse_duration

__all__ = ["Endpoint", "EndpointSpec", "ParsedRequest", "parse"]


class Endpoint(StrEnum):
    """A backend route, by the path the gateway sends it to."""

    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"
    RESPONSES = "/v1/responses"
    RESPONSES_INPUT_TOKENS = "/v1/responses/input_tokens"
    MESSAGES = "/v1/messages"
    MESSAGES_COUNT_TOKENS = "/v1/messages/count_tokens"
    RERANK = "/v1/rerank"
    COMPLETION = "/completion"
    INFILL = "/infill"
    EMBEDDING = "/embedding"
    TOKENIZE = "/tokenize"
    DETOKENIZE = "/detokenize"
    APPLY_TEMPLATE = "/apply-template"


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    #: The required field that carries the prompt (``None``: none is required).
    prompt: str | None
    #: Other fields whose text reaches the prompt (a system prompt, documents to rank).
    context: tuple[str, ...] = ()
    #: It generates tokens (so its estimate adds the completion's).
    generates: bool = True
    #: It occupies a slot while it runs (so it takes a lease); tokenizing does not.
    takes_slot: bool = True
    streams: bool = True
    #: Fields that cap the completion, the later winning.
    max_tokens: tuple[str, ...] = ("max_tokens",)
    #: The body must name its model; llama.cpp's native routes may leave it out when one
    #: model is served (as llama-server's own router mode allows).
    model_required: bool = True


def _counting(prompt: str, context: tuple[str, ...] = (), *, native: bool = False) -> EndpointSpec:
    """An endpoint that occupies no slot: it counts, tokenizes or templates."""
    return EndpointSpec(
        prompt,
        context,
        generates=False,
        takes_slot=False,
        streams=False,
        max_tokens=(),
        model_required=not native,
    )


SPECS: dict[Endpoint, EndpointSpec] = {
    Endpoint.CHAT: EndpointSpec("messages", max_tokens=("max_tokens", "max_completion_tokens")),
    Endpoint.COMPLETIONS: EndpointSpec("prompt"),
    Endpoint.EMBEDDINGS: EndpointSpec("input", generates=False, streams=False, max_tokens=()),
    Endpoint.RESPONSES: EndpointSpec(
        "input", context=("instructions",), max_tokens=("max_output_tokens",)
    ),
    Endpoint.RESPONSES_INPUT_TOKENS: _counting("input", ("instructions",)),
    Endpoint.MESSAGES: EndpointSpec("messages", context=("system",)),
    Endpoint.MESSAGES_COUNT_TOKENS: _counting("messages", ("system",)),
    Endpoint.RERANK: EndpointSpec(
        "query",
        ("documents",),
        generates=False,
        streams=False,
        max_tokens=(),
        model_required=False,
    ),
    Endpoint.COMPLETION: EndpointSpec(
        "prompt", max_tokens=("n_predict", "max_tokens"), model_required=False
    ),
    Endpoint.INFILL: EndpointSpec(
        None,
        ("input_prefix", "input_suffix", "prompt"),
        max_tokens=("n_predict",),
        model_required=False,
    ),
    Endpoint.EMBEDDING: EndpointSpec(
        "content", generates=False, streams=False, max_tokens=(), model_required=False
    ),
    Endpoint.TOKENIZE: _counting("content", native=True),
    Endpoint.DETOKENIZE: _counting("tokens", native=True),
    Endpoint.APPLY_TEMPLATE: _counting("messages", native=True),
}

#: Typical bytes per token of English text under BPE vocabularies; only for estimates.
BYTES_PER_TOKEN = 4
#: Completion tokens assumed when a request sets no ``max_tokens``.
DEFAULT_COMPLETION_ESTIMATE = 256
#: The endpoints whose streams end in OpenAI's ``[DONE]`` and carry usage only on request.
_OPENAI_STREAMS = (Endpoint.CHAT, Endpoint.COMPLETIONS)


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
    #: :meth:`prompt_size`, once computed (the estimate, the queue's ticket and the context
    #: check all ask for it).
    _prompt_bytes: int | None = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> EndpointSpec:
        return SPECS[self.endpoint]

    def upstream_body(self) -> bytes:
        """What the backend receives: the client's bytes, unless an OpenAI stream must be
        asked for usage (so that every request is accounted) — then re-encoded once."""
        if not self.stream or self.wants_usage or self.endpoint not in _OPENAI_STREAMS:
            return self.raw
        body = dict(self.body)
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return msgspec.json.encode(body)

    def prompt_size(self) -> int:
        """Bytes of prompt text: an upper bound on its tokens, before any chat template."""
        if self._prompt_bytes is None:
            spec = self.spec
            fields = (spec.prompt, *spec.context) if spec.prompt else spec.context
            encode = msgspec.json.encode
            self._prompt_bytes = sum(len(encode(self.body[f])) for f in fields if f in self.body)
        return self._prompt_bytes

    def estimated_tokens(self) -> int:
        """Tokens this request will likely cost, before it runs: what token limits charge
        and fair queueing weighs (corrected with the real count afterwards)."""
        prompt = self.prompt_size() // BYTES_PER_TOKEN
        if not self.spec.generates:
            return prompt
        return prompt + (self.max_tokens or DEFAULT_COMPLETION_ESTIMATE)


def decode_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or :class:`InvalidRequest`."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        ) from None
    except RecursionError:  # msgspec's decoder has a depth limit of its own
        raise InvalidRequest("The JSON body of your request is nested too deeply.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def parse(endpoint: Endpoint, raw: bytes, *, default_model: str | None = None) -> ParsedRequest:
    """Read and check ``raw`` for ``endpoint``. ``default_model``: the model when the body
    names none and the endpoint allows that (the surface's ``?model=`` or the only one)."""
    spec = SPECS[endpoint]
    body = decode_body(raw)
    model = body.get("model")
    if model is None and not spec.model_required:
        model = default_model
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")

    if spec.prompt is not None:
        if spec.prompt not in body:
            raise InvalidRequest(f"Missing required parameter: '{spec.prompt}'.", param=spec.prompt)
        _check_prompt(spec.prompt, body[spec.prompt])

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    if stream and not spec.streams:
        raise InvalidRequest(f"{endpoint} cannot be streamed.", param="stream")

    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    wants_usage = bool(options and options.get("include_usage"))

    max_tokens = None
    for name in spec.max_tokens:  # the later name wins
        value = body.get(name)
        if value is None or (name == "n_predict" and value == -1):  # -1: until the end
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


def _check_prompt(field: str, value: Any) -> None:
    if field == "messages":
        if not isinstance(value, list) or not value:
            raise _type_error("messages", "a non-empty array", value)
        for i, message in enumerate(value):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequest(
                    f"Invalid 'messages[{i}]': expected an object with a string 'role'.",
                    param=f"messages[{i}]",
                )
    elif field == "query":
        if not isinstance(value, str):
            raise _type_error(field, "a string", value)
    elif field == "tokens":
        if not isinstance(value, list):
            raise _type_error(field, "an array", value)
    elif not (isinstance(value, str) or (isinstance(value, list) and value)):
        raise _type_error(field, "a string or a non-empty array", value)


def _type_error(param: str, expected: str, got: Any) -> InvalidRequest:
    kind = type(got).__name__ if got is not None else "null"
    message = f"Invalid type for '{param}': expected {expected}, got {kind}."
    return InvalidRequest(message, param=param)
