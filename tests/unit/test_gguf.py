"""The GGUF geometry and the KV-cache size formula, against numbers worked out by hand for
SmolLM2-135M (30 layers, n_embd 576, 9 heads, 3 KV heads, head dim 64)."""

from __future__ import annotations

import pytest

from gateway.gguf import (
    GGUFError,
    ModelGeometry,
    cache_type_bytes,
    kv_cache_bytes,
    kv_cache_types,
    read_geometry,
)

SMOLLM2 = ModelGeometry(
    n_layer=30,
    n_embd=576,
    n_head=9,
    n_head_kv=3,
    key_length=64,
    value_length=64,
    weights_bytes=0,
    n_ctx_train=8192,
)


def test_kv_cache_bytes_of_smollm2_in_f16() -> None:
    # One K row per layer and cell: 3 heads x 64 = 192 elements x 2 bytes = 384 bytes; V the
    # same; 768 bytes x 30 layers = 23,040 bytes per cell.
    assert SMOLLM2.n_embd_k_gqa == 192
    assert kv_cache_bytes(SMOLLM2, 1) == 23_040
    assert kv_cache_bytes(SMOLLM2, 4096) == 94_371_840  # 90 MiB, as llama-server logs it


def test_kv_cache_bytes_with_quantized_cache_types() -> None:
    # q8_0 stores 32 elements in 34 bytes: a 192-element row takes 204 bytes.
    assert cache_type_bytes("q8_0") == 34 / 32
    assert kv_cache_bytes(SMOLLM2, 4096, "q8_0", "q8_0") == 4096 * 30 * 2 * 204
    # K in q8_0, V in q4_0 (18 bytes per 32): 204 + 108 bytes per layer and cell.
    assert kv_cache_bytes(SMOLLM2, 1024, "q8_0", "q4_0") == 1024 * 30 * (204 + 108)
    assert cache_type_bytes("F32") == 4


def test_layers_with_different_kv_heads_are_summed() -> None:
    geometry = ModelGeometry(
        n_layer=3,
        n_embd=64,
        n_head=4,
        n_head_kv=2,
        key_length=16,
        value_length=16,
        weights_bytes=0,
        n_ctx_train=0,
        n_head_kv_per_layer=(2, 1, 0),
    )
    assert kv_cache_bytes(geometry, 10) == 10 * (2 + 1 + 0) * 16 * 2 * 2


def test_unknown_cache_type_is_refused() -> None:
    with pytest.raises(GGUFError):
        cache_type_bytes("f12")


def test_cache_types_from_a_command_line() -> None:
    assert kv_cache_types(["-m", "x.gguf"]) == ("f16", "f16")
    assert kv_cache_types(["-ctk", "q8_0", "--cache-type-v=q4_0"]) == ("q8_0", "q4_0")


def test_a_file_that_is_not_gguf(tmp_path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a model" * 10)
    with pytest.raises(GGUFError):
        read_geometry(path)
    with pytest.raises(GGUFError):
        read_geometry(tmp_path / "missing.gguf")
