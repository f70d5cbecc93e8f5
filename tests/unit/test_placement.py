"""Placement is arithmetic: weights + KV cache (from the real GGUF header) + overhead against
each device's memory; one copy per GPU before doubling up; LRU idle runners as victims."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from gateway.config import ModelSpec
from gateway.gguf import read_geometry
from gateway.runners.placement import (
    Device,
    PlacementError,
    check_fits,
    choose_device,
    footprint,
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


def test_footprint_of_the_real_model(model_path: str) -> None:
    geometry = read_geometry(model_path)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 → 192 K and 192 V elements per layer per cell.
    assert (geometry.n_layer, geometry.n_head_kv, geometry.key_length) == (30, 3, 64)
    spec = ModelSpec(path=model_path, ctx_size=4096)
    need = footprint(spec, geometry, overhead=512 * MiB)
    assert need.kv_cache == 4096 * 30 * (192 + 192) * 2  # f16: 2 bytes an element = 90 MiB
    assert need.weights == geometry.weights_bytes
    assert 80 * MiB < need.weights < 110 * MiB  # a 98 MB Q4_1 file
    assert need.total == need.weights + 90 * MiB + 512 * MiB

    quantised = ModelSpec(path=model_path, ctx_size=4096, cache_type_k="q8_0", cache_type_v="q8_0")
    # q8_0: blocks of 32 elements in 34 bytes.
    assert footprint(quantised, geometry, 0).kv_cache == round(4096 * 30 * 384 * 34 / 32)


def test_a_model_that_fits_nowhere_is_refused_with_the_numbers(model_path: str) -> None:
    geometry = read_geometry(model_path)
    need = footprint(ModelSpec(path=model_path, ctx_size=8192), geometry, 512 * MiB)
    small = [Device("0", 256 * MiB), Device("1", 512 * MiB)]
    with pytest.raises(PlacementError) as caught:
        check_fits("smol", need, small)
    message = str(caught.value)
    assert "model smol fits on no device" in message
    assert "KV cache 180.0 MiB" in message and "overhead 512.0 MiB" in message
    assert "GPU 1" in message and "512.0 MiB" in message
    check_fits("smol", need, [*small, Device("2", 1 * GiB)])  # fits on GPU 2
    check_fits("smol", need, [host_device(None)])  # the host without a budget takes anything


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
