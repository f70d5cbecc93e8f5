"""One runner's life, once the scheduler (:mod:`gateway.runners.scheduler`) has placed it:
launched through the driver, its backend added to the pool, watched until it exits, replaced
after a backoff when it crashes or hangs, drained and stopped when the scheduler lets it go.

The scheduler decides *when* — a model is wanted, a runner is idle, memory is short, an admin
asked; the supervisor does it, in tasks of its own that :meth:`Supervisor.close` cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.config import Settings
from gateway.errors import RunnerError
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.runners.args import server_args
from gateway.runners.driver import Driver
from gateway.runners.state import ModelEntry, Runner, RunnerState

log = logging.getLogger(__name__)

#: Restart backoff: 1 s, 2 s, 4 s … up to a minute; a runner up this long resets it.
BACKOFF_BASE, BACKOFF_MAX, STABLE_AFTER = 1.0, 60.0, 60.0


def backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempt - 1))


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        entries: dict[str, ModelEntry],
        *,
        pool: Pool,
        inflight: Callable[[Backend], int],
        make_backend: Callable[[str], Backend],
        woken: asyncio.Event,
        on_restart: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.entries = entries
        self.pool = pool
        #: Set by the scheduler's start (it knows the devices by then).
        self.driver: Driver | None = None
        #: Runners replaced after a crash or a hang, over all models.
        self.restarts = 0
        self._inflight = inflight
        self._make_backend = make_backend
        self._woken = woken  # the scheduler's loop looks again when a runner has stopped
        self._on_restart = on_restart
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        pool.on_ready(self.ready)

    async def close(self) -> None:
        """Cancel what is under way, stop every runner, close the driver."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        runners = [(e, r) for e in self.entries.values() for r in e.runners]
        await asyncio.gather(*(self.stop(e, r) for e, r in runners), return_exceptions=True)
        if self.driver is not None:
            await self.driver.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())

    # -- starting -----------------------------------------------------------------------------

    async def launch(self, entry: ModelEntry, runner: Runner, delay: float) -> None:
        """Load ``runner`` after ``delay`` seconds; a failure is the model's (backoff)."""
        try:
            if delay:
                await asyncio.sleep(delay)
            await self.load(entry, runner)
        except RunnerError as exc:
            self._failed(entry, runner, str(exc))

    async def load(self, entry: ModelEntry, runner: Runner) -> None:
        """Start the runner's process and put its backend in the pool (still starting: the
        pool's probe says when it is ready). Raises :class:`RunnerError`."""
        assert self.driver is not None
        handle = self.driver.runner(entry.spec, runner.device.id)
        runner.handle = handle
        runner.started_at = self._clock()
        log.info("loading %s on %s", entry.model, runner.device.label)
        try:
            await handle.start(self.settings.runner_start_timeout)
        except RunnerError:
            if runner in entry.runners:
                entry.runners.remove(runner)
            runner.state = RunnerState.STOPPED
            raise
        runner.backend = self._make_backend(handle.url)
        if entry.spec.path:  # its KV cache's size follows from the file and the flags
            launch = server_args(entry.spec, host=None, port=None, api_key=None)
            runner.backend.stats.describe_launch(entry.spec.path, launch)
        self.pool.add(runner.backend)
        self.spawn(self._watch(entry, runner))

    def ready(self, backend: Backend) -> None:
        """The pool found ``backend`` ready: its runner serves."""
        for entry in self.entries.values():
            for runner in entry.runners:
                if runner.backend is backend and runner.state is RunnerState.STARTING:
                    now = self._clock()
                    runner.state = RunnerState.READY
                    runner.last_used = now
                    entry.failures, entry.last_error = 0, None
                    log.info(
                        "%s loaded on %s in %.1f s (%s)",
                        entry.model,
                        runner.device.label,
                        now - runner.started_at,
                        backend.name,
                    )

    def _failed(self, entry: ModelEntry, runner: Runner, error: str) -> None:
        if runner in entry.runners:
            entry.runners.remove(runner)
        runner.state = RunnerState.STOPPED
        entry.failures += 1
        entry.last_error = error
        entry.retry_at = self._clock() + backoff(entry.failures)
        entry.wanted = False  # the next request tries again, after the backoff
        log.error("%s failed to load (attempt %d): %s", entry.model, entry.failures, error)

    # -- crashes and hangs --------------------------------------------------------------------

    async def _watch(self, entry: ModelEntry, runner: Runner) -> None:
        assert runner.handle is not None
        await runner.handle.exited.wait()
        if runner.live:
            code = runner.handle.describe().get("exit_code")
            self.replace(entry, runner, f"exited (code {code})")

    def replace(self, entry: ModelEntry, runner: Runner, reason: str) -> None:
        """A loaded runner died or hung: out of the pool now, a new one after a backoff."""
        now = self._clock()
        runner.state = RunnerState.STOPPED
        entry.runners.remove(runner)
        self.spawn(self._dispose(runner, grace=2.0))
        if now - runner.started_at >= STABLE_AFTER:
            entry.crash_streak = 0
        entry.crash_streak += 1
        entry.restarts += 1
        self.restarts += 1
        delay = backoff(entry.crash_streak)
        log.warning(
            "runner of %s on %s %s; restart #%d in %.0f s",
            entry.model,
            runner.device.label,
            reason,
            entry.restarts,
            delay,
        )
        if self._on_restart is not None:
            self._on_restart(entry.model)
        fresh = Runner(entry.model, runner.device, runner.need)
        entry.runners.append(fresh)
        fresh.task = self.spawn(self.launch(entry, fresh, delay))

    # -- stopping -----------------------------------------------------------------------------

    async def drain(self, entry: ModelEntry, runner: Runner, reason: str) -> None:
        """No new requests; those in flight get ``drain_timeout`` seconds; then stop."""
        backend = runner.backend
        assert backend is not None
        runner.state = RunnerState.DRAINING
        self.pool.drain(backend)
        log.info("unloading %s from %s: %s", entry.model, runner.device.label, reason)
        deadline = self._clock() + self.settings.drain_timeout
        while self._clock() < deadline:
            if self._inflight(backend) == 0:
                break
            await asyncio.sleep(0.1)
        await self.stop(entry, runner)
        self._woken.set()

    async def stop(self, entry: ModelEntry, runner: Runner) -> None:
        # The process is gone before its memory counts as free: until then the runner stays
        # placed (draining), so nothing new is launched onto memory it still holds.
        await self._dispose(runner)
        runner.state = RunnerState.STOPPED
        if runner in entry.runners:
            entry.runners.remove(runner)

    async def _dispose(self, runner: Runner, grace: float = 10.0) -> None:
        if runner.backend is not None:
            self.pool.remove(runner.backend)
            await runner.backend.client.close()
        if runner.handle is not None:
            await runner.handle.stop(grace)
