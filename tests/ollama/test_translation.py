"""The Ollama ⇄ OpenAI translation on its own, for what the SmolLM2 test model cannot show
end to end: tool calls streamed in fragments, reasoning, images, and the sampling options.
The events are in the shape llama-server writes them (captured from a real stream)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import InvalidRequest
from gateway.requests import Endpoint
from gateway.surfaces.ollama_answers import AnswerTranslator, StreamBroke
from gateway.surfaces.ollama_requests import read_chat, read_generate


def _sse(*events: dict) -> bytes:
    return b"".join(b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


def _delta(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


_USAGE = {
    "choices": [],
    "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
    "timings": {"prompt_ms": 25.5, "predicted_ms": 120.25},
}


def test_options_become_llama_server_sampling_fields() -> None:
    asked = read_chat(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "keep_alive": "10m",
            "options": {
                "temperature": 0.2,
                "top_k": 20,
                "num_predict": 7,
                "stop": "\n",
                "num_keep": 4,
                "repeat_penalty": 1.1,
                "num_gpu": 99,  # a load option: the gateway's config decides
                "num_ctx": 512,
            },
        }
    )
    assert asked.endpoint is Endpoint.CHAT and asked.stream is True
    assert asked.keep_alive == 600 and asked.num_ctx == 512
    body = asked.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2 and body["top_k"] == 20 and body["max_tokens"] == 7
    assert body["stop"] == ["\n"] and body["n_keep"] == 4 and body["repeat_penalty"] == 1.1
    assert "num_gpu" not in body and "num_ctx" not in body and body["keep_alive"] == 600
    unlimited = read_generate({"model": "m", "prompt": "x", "options": {"num_predict": -1}})
    assert "max_tokens" not in unlimited.body


def test_messages_with_images_tool_calls_and_tool_results() -> None:
    asked = read_chat(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgoAAAA"]},
                {
                    "role": "assistant",
                    "content": "",
                    "thinking": "let me look it up",
                    "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "cat"}}}],
                },
                {"role": "tool", "content": "a cat", "tool_name": "lookup"},
            ],
            "tools": [{"type": "function", "function": {"name": "lookup"}}],
            "think": "high",
        }
    )
    user, assistant, tool = asked.body["messages"]
    assert asked.has_images
    assert user["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAA"}},
    ]
    (call,) = assistant["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "lookup"
    assert msgspec.json.decode(call["function"]["arguments"]) == {"q": "cat"}
    assert assistant["reasoning_content"] == "let me look it up"
    assert tool == {"role": "tool", "content": "a cat", "name": "lookup"}
    assert asked.body["tools"] == [{"type": "function", "function": {"name": "lookup"}}]
    assert asked.body["chat_template_kwargs"] == {
        "enable_thinking": True,
        "reasoning_effort": "high",
    }


def test_generate_templated_raw_and_refused() -> None:
    templated = read_generate({"model": "m", "prompt": "hi", "system": "be brief"})
    assert templated.endpoint is Endpoint.CHAT
    assert templated.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    raw = read_generate({"model": "m", "prompt": "hi", "raw": True, "format": "json"})
    assert raw.endpoint is Endpoint.COMPLETIONS and raw.body["prompt"] == "hi"
    assert raw.body["json_schema"] == {"type": "object"}
    load = read_generate({"model": "m", "keep_alive": 0})
    assert load.endpoint is None and load.unloads
    with pytest.raises(InvalidRequest, match="raw"):
        read_generate({"model": "m", "prompt": "hi", "raw": True, "images": ["iVBOR"]})


def test_tool_call_fragments_are_sent_whole_with_object_arguments() -> None:
    translator = AnswerTranslator("m", chat=True, started_at=0.0, clock=lambda: 1.0)
    stream = _sse(
        _delta({"role": "assistant", "content": None}),
        _delta({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_"}}]}),
        _delta(
            {"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}]}
        ),
        _delta({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        _delta({}, finish="tool_calls"),
        _USAGE,
    )
    pieces = translator.feed(stream[:57]) + translator.feed(stream[57:])  # cut mid-event
    (piece,) = pieces
    assert piece["done"] is False
    assert piece["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
        }
    ]
    final = translator.final()
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 40 and final["eval_count"] == 12
    assert final["prompt_eval_duration"] == 25_500_000 and final["eval_duration"] == 120_250_000
    assert final["total_duration"] == 1_000_000_000


def test_reasoning_becomes_thinking_and_a_whole_answer_joins_the_pieces() -> None:
    translator = AnswerTranslator("m", chat=True, started_at=0.0)
    translator.feed(
        _sse(
            _delta({"reasoning_content": "Hmm. "}),
            _delta({"reasoning_content": "Easy."}),
            _delta({"content": "Four"}),
            _delta({}, finish="stop"),
            _USAGE,
        )
    )
    whole = translator.whole()
    assert whole["message"] == {"role": "assistant", "content": "Four", "thinking": "Hmm. Easy."}
    assert whole["done"] is True and whole["eval_count"] == 12


def test_a_text_completion_and_a_broken_stream() -> None:
    translator = AnswerTranslator("m", chat=False, started_at=0.0)
    pieces = translator.feed(
        _sse({"choices": [{"index": 0, "text": "Once", "finish_reason": None}]})[:-14]
        + b'data: {"error": {"message": "The backend failed mid-stream.", "type": "x"}}\n\n'
    )
    assert pieces[0]["response"] == "Once" and pieces[0]["done"] is False
    assert pieces[-1] == {"error": "The backend failed mid-stream."}
    with pytest.raises(StreamBroke) as raised:
        translator.whole()
    assert raised.value.status == 502


def test_a_suffix_is_filled_in_by_infill() -> None:
    asked = read_generate(
        {"model": "m", "prompt": "def f(", "suffix": "    return x", "options": {"num_predict": 9}}
    )
    assert asked.endpoint is Endpoint.INFILL
    body = asked.body
    assert body["input_prefix"] == "def f(" and body["input_suffix"] == "    return x"
    assert body["n_predict"] == 9 and "max_tokens" not in body and "stream_options" not in body
    translator = AnswerTranslator("m", chat=False, started_at=0.0)
    events = [
        {"index": 0, "content": "a, b):", "stop": False},
        {
            "index": 0,
            "content": "",
            "stop": True,
            "stop_type": "limit",
            "tokens_evaluated": 11,
            "tokens_predicted": 9,
            "timings": {"prompt_ms": 2.0, "predicted_ms": 3.0},
        },
    ]
    stream = b"".join(b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events)
    (piece,) = translator.feed(stream)
    assert piece["response"] == "a, b):"
    final = translator.final()
    assert final["done_reason"] == "length"
    assert (final["prompt_eval_count"], final["eval_count"]) == (11, 9)


@pytest.mark.parametrize(
    ("given", "seconds", "sent"),
    [("1h30m", 5400, 5400), ("5m", 300, 300), (90, 90, 90), ("0", 0, 0), (-1, float("inf"), -1)],
)
def test_keep_alive_in_ollama_s_forms(given: object, seconds: float, sent: float) -> None:
    asked = read_chat(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "keep_alive": given}
    )
    assert asked.keep_alive == seconds and asked.body["keep_alive"] == sent
