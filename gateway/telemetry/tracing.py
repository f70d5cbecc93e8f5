"""OpenTelemetry traces: off unless an OTLP endpoint is configured, and then one server span
per API request with children for auth/limits, the queue wait and the upstream call.

Attributes follow the GenAI semantic conventions (``gen_ai.*``) plus the gateway's own
(``llama_gateway.*``). The W3C ``traceparent`` of the upstream span goes to the backend.

Nothing here touches OpenTelemetry's global state: the provider is built by the app (or handed
in by a test) and passed down. When tracing is off there is no tracer at all, and the request
path allocates no span.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Tracing", "build_tracer_provider", "otlp_traces_endpoint"]

INSTRUMENTATION_NAME = "llama-gateway"


def otlp_traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """Where OTLP/HTTP traces go, from the standard variables; ``None`` leaves tracing off.

    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used as given; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    a base URL that gets ``/v1/traces``. ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none`` turn tracing off.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{base.rstrip('/')}/v1/traces" if base else None


def build_tracer_provider(endpoint: str | None, *, service_name: str) -> TracerProvider | None:
    """A provider exporting to ``endpoint`` with OTLP/HTTP in batches; ``None`` without one.

    The exporter still reads ``OTEL_EXPORTER_OTLP_HEADERS``, ``…_TIMEOUT`` and the certificate
    variables itself, as every OpenTelemetry exporter does.
    """
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Tracing:
    """The tracer of one app, or none: every method is a cheap no-op when tracing is off."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer: Tracer | None = (
            provider.get_tracer(INSTRUMENTATION_NAME) if provider is not None else None
        )
        self._propagator = TraceContextTextMapPropagator()

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def start_server_span(
        self, name: str, headers: Mapping[str, str], attributes: dict[str, Any]
    ) -> Span | None:
        """The request's root span, continuing the client's trace if it sent ``traceparent``."""
        if self.tracer is None:
            return None
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        return self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )

    def start_child(
        self,
        parent: Span | None,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
    ) -> Span | None:
        if self.tracer is None or parent is None:
            return None
        return self.tracer.start_span(
            name, context=set_span_in_context(parent), kind=kind, attributes=attributes
        )

    def inject(self, span: Span | None, carrier: dict[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) for ``span`` to outgoing headers."""
        if span is not None:
            self._propagator.inject(carrier, context=set_span_in_context(span, Context()))

    def shutdown(self) -> None:
        """Flush and stop the provider (blocking: run it in a thread)."""
        if self.provider is not None:
            self.provider.shutdown()
