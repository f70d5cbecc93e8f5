"""The OpenAI API through the gateway, driven by the official ``openai`` client (sync and
async, streamed and not) against real llama-server backends running SmolLM2."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.processes import Gateway, LlamaServer

CHAT = [{"role": "user", "content": "Name one colour."}]
#: llama-server's own field, passed through by the gateway: generate exactly max_tokens, so
#: counts do not depend on where the model chooses to stop.
FULL_LENGTH = {"ignore_eos": True}


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def async_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def _counters(backends: list[LlamaServer]) -> tuple[float, float]:
    """Prompt tokens (computed + cached) and generated tokens the backends counted."""
    prompt = sum(
        b.metric("prompt_tokens_total") + b.metric("prompt_tokens_cached_total") for b in backends
    )
    return prompt, sum(b.metric("tokens_predicted_total") for b in backends)


def test_chat_completion_reports_the_backends_usage(
    client: openai.OpenAI, backends: list[LlamaServer]
) -> None:
    before = _counters(backends)
    answer = client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=8)
    after = _counters(backends)

    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens == after[1] - before[1]
    assert answer.usage.prompt_tokens == after[0] - before[0]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_unknown_fields_reach_the_backend(client: openai.OpenAI) -> None:
    # logprobs is not a field the gateway reads: it must arrive and be honoured.
    answer = client.chat.completions.create(
        model="smollm2", messages=CHAT, max_tokens=3, logprobs=True, top_logprobs=2
    )
    assert answer.choices[0].logprobs is not None
    assert len(answer.choices[0].logprobs.content[0].top_logprobs) == 2


def test_stream_with_usage_ends_with_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=CHAT,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=FULL_LENGTH,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 6


def test_stream_without_usage_is_still_accounted(
    client: openai.OpenAI, gateway: Gateway, backends: list[LlamaServer]
) -> None:
    counted = gateway.metric("llama_gateway_completion_tokens_total", model="smollm2")
    before = _counters(backends)
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=CHAT, max_tokens=5, stream=True, extra_body=FULL_LENGTH
        )
    )
    after = _counters(backends)

    assert all(chunk.usage is None for chunk in chunks)  # the client did not ask for it
    assert all(chunk.choices for chunk in chunks)
    generated = after[1] - before[1]
    assert generated == 5
    assert gateway.metric("llama_gateway_completion_tokens_total", model="smollm2") == (
        counted + generated
    )


async def test_async_client_streams_and_completes(async_client: openai.AsyncOpenAI) -> None:
    stream = await async_client.chat.completions.create(
        model="smollm2", messages=CHAT, max_tokens=4, stream=True
    )
    finish = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert finish[-1] in {"length", "stop"}

    answer = await async_client.chat.completions.create(
        model="smol",
        messages=CHAT,
        max_tokens=4,  # an alias of smollm2
    )
    assert answer.usage.completion_tokens <= 4


def test_completions(client: openai.OpenAI, backends: list[LlamaServer]) -> None:
    before = _counters(backends)
    answer = client.completions.create(
        model="smollm2", prompt="The sky is", max_tokens=5, extra_body=FULL_LENGTH
    )
    after = _counters(backends)
    assert answer.choices[0].text
    assert answer.usage.completion_tokens == after[1] - before[1] == 5

    streamed = list(
        client.completions.create(model="smollm2", prompt="One, two,", max_tokens=4, stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices)


def test_embeddings(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="smollm2-embed", input=["red", "a blue sky"])
    assert len(answer.data) == 2
    assert len(answer.data[0].embedding) == 576  # SmolLM2-135M's hidden size
    assert answer.data[0].embedding != answer.data[1].embedding
    assert answer.usage.prompt_tokens > 0


def test_models_lists_reported_ids_and_aliases(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert ids == {"smollm2", "smollm2-embed", "smol"}


def test_health_and_ready(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 200
    assert {b["state"] for b in ready.json()["backends"]} == {"ready"}
