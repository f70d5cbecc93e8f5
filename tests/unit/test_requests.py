"""``gateway/requests.py``: what the gateway reads of an OpenAI request, what it refuses, and
the bytes it sends on."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import InvalidRequest
from gateway.requests import Endpoint, parse

CHAT = Endpoint.CHAT
COMPLETIONS = Endpoint.COMPLETIONS
EMBEDDINGS = Endpoint.EMBEDDINGS

MESSAGES = [{"role": "user", "content": "hi"}]


def _encode(body: Any) -> bytes:
    return msgspec.json.encode(body)


def _chat(**fields: Any) -> bytes:
    return _encode({"model": "smollm2", "messages": MESSAGES, **fields})


def _refused(endpoint: Endpoint, raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(endpoint, raw)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message
    return error


# -- valid bodies --------------------------------------------------------------------------


def test_chat_defaults() -> None:
    raw = _chat()
    parsed = parse(CHAT, raw)
    assert parsed.endpoint is CHAT
    assert parsed.model == "smollm2"
    assert parsed.body == {"model": "smollm2", "messages": MESSAGES}
    assert parsed.raw is raw
    assert parsed.stream is False
    assert parsed.wants_usage is False
    assert parsed.max_tokens is None


def test_chat_streaming_with_usage_and_max_tokens() -> None:
    parsed = parse(CHAT, _chat(stream=True, stream_options={"include_usage": True}, max_tokens=16))
    assert parsed.stream is True
    assert parsed.wants_usage is True
    assert parsed.max_tokens == 16


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    parsed = parse(CHAT, _chat(max_tokens=5, max_completion_tokens=7))
    assert parsed.max_tokens == 7


def test_unknown_fields_are_kept() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    parsed = parse(CHAT, _chat(tools=tools, response_format={"type": "json_object"}, logprobs=True))
    assert parsed.body["tools"] == tools
    assert parsed.body["response_format"] == {"type": "json_object"}
    assert parsed.body["logprobs"] is True


@pytest.mark.parametrize("prompt", ["once upon a time", "", ["a", "b"], [[1, 2, 3]]])
def test_completions_prompt_forms(prompt: Any) -> None:
    parsed = parse(COMPLETIONS, _encode({"model": "m", "prompt": prompt, "stream": True}))
    assert parsed.endpoint is COMPLETIONS
    assert parsed.body["prompt"] == prompt
    assert parsed.stream is True


@pytest.mark.parametrize("value", ["text", ["one", "two"], [[1, 2]]])
def test_embeddings_input_forms(value: Any) -> None:
    parsed = parse(EMBEDDINGS, _encode({"model": "embed", "input": value}))
    assert parsed.endpoint is EMBEDDINGS
    assert parsed.model == "embed"
    assert parsed.stream is False


def test_embeddings_stream_false_is_accepted() -> None:
    assert parse(EMBEDDINGS, _encode({"model": "e", "input": "x", "stream": False})).stream is False


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"model": "m", "messages": [', b"", b"not json", b"\xff\xfe"])
def test_invalid_json(raw: bytes) -> None:
    error = _refused(CHAT, raw)
    assert error.param is None
    assert "JSON" in error.message


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"text"', b"42"])
def test_body_must_be_an_object(raw: bytes) -> None:
    error = _refused(CHAT, raw)
    assert error.param is None
    assert "object" in error.message


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("model", [None, "", 7, True, ["m"], {"id": "m"}])
def test_missing_or_invalid_model(endpoint: Endpoint, model: Any) -> None:
    body = {"messages": MESSAGES, "prompt": "p", "input": "i"}
    if model is not None:
        body["model"] = model
    assert _refused(endpoint, _encode(body)).param == "model"


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [(CHAT, "messages"), (COMPLETIONS, "prompt"), (EMBEDDINGS, "input")],
)
def test_missing_required_field(endpoint: Endpoint, field: str) -> None:
    error = _refused(endpoint, _encode({"model": "m"}))
    assert error.param == field
    assert field in error.message


@pytest.mark.parametrize("messages", ["hello", [], None, {"role": "user"}, 3])
def test_invalid_messages(messages: Any) -> None:
    error = _refused(CHAT, _encode({"model": "m", "messages": messages}))
    assert error.param == "messages"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"content": "no role"}], "messages[0]"),
        ([{"role": "user", "content": "ok"}, {"role": 1, "content": "x"}], "messages[1]"),
        ([{"role": "user", "content": "ok"}, "text"], "messages[1]"),
        ([None], "messages[0]"),
    ],
)
def test_message_without_role(messages: list[Any], param: str) -> None:
    assert _refused(CHAT, _encode({"model": "m", "messages": messages})).param == param


@pytest.mark.parametrize("prompt", [[], None, 5, {"text": "x"}])
def test_invalid_prompt(prompt: Any) -> None:
    assert _refused(COMPLETIONS, _encode({"model": "m", "prompt": prompt})).param == "prompt"


@pytest.mark.parametrize("value", [[], None, 5, {"text": "x"}])
def test_invalid_input(value: Any) -> None:
    assert _refused(EMBEDDINGS, _encode({"model": "m", "input": value})).param == "input"


@pytest.mark.parametrize("stream", ["yes", 1, None, []])
def test_invalid_stream(stream: Any) -> None:
    assert _refused(CHAT, _chat(stream=stream)).param == "stream"


def test_streaming_embeddings_refused() -> None:
    error = _refused(EMBEDDINGS, _encode({"model": "m", "input": "x", "stream": True}))
    assert error.param == "stream"


@pytest.mark.parametrize("options", ["include_usage", [], True, 1])
def test_invalid_stream_options(options: Any) -> None:
    assert _refused(CHAT, _chat(stream=True, stream_options=options)).param == "stream_options"


@pytest.mark.parametrize("value", [0, -1, True, False, 1.5, "16", [16]])
def test_invalid_max_tokens(value: Any) -> None:
    error = _refused(CHAT, _chat(max_tokens=value))
    assert error.param == "max_tokens"


@pytest.mark.parametrize("value", [0, True, "16"])
def test_invalid_max_completion_tokens(value: Any) -> None:
    error = _refused(CHAT, _chat(max_completion_tokens=value))
    assert error.param == "max_completion_tokens"


def test_max_tokens_refused_on_completions() -> None:
    error = _refused(COMPLETIONS, _encode({"model": "m", "prompt": "p", "max_tokens": 0}))
    assert error.param == "max_tokens"


# -- upstream_body -------------------------------------------------------------------------


def test_upstream_body_unchanged_when_not_streaming() -> None:
    raw = b'{ "model" : "m",  "messages": [{"role":"user","content":"hi"}], "x-unknown": 1 }'
    assert parse(CHAT, raw).upstream_body() is raw


def test_upstream_body_unchanged_when_client_asks_for_usage() -> None:
    raw = _chat(stream=True, stream_options={"include_usage": True}, seed=3)
    assert parse(CHAT, raw).upstream_body() == raw


def test_upstream_body_asks_for_usage_on_a_stream() -> None:
    raw = _chat(stream=True, tools=[{"type": "function"}], temperature=0.2)
    sent = msgspec.json.decode(parse(CHAT, raw).upstream_body())
    assert sent == {
        "model": "smollm2",
        "messages": MESSAGES,
        "stream": True,
        "tools": [{"type": "function"}],
        "temperature": 0.2,
        "stream_options": {"include_usage": True},
    }


def test_upstream_body_keeps_other_stream_options() -> None:
    raw = _encode(
        {
            "model": "m",
            "prompt": "p",
            "stream": True,
            "stream_options": {"include_usage": False, "continuous_usage_stats": True},
            "logprobs": 2,
        }
    )
    parsed = parse(COMPLETIONS, raw)
    assert parsed.wants_usage is False
    sent = msgspec.json.decode(parsed.upstream_body())
    assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert sent["logprobs"] == 2
    assert sent["prompt"] == "p"
    # the parsed body itself is not changed by building the upstream one
    assert parsed.body["stream_options"] == {"include_usage": False, "continuous_usage_stats": True}


def test_upstream_body_with_null_stream_options() -> None:
    parsed = parse(CHAT, _chat(stream=True, stream_options=None))
    sent = msgspec.json.decode(parsed.upstream_body())
    assert sent["stream_options"] == {"include_usage": True}


# -- prompt_size ---------------------------------------------------------------------------


def test_prompt_size_of_a_string_prompt() -> None:
    assert parse(COMPLETIONS, _encode({"model": "m", "prompt": "hello"})).prompt_size() == 7


def test_prompt_size_counts_bytes_not_characters() -> None:
    parsed = parse(EMBEDDINGS, _encode({"model": "m", "input": "été"}))
    assert parsed.prompt_size() == len('"été"'.encode())


def test_prompt_size_of_messages() -> None:
    parsed = parse(CHAT, _chat(max_tokens=100, tools=[{"type": "function"}]))
    assert parsed.prompt_size() == len(b'[{"role":"user","content":"hi"}]')


def test_prompt_size_grows_with_the_prompt() -> None:
    small = parse(CHAT, _chat()).prompt_size()
    big = parse(
        CHAT, _encode({"model": "m", "messages": [{"role": "user", "content": "x" * 1000}]})
    ).prompt_size()
    assert big - small == 998
