"""Reading llama-server's /metrics and /slots: counters into speeds, slots into KV use."""

from __future__ import annotations

import asyncio

from gateway.pool.stats import (
    ServerCounters,
    ServerStats,
    kv_cache_tokens,
    kv_cache_usage_ratio,
    parse_server_metrics,
)

# The shape llama-server renders (tools/server/server-task.cpp, to_metrics()).
SERVER_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1200
# HELP llamacpp:prompt_seconds_total Total time spent processing prompts
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 0.6
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 300
# HELP llamacpp:tokens_predicted_seconds_total Total time spent generating tokens
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 1.5
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 2000
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
"""


def test_parse_server_metrics() -> None:
    assert parse_server_metrics(SERVER_METRICS) == ServerCounters(
        prompt_tokens=1200,
        prompt_seconds=0.6,
        predicted_tokens=300,
        predicted_seconds=1.5,
        requests_deferred=3,
    )


def test_speeds_are_deltas_between_readings() -> None:
    stats = ServerStats()
    stats.observe(ServerCounters(1200, 0.6, 300, 1.5, 3))
    assert stats.prompt_tokens_per_second == 2000  # since the server started
    assert stats.generation_tokens_per_second == 200
    assert stats.requests_deferred == 3
    stats.observe(ServerCounters(1300, 1.125, 400, 2.0, 0))
    assert stats.prompt_tokens_per_second == 100 / 0.525
    assert stats.generation_tokens_per_second == 100 / 0.5
    assert stats.requests_deferred == 0
    # Idle: no new work, the last speeds stay.
    stats.observe(ServerCounters(1300, 1.125, 400, 2.0, 0))
    assert stats.generation_tokens_per_second == 200
    # Restarted: counters went back, measure from zero again.
    stats.observe(ServerCounters(10, 0.1, 50, 0.5, 0))
    assert stats.generation_tokens_per_second == 100
    assert stats.prompt_tokens_per_second == 100


def test_kv_use_from_slots() -> None:
    slots = [
        {"id": 0, "n_ctx": 1024, "is_processing": False},  # never used
        {"id": 1, "n_ctx": 1024, "is_processing": False, "n_prompt_tokens": 100},
        {"id": 2, "n_ctx": 1024, "is_processing": True, "n_prompt_tokens": 412},
    ]
    assert kv_cache_tokens(slots) == 512
    assert kv_cache_usage_ratio(slots) == 512 / 3072
    assert kv_cache_usage_ratio([]) is None


def test_launch_facts_from_the_runner_command_line() -> None:
    stats = ServerStats()
    stats.describe_launch("/models/m.gguf", ["-ctk", "q8_0", "-kvu"])
    assert (stats.model_file, stats.cache_type_k, stats.cache_type_v) == (
        "/models/m.gguf",
        "q8_0",
        "f16",
    )
    assert stats.kv_unified


async def test_capacity_of_an_unreadable_file_stays_unknown(tmp_path) -> None:
    stats = ServerStats()
    stats.track_capacity(str(tmp_path / "elsewhere.gguf"), n_ctx_slot=1024, slots=4)
    await asyncio.wait_for(stats._geometry, 10)
    stats.track_capacity(str(tmp_path / "elsewhere.gguf"), n_ctx_slot=1024, slots=4)
    assert stats.kv_cache_capacity_bytes is None
