"""The console's parts without a browser: the recent-requests buffer, the session cookie, the
per-key usage read (through the real limits scripts on ``memory://``) and the plots' sampler
(on a real pool's backend stats, fed the counters a llama-server reports)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from gateway.admission.leases import Admission
from gateway.api.session import session_valid, sign_session
from gateway.console.series import Sampler
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.pool.stats import ServerCounters
from gateway.store.admission import AdmissionStore
from gateway.store.apikeys import KeyStore
from gateway.store.connection import connect
from gateway.store.key_usage import KeyUsage, read_usage
from gateway.store.limits import Limiter
from gateway.telemetry.recent import RecentRequests, status_matches
from gateway.telemetry.request import RequestTelemetry
from gateway.telemetry.tracing import Tracing
from gateway.upstream.client import BackendClient
from gateway.usage import Usage


def _telemetry(recent: RecentRequests, request_id: str, state: dict[str, Any]) -> RequestTelemetry:
    return RequestTelemetry(
        request_id, tracing=Tracing(None), path="/v1/chat/completions", recorder=recent, state=state
    )


def _finish(telemetry: RequestTelemetry, status: int, key: str, model: str) -> None:
    telemetry.hold()
    telemetry.exchange_closed(
        status=status,
        model=model,
        key=key,
        backend="b:1",
        usage=Usage(prompt=5, completion=7),
        finish_reasons=["stop"],
        first_byte_at=telemetry.started_at + 0.25,
    )
    telemetry.release()


def test_a_request_is_in_flight_under_its_key_then_recorded() -> None:
    recent = RecentRequests(size=3)
    state: dict[str, Any] = {}
    telemetry = _telemetry(recent, "r1", state)
    state["key"] = "alice"  # what the auth guard leaves on the request's state
    telemetry.upstream_headers("b:1", slot=2)
    (flying,) = recent.inflight("b:1")
    assert (flying.key, flying.slot) == ("alice", 2)
    assert recent.inflight("other:1") == []

    _finish(telemetry, 200, "alice", "smollm2")
    assert recent.inflight("b:1") == []
    (record,) = recent.since(0)
    assert record["status"] == 200 and record["key"] == "alice" and record["backend"] == "b:1"
    assert record["prompt_tokens"] == 5 and record["completion_tokens"] == 7
    assert record["ttft_ms"] == 250.0
    assert recent.since(record["seq"]) == []


def test_the_buffer_keeps_the_last_n_and_filters() -> None:
    recent = RecentRequests(size=3)
    for i, (status, key, model) in enumerate(
        [(200, "a", "m1"), (429, "b", "m1"), (200, "b", "m2"), (503, "a", "m2")]
    ):
        _finish(_telemetry(recent, f"r{i}", {}), status, key, model)
    assert [r["request_id"] for r in recent.query()] == ["r3", "r2", "r1"]  # r0 fell out
    assert [r["request_id"] for r in recent.query(status="error")] == ["r3", "r1"]
    assert [r["request_id"] for r in recent.query(status="4xx")] == ["r1"]
    assert [r["request_id"] for r in recent.query(key="b", model="m2")] == ["r2"]
    assert [r["request_id"] for r in recent.query(limit=1)] == ["r3"]


@pytest.mark.parametrize(
    ("status", "wanted", "matches"),
    [(200, "ok", True), (404, "ok", False), (404, "error", True), (503, "5xx", True),
     (429, "429", True), (429, "4xx", True), (200, "4xx", False), (None, "ok", False),
     (200, "nonsense", False)],
)  # fmt: skip
def test_status_filters(status: int | None, wanted: str, matches: bool) -> None:
    assert status_matches(status, wanted) is matches


def test_the_session_cookie_is_bound_to_the_token_and_expires() -> None:
    now = 1_800_000_000.0
    value = sign_session("token-a", now)
    assert "token-a" not in value
    assert session_valid("token-a", value, now + 60)
    assert not session_valid("token-b", value, now + 60)  # a new token ends every session
    assert not session_valid("token-a", value, now + 13 * 3600)  # past its 12 hours
    expires, _, mac = value.partition(".")
    assert not session_valid("token-a", f"{int(expires) + 3600}.{mac}", now)  # extended
    assert not session_valid("token-a", "garbage", now)


@pytest.fixture
async def memory() -> AsyncIterator[redis.Redis]:
    connection = connect("memory://")
    await connection.flushdb()
    yield connection
    await connection.aclose()


async def test_usage_today_and_this_month_from_the_budgets(memory: redis.Redis) -> None:
    key_store, limiter = KeyStore(memory), Limiter(memory)
    budgeted, _ = await key_store.create(name="budgeted", daily_tokens=1000, monthly_tokens=5000)
    free, _ = await key_store.create(name="free")
    state = await limiter.admit(budgeted, 40)
    await limiter.settle(budgeted, 40, 25, request_id=state.request_id)

    usage = await read_usage(memory, [budgeted, free])
    assert usage[budgeted.id] == KeyUsage(today=25, month=25)
    assert usage[free.id] == KeyUsage(None, None)  # not counted without a budget
    # Tomorrow (same month) nothing is used today; next month nothing at all.
    now = dt.datetime.now(dt.UTC)
    later = await read_usage(memory, [budgeted], now=now + dt.timedelta(days=40))
    assert later[budgeted.id] == KeyUsage(today=0, month=0)


async def test_the_sampler_turns_backend_counters_into_tokens_per_second(
    memory: redis.Redis,
) -> None:
    pool = Pool()
    backend = Backend("http://127.0.0.1:1", BackendClient("http://127.0.0.1:1"))
    backend.model_id = "smollm2"
    pool.add(backend)
    admission = Admission(
        AdmissionStore(memory, lease_ttl=15, grant_ttl=10), backends=pool.serving,
        by_name=pool.by_name,
        queue_size=8, queue_timeout=1.0,
    )  # fmt: skip
    now = [1000.0]
    sampler = Sampler(pool, admission, declared=["unloaded-model"], clock=lambda: now[0])
    readings = [(0, 0), (0, 0), (100, 50), (200, 50), (20, 10)]  # the last: it restarted
    for generated, prompt in readings:
        backend.stats.observe(
            ServerCounters(predicted_tokens=generated, predicted_seconds=generated / 50,
                           prompt_tokens=prompt, prompt_seconds=prompt / 500)
        )  # fmt: skip
        sampler.sample()
        now[0] += 1.0
    series = sampler.series()
    assert series["t"] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    # Over the window: 100 tokens in the 2 s to t=1002, 200 in 3 s, then +20 after the restart.
    assert series["generated"] == [0.0, 0.0, 50.0, round(200 / 3, 1), 55.0]
    assert series["queue"] == {"smollm2": [0] * 5, "unloaded-model": [0] * 5}
    assert sampler.series(since=1003.0)["t"] == [1004.0]
    await backend.client.close()
