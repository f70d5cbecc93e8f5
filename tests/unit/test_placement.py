"""Placement is arithmetic: weights + KV cache (from the real GGUF header) + overhead against
each device's memory; one copy per GPU before doubling up; LRU idle runners as victims."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.runners.placement import (
    Device,
    choose_device,
    host_device,
    plan_eviction,
)

MiB = 1024**2
GiB = 1024**3


@dataclass
class Placed:
    device: Device
    model: str
    need: int


def test_one_copy_per_gpu_before_doubling_up() -> None:
    gpus = [Device("0", 24 * GiB), Device("1", 24 * GiB)]
    placed: list[Placed] = []
    for _ in range(4):
        device = choose_device("a", 5 * GiB, gpus, placed)
        assert device is not None
        placed.append(Placed(device, "a", 5 * GiB))
    assert [p.device.id for p in placed] == ["0", "1", "0", "1"]
    # Another model goes where there is most room.
    placed.append(Placed(gpus[0], "b", 10 * GiB))
    assert choose_device("c", 1 * GiB, gpus, placed) == gpus[1]
    # Full: nothing fits.
    assert choose_device("c", 20 * GiB, gpus, placed) is None


def test_eviction_takes_the_least_recently_used_idle_runners_on_one_device() -> None:
    gpus = [Device("0", 10 * GiB), Device("1", 10 * GiB)]
    old = Placed(gpus[0], "old", 4 * GiB)
    newer = Placed(gpus[0], "newer", 4 * GiB)
    busy = Placed(gpus[1], "busy", 8 * GiB)  # requests in flight: never offered as a victim
    placed = [old, newer, busy]
    idle_lru = [old, newer]  # what the scheduler passes: idle only, oldest first
    assert plan_eviction(5 * GiB, gpus, placed, idle_lru) == (gpus[0], [old])
    assert plan_eviction(9 * GiB, gpus, placed, idle_lru) == (gpus[0], [old, newer])
    # Room only if the busy runner went: no plan.
    assert plan_eviction(11 * GiB, gpus, placed, idle_lru) is None


def test_host_device_without_budget_is_unlimited() -> None:
    assert host_device(None).memory == math.inf
    assert host_device(8 * GiB).label == "host"
