"""A pull from start to end, as a stream of events in the shape of Ollama's ``/api/pull``
progress: ``pulling manifest``, then ``downloading FILE`` with ``digest``, ``total`` and
``completed`` bytes, ``verifying sha256 digest``, ``writing manifest``, ``success``. The
console draws them as progress bars; ``POST /api/pull`` sends them as NDJSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.models.download import download
from gateway.models.errors import PullError
from gateway.models.library import NAME, Manifest, save_manifest
from gateway.models.sources import plan_pull

__all__ = ["PullEvent", "pull"]


@dataclass(frozen=True, slots=True)
class PullEvent:
    status: str
    #: ``sha256:<hex>`` when the hub gave one, else the file's name.
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    #: On ``success``: the name the model can be served by, and its file.
    model: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


async def pull(
    source: str,
    folder: Path,
    *,
    hf_endpoint: str | None = None,
    hf_token: str | None = None,
    name: str | None = None,
    read_timeout: float = 60.0,
) -> AsyncIterator[PullEvent]:
    """Download ``source`` into ``folder``; :class:`PullError` on any failure."""
    if name is not None and not NAME.fullmatch(name):
        raise PullError(f"cannot save a model as {name!r}: use letters, digits, . _ : -", 400)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PullError(f"cannot create the models folder {folder}: {exc.strerror}", 507) from None
    headers = {"Authorization": f"Bearer {hf_token}"} if hf_token else {}
    timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_read=read_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield PullEvent("pulling manifest")
        plan = await plan_pull(source, session, endpoint=hf_endpoint, headers=headers)
        for file in plan.files:
            digest = f"sha256:{file.sha256}" if file.sha256 else file.name
            label = f"downloading {file.name}"
            async for completed, total in download(session, file, folder, headers=headers):
                yield PullEvent(label, digest, total, completed)
        if any(file.sha256 for file in plan.files):
            yield PullEvent("verifying sha256 digest")  # checked as each file was written
    yield PullEvent("writing manifest")
    mmproj = plan.mmproj
    manifest = Manifest(
        name=name or plan.name,
        source=source,
        model=plan.model.name,
        files=[file.name for file in plan.files],
        mmproj=mmproj.name if mmproj else None,
        sha256={file.name: file.sha256 for file in plan.files if file.sha256},
    )
    save_manifest(folder, manifest)
    yield PullEvent("success", model=manifest.name, path=str(folder / manifest.model))
