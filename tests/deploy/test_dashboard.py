"""The Grafana dashboard: valid JSON, one copy for compose and an identical one in the chart,
the panels the team relies on, and only the metric names the gateway promises."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import CHART, DEPLOY

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "llama-gateway.json"

# The metric contract (gateway/telemetry/metrics.py declares them; keep the names exact).
CONTRACT = {
    "llama_gateway_backend_up",
    "llama_gateway_slots_total",
    "llama_gateway_slots_busy",
    "llama_gateway_backend_requests_deferred",
    "llama_gateway_kv_cache_tokens",
    "llama_gateway_kv_cache_usage_ratio",
    "llama_gateway_kv_cache_capacity_bytes",
    "llama_gateway_backend_prompt_tokens_per_second",
    "llama_gateway_backend_generation_tokens_per_second",
    "llama_gateway_requests_total",
    "llama_gateway_prompt_tokens_total",
    "llama_gateway_cached_prompt_tokens_total",
    "llama_gateway_completion_tokens_total",
    "llama_gateway_request_duration_seconds",
    "llama_gateway_time_to_first_token_seconds",
    "llama_gateway_time_per_output_token_seconds",
    "llama_gateway_queue_wait_seconds",
    "llama_gateway_queue_depth",
    "llama_gateway_inflight_requests",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_chart_carries_the_same_dashboard() -> None:
    assert (CHART / "dashboards" / "llama-gateway.json").read_text() == DASHBOARD.read_text()


def test_dashboard_uses_only_promised_metric_names(dashboard) -> None:
    used = set()
    for expr in expressions(dashboard):
        for name in re.findall(r"\bllama_gateway_\w+", expr):
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in CONTRACT:
                    name = name.removesuffix(suffix)
            used.add(name)
    assert used <= CONTRACT, f"not in the metric contract: {sorted(used - CONTRACT)}"


def test_dashboard_has_the_panels_the_issue_asks_for(dashboard) -> None:
    text = " ".join(expressions(dashboard))
    for needed in (
        "llama_gateway_slots_busy",  # slots busy/total per backend
        "llama_gateway_slots_total",
        "llama_gateway_queue_depth",  # queue depth and p95 wait
        "histogram_quantile(0.95, sum by (le, model) (rate(llama_gateway_queue_wait_seconds",
        "rate(llama_gateway_prompt_tokens_total",  # tokens/s in and out
        "rate(llama_gateway_completion_tokens_total",
        "rate(llama_gateway_cached_prompt_tokens_total",  # cache-hit ratio
        "llama_gateway_kv_cache_usage_ratio",  # KV usage per backend
        "histogram_quantile(0.5, sum by (le, model) (rate(llama_gateway_time_to_first_token",
        "histogram_quantile(0.95, sum by (le, model) (rate(llama_gateway_time_to_first_token",
        "sum by (status) (rate(llama_gateway_requests_total",  # errors by status
        "topk(10, sum by (key)",  # top keys by tokens
    ):
        assert needed in text, needed


def test_panels_use_the_datasource_variable(dashboard) -> None:
    # A variable, not a fixed uid, so the same JSON works in compose and behind the k8s sidecar.
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "llama-gateway.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
