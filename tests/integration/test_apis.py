"""Every API clients speak to llama-server, through the gateway, with the official SDKs and
real llama-server backends: OpenAI Responses and models, Anthropic Messages, rerank, and
llama.cpp's native routes — and the token counters equal to what each client was told."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import msgspec
import openai
import pytest
from openapi_spec_validator import validate

from tests.support.processes import Gateway, LlamaServer

ADMIN = "admin-secret-for-api-tests"
HI = [{"role": "user", "content": "Say hi."}]


def _tokens(gw: Gateway) -> tuple[float, float]:
    return (
        gw.metric("llama_gateway_prompt_tokens_total"),
        gw.metric("llama_gateway_completion_tokens_total"),
    )


def _counted(gw: Gateway, before: tuple[float, float]) -> tuple[int, int]:
    """Prompt and completion tokens counted since ``before`` (accounting finishes just
    after the answer: poll briefly)."""
    deadline = time.monotonic() + 10
    after = _tokens(gw)
    while after == before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = _tokens(gw)
    return int(after[0] - before[0]), int(after[1] - before[1])


@pytest.fixture(scope="module")
def oai(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="none", max_retries=0)


# -- OpenAI Responses and models --------------------------------------------------------------


def test_responses_create_and_its_usage_is_counted(gateway: Gateway, oai: openai.OpenAI) -> None:
    before = _tokens(gateway)
    response = oai.responses.create(model="smollm2", input="Say hi.", max_output_tokens=6)
    assert response.status == "completed"
    assert response.output_text
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 6
    assert _counted(gateway, before) == (usage.input_tokens, usage.output_tokens)


def test_responses_stream_ends_with_the_completed_response(
    gateway: Gateway, oai: openai.OpenAI
) -> None:
    before = _tokens(gateway)
    events = list(oai.responses.create(model="smollm2", input=HI, max_output_tokens=5, stream=True))
    types = [event.type for event in events]
    assert "response.output_text.delta" in types
    assert types[-1] == "response.completed"
    usage = events[-1].response.usage
    assert usage is not None and usage.output_tokens > 0
    assert _counted(gateway, before) == (usage.input_tokens, usage.output_tokens)


def test_responses_input_tokens_counts_without_a_slot(gateway: Gateway) -> None:
    answer = httpx.post(
        f"{gateway.url}/v1/responses/input_tokens", json={"model": "smollm2", "input": "Say hi."}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["input_tokens"] > 0


def test_models_retrieve(oai: openai.OpenAI) -> None:
    model = oai.models.retrieve("smollm2")
    assert model.id == "smollm2" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as refused:
        oai.models.retrieve("no-such-model")
    assert refused.value.body["code"] == "model_not_found"


def test_a_responses_prompt_too_long_is_refused_before_queueing(gateway: Gateway) -> None:
    long = "lorem ipsum dolor " * 2000  # ~12k tokens against 1024-token slots
    answer = httpx.post(
        f"{gateway.url}/v1/responses", json={"model": "smollm2", "input": long}, timeout=60
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "context_length_exceeded"


# -- Anthropic Messages -----------------------------------------------------------------------


def test_messages_create_and_its_usage_is_counted(
    gateway: Gateway, claude: anthropic.Anthropic
) -> None:
    before = _tokens(gateway)
    message = claude.messages.create(model="smollm2", max_tokens=6, messages=HI)
    assert message.type == "message" and message.role == "assistant"
    assert message.content and message.content[0].type == "text"
    usage = message.usage
    # Anthropic's input_tokens leaves the cached part out; the gateway counts all of it.
    prompt = (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )
    assert prompt > 0 and 0 < usage.output_tokens <= 6
    assert _counted(gateway, before) == (prompt, usage.output_tokens)


def test_messages_stream(gateway: Gateway, claude: anthropic.Anthropic) -> None:
    before = _tokens(gateway)
    with claude.messages.stream(model="smollm2", max_tokens=5, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text and text
    usage = final.usage
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert _counted(gateway, before) == (prompt, usage.output_tokens)


def test_messages_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model="smollm2", messages=HI)
    assert counted.input_tokens > 0


def test_an_unknown_model_is_an_anthropic_not_found_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as refused:
        claude.messages.create(model="claude-nope", max_tokens=5, messages=HI)
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'claude-nope' does not exist"},
    }


def test_a_bad_messages_request_is_an_anthropic_invalid_request_error(gateway: Gateway) -> None:
    for body in (
        {"model": "smollm2", "max_tokens": 5, "messages": "x"},
        {"model": "smollm2", "max_tokens": 5},
        b"{not json",
        {
            "model": "smollm2",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "a " * 9000}],
        },
    ):
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        answer = httpx.post(f"{gateway.url}/v1/messages", content=content, timeout=60)
        assert answer.status_code == 400, answer.text
        error = answer.json()
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def keyed_gateway(backends: list[LlamaServer]) -> Iterator[Gateway]:
    gw = Gateway("--backend", backends[0].url, "--admin-token", ADMIN)
    try:
        yield gw.start()
    finally:
        gw.stop()


def test_anthropic_sdk_key_and_rate_limit(keyed_gateway: Gateway) -> None:
    client = anthropic.Anthropic(
        base_url=keyed_gateway.url,
        api_key=keyed_gateway.create_key(ADMIN, name="api-tests", rpm=1),
        max_retries=0,
    )
    assert client.messages.create(model="smollm2", max_tokens=3, messages=HI).content
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(model="smollm2", max_tokens=3, messages=HI)
    assert refused.value.status_code == 429
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.body["error"]["type"] == "rate_limit_error"
    stranger = anthropic.Anthropic(base_url=keyed_gateway.url, api_key="sk-lg-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        stranger.messages.create(model="smollm2", max_tokens=3, messages=HI)
    assert unknown.value.body["error"]["type"] == "authentication_error"


def test_native_routes_pass_auth_and_the_request_limit(keyed_gateway: Gateway) -> None:
    """Tokenizing takes no slot, but a key is still needed and its rpm still counts."""
    url = f"{keyed_gateway.url}/tokenize"
    assert httpx.post(url, json={"content": "hi"}).status_code == 401
    headers = {
        "Authorization": f"Bearer {keyed_gateway.create_key(ADMIN, name='api-tests', rpm=1)}"
    }
    assert httpx.post(url, json={"content": "hi"}, headers=headers).status_code == 200
    refused = httpx.post(url, json={"content": "hi"}, headers=headers)
    assert refused.status_code == 429 and "retry-after" in refused.headers


# -- llama.cpp's native routes ------------------------------------------------------------------


def test_native_completion_plain_and_streamed(gateway: Gateway) -> None:
    before = _tokens(gateway)
    body = {"model": "smollm2", "prompt": "Once upon a time", "n_predict": 4}
    whole = httpx.post(f"{gateway.url}/completion", json=body, timeout=60)
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    assert answer["stop"] is True and answer["tokens_predicted"] == 4
    assert _counted(gateway, before) == (answer["tokens_evaluated"], 4)

    before = _tokens(gateway)
    events = []
    with httpx.stream(
        "POST", f"{gateway.url}/completion", json={**body, "stream": True}, timeout=60
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        for line in streamed.iter_lines():
            if line.startswith("data: "):
                events.append(msgspec.json.decode(line[6:]))
    assert events[-1]["stop"] is True and not any(e["stop"] for e in events[:-1])
    last = events[-1]
    assert _counted(gateway, before) == (last["tokens_evaluated"], last["tokens_predicted"])


def test_tokenize_detokenize_round_trip(gateway: Gateway) -> None:
    text = "Hello, gateway!"
    tokens = httpx.post(
        f"{gateway.url}/tokenize", json={"model": "smollm2", "content": text}
    ).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    back = httpx.post(
        f"{gateway.url}/detokenize?model=smollm2", json={"tokens": tokens}
    )  # the model as a query, as llama-server's router mode takes it
    assert back.json()["content"].strip() == text


def test_native_routes_need_a_model_when_several_are_served(gateway: Gateway) -> None:
    answer = httpx.post(f"{gateway.url}/tokenize", json={"content": "hi"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "model"


def test_apply_template(gateway: Gateway) -> None:
    answer = httpx.post(f"{gateway.url}/apply-template", json={"model": "smollm2", "messages": HI})
    assert answer.status_code == 200
    assert "Say hi." in answer.json()["prompt"]


def test_a_backend_500_caused_by_the_request_is_one_400(
    gateway: Gateway, backends: list[LlamaServer]
) -> None:
    """llama-server answers 500 to ``"tools": "x"``: the request's fault, not the backend's —
    answered once as a 400 with llama-server's words, not retried on the other backend."""
    before = sum(b.metric("requests_processing") for b in backends)
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "smollm2", "messages": HI, "tools": "x"},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and "tools" in error["message"]
    assert sum(b.metric("requests_processing") for b in backends) == before
    assert "retrying on another backend" not in gateway.log()


# -- rerank ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rerank_gateway(llama_bin: str, model_path: str) -> Iterator[Gateway]:
    runner = LlamaServer(
        llama_bin, model_path, parallel=1, ctx_size=1024, alias="ranker", extra=("--reranking",)
    )
    runner.start()
    gw = Gateway("--backend", runner.url, "--no-auth")
    try:
        yield gw.start()
    finally:
        gw.stop()
        runner.stop()


def test_rerank_passes_through_and_is_counted(rerank_gateway: Gateway) -> None:
    """SmolLM2 has no ranking head, so its scores mean nothing; llama-server started with
    ``--reranking`` still ranks with it, and that real answer must pass through unchanged,
    with its prompt tokens counted. No model is named: the only one is meant."""
    before = _tokens(rerank_gateway)
    documents = ["Paris is the capital of France.", "Bananas are yellow."]
    for path in ("/v1/rerank", "/rerank", "/v1/reranking"):
        answer = httpx.post(
            f"{rerank_gateway.url}{path}",
            json={"query": "capital of France", "documents": documents},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        ranked = answer.json()
        assert sorted(r["index"] for r in ranked["results"]) == [0, 1]
    prompt = ranked["usage"]["prompt_tokens"]
    assert prompt > 0
    assert _counted(rerank_gateway, before) == (3 * prompt, 0)


def test_tokenize_without_a_model_when_one_is_served(rerank_gateway: Gateway) -> None:
    answer = httpx.post(f"{rerank_gateway.url}/tokenize", json={"content": "hi"})
    assert answer.status_code == 200 and answer.json()["tokens"]


def test_rerank_refused_by_a_chat_runner_passes_through(gateway: Gateway) -> None:
    """A runner started without ``--reranking`` refuses with 501: its own answer, as it is."""
    answer = httpx.post(
        f"{gateway.url}/v1/rerank",
        json={"model": "smollm2", "query": "q", "documents": ["a"]},
        timeout=30,
    )
    assert answer.status_code == 501
    assert "reranking" in answer.json()["error"]["message"]


# -- the gateway's own OpenAPI document --------------------------------------------------------


def test_openapi_document_describes_every_api_route(gateway: Gateway) -> None:
    answer = httpx.get(f"{gateway.url}/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)  # a valid OpenAPI 3.1 document
    paths = document["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/models/{model_id}",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/rerank",
        "/completion",
        "/tokenize",
        "/detokenize",
        "/apply-template",
    ):
        assert path in paths, path
    chat = paths["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["model", "messages"]
    assert schema["properties"]["max_tokens"] == {"type": "integer", "minimum": 1}
    openai_error = chat["responses"]["429"]["content"]["application/json"]["schema"]
    assert openai_error["required"] == ["error"]
    anthropic_error = paths["/v1/messages"]["post"]["responses"]["400"]["content"][
        "application/json"
    ]["schema"]
    assert anthropic_error["properties"]["type"] == {"const": "error"}
    assert set(document["components"]["securitySchemes"]) == {"bearer", "x-api-key"}


def test_a_stream_the_client_cut_is_charged_what_was_relayed(gateway: Gateway) -> None:
    """The client leaves after 20 events: no usage ever came, yet those tokens were
    generated and sent — the completion counter takes at least them, not zero."""
    before = _tokens(gateway)
    body = {"model": "smollm2", "messages": HI, "max_tokens": 400, "stream": True}
    body["ignore_eos"] = True
    received = 0
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received == 20:
                break
    # Accounted once the gateway notices the client is gone.
    completion = _counted(gateway, before)[1]
    assert 20 <= completion < 400


# -- requests that fill several slots ----------------------------------------------------------


def test_a_batch_of_prompts_takes_a_lease_per_prompt_and_is_charged_in_full(
    gateway: Gateway,
) -> None:
    """Eight prompts in one request are eight requests on the path: their choices merged in
    order, their usage summed — and the counters take all of it."""
    before = _tokens(gateway)
    body = {"model": "smollm2", "prompt": ["Once upon a time"] * 8, "max_tokens": 5}
    body["ignore_eos"] = True
    answer = httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    merged = answer.json()
    assert [c["index"] for c in merged["choices"]] == list(range(8))
    assert merged["usage"]["completion_tokens"] == 8 * 5
    usage = merged["usage"]
    assert _counted(gateway, before) == (usage["prompt_tokens"], 40)


def test_n_choices_are_n_requests(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(
        model="smollm2", messages=HI, max_tokens=3, n=3, extra_body={"ignore_eos": True}
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert answer.usage is not None and answer.usage.completion_tokens == 9


def test_requests_past_the_slot_bounds_are_refused(gateway: Gateway) -> None:
    url = f"{gateway.url}/v1/completions"
    too_many = {"model": "smollm2", "prompt": ["a"] * 65}
    streamed = {"model": "smollm2", "prompt": "a", "n": 2, "stream": True}
    for body, param in ((too_many, "prompt"), (streamed, "n")):
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == param
