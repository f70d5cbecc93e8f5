"""The scheduler's decisions with a stand-in driver and a hand-turned clock: one load per
model however many requests, keep-alive, LRU eviction that spares busy runners, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import ModelSpec, Settings, load_settings
from gateway.errors import RunnerError, Unavailable
from gateway.pool.backend import Backend, Health
from gateway.pool.pool import Pool
from gateway.runners.scheduler import Scheduler
from gateway.upstream.client import BackendClient


class FakeHandle:
    def __init__(self, spec: ModelSpec, gpu: str | None, fail: bool) -> None:
        self.spec, self.gpu, self.fail = spec, gpu, fail
        self.url = ""
        self.exited = asyncio.Event()
        self.stopped = False

    async def start(self, timeout: float) -> None:
        if self.fail:
            raise RunnerError("llama-server exited with code 1 while loading:\nbad file")
        self.url = f"http://{self.spec.model_id}.test:{id(self) % 60000}"

    async def stop(self, grace: float = 10.0) -> None:
        self.stopped = True
        self.exited.set()

    def describe(self) -> dict[str, Any]:
        return {"driver": "fake", "url": self.url}


class FakeDriver:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.started: list[FakeHandle] = []
        self.fail = fail

    async def prepare(self) -> None:
        pass

    def runner(self, spec: ModelSpec, gpu: str | None) -> FakeHandle:
        handle = FakeHandle(spec, gpu, self.fail)
        self.started.append(handle)
        return handle

    async def close(self) -> None:
        pass


class World:
    def __init__(self, settings: Settings, driver: FakeDriver) -> None:
        self.now = 1000.0
        self.inflight: dict[Backend, int] = {}
        self.pool = Pool(expected_models=[s.model_id for s in settings.models])
        self.driver = driver
        self.scheduler = Scheduler(
            settings,
            pool=self.pool,
            inflight=lambda b: self.inflight.get(b, 0),
            make_backend=lambda url: Backend(url, BackendClient(url)),
            driver_factory=lambda _: driver,
            clock=lambda: self.now,
        )

    async def step(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        self.scheduler._step(self.now)
        for _ in range(5):
            await asyncio.sleep(0)

    async def load(self, model: str) -> Backend:
        """Ask for ``model`` and let its backend come up."""
        self.scheduler.demand(model)
        await self.step()
        (backend,) = [b for b in self.pool.backends if b.url.startswith(f"http://{model}.")]
        backend.health, backend.slots, backend.model_id = Health.READY, 2, model
        await self.step()
        return backend

    def states(self) -> dict[str, str]:
        return {m["id"]: m["state"] for m in self.scheduler.models()}


def _settings(**extra: Any) -> Settings:
    model = {"path": "/m.gguf", "memory": "6GiB", "keep_alive": "30s"}
    return load_settings(
        {
            "models": [{"name": "a", **model}, {"name": "b", **model}],
            "gpus": [{"id": "0", "memory": "10GiB"}],
            **extra,
        },
        environ={},
    )


@pytest.fixture
async def world() -> World:
    w = World(_settings(), FakeDriver())
    await w.scheduler.start()
    return w


async def test_requests_share_one_load(world: World) -> None:
    assert world.states()["a"] == "unloaded"
    for _ in range(3):
        world.scheduler.demand("a")
    assert world.states()["a"] == "loading"
    await world.step()
    await world.step()
    assert len(world.driver.started) == 1
    assert world.states()["a"] == "loading"
    (backend,) = world.pool.backends
    backend.health, backend.slots, backend.model_id = Health.READY, 2, "a"
    await world.step()
    assert world.states() == {"a": "loaded", "b": "unloaded"}
    assert world.driver.started[0].gpu == "0"


async def test_keep_alive_from_the_model_and_from_the_request(world: World) -> None:
    backend = await world.load("a")
    world.now += 29
    await world.step()
    assert world.states()["a"] == "loaded"
    world.inflight[backend] = 1  # busy: the clock restarts
    world.now += 60
    await world.step()
    world.inflight[backend] = 0
    world.now += 29
    await world.step()
    assert world.states()["a"] == "loaded"
    world.now += 2
    await world.step()
    await world.step()
    assert world.states()["a"] == "unloaded"
    assert world.driver.started[0].stopped and world.pool.backends == []

    await world.load("a")
    world.scheduler.demand("a", keep_alive=float("inf"))
    world.now += 10_000
    await world.step()
    assert world.states()["a"] == "loaded"


async def test_eviction_spares_busy_runners_and_takes_the_idle_one(world: World) -> None:
    a = await world.load("a")
    world.inflight[a] = 1
    world.scheduler.demand("b")
    await world.step()
    assert world.states() == {"a": "loaded", "b": "loading"}  # waits: a is busy
    assert len(world.driver.started) == 1
    assert not a.draining
    world.inflight[a] = 0
    world.now += 5
    await world.step()
    await world.step()
    assert world.states()["a"] == "unloaded"
    await world.step()
    assert world.states()["b"] == "loading"
    assert [h.spec.model_id for h in world.driver.started] == ["a", "b"]


async def test_a_failed_load_refuses_requests_during_its_backoff() -> None:
    world = World(_settings(), FakeDriver(fail=True))
    await world.scheduler.start()
    world.scheduler.demand("a")
    await world.step()
    await world.step()
    assert world.states()["a"] == "failed"
    with pytest.raises(Unavailable) as caught:
        world.scheduler.demand("a")
    assert "failed to load: llama-server exited with code 1" in caught.value.message
    world.now += 5  # past the backoff: the next request tries again
    world.scheduler.demand("a")
    await world.step()
    await world.step()
    assert len(world.driver.started) == 2


async def test_a_dead_runner_is_replaced_after_a_backoff(world: World) -> None:
    backend = await world.load("a")
    world.driver.started[0].exited.set()
    await world.step()
    assert backend not in world.pool.backends  # out of rotation at once
    assert world.scheduler.restarts == 1
    assert world.states()["a"] == "loading"
    await asyncio.sleep(1.1)  # the first backoff is a second
    await world.step()
    assert len(world.driver.started) == 2
