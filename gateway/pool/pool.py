"""The pool: every backend the gateway may route to, kept current by a probe loop.

It answers three questions for the request path: which model does a name mean, which ready
backends serve it, and — through ``on_ready`` listeners — when did capacity appear, so that
waiting requests can be handed the new slots.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from gateway.errors import ModelNotFound
from gateway.pool.backend import Backend, Health
from gateway.pool.probe import probe

log = logging.getLogger(__name__)


class Pool:
    def __init__(
        self,
        *,
        aliases: dict[str, str] | None = None,
        expected_models: Iterable[str] = (),
        probe_interval: float = 2.0,
        failure_threshold: int = 3,
    ) -> None:
        self.backends: list[Backend] = []
        self.aliases = dict(aliases or {})
        #: Models that will exist once their runners load: requests for them wait, not 404.
        self._expected = set(expected_models)
        self._seen: set[str] = set()
        self.probe_interval = probe_interval
        self.failure_threshold = failure_threshold
        self._on_ready: list[Callable[[Backend], None]] = []
        self._on_demand: list[Callable[[str, float | None], None]] = []
        self._wake = asyncio.Event()

    # -- membership -------------------------------------------------------------------------

    def add(self, backend: Backend) -> None:
        self.backends.append(backend)
        self._wake.set()

    def remove(self, backend: Backend) -> None:
        """Take ``backend`` out of the pool (its provider stopped it or lost it)."""
        if backend in self.backends:
            self.backends.remove(backend)

    def drain(self, backend: Backend) -> None:
        """No new requests for ``backend``; those in flight finish (``serving`` skips it)."""
        backend.draining = True

    def resume(self, backend: Backend) -> None:
        """Undo :meth:`drain`: ``backend`` takes requests again, and its slots go to waiters."""
        if backend.draining:
            backend.draining = False
            if backend.ready:
                for listener in self._on_ready:
                    listener(backend)

    def on_ready(self, listener: Callable[[Backend], None]) -> None:
        """Call ``listener(backend)`` whenever a backend becomes ready or gains slots."""
        self._on_ready.append(listener)

    def on_demand(self, listener: Callable[[str, float | None], None]) -> None:
        """Call ``listener(model, keep_alive)`` for every request of a model (the scheduler
        loads it, or keeps it loaded); a listener may refuse with a :class:`GatewayError`."""
        self._on_demand.append(listener)

    def demand(self, model: str, keep_alive: float | None = None) -> None:
        """A request for ``model`` arrived, asking to keep it ``keep_alive`` seconds."""
        for listener in self._on_demand:
            listener(model, keep_alive)

    # -- questions from the request path ----------------------------------------------------

    def resolve(self, name: str) -> str:
        """The model id a requested name means; :class:`ModelNotFound` if none."""
        model = self.aliases.get(name, name)
        if model in self._seen or model in self._expected:
            return model
        raise ModelNotFound(f"The model '{name}' does not exist", param="model")

    def known_models(self) -> set[str]:
        """Every model id a request may name: served now, or declared to load on demand."""
        return self._seen | self._expected

    def label_for(self, name: str) -> str:
        """``name`` as a metrics label: the model it means, or "unknown" (labels stay bounded)."""
        try:
            return self.resolve(name)
        except ModelNotFound:
            return "unknown"

    def by_name(self, name: str) -> Backend | None:
        """The backend with this ``host:port`` name (how the shared store names it)."""
        for backend in self.backends:
            if backend.name == name:
                return backend
        return None

    def serving(self, model: str) -> list[Backend]:
        return [b for b in self.backends if b.ready and b.model_id == model]

    def ready_models(self) -> dict[str, list[Backend]]:
        models: dict[str, list[Backend]] = {}
        for backend in self.backends:
            if backend.ready and backend.model_id:
                models.setdefault(backend.model_id, []).append(backend)
        return models

    @property
    def any_ready(self) -> bool:
        return any(b.ready for b in self.backends)

    def record_failure(self, backend: Backend, error: str) -> None:
        """A request to ``backend`` failed; past the threshold it leaves rotation."""
        backend.failures += 1
        backend.last_error = error
        if backend.failures >= self.failure_threshold and backend.health is Health.READY:
            backend.health = Health.UNHEALTHY
            log.warning(
                "backend %s out of rotation after %d failures: %s",
                backend.name,
                backend.failures,
                error,
            )

    def record_success(self, backend: Backend) -> None:
        backend.failures = 0

    # -- the probe loop ---------------------------------------------------------------------

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe_one(b) for b in list(self.backends)))

    async def _probe_one(self, backend: Backend) -> None:
        was_ready, had_slots = backend.ready, backend.slots
        await probe(backend)
        if backend.model_id:
            self._seen.add(backend.model_id)
        if backend.ready and (not was_ready or backend.slots > had_slots):
            log.info(
                "backend %s ready: model=%s slots=%d n_ctx=%d",
                backend.name,
                backend.model_id,
                backend.slots,
                backend.n_ctx,
            )
            for listener in self._on_ready:
                listener(backend)
        elif was_ready and not backend.ready:
            log.warning("backend %s is %s: %s", backend.name, backend.health, backend.last_error)

    async def run(self) -> None:
        """Probe every backend each ``probe_interval`` seconds, at once when one is added."""
        while True:
            await self.probe_all()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.probe_interval)
            except TimeoutError:
                pass
