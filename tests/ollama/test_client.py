"""The official ``ollama`` Python client against the gateway: the model views, chat streamed
and whole, generate (templated, raw, structured), embeddings, and the probes clients send."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import httpx
import ollama
import pytest

from tests.ollama.conftest import EMBED_MODEL, HI, MODEL
from tests.support.processes import Gateway

pytestmark = pytest.mark.llama


def test_probes_answer_as_ollama_does(gateway: Gateway) -> None:
    root = httpx.get(f"{gateway.url}/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert httpx.head(f"{gateway.url}/").status_code == 200
    version = httpx.get(f"{gateway.url}/api/version").json()["version"]
    assert tuple(int(part) for part in version.split(".")) >= (0, 5, 0)


def test_list_shows_every_model_with_its_details(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert {MODEL, "smol", EMBED_MODEL} <= set(models)
    smol = models[MODEL]
    assert smol.details is not None
    assert smol.details.format == "gguf" and smol.details.family == "llama"
    assert smol.details.quantization_level == "Q4_1"
    assert smol.details.parameter_size == "134.52M"  # SmolLM2-135M's 134,515,008
    assert smol.size and smol.size > 50_000_000 and smol.digest and len(smol.digest) == 64
    alias = models["smol"]
    assert alias.details is not None and alias.details.parent_model == MODEL
    assert alias.digest != smol.digest


def test_ps_shows_the_loaded_models(client: ollama.Client) -> None:
    running = {m.model: m for m in client.ps().models}
    assert {MODEL, EMBED_MODEL} <= set(running)
    model = running[MODEL]
    assert model.context_length == 1024  # -c 4096 over -np 4 slots
    assert model.size and model.size > 50_000_000
    # Backends given by URL are never unloaded by the gateway.
    assert model.expires_at is not None
    assert model.expires_at > datetime.now(UTC) + timedelta(days=365)


def test_show_reads_the_model(client: ollama.Client) -> None:
    shown = client.show(MODEL)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] == 134_515_008
    assert shown.capabilities == ["completion"]
    assert shown.template and "im_start" in shown.template
    assert shown.details is not None and shown.details.quantization_level == "Q4_1"
    assert shown.parameters == "num_ctx 1024"
    assert "embedding" in (client.show(EMBED_MODEL).capabilities or [])
    alias = client.show("smol")
    assert alias.details is not None and alias.details.parent_model == MODEL


def test_chat_whole(client: ollama.Client) -> None:
    answer = client.chat(
        model=MODEL, messages=HI, stream=False, options={"num_predict": 8, "temperature": 0}
    )
    assert answer.done and answer.done_reason in ("stop", "length")
    assert answer.message.role == "assistant" and answer.message.content
    assert answer.model == MODEL
    assert answer.prompt_eval_count and answer.prompt_eval_count > 5
    assert answer.eval_count and 1 <= answer.eval_count <= 8
    assert answer.total_duration and answer.eval_duration and answer.prompt_eval_duration
    assert answer.total_duration >= answer.eval_duration


def test_chat_streamed(client: ollama.Client) -> None:
    parts = list(
        client.chat(model="smol", messages=HI, stream=True, options={"num_predict": 8, "seed": 1})
    )
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    text = "".join(p.message.content or "" for p in parts)
    assert text.strip()
    final = parts[-1]
    assert final.model == "smol" and final.done_reason in ("stop", "length")
    assert final.eval_count and 1 <= final.eval_count <= 8


def test_chat_accepts_the_implied_latest_tag(client: ollama.Client) -> None:
    answer = client.chat(
        model=f"{MODEL}:latest", messages=HI, options={"num_predict": 8, "temperature": 0}
    )
    assert answer.model == f"{MODEL}:latest" and answer.message.content


def test_generate_templated_and_raw(client: ollama.Client) -> None:
    answer = client.generate(
        model=MODEL, prompt="Say hi.", system="You are terse.", options={"num_predict": 6}
    )
    assert answer.done and answer.response
    assert answer.prompt_eval_count and answer.prompt_eval_count > 10  # the chat template
    raw = client.generate(
        model=MODEL, prompt="Once upon a time", raw=True, options={"num_predict": 4}
    )
    assert raw.response and raw.prompt_eval_count == 4  # no template around four tokens
    streamed = list(
        client.generate(model=MODEL, prompt="Hi", stream=True, options={"num_predict": 4})
    )
    assert streamed[-1].done and "".join(p.response or "" for p in streamed).strip()


def test_generate_with_a_json_schema(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}},
        "required": ["age"],
    }
    answer = client.generate(
        model=MODEL,
        prompt="Ollama is 22 years old. Answer in JSON.",
        format=schema,
        options={"num_predict": 64, "temperature": 0},
    )
    assert answer.done_reason == "stop", answer.response
    assert isinstance(json.loads(answer.response)["age"], int)
    chat = client.chat(
        model=MODEL,
        messages=[{"role": "user", "content": "A JSON object, please."}],
        format="json",
        options={"num_predict": 64, "temperature": 0},
    )
    if chat.done_reason == "stop":
        assert isinstance(json.loads(chat.message.content or ""), dict)
    else:  # cut at num_predict: still the start of an object
        assert (chat.message.content or "").lstrip().startswith("{")


def test_embed(client: ollama.Client) -> None:
    answer = client.embed(model=EMBED_MODEL, input=["hello", "world"])
    assert len(answer.embeddings) == 2 and len(answer.embeddings[0]) == 576
    for vector in answer.embeddings:
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-3)
    assert answer.embeddings[0] != answer.embeddings[1]
    assert answer.prompt_eval_count and answer.prompt_eval_count >= 2
    short = client.embed(model=EMBED_MODEL, input="hello", dimensions=8)
    (vector,) = short.embeddings
    assert len(vector) == 8 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-6)
    legacy = client.embeddings(model=EMBED_MODEL, prompt="hello")
    assert len(legacy.embedding) == 576
    assert all(
        math.isclose(a, b, abs_tol=1e-5)
        for a, b in zip(legacy.embedding, answer.embeddings[0], strict=True)
    )


def test_empty_requests_load_the_model(client: ollama.Client) -> None:
    loaded = client.generate(model=MODEL)
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    chat = client.chat(model=MODEL, messages=[])
    assert chat.done and chat.done_reason == "load" and chat.message.content == ""


def test_tools_a_tool_call_history_and_think_reach_the_runner(client: ollama.Client) -> None:
    """The 135M test model does not call tools; what is checked here is that llama-server
    takes the translated tools, tool calls, tool results and thinking switch and answers."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"},
    ]
    options = {"num_predict": 8, "temperature": 0}
    answer = client.chat(model=MODEL, messages=messages, tools=tools, options=options)
    assert answer.done and (answer.message.content or answer.message.tool_calls)
    for think in (True, False):
        thought = client.chat(model=MODEL, messages=HI, think=think, options=options)
        assert thought.done and thought.message.content
