"""The pool gauges: set from a reading, and gone for backends that left; the per-request
series, kept once found."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry.metrics import KEPT_SERIES, BackendReading, Metrics, ModelReading


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_pool_gauges_follow_the_pool() -> None:
    metrics = Metrics()
    a = BackendReading(
        "a:1",
        "m",
        up=True,
        slots_total=4,
        slots_busy=2,
        requests_deferred=1,
        kv_cache_tokens=100,
        kv_cache_usage_ratio=0.25,
        kv_cache_capacity_bytes=1000,
        prompt_tokens_per_second=50.0,
        generation_tokens_per_second=20.0,
    )
    b = BackendReading("b:2", "m", up=False, slots_total=0, slots_busy=0)
    metrics.set_pool([a, b], [ModelReading("m", queue_depth=3, inflight=2)])
    samples = _samples(metrics)
    labels_a = (("backend", "a:1"), ("model", "m"))
    assert samples[("llama_gateway_kv_cache_usage_ratio", labels_a)] == 0.25
    assert samples[("llama_gateway_kv_cache_capacity_bytes", labels_a)] == 1000
    assert samples[("llama_gateway_backend_requests_deferred", labels_a)] == 1
    assert samples[("llama_gateway_backend_generation_tokens_per_second", labels_a)] == 20
    assert samples[("llama_gateway_queue_depth", (("model", "m"),))] == 3
    # Unknown values are left out, not reported as 0.
    labels_b = (("backend", "b:2"), ("model", "m"))
    assert samples[("llama_gateway_backend_up", labels_b)] == 0
    assert ("llama_gateway_kv_cache_tokens", labels_b) not in samples

    metrics.set_pool([b], [])
    samples = _samples(metrics)
    assert not any(labels == labels_a for _, labels in samples)
    assert ("llama_gateway_queue_depth", (("model", "m"),)) not in samples


def test_request_series_count_on_the_registry_across_a_refill_of_the_kept_ones() -> None:
    """The per-request series are found once and kept (``Metrics.series``); past the kept
    number the lookups start again, and the counts land on the same registry series."""
    metrics = Metrics()
    first = metrics.series("m", "k", "a:1")
    assert metrics.series("m", "k", "a:1") is first  # kept
    first.answered(200)
    first.answered(200)
    first.answered(429)
    first.prompt_tokens.inc(7)
    for i in range(KEPT_SERIES):  # fills the kept ones: they start again
        metrics.series("m", f"key-{i}", "a:1")
    again = metrics.series("m", "k", "a:1")
    assert again is not first
    again.answered(200)
    again.prompt_tokens.inc(3)
    samples = _samples(metrics)
    labels = (("backend", "a:1"), ("key", "k"), ("model", "m"))
    assert samples[("llama_gateway_requests_total", (*labels, ("status", "200")))] == 3
    assert samples[("llama_gateway_requests_total", (*labels, ("status", "429")))] == 1
    assert samples[("llama_gateway_prompt_tokens_total", labels)] == 10
