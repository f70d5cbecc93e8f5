"""A model named instead of given by path (``serve --model NAME``, ``path: NAME``) is found
in the models folder: a pulled model's manifest first, then a loose ``NAME.gguf``."""

from __future__ import annotations

from pathlib import Path

from gateway.cli.serve import overrides
from gateway.config import load_settings
from gateway.models.library import Manifest, resolve_models, save_manifest
from tests.cli.test_serve_flags import _parse


def _settings(folder: Path, *models: dict) -> object:
    return load_settings({"models_dir": str(folder), "models": list(models)}, environ={})


def test_a_pulled_name_becomes_its_file_projector_and_model_id(tmp_path: Path) -> None:
    (tmp_path / "m-Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "mmproj-m-f16.gguf").write_bytes(b"GGUF")
    save_manifest(
        tmp_path,
        Manifest(
            name="vision",
            source="hf:org/m-GGUF:Q4_K_M",
            model="m-Q4_K_M.gguf",
            files=["m-Q4_K_M.gguf", "mmproj-m-f16.gguf"],
            mmproj="mmproj-m-f16.gguf",
        ),
    )
    settings, missing = resolve_models(_settings(tmp_path, {"path": "vision"}))  # type: ignore[arg-type]
    assert missing == []
    (spec,) = settings.models
    assert spec.path == str(tmp_path / "m-Q4_K_M.gguf")
    assert spec.mmproj == str(tmp_path / "mmproj-m-f16.gguf")
    assert spec.model_id == "vision"  # clients ask for it by the name it was served as


def test_a_loose_file_by_its_stem_and_name_equals_keeps_the_given_id(tmp_path: Path) -> None:
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    given = _settings(tmp_path, {"name": "smollm2", "path": "smollm2-135m-instruct.q4_1"})
    settings, missing = resolve_models(given)  # type: ignore[arg-type]
    (spec,) = settings.models
    assert missing == []
    assert (spec.model_id, spec.path) == (
        "smollm2",
        str(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"),
    )


def test_paths_are_left_alone_and_unknown_names_reported(tmp_path: Path) -> None:
    given = _settings(tmp_path, {"path": "/models/a.gguf"}, {"path": "nowhere"})
    settings, missing = resolve_models(given)  # type: ignore[arg-type]
    assert [spec.path for spec in settings.models] == ["/models/a.gguf", "nowhere"]
    assert missing == ["nowhere"]


def test_embeddings_flag_shapes_the_model_runner() -> None:
    (spec,) = overrides(_parse("--model", "e=/m/e.gguf", "--embeddings"))["models"]
    assert spec["embeddings"] is True
    (spec,) = overrides(_parse("--model", "/m/c.gguf"))["models"]
    assert "embeddings" not in spec
