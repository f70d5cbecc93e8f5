"""A GGUF file's metadata, read fast enough for a model listing — and for placement and the
KV-cache gauge (``gguf.py``), which need a few numbers of it.

``gguf.GGUFReader`` decodes every value of the header, the vocabulary and merges included
(100,000 strings and more): seconds per model, which ``/api/tags`` cannot wait for. This walk
decodes the scalars and short arrays, steps over the long arrays by their lengths alone, and
reads the tensor index for the parameter count — milliseconds. The layout is the GGUF
specification's (ggml ``docs/gguf.md``), version 2 and 3, little-endian.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

__all__ = ["GGUFHeader", "GGUFHeaderError", "read_header"]

_MAGIC = b"GGUF"
#: Value types: struct format of each scalar type (GGUF's ``gguf_type`` numbering).
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class GGUFHeaderError(ValueError):
    """Not a GGUF file this reader understands."""


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    #: Key-value metadata; arrays longer than the limit asked for are ``None``.
    metadata: dict[str, Any]
    #: Elements of all tensors: the model's parameter count.
    parameters: int
    #: Bytes of all tensors: what the weights take in memory.
    weights_bytes: int = 0


def read_header(path: str | Path, *, array_limit: int = 64) -> GGUFHeader:
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _Walk(data, array_limit).header()


def _tensor_bytes(kind: int, elements: int) -> int:
    """Bytes of a tensor of ``elements`` of ggml type ``kind`` (blocks of a fixed size)."""
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (KeyError, ValueError):
        raise GGUFHeaderError(f"unknown ggml tensor type {kind}") from None
    return elements // block * size


class _Walk:
    def __init__(self, data: mmap.mmap, array_limit: int) -> None:
        self.data = data
        self.at = 0
        self.array_limit = array_limit

    def header(self) -> GGUFHeader:
        if self.data[:4] != _MAGIC:
            raise GGUFHeaderError("not a GGUF file")
        self.at = 4
        version = self.scalar("<I")
        if version < 2:
            raise GGUFHeaderError(f"GGUF version {version} is too old")
        tensors, kvs = self.scalar("<Q"), self.scalar("<Q")
        metadata = {}
        for _ in range(kvs):
            key = self.string()
            metadata[key] = self.value(self.scalar("<I"))
        parameters = weights = 0
        for _ in range(tensors):
            self.string()  # its name
            elements = 1
            for _ in range(self.scalar("<I")):
                elements *= self.scalar("<Q")
            kind = self.scalar("<I")
            self.at += 8  # its offset
            parameters += elements
            weights += _tensor_bytes(kind, elements)
        return GGUFHeader(metadata, parameters, weights)

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        raw = self.data[self.at : self.at + length]
        self.at += length
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise GGUFHeaderError(f"unknown GGUF value type {kind}")
        item, count = self.scalar("<I"), self.scalar("<Q")
        if count <= self.array_limit:
            return [self.value(item) for _ in range(count)]
        if item in _SCALARS:  # step over it whole
            self.at += count * struct.calcsize(_SCALARS[item])
        else:  # strings (or nested arrays): one length at a time
            for _ in range(count):
                self.skip(item)
        return None

    def skip(self, kind: int) -> None:
        if kind in _SCALARS:
            self.at += struct.calcsize(_SCALARS[kind])
        elif kind == _STRING:
            length = self.scalar("<Q")  # the length, then that many bytes
            self.at += length
        else:
            item, count = self.scalar("<I"), self.scalar("<Q")
            for _ in range(count):
                self.skip(item)
