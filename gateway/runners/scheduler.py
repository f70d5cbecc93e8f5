"""The scheduler: Ollama's supervisor, for declared models on a multi-GPU box or in containers.

A request for a declared model reaches :meth:`Scheduler.demand` (through the pool) before it
asks for a slot. If the model has no live runner, the next step of the loop places one
(:mod:`gateway.runners.placement`), stopping least-recently-used idle runners if memory is
short, and the driver starts it; the request meanwhile waits in the admission queue, and so
does a second request for the same model — they share the one load. Once the runner's backend
is ready in the pool, the admission hands its slots to them.

Each step of the loop (``tick`` seconds, sooner when woken) then looks at every runner:

- busy (leases in flight) — its keep-alive clock starts again;
- idle past its model's keep-alive (the model's, or the last request's own) — drained: no new
  requests, those in flight finish within ``drain_timeout``, then it stops;
- failing its probes for ``runner_unhealthy_timeout`` — restarted, as is one whose process
  exits (noticed at once): its backend leaves the pool, so requests that had not started
  wait for the replacement, which starts after a backoff that doubles with each crash.

The scheduler decides; :class:`~gateway.runners.supervisor.Supervisor` carries each runner
through its life (launch, watch, replace, drain, stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from gateway.config import Settings
from gateway.errors import ModelNotFound, RunnerError, Unavailable
from gateway.pool.backend import Backend, Health
from gateway.pool.pool import Pool
from gateway.runners.driver import Driver, make_driver
from gateway.runners.gpus import devices as find_devices
from gateway.runners.placement import Device, check_fits, choose_device, measure, plan_eviction
from gateway.runners.state import ModelEntry, Runner, RunnerState
from gateway.runners.supervisor import Supervisor
from gateway.units import parse_size

log = logging.getLogger(__name__)

#: A runner idle for less than this is never unloaded, even with ``keep_alive: 0``: the
#: request that touched it may not have taken its slot yet.
MIN_IDLE = 1.0


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        *,
        pool: Pool,
        inflight: Callable[[Backend], int],
        make_backend: Callable[[str], Backend],
        devices: list[Device] | None = None,
        driver_factory: Callable[[Settings], Driver] = make_driver,
        on_restart: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float = 0.25,
    ) -> None:
        self.settings = settings
        self.entries = {
            spec.model_id: ModelEntry(spec, keep_alive=spec.keep_alive_seconds)
            for spec in settings.models
        }
        self.pool = pool
        self.devices = devices or []
        self._inflight = inflight
        self._driver_factory = driver_factory
        self._overhead = parse_size(settings.runner_overhead)
        self._clock = clock
        self._tick = tick
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._life = Supervisor(
            settings,
            self.entries,
            pool=pool,
            inflight=inflight,
            make_backend=make_backend,
            woken=self._wake,
            on_restart=on_restart,
            clock=clock,
        )
        pool.on_demand(self.demand)

    @property
    def restarts(self) -> int:
        """Runners replaced after a crash or a hang, over all models."""
        return self._life.restarts

    # -- start and stop (the app's lifespan) -------------------------------------------------

    async def start(self) -> None:
        """Measure every model, refuse one that fits nowhere, load the ``preload`` ones and
        start the loop. Raises :class:`RunnerError` / :class:`PlacementError` on failure."""
        if not self.entries:
            return
        self.devices = self.devices or find_devices(self.settings)
        for entry in self.entries.values():
            entry.footprint = await measure(entry.spec, self._overhead)
            check_fits(entry.model, entry.footprint, self.devices)
        self._life.driver = driver = self._driver_factory(self.settings)
        await driver.prepare()
        loads = []
        for entry in self.entries.values():
            if entry.spec.preload:
                for _ in range(entry.spec.replicas):
                    loads.append(self._life.load(entry, self._place_now(entry)))
        results = await asyncio.gather(*loads, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.close()
            raise failures[0]
        self._loop = asyncio.create_task(self.run(), name="scheduler")

    async def close(self) -> None:
        """Stop the loop and every runner."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        await self._life.close()

    def _place_now(self, entry: ModelEntry) -> Runner:
        device = choose_device(entry.model, entry.need, self.devices, self._placed())
        if device is None:
            raise RunnerError(f"no room to preload {entry.model} ({entry.need} bytes)")
        runner = Runner(entry.model, device, entry.need)
        entry.runners.append(runner)
        return runner

    # -- the request path's hook -------------------------------------------------------------

    def demand(self, model: str, keep_alive: float | None = None) -> None:
        """A request for ``model``: load it if nothing is live, restart its keep-alive clock
        with the request's own ``keep_alive`` (or the model's)."""
        entry = self.entries.get(model)
        if entry is None:  # served by a static or discovered backend
            return
        now = self._clock()
        entry.last_demand = now
        entry.keep_alive = entry.spec.keep_alive_seconds if keep_alive is None else keep_alive
        if len(entry.live()) >= entry.spec.replicas:
            return
        if entry.failures and now < entry.retry_at and not entry.live():
            first_line = (entry.last_error or "").splitlines()[0] if entry.last_error else ""
            raise Unavailable(
                f"The model '{model}' failed to load: {first_line}",
                retry_after=math.ceil(entry.retry_at - now),
            )
        entry.wanted = True
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                self._step(self._clock())
            except Exception:
                log.exception("scheduler step failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)

    def _step(self, now: float) -> None:
        for entry in self.entries.values():
            for runner in list(entry.runners):
                if runner.state is RunnerState.STARTING and runner.backend is not None:
                    if runner.backend.ready:
                        self._life.ready(runner.backend)
                elif runner.state is RunnerState.READY:
                    self._observe(entry, runner, now)
            self._fill(entry, now)

    def _observe(self, entry: ModelEntry, runner: Runner, now: float) -> None:
        """Keep-alive and health of one loaded runner."""
        backend = runner.backend
        assert backend is not None
        busy = self._inflight(backend)
        if busy:
            runner.last_used = now
        if backend.health is Health.READY:
            runner.unhealthy_since = None
        else:
            runner.unhealthy_since = runner.unhealthy_since or now
            if now - runner.unhealthy_since >= self.settings.runner_unhealthy_timeout:
                self._life.replace(entry, runner, f"stopped answering ({backend.last_error})")
                return
        idle = now - max(runner.last_used, entry.last_demand)
        if not busy and idle >= max(entry.keep_alive, MIN_IDLE):
            runner.state = RunnerState.DRAINING  # at once: the next step must not see it idle
            self._life.spawn(self._life.drain(entry, runner, f"idle for {idle:.0f} s (keep-alive)"))

    def _fill(self, entry: ModelEntry, now: float) -> None:
        """Start runners for a model that requests are waiting for, making room if needed."""
        if not entry.wanted:
            return
        missing = entry.spec.replicas - len(entry.live())
        if missing <= 0:
            entry.wanted = False
            return
        if now < entry.retry_at:
            return
        for _ in range(missing):
            placed = self._placed()
            device = choose_device(entry.model, entry.need, self.devices, placed)
            if device is None:
                self._make_room(entry, placed)
                return
            runner = Runner(entry.model, device, entry.need)
            entry.runners.append(runner)
            runner.task = self._life.spawn(self._life.launch(entry, runner, delay=0.0))

    def _make_room(self, entry: ModelEntry, placed: list[Runner]) -> None:
        staying = [r for r in placed if r.state is not RunnerState.DRAINING]
        if choose_device(entry.model, entry.need, self.devices, staying) is not None:
            return  # runners being drained will free enough
        plan = plan_eviction(entry.need, self.devices, staying, self._idle_lru(entry.model))
        if plan is None:
            log.debug("no room for %s yet: every runner in the way is busy", entry.model)
            return
        device, victims = plan
        for victim in victims:
            owner = self.entries[victim.model]
            victim.state = RunnerState.DRAINING
            reason = f"making room on {device.label} for {entry.model} (least recently used)"
            self._life.spawn(self._life.drain(owner, victim, reason))

    def _placed(self) -> list[Runner]:
        return [r for e in self.entries.values() for r in e.runners]

    def _idle_lru(self, model: str) -> list[Runner]:
        """Ready runners of other models with nothing in flight: pinned ones (keep-alive -1)
        last, then the least recently used first."""
        idle = []
        for entry in self.entries.values():
            if entry.model == model:
                continue
            for runner in entry.ready():
                assert runner.backend is not None
                if self._inflight(runner.backend) == 0:
                    used = max(runner.last_used, entry.last_demand)
                    idle.append((math.isinf(entry.keep_alive), used, runner))
        return [r for *_, r in sorted(idle, key=lambda t: (t[0], t[1]))]

    # -- an admin's actions (``/admin/runners``, the console) --------------------------------

    def load(self, model: str) -> None:
        """Load ``model``'s runners now, as a request would, without waiting out a backoff."""
        entry = self._entry(model)
        entry.last_demand = self._clock()
        entry.retry_at = 0.0
        entry.wanted = True
        self._wake.set()

    def unload(self, model: str) -> int:
        """Drain and stop ``model``'s ready runners; returns how many. Requests still in
        flight get ``drain_timeout``; the next request loads the model again."""
        entry = self._entry(model)
        entry.wanted = False
        ready = entry.ready()
        for runner in ready:
            runner.state = RunnerState.DRAINING
            self._life.spawn(self._life.drain(entry, runner, "unloaded by an admin"))
        return len(ready)

    def restart(self, model: str) -> int:
        """Drain ``model``'s ready runners and start fresh ones in their place (not counted
        as crashes: no backoff); returns how many."""
        entry = self._entry(model)
        ready = entry.ready()
        for runner in ready:
            runner.state = RunnerState.DRAINING
            self._life.spawn(self._restart(entry, runner))
        return len(ready)

    async def _restart(self, entry: ModelEntry, runner: Runner) -> None:
        await self._life.drain(entry, runner, "restart asked by an admin")
        entry.last_demand = self._clock()
        entry.wanted = True
        self._wake.set()

    def _entry(self, model: str) -> ModelEntry:
        entry = self.entries.get(self.pool.aliases.get(model, model))
        if entry is None:
            raise ModelNotFound(f"The model '{model}' is not one the gateway runs", param="model")
        return entry

    # -- what the API shows ------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        return [entry.status() for entry in self.entries.values()]

    def runners(self) -> list[dict[str, Any]]:
        now = self._clock()
        shown = []
        for entry in self.entries.values():
            for runner in entry.runners:
                busy = self._inflight(runner.backend) if runner.backend else 0
                unload_in = self._unload_in(entry, runner, now, busy)
                shown.append({**runner.describe(now, busy), "unload_in_seconds": unload_in})
        return shown

    def _unload_in(self, entry: ModelEntry, runner: Runner, now: float, busy: int) -> float | None:
        """Seconds until the keep-alive unloads an idle ready runner (``None``: not counting
        down — busy, not ready, or kept loaded for ever)."""
        if runner.state is not RunnerState.READY or busy or math.isinf(entry.keep_alive):
            return None
        idle = now - max(runner.last_used, entry.last_demand)
        return round(max(0.0, max(entry.keep_alive, MIN_IDLE) - idle), 1)
