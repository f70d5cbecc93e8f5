"""The ``static`` provider: the ``--backend`` URLs, found once."""

from __future__ import annotations


class StaticProvider:
    name = "static"
    interval: float | None = None  # looks once

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)

    async def discover(self) -> set[str]:
        return set(self.urls)

    async def close(self) -> None:
        pass
