"""Ollama's requests read into the bodies llama-server takes: ``/api/chat`` and
``/api/generate`` become chat completions (or, for ``raw`` prompts, completions; with a
``suffix``, llama.cpp's ``/infill``), ``/api/embed`` and ``/api/embeddings`` become embeddings.
Every field is checked here (the generation settings in ``ollama_options``), with a clear
refusal (:class:`InvalidRequest`, 400) for what is wrong or what llama-server cannot do;
nothing here knows about backends.

The translated body always asks for a stream with usage: the answer is translated event by
event (``ollama_answers``), and the last event carries the token counts the gateway accounts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import InvalidRequest
from gateway.requests import Endpoint
from gateway.surfaces.ollama_options import (
    is_int,
    logprobs,
    num_ctx,
    optional,
    response_format,
    sampling,
    think,
    type_error,
)
from gateway.units import parse_duration

#: Go's durations (``time.ParseDuration``), as Ollama reads ``keep_alive``: ``1h30m``, ``2.5s``.
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_GO_DURATION = re.compile(r"[-+]?(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+")

__all__ = [
    "OllamaRequest",
    "read_body",
    "read_chat",
    "read_embed",
    "read_generate",
    "require_model",
]

#: The first bytes of the base64 of each image format llama-server's decoder reads.
_IMAGE_MAGIC = {
    "iVBOR": "image/png",
    "/9j/": "image/jpeg",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}


@dataclass(slots=True)
class OllamaRequest:
    """One Ollama request, read: the model name as asked, and what to send for it."""

    model: str
    stream: bool
    #: The OpenAI endpoint and body to send; ``None`` for a request that only loads or
    #: unloads the model (an empty prompt or message list).
    endpoint: Endpoint | None
    body: dict[str, Any] = field(default_factory=dict)
    #: ``keep_alive`` in seconds as asked (``math.inf`` for forever); ``None``: the model's.
    keep_alive: float | None = None
    #: ``options.num_ctx``: checked against the runner's context before the request runs.
    num_ctx: int | None = None
    has_images: bool = False
    #: ``/api/embed``'s ``dimensions``: the vectors are cut to this length and re-normalized.
    dimensions: int | None = None

    @property
    def unloads(self) -> bool:
        return self.endpoint is None and self.keep_alive == 0

    def encode(self) -> bytes:
        return msgspec.json.encode(self.body)


def read_body(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid JSON in the request body: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def require_model(body: dict[str, Any], *, legacy_name: bool = False) -> str:
    """The ``model`` field (or the older ``name``, where Ollama still reads it)."""
    model = body.get("model")
    if model is None and legacy_name:
        model = body.get("name")
    if model is None or model == "":
        raise InvalidRequest("model is required", param="model")
    if not isinstance(model, str):
        raise type_error("model", "a string", model)
    return model


def read_chat(body: dict[str, Any]) -> OllamaRequest:
    model = require_model(body)
    request = _common(body, model)
    messages = body.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise type_error("messages", "an array", messages)
    if not messages:
        return request  # Ollama: an empty chat loads (or, with keep_alive 0, unloads)
    out = [_message(i, m) for i, m in enumerate(messages)]
    request.has_images = any(isinstance(m.get("content"), list) for m in out)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise type_error("tools", "an array of objects", tools)
        if tools:
            request.body["tools"] = tools
    think(body, request.body)
    response_format(body.get("format"), request.body, chat=True)
    logprobs(body, request.body)
    request.body["messages"] = out
    request.endpoint = Endpoint.CHAT
    return request


def read_generate(body: dict[str, Any]) -> OllamaRequest:
    model = require_model(body)
    request = _common(body, model)
    prompt = optional(body, "prompt", str) or ""
    system = optional(body, "system", str)
    images = _images(body.get("images"), "images")
    raw = optional(body, "raw", bool) or False
    suffix = optional(body, "suffix", str)
    if optional(body, "template", str):
        raise InvalidRequest(
            "template is not supported: the runner applies the model's own chat template; "
            "send raw: true with a prompt you have templated yourself",
            param="template",
        )
    context = body.get("context")
    if context:  # an empty list is what clients send back from a raw answer
        raise InvalidRequest(
            "context is not supported (it is deprecated in Ollama): send the conversation "
            "as messages to /api/chat",
            param="context",
        )
    if not prompt and not images and not suffix:
        return request
    if suffix:
        if images:
            raise InvalidRequest("images cannot be sent with a suffix", param="images")
        _infill(request, prompt, suffix)
        response_format(body.get("format"), request.body, chat=False)
        return request
    if raw:
        if images:
            raise InvalidRequest(
                "images need the chat template; they cannot be sent with raw: true",
                param="images",
            )
        if body.get("think") not in (None, False):
            raise InvalidRequest(
                "think needs the chat template; it cannot be combined with raw: true",
                param="think",
            )
        request.body["prompt"] = prompt
        response_format(body.get("format"), request.body, chat=False)
        request.endpoint = Endpoint.COMPLETIONS
        return request
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _content(prompt, images)})
    request.has_images = bool(images)
    request.body["messages"] = messages
    think(body, request.body)
    response_format(body.get("format"), request.body, chat=True)
    logprobs(body, request.body)
    request.endpoint = Endpoint.CHAT
    return request


def _infill(request: OllamaRequest, prompt: str, suffix: str) -> None:
    """Fill in the middle: llama-server's ``/infill`` takes the text before and after, with
    the model's FIM tokens (a model without them is refused there, with a clear 501). It is
    llama.cpp's own route: ``n_predict``, not ``max_tokens``; usage comes in its last event."""
    body = request.body
    body.pop("stream_options", None)
    if "max_tokens" in body:
        body["n_predict"] = body.pop("max_tokens")
    body.update(input_prefix=prompt, input_suffix=suffix, prompt="")
    request.endpoint = Endpoint.INFILL


def read_embed(body: dict[str, Any], *, legacy: bool = False) -> OllamaRequest:
    """``/api/embed`` (``input``: a string or strings), or ``/api/embeddings`` (``prompt``)."""
    model = require_model(body)
    name = "prompt" if legacy else "input"
    value = body.get(name)
    if value is None:
        raise InvalidRequest(f"{name} is required", param=name)
    if legacy:
        if not isinstance(value, str):
            raise type_error(name, "a string", value)
    elif not (
        isinstance(value, str)
        or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))
    ):
        raise type_error(name, "a string or a non-empty array of strings", value)
    request = OllamaRequest(model=model, stream=False, endpoint=Endpoint.EMBEDDINGS)
    request.keep_alive = _keep_alive(body)
    request.body = {"model": model, "input": value}
    if request.keep_alive is not None:
        request.body["keep_alive"] = _forwarded(request.keep_alive)
    options = optional(body, "options", dict) or {}
    request.num_ctx = num_ctx(options)
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not is_int(dimensions) or dimensions < 1:
            raise type_error("dimensions", "a positive integer", dimensions)
        request.dimensions = dimensions
    optional(body, "truncate", bool)  # checked; llama-server refuses an input too long
    return request


# -- the parts ------------------------------------------------------------------------------


def _common(body: dict[str, Any], model: str) -> OllamaRequest:
    """Fields of both chat and generate: stream, keep_alive, options."""
    stream = body.get("stream")
    if stream is None:
        stream = True  # Ollama streams unless told not to
    if not isinstance(stream, bool):
        raise type_error("stream", "a boolean", stream)
    request = OllamaRequest(model=model, stream=stream, endpoint=None)
    request.keep_alive = _keep_alive(body)
    out: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.keep_alive is not None:
        out["keep_alive"] = _forwarded(request.keep_alive)  # parse() hands it to the scheduler
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise type_error("options", "an object", options)
    request.num_ctx = sampling(options or {}, out)
    request.body = out
    return request


def _keep_alive(body: dict[str, Any]) -> float | None:
    """Seconds, from a number of seconds or a duration: the gateway's (``5m``, ``-1``) or Go's,
    which Ollama parses (``1h30m``, ``90s``)."""
    value = body.get("keep_alive")
    if value is None:
        return None
    try:
        if isinstance(value, str) and _GO_DURATION.fullmatch(value.strip()):
            sign = -1.0 if value.strip().startswith("-") else 1.0
            parts = _GO_PART.findall(value)
            return parse_duration(sign * sum(float(n) * _GO_UNITS[u] for n, u in parts))
        return parse_duration(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"invalid keep_alive {value!r}: use a duration such as 30s, 5m, 1h30m, 0 or -1",
            param="keep_alive",
        ) from None


def _forwarded(seconds: float) -> float:
    """``keep_alive`` as the gateway's request parser reads it (-1: for ever)."""
    return -1 if math.isinf(seconds) else seconds


def _message(i: int, message: Any) -> dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise type_error(where, "an object", message)
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidRequest(f"{where}.role is required and must be a string", param=where)
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise type_error(f"{where}.content", "a string", content)
    images = _images(message.get("images"), f"{where}.images")
    out: dict[str, Any] = {"role": role, "content": _content(content, images)}
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking and role == "assistant":
        out["reasoning_content"] = thinking  # llama-server's name for it in a message
    tool_calls = message.get("tool_calls")
    if tool_calls:
        out["tool_calls"] = _tool_calls(where, tool_calls)
    if role == "tool":
        name = message.get("tool_name") or message.get("name")
        if isinstance(name, str) and name:
            out["name"] = name
        if isinstance(message.get("tool_call_id"), str):
            out["tool_call_id"] = message["tool_call_id"]
    return out


def _tool_calls(where: str, calls: Any) -> list[dict[str, Any]]:
    """Ollama's ``{"function": {"name", "arguments": {…}}}`` as OpenAI's tool calls, whose
    arguments are a JSON string and which carry an id."""
    if not isinstance(calls, list):
        raise type_error(f"{where}.tool_calls", "an array", calls)
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(
                f"{where}.tool_calls[{j}] must be an object with function.name",
                param=f"{where}.tool_calls",
            )
        arguments = function.get("arguments") or {}
        if not isinstance(arguments, str):
            arguments = msgspec.json.encode(arguments).decode()
        out.append(
            {
                "id": call.get("id") or f"call_{j}",
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return out


def _images(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise type_error(where, "an array of base64-encoded images", value)
    return value


def _content(text: str, images: list[str]) -> str | list[dict[str, Any]]:
    """Plain text, or OpenAI content parts with each image as a data URL (what llama-server
    reads for a runner started with ``--mmproj``)."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for image in images:
        mime = next((m for magic, m in _IMAGE_MAGIC.items() if image.startswith(magic)), None)
        url = f"data:{mime or 'image/png'};base64,{image}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
