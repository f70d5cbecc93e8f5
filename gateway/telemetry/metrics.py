"""Every Prometheus metric the gateway exports, declared in one place.

Names are a contract (dashboards and alerts use them): prefixed ``llama_gateway_``, ``_total``
only on counters, ``_seconds`` on durations, label sets bounded (model, backend, key name,
status class).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    """The gateway's metrics on a registry of its own (one per app, no global state)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        request = ("model", "key", "backend")

        self.requests = Counter(
            "llama_gateway_requests",
            "Requests answered, by outcome status code.",
            [*request, "status"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "llama_gateway_prompt_tokens",
            "Prompt tokens, as the backends reported them.",
            request,
            registry=r,
        )
        self.cached_prompt_tokens = Counter(
            "llama_gateway_cached_prompt_tokens",
            "Prompt tokens served from the backends' KV cache.",
            request,
            registry=r,
        )
        self.completion_tokens = Counter(
            "llama_gateway_completion_tokens",
            "Generated tokens, as the backends reported them.",
            request,
            registry=r,
        )

        self.request_duration = Histogram(
            "llama_gateway_request_duration_seconds",
            "Time from arrival to the last byte.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "llama_gateway_time_to_first_token_seconds",
            "Time from arrival to the first streamed byte from the backend.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "llama_gateway_time_per_output_token_seconds",
            "Time per generated token after the first.",
            ("model",),
            buckets=_TOKEN_TIME_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "llama_gateway_queue_wait_seconds",
            "Time a request waited for a slot lease.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self.queue_depth = Gauge(
            "llama_gateway_queue_depth", "Requests waiting for a slot.", ("model",), registry=r
        )
        self.inflight = Gauge(
            "llama_gateway_inflight_requests",
            "Requests holding a slot lease.",
            ("model",),
            registry=r,
        )

        backend = ("backend", "model")
        self.backend_up = Gauge(
            "llama_gateway_backend_up",
            "1 when the backend is ready for requests.",
            backend,
            registry=r,
        )
        self.slots_total = Gauge(
            "llama_gateway_slots_total", "Parallel slots the backend has.", backend, registry=r
        )
        self.slots_busy = Gauge(
            "llama_gateway_slots_busy", "Slots leased by this gateway.", backend, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
