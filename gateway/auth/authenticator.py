"""Who is calling: ``Authorization: Bearer sk-lg-…`` -> the :class:`ApiKey`, or a 401.

The secret's SHA-256 is looked up in Redis through a small in-process cache. Hits live at most
``cache_ttl`` seconds (≤ 2 s by default), so a key revoked or disabled on one replica stops
working on every replica within that time; misses live shorter (``miss_ttl``), so a flood of
wrong keys costs Redis little and a new key works almost at once. The cache is bounded; the
oldest entry leaves first. Concurrent misses for one hash share one Redis call.

The secret never leaves this module: not in logs, not in exceptions, not in the cache (which
holds hashes). Logs name the key by id.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable

from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.store.apikeys import SECRET_PREFIX, ApiKey, KeyStore, hash_secret

log = logging.getLogger(__name__)

MAX_SECRET_LENGTH = 256

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_INCORRECT = "Incorrect API key provided."

_Found = tuple[ApiKey, str] | None


class Authenticator:
    def __init__(
        self,
        store: KeyStore,
        *,
        cache_ttl: float = 2.0,
        miss_ttl: float = 0.5,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= miss_ttl <= cache_ttl <= 5:
            raise ValueError("need 0 <= miss_ttl <= cache_ttl <= 5 seconds")
        self.store = store
        self.cache_ttl = cache_ttl
        self.miss_ttl = miss_ttl
        self.cache_size = cache_size
        self.clock = clock
        #: For ``expires_at`` (unix seconds); the cache's clock is ``clock``.
        self.wall_clock = wall_clock
        self._cache: dict[str, tuple[float, _Found]] = {}
        self._pending: dict[str, asyncio.Future[_Found]] = {}

    async def authenticate(self, authorization: str | None) -> ApiKey:
        """The active key named by an ``Authorization`` header, or :class:`AuthenticationFailed`."""
        secret = _bearer(authorization)
        digest = hash_secret(secret)
        found = await self._lookup(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            raise AuthenticationFailed(_INCORRECT)
        key = found[0]
        state = key.state(self.wall_clock())
        if state != "active":
            log.info("refused API key %s (%s): %s", key.id, key.name, state)
            raise AuthenticationFailed(
                _INCORRECT if state == "revoked" else f"This API key is {state}."
            )
        return key

    def check_model(self, key: ApiKey, model: str) -> None:
        """:class:`PermissionDenied` unless the key's allow-list admits ``model``."""
        if not key.allows(model):
            log.info("API key %s (%s) may not use model %s", key.id, key.name, model)
            raise PermissionDenied(
                f"This API key is not allowed to use the model '{model}'.", param="model"
            )

    def forget(self) -> None:
        """Drop the cache (tests, or an admin change made in this process)."""
        self._cache.clear()

    # -- the cache -----------------------------------------------------------------------
    async def _lookup(self, digest: str) -> _Found:
        now = self.clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self.store.lookup(digest))
            self._pending[digest] = pending
            pending.add_done_callback(lambda done: self._stored(digest, done))
        # shield: one caller going away must not cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    def _stored(self, digest: str, done: asyncio.Future[_Found]) -> None:
        self._pending.pop(digest, None)
        if done.cancelled() or done.exception() is not None:
            return
        found = done.result()
        ttl = self.cache_ttl if found is not None else self.miss_ttl
        if ttl <= 0:
            return
        self._cache.pop(digest, None)
        while len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = (self.clock() + ttl, found)


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise AuthenticationFailed(_MISSING)
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed(_MISSING)
    if (
        not secret.startswith(SECRET_PREFIX)
        or len(secret) > MAX_SECRET_LENGTH
        or not secret.isascii()
        or " " in secret
    ):
        raise AuthenticationFailed(_INCORRECT)
    return secret
