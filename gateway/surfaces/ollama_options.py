"""The generation settings of an Ollama request as llama-server's fields: ``options``
(sampling; ``num_ctx`` read for the context check; load options ignored), ``format``
(a grammar from a JSON schema), ``think`` (the chat template's switch) and ``logprobs`` —
with the type checks every reader of a request shares.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import InvalidRequest

__all__ = [
    "is_int",
    "logprobs",
    "num_ctx",
    "optional",
    "response_format",
    "sampling",
    "think",
    "type_error",
]

#: Ollama's runtime options and the llama-server sampling field each one sets.
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "num_keep": "n_keep",
}
_INTEGER_OPTIONS = {"top_k", "seed", "repeat_last_n", "mirostat", "num_keep", "num_predict"}
#: Options that set how Ollama loads a model (threads, GPU layers, batch, mmap…). The gateway's
#: runners are started from its own config, so these are accepted and have no effect, as
#: Ollama ignores load options that do not match a loaded runner.
_LOAD_OPTIONS = {
    "numa",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "embedding_only",
    "num_thread",
    "penalize_newline",
    "tfs_z",
}
_THINK_LEVELS = ("high", "medium", "low")


def sampling(options: dict[str, Any], out: dict[str, Any]) -> int | None:
    """Put ``options``' sampling fields into ``out``; return ``num_ctx`` (or ``None``)."""
    for name, value in options.items():
        if value is None or name in _LOAD_OPTIONS or name == "num_ctx":
            continue
        if name in _SAMPLING or name == "num_predict":
            _check_number(name, value)
        if name in _SAMPLING:
            out[_SAMPLING[name]] = value
        elif name == "num_predict":
            if value > 0:  # -1: until the end of the context; -2: fill it — the default
                out["max_tokens"] = value
        elif name == "stop":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise type_error("options.stop", "an array of strings", value)
            if value:
                out["stop"] = value
        # Any other name: Ollama logs "invalid option" and goes on; so does the gateway.
    return num_ctx(options)


def num_ctx(options: dict[str, Any]) -> int | None:
    value = options.get("num_ctx")
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise type_error("options.num_ctx", "a positive integer", value)
    return int(value)


def _check_number(name: str, value: Any) -> None:
    if name in _INTEGER_OPTIONS:
        if not is_int(value):
            raise type_error(f"options.{name}", "an integer", value)
    elif isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise type_error(f"options.{name}", "a number", value)


def think(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Ollama's ``think`` (true/false, or a level for models that take one) as the chat
    template switch llama-server passes to the template, with the reasoning split out of the
    content (``reasoning_content``, returned as ``thinking``)."""
    asked = body.get("think")
    if asked is None:
        return
    kwargs: dict[str, Any] = {}
    if isinstance(asked, bool):
        kwargs["enable_thinking"] = asked
    elif asked in _THINK_LEVELS:
        kwargs["enable_thinking"] = True
        kwargs["reasoning_effort"] = asked
    else:
        raise type_error("think", 'a boolean or one of "high", "medium", "low"', asked)
    out["chat_template_kwargs"] = kwargs
    out["reasoning_format"] = "deepseek" if kwargs["enable_thinking"] else "none"


def response_format(value: Any, out: dict[str, Any], *, chat: bool) -> None:
    """``format``: "json" or a JSON schema, as a grammar-constrained answer. Both go as a
    schema ("json": any object): llama-server leaves a bare ``json_object`` unconstrained.
    Chat takes ``response_format``; llama-server's completions read ``json_schema`` only."""
    if value is None or value == "":
        return
    if value == "json":
        schema: dict[str, Any] = {"type": "object"}
    elif isinstance(value, dict):
        schema = value
    else:
        raise InvalidRequest(
            f'invalid format {value!r}: use "json" or a JSON schema object', param="format"
        )
    if chat:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": schema},
        }
    else:
        out["json_schema"] = schema


def logprobs(body: dict[str, Any], out: dict[str, Any]) -> None:
    """``logprobs`` / ``top_logprobs``: the same names in OpenAI's chat request."""
    if optional(body, "logprobs", bool):
        out["logprobs"] = True
        top = body.get("top_logprobs")
        if top is not None:
            if not is_int(top) or not 0 <= top <= 20:
                raise type_error("top_logprobs", "an integer from 0 to 20", top)
            out["top_logprobs"] = top


def optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = {str: "a string", bool: "a boolean", dict: "an object"}[kind]
        raise type_error(name, expected, value)
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def type_error(name: str, expected: str, got: Any) -> InvalidRequest:
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    got_kind = kind.get(type(got), "number" if isinstance(got, int | float) else type(got).__name__)
    return InvalidRequest(f"invalid {name}: expected {expected}, got {got_kind}", param=name)
