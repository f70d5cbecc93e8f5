"""The backends one provider contributes to the pool, kept equal to the URLs it last found.

A server that disappears is drained first (no new requests; those in flight may finish) and
leaves the pool at the next look if it is still gone — a pod being replaced, or a DNS answer
that missed it once, costs no request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gateway.pool.backend import Backend
from gateway.pool.pool import Pool

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, pool: Pool, make_backend: Callable[[str], Backend], source: str) -> None:
        self.pool = pool
        self.source = source
        self._make_backend = make_backend
        self.members: dict[str, Backend] = {}

    async def sync(self, urls: Iterable[str]) -> None:
        found = set(urls)
        for url in sorted(found):
            backend = self.members.get(url)
            if backend is None:
                backend = self.members[url] = self._make_backend(url)
                self.pool.add(backend)
                log.info("%s: found backend %s", self.source, url)
            elif backend.draining:
                backend.draining = False  # back again
                log.info("%s: backend %s is back", self.source, url)
        for url in sorted(set(self.members) - found):
            backend = self.members[url]
            if not backend.draining:
                log.info("%s: backend %s is gone; draining it", self.source, url)
                self.pool.drain(backend)
            else:
                await self._remove(url)

    async def close(self) -> None:
        for url in list(self.members):
            await self._remove(url)

    async def _remove(self, url: str) -> None:
        backend = self.members.pop(url)
        self.pool.remove(backend)
        await backend.client.close()
        log.info("%s: removed backend %s", self.source, url)
