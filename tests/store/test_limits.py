"""Per-key limits: every refusal with its status, wait and headers; settle correcting usage;
in-flight requests freed by settle and by expiry; one view shared by every replica."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources

import msgspec
import pytest
import redis.asyncio as redis
from litestar import Litestar, Request, get
from litestar.testing import AsyncTestClient

from gateway.errors import RateLimited, Unavailable
from gateway.store import keys
from gateway.store.apikeys import ApiKey, KeyStore
from gateway.store.commands import Command, run
from gateway.store.connection import connect
from gateway.store.limits import Limiter, LimitState, format_reset
from gateway.surfaces.errors import EXCEPTION_HANDLERS


async def refused(limiter: Limiter, key: ApiKey, tokens: int) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await limiter.admit(key, tokens)
    assert caught.value.status == 429
    return caught.value


def seconds_until_next_utc(*, month: bool) -> float:
    now = datetime.now(UTC)
    if month:
        year, number = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
        end = datetime(year, number, 1, tzinfo=UTC)
    else:
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return (end - now).total_seconds()


async def test_a_key_without_limits_costs_no_round_trip(key_store: KeyStore) -> None:
    key, _ = await key_store.create(name="free")
    unreachable = connect("redis://127.0.0.1:1/0")  # any round trip would raise
    limiter = Limiter(unreachable)
    state = await limiter.admit(key, 10_000)
    assert state == LimitState(estimated_tokens=10_000)
    assert state.headers() == {}
    await limiter.settle(key, 10_000, 5, request_id=state.request_id)
    limited, _ = await key_store.create(name="limited", rpm=1)
    with pytest.raises(Unavailable) as caught:
        await limiter.admit(limited, 1)
    assert caught.value.status == 503 and caught.value.retry_after == 1.0
    await unreachable.aclose()


async def test_rpm_refusal(key_store: KeyStore, limiter: Limiter) -> None:
    key, _ = await key_store.create(name="r", rpm=2)
    first = await limiter.admit(key, 1)
    assert first.headers()["x-ratelimit-limit-requests"] == "2"
    assert first.headers()["x-ratelimit-remaining-requests"] == "1"
    assert first.headers()["x-ratelimit-reset-requests"] == "30s"
    await limiter.admit(key, 1)
    error = await refused(limiter, key, 1)
    assert error.code == "rate_limit_exceeded"
    assert "requests per minute" in error.message
    assert 29 < error.retry_after <= 30  # one request refills in 60 s / 2
    assert error.headers is not None
    assert error.headers["x-ratelimit-limit-requests"] == "2"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in error.headers


async def test_tpm_refusal_and_a_request_larger_than_the_minute(
    key_store: KeyStore, limiter: Limiter
) -> None:
    # tpm 60 refills one token a second: the levels below do not move during the test.
    key, _ = await key_store.create(name="t", tpm=60)
    state = await limiter.admit(key, 40)
    assert state.tokens is not None and state.tokens.remaining == 20
    assert state.headers()["x-ratelimit-reset-tokens"] == "40s"
    error = await refused(limiter, key, 30)
    assert "tokens per minute" in error.message and "requested 30" in error.message
    assert 9 < error.retry_after <= 10  # 10 more tokens at 1 a second
    assert error.headers is not None
    assert error.headers["x-ratelimit-limit-tokens"] == "60"
    assert error.headers["x-ratelimit-remaining-tokens"] == "20"
    assert error.headers["x-ratelimit-reset-tokens"].startswith(("39.", "40s"))
    await limiter.admit(key, 20)  # fits what is left: admitted

    big, _ = await key_store.create(name="big", tpm=100)
    await limiter.admit(big, 5_000)  # a full bucket admits it, and goes into debt
    error = await refused(limiter, big, 1)
    assert error.retry_after > 60 * 40  # 4,901 tokens of debt at 100 a minute, then 1 more


async def test_concurrency_refusal_freed_by_settle(key_store: KeyStore, limiter: Limiter) -> None:
    key, _ = await key_store.create(name="c", max_concurrency=2)
    a = await limiter.admit(key, 10)
    b = await limiter.admit(key, 10)
    assert (a.in_flight, b.in_flight) == (1, 2)
    assert a.request_id and b.request_id and a.request_id != b.request_id
    error = await refused(limiter, key, 10)
    assert "concurrent requests" in error.message and "limit 2" in error.message
    assert error.retry_after == 1.0
    await limiter.settle(key, 10, 12, request_id=a.request_id)
    c = await limiter.admit(key, 10)
    assert c.in_flight == 2


async def test_concurrency_freed_by_expiry(key_store: KeyStore, client: redis.Redis) -> None:
    """A replica that died between admit and settle holds the slot only until it expires."""
    key, _ = await key_store.create(name="c", max_concurrency=1)
    short = Limiter(client, concurrency_ttl=0.001)
    await short.admit(key, 1)  # never settled
    await asyncio.sleep(0.02)
    assert (await short.admit(key, 1)).in_flight == 1


async def test_renew_keeps_a_request_counted(key_store: KeyStore, limiter: Limiter) -> None:
    key, _ = await key_store.create(name="c", max_concurrency=1)
    state = await limiter.admit(key, 1)
    assert await limiter.renew(key, state.request_id)
    await limiter.settle(key, 1, 1, request_id=state.request_id)
    assert not await limiter.renew(key, state.request_id)  # settled: not brought back
    assert (await limiter.admit(key, 1)).in_flight == 1


async def test_concurrent_admits_never_exceed_the_limit(
    key_store: KeyStore, limiter: Limiter
) -> None:
    key, _ = await key_store.create(name="burst", max_concurrency=5, rpm=1000)
    results = await asyncio.gather(
        *(limiter.admit(key, 1) for _ in range(30)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, LimitState)]
    assert len(admitted) == 5
    assert all(isinstance(r, RateLimited) for r in results if r not in admitted)


async def test_limits_are_shared_by_every_replica(
    key_store: KeyStore, client: redis.Redis, other_client: redis.Redis
) -> None:
    key, _ = await key_store.create(name="shared", rpm=3)
    replicas = [Limiter(client), Limiter(other_client), Limiter(client)]
    for replica in replicas:
        await replica.admit(key, 1)
    await refused(Limiter(other_client), key, 1)


async def test_daily_budget_refusal(key_store: KeyStore, limiter: Limiter) -> None:
    key, _ = await key_store.create(name="d", daily_tokens=100)
    state = await limiter.admit(key, 60)
    assert state.headers()["x-ratelimit-remaining-tokens-daily"] == "40"
    await limiter.settle(key, 60, 100, request_id=state.request_id)
    error = await refused(limiter, key, 1)
    assert error.code == "insufficient_quota"
    assert "daily token budget" in error.message and "used 100" in error.message
    assert abs(error.retry_after - seconds_until_next_utc(month=False)) < 60
    assert error.headers is not None
    assert error.headers["x-ratelimit-remaining-tokens-daily"] == "0"


async def test_monthly_budget_refusal(key_store: KeyStore, limiter: Limiter) -> None:
    key, _ = await key_store.create(name="m", monthly_tokens=50, daily_tokens=1000)
    state = await limiter.admit(key, 50)  # the estimate counts while the request runs
    error = await refused(limiter, key, 1)
    assert error.code == "insufficient_quota"
    assert "monthly token budget" in error.message
    assert "daily" not in error.message
    assert abs(error.retry_after - seconds_until_next_utc(month=True)) < 60
    await limiter.settle(key, 50, 20, request_id=state.request_id)
    after = await limiter.admit(key, 5)
    assert after.monthly_tokens is not None and after.monthly_tokens.remaining == 25


async def test_settle_corrects_tpm_both_ways(key_store: KeyStore, limiter: Limiter) -> None:
    # tpm 6 refills one token every 10 s: the levels below do not move during the test.
    key, _ = await key_store.create(name="t", tpm=6)
    state = await limiter.admit(key, 3)
    await limiter.settle(key, 3, 5, request_id=state.request_id)  # used more: charged
    level = (await limiter.admit(key, 0)).tokens
    assert level is not None and level.remaining == 1
    error = await refused(limiter, key, 2)
    assert error.headers is not None and error.headers["x-ratelimit-remaining-tokens"] == "1"

    other, _ = await key_store.create(name="t2", tpm=6)
    state = await limiter.admit(other, 5)
    await limiter.settle(other, 5, 1, request_id=state.request_id)  # used less: refunded
    level = (await limiter.admit(other, 0)).tokens
    assert level is not None and level.remaining == 5


async def test_both_buckets_share_one_hash_and_a_settlement_keeps_the_rpm_level(
    key_store: KeyStore, limiter: Limiter, client: redis.Redis
) -> None:
    """rpm and tpm live in one hash, read and written once an admit; the settlement rewrites
    it to correct tpm and leaves rpm where the admit put it. (rpm 3 and tpm 600 refill one
    each per 20 s and per 0.1 s: the rpm levels below do not move during the test.)"""
    key, _ = await key_store.create(name="both", rpm=3, tpm=600)
    state = await limiter.admit(key, 500)
    assert state.requests is not None and state.requests.remaining == 2
    bucket = keys.limit(key.id, "rate")
    assert set(await client.hgetall(bucket)) == {b"rpm", b"tpm", b"ts"}
    await limiter.settle(key, 500, 100, request_id=state.request_id)  # 400 refunded
    after = await limiter.admit(key, 0)
    assert after.requests is not None and after.requests.remaining == 1
    assert after.tokens is not None and 500 <= after.tokens.remaining <= 600
    await limiter.admit(key, 0)
    error = await refused(limiter, key, 0)
    assert error.headers is not None and error.headers["x-ratelimit-remaining-requests"] == "0"

    # A key with one of the two keeps the other empty (full, should it be given one).
    only_rpm, _ = await key_store.create(name="rpm-only", rpm=3)
    await limiter.admit(only_rpm, 50)
    stored = await client.hgetall(keys.limit(only_rpm.id, "rate"))
    assert stored[b"tpm"] == b"" and float(stored[b"rpm"]) == 2


async def test_settle_corrects_only_what_the_admit_charged(
    key_store: KeyStore, limiter: Limiter, client: redis.Redis
) -> None:
    """A key admitted without a budget had nothing charged to its usage, so its settlement
    leaves the usage it kept while it had one untouched (it read and wrote it before)."""
    key, _ = await key_store.create(name="was-budgeted", daily_tokens=1000)
    state = await limiter.admit(key, 40)
    await limiter.settle(key, 40, 40, request_id=state.request_id)
    budget = keys.limit(key.id, "budget")
    assert int(await client.hget(budget, "day_used")) == 40

    # The same key, its budget taken off (as an admin's update would) and a limit left on.
    limited = msgspec.structs.replace(key, daily_tokens=None, rpm=100)
    state = await limiter.admit(limited, 40)
    assert state.request_id is not None and state.daily_tokens is None
    await limiter.settle(limited, 40, 5, request_id=state.request_id)
    assert int(await client.hget(budget, "day_used")) == 40


async def test_settle_rides_on_the_callers_round_trip(
    key_store: KeyStore, limiter: Limiter, client: redis.Redis
) -> None:
    key, _ = await key_store.create(name="p", max_concurrency=1, tpm=6)
    state = await limiter.admit(key, 4)
    released = Command.queued(  # the caller's own command, in the same round trip
        client, lambda pipe: pipe.set("lease-released", "1"), lambda reply: reply
    )
    settle = limiter.settle(key, 4, 1, request_id=state.request_id)
    renew = limiter.renew(key, state.request_id)  # settled first: renew finds nothing
    assert await run(client, released, settle, renew) == [True, True, False]
    after = await limiter.admit(key, 0)
    assert after.in_flight == 1 and after.tokens is not None and after.tokens.remaining == 5


async def test_a_refusal_becomes_an_openai_429(store_url: str) -> None:
    key = ApiKey(id="key_http", name="h", created=0, rpm=1, tpm=60)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # AsyncTestClient runs the app on a loop of its own: its Redis client is made there.
        client = connect(store_url)
        await client.delete(*(keys.limit(key.id, part) for part in keys.LIMIT_PARTS))
        app.state.limiter = Limiter(client)
        yield
        await client.aclose()

    @get("/limited")
    async def limited(request: Request) -> dict[str, str]:
        state = await request.app.state.limiter.admit(key, 10)
        return state.headers()

    app = Litestar([limited], exception_handlers=EXCEPTION_HANDLERS, lifespan=[lifespan])
    async with AsyncTestClient(app) as http:
        ok = await http.get("/limited")
        assert ok.status_code == 200
        assert ok.json()["x-ratelimit-remaining-tokens"] == "50"
        response = await http.get("/limited")
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert "requests per minute" in response.json()["error"]["message"]
    assert response.headers["retry-after"] == "60"
    assert response.headers["x-ratelimit-limit-requests"] == "1"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-remaining-tokens"] == "50"
    assert "x-ratelimit-reset-tokens" in response.headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s"), (3723, "1h2m3s")],
)
def test_reset_reads_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 12, 31, 12, 0, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2100, 2, 28, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
    ],
)
async def test_budget_periods_follow_the_utc_calendar(
    client: redis.Redis, moment: datetime
) -> None:
    lib = resources.files("gateway.store").joinpath("limits_lib.lua").read_text()
    ms = calendar.timegm(moment.timetuple()) * 1000
    day, month, day_left, month_left = await client.eval(
        lib + "return {calendar(tonumber(ARGV[1]))}", 0, ms
    )
    assert day == int(moment.strftime("%Y%m%d")) and month == int(moment.strftime("%Y%m"))
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    year, number = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    assert day_left == (midnight - moment).total_seconds() * 1000
    assert month_left == (datetime(year, number, 1, tzinfo=UTC) - moment).total_seconds() * 1000
