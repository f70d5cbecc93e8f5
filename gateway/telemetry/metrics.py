"""Every Prometheus metric the gateway exports, declared in one place.

Names are a contract (dashboards and alerts use them): prefixed ``llama_gateway_``, ``_total``
only on counters, ``_seconds`` on durations, label sets bounded (model, backend, key name,
status class).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


@dataclass(frozen=True, slots=True)
class BackendReading:
    """One backend as the pool sees it at scrape time; ``None`` leaves a series out."""

    backend: str
    model: str
    up: bool
    slots_total: int
    slots_busy: int
    requests_deferred: float | None = None
    kv_cache_tokens: int | None = None
    kv_cache_usage_ratio: float | None = None
    kv_cache_capacity_bytes: int | None = None
    prompt_tokens_per_second: float | None = None
    generation_tokens_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class ModelReading:
    model: str
    queue_depth: int
    inflight: int


#: Label sets whose per-request series are kept looked up (:meth:`Metrics.series`); past it
#: the lookups start again (a new key name or model only costs a lookup).
KEPT_SERIES = 4096


@dataclass(frozen=True, slots=True)
class RequestSeries:
    """The series a finished request counts on, for one (model, key, backend): found once
    by their labels (prometheus_client's ``labels()`` is ~3 µs a call, six a request)."""

    prompt_tokens: Any
    completion_tokens: Any
    cached_prompt_tokens: Any
    computed_prompt_tokens: Any
    request_duration: Any
    time_to_first_token: Any
    time_per_output_token: Any
    requests: Any
    labels: tuple[str, str, str]
    #: ``requests_total``'s series by status code, found on first use.
    by_status: dict[int, Any]

    def answered(self, status: int) -> None:
        """One more answer of ``status`` on ``requests_total``."""
        child = self.by_status.get(status)
        if child is None:
            child = self.by_status[status] = self.requests.labels(*self.labels, str(status))
        child.inc()


class Metrics:
    """The gateway's metrics on a registry of its own (one per app, no global state)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str, str], RequestSeries] = {}
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
        self.computed_prompt_tokens = Counter(
            "llama_gateway_computed_prompt_tokens",
            "Prompt tokens the backends computed: prompt minus those served from cache.",
            request,
            registry=r,
        )
        self.runner_restarts = Counter(
            "llama_gateway_runner_restarts",
            "Runners the gateway restarted after their process died or failed its probes.",
            ["model"],
            registry=r,
        )
        self.affinity_decisions = Counter(
            "llama_gateway_affinity_decisions",
            "Affinity routing: requests sent to the backend with the longest cached prefix "
            "(hit), elsewhere although one had it (spill), or with no prefix known (miss).",
            ("model", "outcome"),
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
        self.requests_deferred = Gauge(
            "llama_gateway_backend_requests_deferred",
            "Requests waiting in the backend's own queue (its /metrics).",
            backend,
            registry=r,
        )
        self.kv_cache_tokens = Gauge(
            "llama_gateway_kv_cache_tokens",
            "Tokens held in the backend's KV cache, summed over its slots (from /slots).",
            backend,
            registry=r,
        )
        self.kv_cache_usage_ratio = Gauge(
            "llama_gateway_kv_cache_usage_ratio",
            "Tokens held in the KV cache over the slots' context (from /slots).",
            backend,
            registry=r,
        )
        self.kv_cache_capacity_bytes = Gauge(
            "llama_gateway_kv_cache_capacity_bytes",
            "Memory the backend's KV cache takes, from the model's GGUF header.",
            backend,
            registry=r,
        )
        self.backend_prompt_speed = Gauge(
            "llama_gateway_backend_prompt_tokens_per_second",
            "Prompt tokens processed per second of processing time, between two probes.",
            backend,
            registry=r,
        )
        self.backend_generation_speed = Gauge(
            "llama_gateway_backend_generation_tokens_per_second",
            "Tokens generated per second of generation time, between two probes.",
            backend,
            registry=r,
        )

    def series(self, model: str, key: str, backend: str) -> RequestSeries:
        """The per-request series of these labels (counters and histograms that are never
        cleared, so a series found once stays the registry's)."""
        labels = (model, key, backend)
        found = self._series.get(labels)
        if found is None:
            if len(self._series) >= KEPT_SERIES:
                self._series.clear()
            found = self._series[labels] = RequestSeries(
                self.prompt_tokens.labels(*labels),
                self.completion_tokens.labels(*labels),
                self.cached_prompt_tokens.labels(*labels),
                self.computed_prompt_tokens.labels(*labels),
                self.request_duration.labels(model),
                self.time_to_first_token.labels(model),
                self.time_per_output_token.labels(model),
                self.requests,
                labels,
                {},
            )
        return found

    def set_pool(self, backends: Iterable[BackendReading], models: Iterable[ModelReading]) -> None:
        """Replace the pool gauges with this reading: series of backends and models that left
        the pool, or whose value is unknown, disappear."""
        per_backend = (
            (self.backend_up, "up"),
            (self.slots_total, "slots_total"),
            (self.slots_busy, "slots_busy"),
            (self.requests_deferred, "requests_deferred"),
            (self.kv_cache_tokens, "kv_cache_tokens"),
            (self.kv_cache_usage_ratio, "kv_cache_usage_ratio"),
            (self.kv_cache_capacity_bytes, "kv_cache_capacity_bytes"),
            (self.backend_prompt_speed, "prompt_tokens_per_second"),
            (self.backend_generation_speed, "generation_tokens_per_second"),
        )
        for gauge, _ in per_backend:
            gauge.clear()
        self.queue_depth.clear()
        self.inflight.clear()
        for reading in backends:
            for gauge, attribute in per_backend:
                value = getattr(reading, attribute)
                if value is not None:
                    gauge.labels(reading.backend, reading.model).set(float(value))
        for model in models:
            self.queue_depth.labels(model.model).set(model.queue_depth)
            self.inflight.labels(model.model).set(model.inflight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
