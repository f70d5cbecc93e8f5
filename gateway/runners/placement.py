"""Where a runner goes: arithmetic on memory, nothing else.

A runner needs its weights, its KV cache (``ctx_size`` cells at the cache types, from the
GGUF header: see :mod:`gateway.gguf`) and a fixed overhead for compute buffers and
the CUDA context. It goes on a device whose free memory holds that — one copy of a model per
GPU before two copies share one, and otherwise on the device with the most room. When nothing
fits, the least recently used idle runners are the ones to stop (:func:`plan_eviction`); a
runner with requests in flight is never offered as a victim.

Without GPUs the host is the one device, with the ``host_memory`` budget or without a limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from gateway.config import ModelSpec
from gateway.errors import RunnerError
from gateway.gguf import ModelGeometry, kv_cache_bytes, read_geometry
from gateway.units import format_size, parse_size

log = logging.getLogger(__name__)


class PlacementError(RuntimeError):
    """A model fits on no device, however empty."""


@dataclass(frozen=True, slots=True)
class Device:
    #: The GPU id given to CUDA / Docker; ``None`` for the host (CPU runners).
    id: str | None
    #: Bytes runners may take on it; ``math.inf`` for no limit.
    memory: float

    @property
    def label(self) -> str:
        return "host" if self.id is None else f"GPU {self.id}"


@dataclass(frozen=True, slots=True)
class Footprint:
    """Bytes one runner of a model takes, and what they are made of."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def describe(self) -> str:
        return (
            f"weights {format_size(self.weights)} + KV cache {format_size(self.kv_cache)} "
            f"+ overhead {format_size(self.overhead)} = {format_size(self.total)}"
        )


def footprint(spec: ModelSpec, geometry: ModelGeometry, overhead: int) -> Footprint:
    """Weights + KV for ``spec.ctx_size`` cells at its cache types + ``overhead``."""
    kv = kv_cache_bytes(geometry, spec.ctx_size, spec.cache_type_k, spec.cache_type_v)
    return Footprint(geometry.weights_bytes, kv, overhead)


async def measure(spec: ModelSpec, overhead: int) -> Footprint:
    """The footprint of one runner of ``spec``: its declared ``memory``, or the arithmetic on
    its GGUF header (read in a thread); only the overhead for an ``hf`` model not declared."""
    if spec.memory is not None:
        return Footprint(parse_size(spec.memory), 0, 0)
    if spec.path is None:
        log.warning("model %s: size unknown before download; set memory: to place it", spec)
        return Footprint(0, 0, overhead)
    if not Path(spec.path).is_file():
        raise RunnerError(f"model file {spec.path!r} does not exist")
    geometry = await asyncio.to_thread(read_geometry, spec.path)
    need = footprint(spec, geometry, overhead)
    log.info("model %s needs %s per runner", spec.model_id, need.describe())
    return need


class Placed(Protocol):
    """A runner as placement sees it: where it is, for which model, how much it takes."""

    @property
    def device(self) -> Device: ...
    @property
    def model(self) -> str: ...
    @property
    def need(self) -> int: ...


P = TypeVar("P", bound=Placed)


def check_fits(model: str, need: Footprint, devices: Sequence[Device]) -> None:
    """:class:`PlacementError` naming the numbers if ``need`` exceeds every device."""
    if any(need.total <= d.memory for d in devices):
        return
    sizes = ", ".join(f"{d.label} {format_size(d.memory)}" for d in devices)
    raise PlacementError(
        f"model {model} fits on no device: it needs {need.describe()}, "
        f"but the largest is {max(devices, key=lambda d: d.memory).label} "
        f"({sizes}). Lower ctx_size, use a smaller cache type (cache_type_k/v: q8_0) "
        "or a smaller quantisation."
    )


def free_memory(device: Device, placed: Iterable[Placed]) -> float:
    return device.memory - sum(p.need for p in placed if p.device == device)


def choose_device(
    model: str, need: int, devices: Sequence[Device], placed: Sequence[Placed]
) -> Device | None:
    """The device for one more runner of ``model``, or ``None`` if none has room now.

    Fewest copies of ``model`` first (one per GPU before doubling up), then most free memory.
    """
    fitting = [d for d in devices if free_memory(d, placed) >= need]
    if not fitting:
        return None

    def rank(device: Device) -> tuple[int, float]:
        copies = sum(1 for p in placed if p.device == device and p.model == model)
        return copies, -free_memory(device, placed)

    return min(fitting, key=rank)


def plan_eviction(
    need: int, devices: Sequence[Device], placed: Sequence[Placed], idle_lru: Sequence[P]
) -> tuple[Device, list[P]] | None:
    """The fewest least-recently-used idle runners whose stopping frees ``need`` bytes on one
    device: ``(device, victims)``; ``None`` if stopping every idle runner would not do."""
    freed: dict[Device, int] = {}
    for victim in idle_lru:
        device = victim.device
        freed[device] = freed.get(device, 0) + victim.need
        if free_memory(device, placed) + freed[device] >= need:
            return device, [v for v in idle_lru[: idle_lru.index(victim) + 1] if v.device == device]
    return None


def host_device(host_memory: int | None) -> Device:
    return Device(None, math.inf if host_memory is None else host_memory)
