"""The devices runners are placed on: the GPUs declared in the settings, else the ones NVML
reports (when ``nvidia-ml-py`` is installed and a driver answers), else the host alone."""

from __future__ import annotations

import logging

from gateway.config import Settings
from gateway.runners.placement import Device, host_device
from gateway.units import parse_size

log = logging.getLogger(__name__)


def devices(settings: Settings) -> list[Device]:
    if settings.gpus:
        return [Device(gpu.id, gpu.memory_bytes) for gpu in settings.gpus]
    found = detect_gpus()
    if found:
        return found
    budget = parse_size(settings.host_memory) if settings.host_memory is not None else None
    return [host_device(budget)]


def detect_gpus() -> list[Device]:
    """GPUs with their total memory, through NVML; empty where there is none."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(Device(str(index), int(memory.total)))
        log.info("NVML found %d GPUs", len(found))
        return found
    finally:
        pynvml.nvmlShutdown()
