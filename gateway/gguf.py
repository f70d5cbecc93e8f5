"""What a GGUF file says about the memory a model needs: its geometry, read from the header
with the ``gguf`` package, and the size of the KV cache a runner of it allocates.

llama.cpp keeps, per layer and per context cell, one K row of ``n_head_kv * key_length`` and
one V row of ``n_head_kv * value_length`` elements (``n_embd_k_gqa`` / ``n_embd_v_gqa``), each
element in the cache type chosen with ``-ctk`` / ``-ctv`` (f16 by default). So::

    kv bytes = n_ctx * Σ_layers (n_embd_k_gqa * bytes(ctk) + n_embd_v_gqa * bytes(ctv))

The header is read with :mod:`gateway.gguf_header` (milliseconds: it steps over the
vocabulary); async callers still run :func:`read_geometry` in a thread, as it reads a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf

from gateway.gguf_header import read_header

__all__ = [
    "GGUFError",
    "ModelGeometry",
    "cache_type_bytes",
    "kv_cache_bytes",
    "kv_cache_types",
    "read_geometry",
]


class GGUFError(ValueError):
    """The file is not a GGUF model whose geometry can be read."""


#: Arrays kept whole when reading the header: per-layer values (KV heads) of any model.
_PER_LAYER_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ModelGeometry:
    n_layer: int
    n_embd: int
    n_head: int
    #: KV heads (grouped-query attention); the largest one if they differ by layer.
    n_head_kv: int
    #: Size of one K head and one V head; ``n_embd / n_head`` unless the header says otherwise.
    key_length: int
    value_length: int
    #: Bytes of all tensors: what the weights take in memory.
    weights_bytes: int
    n_ctx_train: int
    #: KV heads of each layer, for models whose layers differ (empty: all have ``n_head_kv``).
    n_head_kv_per_layer: tuple[int, ...] = ()

    @property
    def n_embd_k_gqa(self) -> int:
        return self.n_head_kv * self.key_length

    @property
    def n_embd_v_gqa(self) -> int:
        return self.n_head_kv * self.value_length

    def kv_heads(self) -> tuple[int, ...]:
        """KV heads per layer."""
        return self.n_head_kv_per_layer or (self.n_head_kv,) * self.n_layer


def cache_type_bytes(cache_type: str) -> float:
    """Bytes per element of a KV cache type (``f16``, ``q8_0``, ``q4_0``, …)."""
    try:
        kind = gguf.GGMLQuantizationType[cache_type.upper()]
    except KeyError:
        raise GGUFError(f"unknown KV cache type {cache_type!r}") from None
    block_size, type_size = gguf.GGML_QUANT_SIZES[kind]
    return type_size / block_size


def kv_cache_bytes(
    geometry: ModelGeometry, n_ctx: int, cache_type_k: str = "f16", cache_type_v: str = "f16"
) -> int:
    """Bytes the KV cache of ``n_ctx`` cells (all slots together) takes."""
    k = cache_type_bytes(cache_type_k)
    v = cache_type_bytes(cache_type_v)
    per_cell = sum(
        heads * geometry.key_length * k + heads * geometry.value_length * v
        for heads in geometry.kv_heads()
    )
    return round(n_ctx * per_cell)


def kv_cache_types(args: Sequence[str]) -> tuple[str, str]:
    """The K and V cache types a ``llama-server`` command line asks for (f16 by default)."""
    types = {"k": "f16", "v": "f16"}
    flags = {"-ctk": "k", "--cache-type-k": "k", "-ctv": "v", "--cache-type-v": "v"}
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name in flags:
            if not sep:
                value = args[i + 1] if i + 1 < len(args) else ""
            if value:
                types[flags[name]] = value
    return types["k"], types["v"]


def read_geometry(path: str | Path) -> ModelGeometry:
    """The geometry in the header of the GGUF file at ``path`` (blocking, but milliseconds:
    the header walk steps over the vocabulary)."""
    try:
        header = read_header(path, array_limit=_PER_LAYER_LIMIT)
    except (OSError, ValueError) as exc:
        raise GGUFError(f"cannot read GGUF file {path}: {exc}") from exc
    metadata = header.metadata

    def _value(key: str) -> object:
        return metadata.get(key)

    arch = _value("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError(f"{path}: no general.architecture in the header")

    def number(key: str, default: int | None = None) -> int:
        value = _value(key.format(arch=arch))
        if value is None:
            if default is None:
                raise GGUFError(f"{path}: no {key.format(arch=arch)} in the header")
            return default
        if isinstance(value, list):
            return max(int(v) for v in value)
        if not isinstance(value, int | float):
            raise GGUFError(f"{path}: {key.format(arch=arch)} is not a number")
        return int(value)

    n_layer = number(gguf.Keys.LLM.BLOCK_COUNT)
    n_embd = number(gguf.Keys.LLM.EMBEDDING_LENGTH)
    n_head = number(gguf.Keys.Attention.HEAD_COUNT)
    n_head_kv = number(gguf.Keys.Attention.HEAD_COUNT_KV, n_head)
    head_dim = n_embd // n_head if n_head else 0
    per_layer = _value(gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch))
    return ModelGeometry(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=number(gguf.Keys.Attention.KEY_LENGTH, head_dim),
        value_length=number(gguf.Keys.Attention.VALUE_LENGTH, head_dim),
        weights_bytes=header.weights_bytes,
        n_ctx_train=number(gguf.Keys.LLM.CONTEXT_LENGTH, 0),
        n_head_kv_per_layer=tuple(int(v) for v in per_layer) if isinstance(per_layer, list) else (),
    )
