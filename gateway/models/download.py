"""One file of a pull onto disk: into ``NAME.partial`` beside its final name, resumed with an
HTTP ``Range`` from where an earlier try stopped, hashed as it is written, checked against the
hub's sha256 (a mismatch deletes the partial file) and renamed into place at the end — so a
file under its final name is always whole."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from gateway.models.errors import PullError
from gateway.models.sources import RemoteFile

__all__ = ["PARTIAL_SUFFIX", "download"]

PARTIAL_SUFFIX = ".partial"
_CHUNK = 1 << 20
#: Progress is reported at most this often (seconds), and at the end.
_TICK = 0.2


def _hash_file(path: Path, digest: hashlib._Hash | None = None) -> hashlib._Hash:
    digest = digest or hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest


def _check_room(folder: Path, needed: int | None, name: str) -> None:
    if needed is None:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise PullError(
            f"disk full: {name} needs {needed} more bytes and {folder} has {free} free; "
            "free some space or pull into another --models-dir",
            507,
        )


def _refusal(status: int, file: RemoteFile) -> PullError:
    if status in (401, 403):
        return PullError(
            f"the server refused {file.name} ({status}): it is private or gated; set HF_TOKEN "
            "to a token that may read it",
            401,
        )
    if status == 404:
        return PullError(f"not found: {file.url}", 404)
    return PullError(f"the server answered {status} for {file.name}", 502)


async def download(
    session: aiohttp.ClientSession,
    file: RemoteFile,
    folder: Path,
    *,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[tuple[int, int | None]]:
    """Fetch ``file`` into ``folder``, yielding ``(completed, total)`` bytes as it goes."""
    target = folder / file.name
    if target.is_file() and (file.size is None or target.stat().st_size == file.size):
        if file.sha256 is None or _hash_file(target).hexdigest() == file.sha256:
            size = target.stat().st_size
            yield size, size
            return
    partial = folder / (file.name + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    if file.size is not None and offset > file.size:
        partial.unlink()
        offset = 0
    digest = _hash_file(partial) if offset else hashlib.sha256()
    _check_room(folder, None if file.size is None else file.size - offset, file.name)

    asked = dict(headers or {})
    if offset:
        asked["Range"] = f"bytes={offset}-"
    try:
        async with session.get(file.url, headers=asked) as response:
            if response.status == 416 and offset and offset == file.size:
                total: int | None = offset  # the partial file is already whole
            elif response.status >= 400:
                raise _refusal(response.status, file)
            else:
                if offset and response.status != 206:
                    offset, digest = 0, hashlib.sha256()  # no Range support: start over
                length = response.content_length
                total = file.size or (offset + length if length is not None else None)
                if file.size is None and length is not None:
                    _check_room(folder, length, file.name)
                async for completed in _write(response, partial, offset, digest):
                    yield completed, total
    except aiohttp.ClientError as exc:
        message = f"the download of {file.name} broke off: {exc}; pull again to resume"
        raise PullError(message, 502) from None
    size = partial.stat().st_size
    if file.size is not None and size != file.size:
        raise PullError(
            f"{file.name} ended at {size} of {file.size} bytes; pull again to resume", 502
        )
    if file.sha256 is not None and digest.hexdigest() != file.sha256:
        partial.unlink()
        raise PullError(
            f"sha256 mismatch for {file.name}: the hub says {file.sha256}, the download is "
            f"{digest.hexdigest()}; the partial file was removed, pull again",
            502,
        )
    os.replace(partial, target)
    yield size, size


async def _write(
    response: aiohttp.ClientResponse, partial: Path, offset: int, digest: hashlib._Hash
) -> AsyncIterator[int]:
    completed = offset
    last = 0.0
    try:
        with partial.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            async for block in response.content.iter_chunked(_CHUNK):
                out.write(block)
                digest.update(block)
                completed += len(block)
                now = time.monotonic()
                if now - last >= _TICK:
                    last = now
                    yield completed
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise PullError(
                f"disk full while writing {partial.name}; free some space and pull again "
                "(it resumes)",
                507,
            ) from None
        raise PullError(f"cannot write {partial}: {exc.strerror}", 507) from None
    yield completed
