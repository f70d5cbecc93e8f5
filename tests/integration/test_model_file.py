"""What the gateway reads from the real model file (SmolLM2-135M's GGUF header): its geometry,
the memory a runner of it needs, and the KV-cache size the pool reports. (The unit tests of
the same code use no model file.)"""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import ModelSpec
from gateway.gguf import kv_cache_bytes, read_geometry
from gateway.pool.stats import ServerStats
from gateway.runners.placement import (
    Device,
    PlacementError,
    check_fits,
    footprint,
    host_device,
)

MiB = 1024**2
GiB = 1024**3


def test_read_geometry_of_the_real_model(model_path: str) -> None:
    geometry = read_geometry(model_path)
    assert geometry.n_layer == 30
    assert (geometry.n_embd, geometry.n_head, geometry.n_head_kv) == (576, 9, 3)
    assert geometry.key_length == geometry.value_length == 64
    assert geometry.n_ctx_train == 8192
    assert 0 < geometry.weights_bytes < 200_000_000


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


async def test_capacity_is_read_once_from_the_header(model_path: str) -> None:
    stats = ServerStats()
    stats.track_capacity(model_path, n_ctx_slot=1024, slots=4)
    assert stats.kv_cache_capacity_bytes is None  # being read in the background
    await asyncio.wait_for(stats._geometry, 60)
    stats.track_capacity(model_path, n_ctx_slot=1024, slots=4)
    expected = kv_cache_bytes(read_geometry(model_path), 4096)
    assert stats.kv_cache_capacity_bytes == expected


def test_the_header_walk_agrees_with_the_gguf_package(model_path: str) -> None:
    """The gateway's fast walk (it steps over the vocabulary) against ``gguf.GGUFReader``,
    which decodes everything: the same weights, metadata and parameter count."""
    import gguf

    from gateway.gguf_header import read_header

    reader = gguf.GGUFReader(model_path)
    assert read_geometry(model_path).weights_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    header = read_header(model_path)
    assert header.parameters == sum(int(t.n_elements) for t in reader.tensors)
    for key in ("general.architecture", "llama.block_count", "llama.context_length"):
        assert header.metadata[key] == reader.get_field(key).contents()
