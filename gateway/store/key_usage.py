"""Tokens each API key used today and this month (UTC), read from the budget hash the limits
scripts keep (``keys.limit(id, "budget")``: ``day``, ``day_used``, ``month``, ``month_used``).

Only keys with a daily or monthly budget are counted there — the admit script skips the hash
for the others, so the hot path of a key without limits costs no round trip — so a key
without a budget reads as ``None`` (not counted), never as a misleading zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.store import keys
from gateway.store.apikeys import ApiKey
from gateway.store.connection import reachable


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """``None``: not counted (the key has no budget)."""

    today: int | None
    month: int | None


def _periods(now: dt.datetime) -> tuple[int, int]:
    """The UTC day (yyyymmdd) and month (yyyymm), as the Lua ``calendar`` writes them."""
    return now.year * 10000 + now.month * 100 + now.day, now.year * 100 + now.month


def _used(period: bytes | None, used: bytes | None, current: int) -> int:
    return int(used or 0) if period is not None and int(period) == current else 0


async def read_usage(
    redis: Redis, api_keys: Sequence[ApiKey], *, now: dt.datetime | None = None
) -> dict[str, KeyUsage]:
    """KeyUsage per key id, in one round trip."""
    today, month = _periods(now or dt.datetime.now(dt.UTC))
    counted = [k for k in api_keys if k.daily_tokens is not None or k.monthly_tokens is not None]
    found = {k.id: KeyUsage(None, None) for k in api_keys}
    if not counted:
        return found
    with reachable("limit store"):
        pipe = redis.pipeline(transaction=False)
        for key in counted:
            pipe.hmget(keys.limit(key.id, "budget"), "day", "day_used", "month", "month_used")
        replies = await pipe.execute()
    for key, (day, day_used, this_month, month_used) in zip(counted, replies, strict=True):
        found[key.id] = KeyUsage(_used(day, day_used, today), _used(this_month, month_used, month))
    return found
