"""The fast GGUF header walk behind ``/api/tags`` and ``/api/show`` reads what the ``gguf``
package reads, on the real model file, and refuses what is not GGUF."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from gateway.gguf_header import GGUFHeaderError, read_header

pytestmark = pytest.mark.llama


def test_the_walk_reads_what_the_gguf_package_reads(model_path: str) -> None:
    header = read_header(model_path, array_limit=64)
    reader = gguf.GGUFReader(model_path)
    expected = {
        key: field.contents() if len(field.data) <= 64 else None
        for key, field in reader.fields.items()
        if not key.startswith("GGUF.")
    }
    assert header.metadata == expected
    assert header.metadata["tokenizer.ggml.tokens"] is None  # 49,152 strings stepped over
    assert header.parameters == sum(int(t.n_elements) for t in reader.tensors) == 134_515_008


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(GGUFHeaderError):
        read_header(path)
