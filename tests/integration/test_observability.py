"""Observability against real llama-server backends running SmolLM2: token counters equal the
``usage`` the backends reported, slot and KV gauges follow what the backends say, the KV
capacity follows the GGUF header, traces reach an exporter with the GenAI attributes and the
backend gets ``traceparent``, JSON log lines, request ids, and every metric the Grafana
dashboard queries exists in the real ``/metrics`` output."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import gguf
import httpx
import openai
import pytest
from aiohttp import web
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.config import load_settings
from tests.support.processes import ROOT, Gateway, LlamaServer, Samples, scrape

CHAT = [{"role": "user", "content": "Name one colour."}]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "llama-gateway.json"
COUNTERS = (
    "llama_gateway_prompt_tokens_total",
    "llama_gateway_completion_tokens_total",
    "llama_gateway_cached_prompt_tokens_total",
)


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """The first truthy result of ``check``; the gateway accounts and probes asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def samples(url: str) -> Samples:
    """Every sample of a gateway's ``/metrics`` page, by sample name."""
    return scrape(f"{url}/metrics")


def gauge(gateway: Gateway, name: str, backend: LlamaServer) -> float | None:
    for labels, value in samples(gateway.url).get(name, []):
        if labels.get("backend") == f"127.0.0.1:{backend.port}":
            return value
    return None


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def _backend_tokens(backends: list[LlamaServer]) -> tuple[float, float, float]:
    """Prompt tokens (computed + cached), cached ones, generated ones, as the backends count."""
    cached = sum(b.metric("prompt_tokens_cached_total") for b in backends)
    prompt = sum(b.metric("prompt_tokens_total") for b in backends) + cached
    return prompt, sum(b.metric("tokens_predicted_total") for b in backends), cached


# -- tokens ---------------------------------------------------------------------------------


def test_token_counters_equal_the_usage_the_backends_reported(
    client: openai.OpenAI, gateway: Gateway, backends: list[LlamaServer]
) -> None:
    def counted() -> tuple[float, ...]:
        return tuple(gateway.metric(name, model="smollm2") for name in COUNTERS)

    before = counted()
    usages = []
    answer = client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=7)
    usages.append(answer.usage)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=CHAT,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usages.append(chunks[-1].usage)
    completion = client.completions.create(model="smollm2", prompt="The sky is", max_tokens=4)
    usages.append(completion.usage)
    # A stream without include_usage: the client sees no usage, the backend counts it.
    on_backends = _backend_tokens(backends)
    plain = list(  # exactly max_tokens: the count below must not depend on where EOS falls
        client.chat.completions.create(
            model="smollm2",
            messages=CHAT,
            max_tokens=6,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    after_backends = _backend_tokens(backends)
    assert all(chunk.usage is None for chunk in plain)

    expected = (
        sum(u.prompt_tokens for u in usages) + after_backends[0] - on_backends[0],
        sum(u.completion_tokens for u in usages) + after_backends[1] - on_backends[1],
        sum(u.prompt_tokens_details.cached_tokens for u in usages)
        + after_backends[2]
        - on_backends[2],
    )
    assert after_backends[1] - on_backends[1] == 6
    wanted = tuple(b + e for b, e in zip(before, expected, strict=True))
    assert eventually(lambda: counted() == wanted), (counted(), wanted)


# -- slots and KV cache ---------------------------------------------------------------------


async def test_slots_busy_rises_while_requests_run_and_returns_to_zero(
    gateway: Gateway,
) -> None:
    # Each stream runs its 200 tokens: sampled freely, the model often stops after ten, and a
    # stream that ends before the third one starts leaves the gauge at two.
    body = {
        "model": "smollm2",
        "messages": CHAT,
        "max_tokens": 200,
        "stream": True,
        "ignore_eos": True,
    }
    busy_seen: list[float] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:

        async def run() -> None:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                first = True
                async for _ in response.aiter_bytes():
                    if first:
                        first = False
                        started.release()

        started = asyncio.Semaphore(0)
        tasks = [asyncio.create_task(run()) for _ in range(3)]
        for _ in tasks:
            await started.acquire()  # every stream has produced its first bytes
        # The lease table is read as the last admission script saw it: poll while they run.
        while not all(task.done() for task in tasks):
            busy_seen.append(await asyncio.to_thread(gateway.metric, "llama_gateway_slots_busy"))
            if busy_seen[-1] >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
    assert max(busy_seen) >= 3, busy_seen
    assert eventually(lambda: gateway.metric("llama_gateway_slots_busy") == 0)
    assert gateway.metric("llama_gateway_inflight_requests") == 0


def test_kv_cache_tokens_match_what_slots_report(
    client: openai.OpenAI, gateway: Gateway, backends: list[LlamaServer]
) -> None:
    client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=4)
    for server in backends:

        def matches(server: LlamaServer = server) -> bool:
            slots = server.slots()
            held = sum(slot.get("n_prompt_tokens", 0) for slot in slots)
            ratio = held / sum(slot["n_ctx"] for slot in slots)
            tokens = gauge(gateway, "llama_gateway_kv_cache_tokens", server)
            usage = gauge(gateway, "llama_gateway_kv_cache_usage_ratio", server)
            return tokens == held and usage is not None and abs(usage - ratio) < 1e-9

        assert eventually(matches)
    # After traffic something is cached somewhere.
    assert gateway.metric("llama_gateway_kv_cache_tokens") > 0


def _kv_bytes_from_header(model_path: str, n_ctx: int) -> int:
    """The KV-cache formula, worked out here from the raw header, not by the gateway's code."""
    reader = gguf.GGUFReader(model_path)

    def field(key: str) -> int:
        return int(reader.get_field(key).contents())

    arch = reader.get_field("general.architecture").contents()
    n_layer = field(f"{arch}.block_count")
    head_dim = field(f"{arch}.embedding_length") // field(f"{arch}.attention.head_count")
    n_embd_gqa = field(f"{arch}.attention.head_count_kv") * head_dim
    f16 = 2
    return n_ctx * n_layer * n_embd_gqa * f16 * 2  # K and V


def test_kv_cache_capacity_bytes_follow_the_gguf_header(
    gateway: Gateway, backends: list[LlamaServer], model_path: str
) -> None:
    expected = _kv_bytes_from_header(model_path, 4096)  # the backends run with -c 4096
    assert expected == 90 * 1024 * 1024  # what llama-server logs for SmolLM2 at 4096 cells
    for server in backends:
        assert eventually(
            lambda s=server: gauge(gateway, "llama_gateway_kv_cache_capacity_bytes", s) == expected
        )
    time.sleep(1.5)  # three probes later (0.5 s apart) it is still there, not gone again
    for server in backends:
        assert gauge(gateway, "llama_gateway_kv_cache_capacity_bytes", server) == expected


def test_backend_speeds_and_deferred_come_from_the_backends(
    client: openai.OpenAI, gateway: Gateway, backends: list[LlamaServer]
) -> None:
    client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=8)
    for server in backends:
        if server.metric("tokens_predicted_total") == 0:
            continue
        for name in (
            "llama_gateway_backend_prompt_tokens_per_second",
            "llama_gateway_backend_generation_tokens_per_second",
        ):
            assert eventually(lambda s=server, n=name: (gauge(gateway, n, s) or 0) > 0), name
        assert gauge(gateway, "llama_gateway_backend_requests_deferred", server) == 0


# -- logs and request ids -------------------------------------------------------------------


def test_one_json_log_line_per_request_with_its_id(gateway: Gateway) -> None:
    request = {"model": "smollm2", "messages": CHAT, "max_tokens": 3}
    given = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=request,
        headers={"x-request-id": "obs-test-1", "authorization": "Bearer sk-lg-do-not-log-me"},
        timeout=60,
    )
    assert given.status_code == 200
    assert given.headers["x-request-id"] == "obs-test-1"
    made = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "nope"}, timeout=10)
    assert made.status_code == 400
    generated = made.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    def line_for(request_id: str) -> dict | None:
        for raw in gateway.log().splitlines():
            if request_id in raw:
                entry = json.loads(raw)
                if entry.get("request_id") == request_id and entry["message"] == "request":
                    return entry
        return None

    entry = eventually(lambda: line_for("obs-test-1"))
    assert entry["model"] == "smollm2"
    assert entry["status"] == 200
    assert entry["backend"].startswith("127.0.0.1:")
    assert entry["key"] == "anonymous"
    assert entry["completion_tokens"] == 3
    assert entry["prompt_tokens"] > 0
    assert entry["cached_tokens"] >= 0
    assert entry["queue_ms"] >= 0 and entry["total_ms"] >= entry["queue_ms"]
    assert "ttft_ms" in entry
    refused = eventually(lambda: line_for(generated))
    assert refused["status"] == 400
    log = gateway.log()
    assert "sk-lg-do-not-log-me" not in log
    for raw in log.splitlines():
        json.loads(raw)  # every line of the process is one JSON object


# -- the dashboard against the real /metrics ------------------------------------------------

_PROMQL_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
      | (?P<range>\[[^\]]*\])
      | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<variable>\$\{?\w+\}?)
      | (?P<punct>=~|!~|!=|==|>=|<=|[{}(),=<>+\-*/^%@])
      | (?P<space>\s+)""",
    re.VERBOSE,
)
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
#: Aggregation operators: ``sum by (x) (…)`` puts a label list between the name and ``(``.
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by ``(``), keywords, label names in ``{…}`` matchers or in
    ``by (…)``-style lists; strings, ranges and Grafana variables are skipped."""
    tokens = []
    position = 0
    while position < len(expr):
        match = _PROMQL_TOKEN.match(expr, position)
        assert match, f"cannot tokenize {expr[position:]!r}"
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    names: set[str] = set()
    braces = 0
    label_list = False
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":
            braces += 1
        elif text == "}":
            braces -= 1
        elif label_list and text == ")":
            label_list = False
        elif kind == "ident" and not braces and not label_list:
            if text in _LABEL_LISTS and following == "(":
                label_list = True
            elif text in _KEYWORDS or text in _AGGREGATIONS or following == "(":
                continue  # a keyword, an aggregation, or a function
            else:
                names.add(text)
    return names


def test_promql_names_are_read_properly() -> None:
    expr = (
        'topk(10, sum by (key, le) (rate(llama_gateway_a_total{model=~"$model", '
        'status!~"2.*"}[$__rate_interval])) / on (key) group_left '
        "max without (backend) (llama_gateway_b) offset 5m) > bool 0.5"
    )
    assert promql_metric_names(expr) == {"llama_gateway_a_total", "llama_gateway_b"}


def test_every_dashboard_metric_exists_in_the_real_metrics_output(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    # Traffic of every kind the panels look at: plain, streamed, and a refusal.
    client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=4)
    list(client.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=4, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=1)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(promql_metric_names(q) for q in queries))
    assert len(used) >= 15 and all(name.startswith("llama_gateway_") for name in used)

    def missing() -> set[str]:
        return used - set(samples(gateway.url))

    eventually(lambda: not missing())
    assert not missing(), f"queried by the dashboard, absent from /metrics: {sorted(missing())}"


# -- traces, in-process over real backends --------------------------------------------------


@pytest.fixture
def recording_proxy(backends: list[LlamaServer]) -> Iterator[tuple[str, list]]:
    """A pass-through to a real llama-server that records the headers of each request.

    It runs on an event loop of its own, in a thread: Litestar's test client drives the app
    from another thread and blocks the test's loop while a request is in flight.
    """
    target = backends[0].url
    seen: list[tuple[str, str, dict[str, str]]] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path, dict(request.headers)))
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with state["session"].request(
            request.method, target + request.path_qs, data=await request.read(), headers=headers
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def serve() -> None:
        state["session"] = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        state["runner"] = runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]
        started.set()

    async def stop() -> None:
        await state["runner"].cleanup()
        await state["session"].close()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()
        loop.run_until_complete(stop())
        loop.close()

    thread = threading.Thread(target=run, name="recording-proxy", daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield f"http://127.0.0.1:{state['port']}", seen
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


async def test_trace_with_genai_attributes_and_traceparent_upstream(
    recording_proxy: tuple[str, list],
) -> None:
    url, seen = recording_proxy
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    admin = {"Authorization": "Bearer admin-token"}
    settings = load_settings({"backends": [url], "admin_token": "admin-token"}, environ={})
    app = create_app(settings, tracer_provider=provider)
    async with AsyncTestClient(app, timeout=120) as http:
        for _ in range(300):  # the pool finds the backend (through the proxy) shortly
            if (await http.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        created = await http.post("/admin/keys", json={"name": "tracer"}, headers=admin)
        secret = {"Authorization": f"Bearer {created.json()['key']}"}
        answer = await http.post(
            "/v1/chat/completions",
            json={"model": "smollm2", "messages": CHAT, "max_tokens": 5, "ignore_eos": True},
            headers={"x-request-id": "trace-me", **secret},
        )
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        streamed = await http.post(
            "/v1/chat/completions",
            json={"model": "smollm2", "messages": CHAT, "max_tokens": 3, "stream": True},
            headers=secret,
        )
        assert streamed.status_code == 200

        def finished() -> list:
            return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]

        for _ in range(200):  # the stream's accounting runs as a task of its own
            if len(finished()) >= 2:
                break
            await asyncio.sleep(0.05)

    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.attributes.get("llama_gateway.request_id") == "trace-me")
    children = {s.name: s for s in spans if s.parent and s.parent.span_id == server.context.span_id}
    # One backend with a free slot: the lease came in the limits check's round trip, so the
    # request never queued (a request that waits has a "queue" span between them).
    assert {"auth", "limits"} <= set(children) and "queue" not in children, sorted(children)
    upstream = next(s for s in children.values() if s.kind is SpanKind.CLIENT)
    assert upstream.name == "chat smollm2"
    attributes = server.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "smollm2"
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.response.model"] == "smollm2"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["llama_gateway.backend"] == url.removeprefix("http://")
    assert "llama_gateway.cached_tokens" in attributes
    assert attributes["http.response.status_code"] == 200
    assert upstream.attributes["gen_ai.usage.output_tokens"] == 5

    # The backend received the upstream span as its parent, and the request id.
    posted = [h for method, path, h in seen if method == "POST" and path == "/v1/chat/completions"]
    first = {k.lower(): v for k, v in posted[0].items()}
    assert created.json()["key"] not in json.dumps(posted)  # the client's key stays here
    trace_id = format(server.context.trace_id, "032x")
    span_id = format(upstream.context.span_id, "016x")
    assert first["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert first["x-request-id"] == "trace-me"
    # Nothing but an uncompressed body is asked for: the gateway relays the bytes as they come.
    assert "accept-encoding" not in first and "cookie" not in first
    streamed_server = next(s for s in finished() if s is not server)
    assert streamed_server.attributes["gen_ai.usage.output_tokens"] == 3
