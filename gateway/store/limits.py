"""Per-key limits in Redis — requests per minute, tokens per minute, requests in flight, and
token budgets per day and month — checked and charged in one script call, so they hold across
every gateway replica at once (a limit kept in each replica's memory is a limit per replica).

**Per-minute limits are token buckets** that refill continuously: a bucket holds up to the
limit and regains ``limit / 60`` per second; absent means full. Compared with fixed windows,
no window edge lets twice the limit through in a moment (at most the limit at once, then the
refill rate); compared with a sliding log, state is two numbers per limit, not an entry per
request — and tokens, which are weighted, fit naturally. The wait for a refused request is
exact (the time until the bucket holds what it asks for), and correcting the estimate after
the response is one addition: a refund, or a debt the bucket pays off before it admits more.
It is the scheme OpenAI describes for its own limits, so its headers mean the same here:
``remaining`` is the bucket's level, ``reset`` the time until it is full again. A request
estimated at more than the whole tpm waits for a full bucket and leaves it in debt, rather
than being refused for ever.

**Budgets** are UTC calendar days and months. A request is refused once the usage so far
(real counts of finished requests plus estimates of running ones) has reached the budget;
otherwise its estimate is charged at once (so concurrent requests see it) and corrected when
it settles. **In-flight requests** are a ZSET of request ids with an expiry, renewable, so a
replica that dies between ``admit`` and ``settle`` holds a key's concurrency for at most
``concurrency_ttl`` seconds. Time is Redis's own (``TIME`` inside the scripts).

Each operation is a :class:`~gateway.store.commands.Command`: awaited alone it is one round
trip (none for a key without limits); the request path sends ``admit`` beside the affinity
lookup and ``settle`` beside the lease's release, one round trip each.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

import msgspec
from redis.asyncio import Redis

from gateway.errors import RateLimited
from gateway.store import keys
from gateway.store.apikeys import ApiKey
from gateway.store.commands import Command
from gateway.store.connection import reachable, script

log = logging.getLogger(__name__)


class Window(msgspec.Struct, frozen=True):
    """One limit as OpenAI's headers show it."""

    limit: int
    remaining: int
    #: Seconds until the limit is back to its full value.
    reset: float


class LimitState(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Limiter.admit` charged and how much is left. ``None``: no such limit."""

    #: Names this request in the key's in-flight set; give it to ``settle`` and ``renew``.
    #: ``None`` when the key has no limits (nothing was charged, nothing to settle).
    request_id: str | None = None
    estimated_tokens: int = 0
    requests: Window | None = None
    tokens: Window | None = None
    in_flight: int | None = None
    daily_tokens: Window | None = None
    monthly_tokens: Window | None = None

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers, plus ``-daily``/``-monthly`` budget ones."""
        found: dict[str, str] = {}
        for suffix, window in (
            ("requests", self.requests),
            ("tokens", self.tokens),
            ("tokens-daily", self.daily_tokens),
            ("tokens-monthly", self.monthly_tokens),
        ):
            if window is not None:
                found[f"x-ratelimit-limit-{suffix}"] = str(window.limit)
                found[f"x-ratelimit-remaining-{suffix}"] = str(window.remaining)
                found[f"x-ratelimit-reset-{suffix}"] = format_reset(window.reset)
        return found


class Limiter:
    def __init__(self, redis: Redis, *, concurrency_ttl: float = 60.0) -> None:
        if concurrency_ttl <= 0:
            raise ValueError("concurrency_ttl must be positive")
        self.concurrency_ttl = concurrency_ttl
        self.redis = redis
        lib = script("limits_lib.lua")
        self._admit = redis.register_script(lib + script("limits_admit.lua"))
        self._settle = redis.register_script(lib + script("limits_settle.lua"))
        self._renew = redis.register_script(lib + script("limits_renew.lua"))

    def admit(self, key: ApiKey, estimated_tokens: int) -> Command[LimitState]:
        """Check and charge every limit of ``key`` at once; the command's result is the
        :class:`LimitState`, or it raises :class:`RateLimited` (``Unavailable`` when the
        store cannot be reached). Nothing is sent for a key without limits."""
        if estimated_tokens < 0:
            raise ValueError("estimated_tokens must not be negative")
        if not key.has_limits:
            return Command.nothing(self.redis, LimitState(estimated_tokens=estimated_tokens))

        def admitted(reply: Any) -> LimitState:
            _raise_unreachable(reply)
            return self._admitted(key, estimated_tokens, reply)

        args = self._admit_args(key, estimated_tokens)
        return Command(self.redis, self._admit, self._admit_keys(key), args, admitted)

    def settle(
        self, key: ApiKey, estimated_tokens: int, actual_tokens: int, *, request_id: str | None
    ) -> Command[bool]:
        """Correct tpm and budgets from the estimate to ``actual_tokens`` and free the
        request's place among those in flight. Its result: whether it was settled; a
        store that cannot be reached is logged, not raised — the answer has been sent."""
        if request_id is None:
            return Command.nothing(self.redis, True)
        args = self._settle_args(key, estimated_tokens, actual_tokens, request_id)
        return Command(self.redis, self._settle, self._settle_keys(key), args, _settled)

    def renew(self, key: ApiKey, request_id: str | None) -> Command[bool]:
        """Keep a long request counted in flight for another ``concurrency_ttl`` seconds;
        ``False`` if it was no longer counted (settled, or expired and purged)."""
        if request_id is None or key.max_concurrency is None:
            return Command.nothing(self.redis, False)

        def renewed(reply: Any) -> bool:
            _raise_unreachable(reply)
            return bool(reply)

        keys_ = [keys.limit(key.id, "conc")]
        return Command(self.redis, self._renew, keys_, [request_id, self._ttl_ms], renewed)

    # -- steps -----------------------------------------------------------------------------
    @property
    def _ttl_ms(self) -> int:
        return math.ceil(self.concurrency_ttl * 1000)

    @staticmethod
    def _admit_keys(key: ApiKey) -> list[str]:
        return [keys.limit(key.id, part) for part in keys.LIMIT_PARTS]

    def _admit_args(self, key: ApiKey, estimated_tokens: int) -> list[int | str]:
        return [
            key.rpm or 0,
            key.tpm or 0,
            key.max_concurrency or 0,
            key.daily_tokens or 0,
            key.monthly_tokens or 0,
            estimated_tokens,
            secrets.token_hex(6),
            self._ttl_ms,
        ]

    @staticmethod
    def _admitted(key: ApiKey, estimated_tokens: int, reply: list[Any]) -> LimitState:
        """The admit script's reply as a :class:`LimitState`; :class:`RateLimited` if any
        limit refused."""
        request_id, retry_ms = reply[0].decode(), int(reply[1])
        rpm_left, rpm_reset, tpm_left, tpm_reset, in_flight = (int(v) for v in reply[2:7])
        day_used, day_reset, month_used, month_reset = (int(v) for v in reply[7:11])
        refused = [name.decode() for name in reply[11:]]
        state = LimitState(
            request_id=request_id or None,
            estimated_tokens=estimated_tokens,
            requests=_window(key.rpm, rpm_left, rpm_reset),
            tokens=_window(key.tpm, tpm_left, tpm_reset),
            in_flight=in_flight if key.max_concurrency else None,
            daily_tokens=_budget(key.daily_tokens, day_used, day_reset),
            monthly_tokens=_budget(key.monthly_tokens, month_used, month_reset),
        )
        if refused:
            used = {"daily": day_used, "monthly": month_used}
            raise _refusal(key, state, refused, estimated_tokens, used, retry_ms / 1000)
        return state

    @staticmethod
    def _settle_keys(key: ApiKey) -> list[str]:
        return [keys.limit(key.id, part) for part in ("rate", "conc", "budget")]

    @staticmethod
    def _settle_args(
        key: ApiKey, estimated_tokens: int, actual_tokens: int, request_id: str
    ) -> list[int | str]:
        if estimated_tokens < 0 or actual_tokens < 0:
            raise ValueError("token counts must not be negative")
        # What the admit script counted for this key (the key as admitted): only that is
        # corrected, and no call is spent reading what it never wrote.
        counted_in_flight = 1 if key.max_concurrency else 0
        budgeted = 1 if key.daily_tokens or key.monthly_tokens else 0
        return [
            key.tpm or 0,
            estimated_tokens,
            actual_tokens,
            request_id,
            counted_in_flight,
            budgeted,
            key.rpm or 0,
        ]


_NAMES = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
    "daily": "daily token budget",
    "monthly": "monthly token budget",
}


def _refusal(
    key: ApiKey,
    state: LimitState,
    refused: list[str],
    requested: int,
    used: dict[str, int],
    retry_after: float,
) -> RateLimited:
    reasons = []
    for name in refused:
        if name == "rpm":
            reasons.append(f"requests per minute (rpm): limit {key.rpm}")
        elif name == "tpm":
            left = state.tokens.remaining if state.tokens else 0
            reasons.append(
                f"tokens per minute (tpm): limit {key.tpm}, remaining {left}, requested {requested}"
            )
        elif name == "concurrency":
            reasons.append(f"concurrent requests: limit {key.max_concurrency} in flight")
        else:
            limit = key.daily_tokens if name == "daily" else key.monthly_tokens
            reasons.append(f"{_NAMES[name]}: limit {limit} tokens, used {used[name]}")
    wait = (
        "when a request finishes"
        if refused == ["concurrency"]
        else "in " + format_reset(retry_after)
    )
    budget = any(name in ("daily", "monthly") for name in refused)
    return RateLimited(
        f"Rate limit reached for {'; '.join(reasons)}. Please try again {wait}.",
        code="insufficient_quota" if budget else None,
        retry_after=retry_after,
        headers=state.headers(),
    )


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it: ``20ms``,
    ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    ms = math.ceil(seconds * 1000) if seconds > 0 else 0
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _window(limit: int | None, remaining: int, reset_ms: int) -> Window | None:
    return None if limit is None else Window(limit, min(limit, remaining), reset_ms / 1000)


def _budget(limit: int | None, used: int, reset_ms: int) -> Window | None:
    return None if limit is None else Window(limit, max(0, limit - used), reset_ms / 1000)


def _raise_unreachable(reply: Any) -> None:
    if isinstance(reply, Exception):
        with reachable("limit store"):
            raise reply


def _settled(reply: Any) -> bool:
    if isinstance(reply, Exception):
        log.warning("settling a request's limits failed: %s", reply)
        return False
    return True
