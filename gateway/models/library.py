"""The models folder: what ``pull`` leaves there and how a NAME finds its file.

A pull writes its GGUF files into the folder and a manifest, ``manifests/NAME.json``, saying
which file is the model (the first part of a split model), which is its ``mmproj`` and where
they came from. A NAME given instead of a path (``serve --model NAME``, ``path: NAME`` in the
config) is looked up there: first as a manifest, then as a loose file whose name without
``.gguf`` is NAME (the demo model ``make run`` fetches, say), both ignoring case.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from gateway.config import ModelSpec, Settings

__all__ = [
    "Manifest",
    "models_folder",
    "pulled",
    "resolve",
    "resolve_models",
    "save_manifest",
]

#: A name a model may be saved under: a file name, without path separators.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class Manifest(msgspec.Struct, kw_only=True):
    name: str
    #: What was pulled: ``hf:ORG/REPO:QUANT``, ``hf:ORG/REPO/FILE.gguf`` or a URL.
    source: str
    #: The file llama-server is given (``-m``): the first part of a split model.
    model: str
    #: Every file of the pull, the model's parts and the projector.
    files: list[str]
    mmproj: str | None = None
    #: File name -> the sha256 the hub gave for it, where it gave one.
    sha256: dict[str, str] = {}


def models_folder(settings: Settings) -> Path:
    folder = settings.models_dir or str(Path(settings.cache_dir) / "models")
    return Path(folder).expanduser()


def save_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / "manifests" / f"{manifest.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
    partial.replace(path)
    return path


def pulled(folder: Path) -> list[Manifest]:
    """Every manifest in ``folder`` whose model file is there."""
    found = []
    for path in sorted((folder / "manifests").glob("*.json")):
        try:
            manifest = msgspec.json.decode(path.read_bytes(), type=Manifest)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        if (folder / manifest.model).is_file():
            found.append(manifest)
    return found


def resolve(folder: Path, name: str) -> tuple[Path, Path | None] | None:
    """The model file (and projector) NAME stands for, or ``None``."""
    wanted = name.lower()
    for manifest in pulled(folder):
        if manifest.name.lower() == wanted:
            mmproj = folder / manifest.mmproj if manifest.mmproj else None
            return folder / manifest.model, mmproj
    for path in sorted(folder.glob("*.gguf")):
        if path.stem.lower() == wanted.removesuffix(".gguf"):
            return path, None
    return None


def _is_name(path: str) -> bool:
    return "/" not in path and NAME.fullmatch(path) is not None and not Path(path).exists()


def resolve_models(settings: Settings) -> tuple[Settings, list[str]]:
    """``settings`` with every model given by NAME pointed at its pulled file; and the
    names that are neither a file nor a pulled model."""
    folder = models_folder(settings)
    specs: list[ModelSpec] = []
    missing: list[str] = []
    for spec in settings.models:
        if spec.path is None or not _is_name(spec.path):
            specs.append(spec)
            continue
        found = resolve(folder, spec.path)
        if found is None:
            missing.append(spec.path)
            specs.append(spec)
            continue
        model, mmproj = found
        specs.append(
            msgspec.structs.replace(
                spec,
                name=spec.name or spec.path,
                path=str(model),
                mmproj=spec.mmproj or (str(mmproj) if mmproj else None),
            )
        )
    return msgspec.structs.replace(settings, models=specs), missing
