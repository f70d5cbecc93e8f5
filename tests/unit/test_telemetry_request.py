"""Request telemetry: the request id on every answer, the span tree and GenAI attributes, the
log line once the answer is sent and the exchange is closed, and nothing when tracing is off."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar, Request, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.api.edge import EdgeMiddleware
from gateway.telemetry.request import RequestTelemetry
from gateway.telemetry.tracing import Tracing, otlp_traces_endpoint
from gateway.usage import Usage

USAGE = Usage(prompt=7, completion=3, cached=2)


@post("/v1/chat/completions", status_code=200)
async def chat(request: Request) -> dict:
    telemetry: RequestTelemetry = request.state.telemetry
    telemetry.describe(model="m", max_tokens=5, stream=False)
    with telemetry.phase("auth"):
        pass
    with telemetry.phase("queue"):
        pass
    headers = telemetry.upstream_headers("127.0.0.1:8081", slot=2)
    telemetry.hold()
    telemetry.exchange_closed(
        status=200,
        model="m",
        key="team-a",
        backend="127.0.0.1:8081",
        usage=USAGE,
        finish_reasons=["length"],
        first_byte_at=None,
    )
    return {"sent": headers}


@post("/v1/embeddings")
async def refused() -> None:
    raise NotAuthorizedException("no key")


@get("/health")
async def health() -> dict:
    return {}


def _app(tracing: Tracing) -> Litestar:
    app = Litestar([chat, refused, health], logging_config=None)
    app.asgi_handler = EdgeMiddleware(app.asgi_handler, tracing=tracing, max_url_bytes=8192)
    return app


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider)


async def test_span_tree_attributes_and_traceparent(tracing, exporter, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    async with AsyncTestClient(_app(tracing)) as client:
        answer = await client.post(
            "/v1/chat/completions", json={}, headers={"x-request-id": "abc-123"}
        )
    assert answer.headers["x-request-id"] == "abc-123"
    sent = answer.json()["sent"]
    assert sent["X-Request-Id"] == "abc-123"

    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans["POST /v1/chat/completions"]
    upstream = spans["chat m"]
    assert server.kind is SpanKind.SERVER and upstream.kind is SpanKind.CLIENT
    for child in (spans["auth"], spans["queue"], upstream):
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
    # The backend is told the upstream span is its parent.
    trace_id = format(server.context.trace_id, "032x")
    upstream_id = format(upstream.context.span_id, "016x")
    assert sent["traceparent"].startswith(f"00-{trace_id}-{upstream_id}-")
    attributes = server.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "m"
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.response.model"] == "m"
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["llama_gateway.cached_tokens"] == 2
    assert attributes["llama_gateway.backend"] == "127.0.0.1:8081"
    assert attributes["llama_gateway.slot"] == 2
    assert attributes["http.response.status_code"] == 200

    [line] = [r for r in caplog.records if r.name == "gateway.requests"]
    assert line.request_id == "abc-123"
    assert (line.key, line.model, line.backend, line.status) == (
        "team-a",
        "m",
        "127.0.0.1:8081",
        200,
    )
    assert (line.prompt_tokens, line.completion_tokens, line.cached_tokens) == (7, 3, 2)
    assert line.queue_ms is not None and line.total_ms >= line.queue_ms


async def test_client_trace_is_continued(tracing, exporter) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with AsyncTestClient(_app(tracing)) as client:
        await client.post("/v1/chat/completions", json={}, headers={"traceparent": parent})
    server = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


async def test_refusals_and_unknown_paths_carry_a_request_id(tracing, exporter, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    async with AsyncTestClient(_app(tracing)) as client:
        refused = await client.post("/v1/embeddings", headers={"x-request-id": "bad id\x7f"})
        unknown = await client.get("/nowhere")
        health = await client.get("/health")
    for answer in (refused, unknown, health):
        assert len(answer.headers["x-request-id"]) == 32  # generated: the given one was unsafe
    assert refused.status_code == 401
    [line] = [r for r in caplog.records if r.name == "gateway.requests"]
    assert line.status == 401 and line.request_id == refused.headers["x-request-id"]
    [server] = exporter.get_finished_spans()
    assert server.attributes["http.response.status_code"] == 401


async def test_tracing_off_makes_no_spans(caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.requests")
    async with AsyncTestClient(_app(Tracing(None))) as client:
        answer = await client.post(
            "/v1/chat/completions", json={}, headers={"x-request-id": "kept-without-tracing"}
        )
    assert "traceparent" not in answer.json()["sent"]
    assert answer.headers["x-request-id"] == "kept-without-tracing"
    assert [r.status for r in caplog.records if r.name == "gateway.requests"] == [200]


def test_otlp_endpoint_from_the_standard_variables() -> None:
    assert otlp_traces_endpoint({}) is None
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert otlp_traces_endpoint(base) == "http://collector:4318/v1/traces"
    signal = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/x"}
    assert otlp_traces_endpoint(signal) == "http://other:4318/x"
    assert otlp_traces_endpoint({**base, "OTEL_SDK_DISABLED": "true"}) is None
    assert otlp_traces_endpoint({**base, "OTEL_TRACES_EXPORTER": "none"}) is None
