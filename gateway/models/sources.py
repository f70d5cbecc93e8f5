"""What a pull SOURCE means: the files to fetch, where from, and their sizes and sha256.

- ``https://host/path/FILE.gguf``: that file (and the other parts, when its name says it is
  part 1 of a split model, ``…-00001-of-00003.gguf``).
- ``hf:ORG/REPO/FILE.gguf``: that file of a Hugging Face repository (and its other parts).
- ``hf:ORG/REPO:QUANT`` (or ``hf:ORG/REPO``, which prefers Q4_K_M): the repository's GGUF of
  that quantization, every part of it, and its ``mmproj`` projector if the repository has one.
  ``hf.co/ORG/REPO:QUANT``, the name Ollama's clients use for the same, is accepted too.

Repositories are read from the hub at ``HF_ENDPOINT`` (default ``https://huggingface.co``) as
the hub serves them: ``GET /api/models/ORG/REPO?blobs=true`` lists ``siblings`` with their
``rfilename``, ``size`` and ``lfs.sha256``; files come from ``/ORG/REPO/resolve/main/FILE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp

from gateway.models.errors import PullError

__all__ = ["DEFAULT_HF_ENDPOINT", "PullPlan", "RemoteFile", "plan_pull"]

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"
#: How Ollama's clients name a Hugging Face GGUF (``ollama pull hf.co/ORG/REPO:QUANT``).
_HUB_NAMES = ("hf.co/", "huggingface.co/")
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    url: str
    #: Its name in the models folder.
    name: str
    size: int | None = None
    sha256: str | None = None
    mmproj: bool = False


@dataclass(frozen=True, slots=True)
class PullPlan:
    source: str
    #: The name the model is saved under (the model file's name without ``.gguf``).
    name: str
    #: The model's parts in order, then its projector.
    files: list[RemoteFile]

    @property
    def model(self) -> RemoteFile:
        return self.files[0]

    @property
    def mmproj(self) -> RemoteFile | None:
        return next((f for f in self.files if f.mmproj), None)


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _model_name(file_name: str) -> str:
    split = _SPLIT.match(file_name)
    return split["stem"] if split else file_name.removesuffix(".gguf")


def _parts(path: str) -> list[str]:
    """``path`` and, if it is part 1 of a split model, the paths of the other parts."""
    split = _SPLIT.match(path)
    if not split:
        return [path]
    count = int(split["count"])
    return [f"{split['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


async def plan_pull(
    source: str,
    session: aiohttp.ClientSession,
    *,
    endpoint: str | None = None,
    headers: dict[str, str] | None = None,
) -> PullPlan:
    source = source.strip()
    for prefix in _HUB_NAMES:
        if source.startswith(prefix):
            source = "hf:" + source.removeprefix(prefix)
    if source.startswith("hf:"):
        return await _plan_hub(source, session, (endpoint or DEFAULT_HF_ENDPOINT), headers or {})
    if source.startswith(("https://", "http://")):
        return _plan_url(source)
    raise PullError(
        f"cannot pull {source!r}: give an https:// URL, hf:ORG/REPO:QUANT or hf:ORG/REPO/FILE.gguf",
        400,
    )


def _plan_url(source: str) -> PullPlan:
    parts = urlsplit(source)
    name = unquote(_basename(parts.path))
    if not name.endswith(".gguf"):
        raise PullError(f"cannot pull {source!r}: the URL must name a .gguf file", 400)
    base = source[: source.rindex(_basename(parts.path))]
    files = [RemoteFile(base + quote(part), part) for part in _parts(name)]
    files[0] = RemoteFile(source, name)
    return PullPlan(source, _model_name(name), files)


def _hub_ref(source: str) -> tuple[str, str | None, str | None]:
    """``hf:ORG/REPO:QUANT`` -> (repo, None, quant); ``hf:ORG/REPO/F.gguf`` -> (repo, F, None)."""
    ref = source[3:]
    if ref.endswith(".gguf"):
        pieces = ref.split("/")
        if len(pieces) < 3 or not all(pieces):
            raise PullError(f"cannot pull {source!r}: expected hf:ORG/REPO/FILE.gguf", 400)
        return "/".join(pieces[:2]), "/".join(pieces[2:]), None
    repo, _, quant = ref.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise PullError(f"cannot pull {source!r}: expected hf:ORG/REPO:QUANT", 400)
    return repo, None, quant or None


async def _plan_hub(
    source: str, session: aiohttp.ClientSession, endpoint: str, headers: dict[str, str]
) -> PullPlan:
    repo, file, quant = _hub_ref(source)
    siblings = await _list_repo(session, endpoint.rstrip("/"), repo, headers)
    if file is not None:
        if file not in siblings:
            raise PullError(f"{repo} has no file {file} (at {endpoint})", 404)
        chosen, mmproj = _parts(file), None
    else:
        chosen, mmproj = _choose(repo, siblings, quant)
    missing = [path for path in chosen if path not in siblings]
    if missing:
        raise PullError(f"{repo} lacks part {missing[0]} of the split model", 404)

    def remote(path: str, is_mmproj: bool = False) -> RemoteFile:
        info = siblings[path]
        lfs = info.get("lfs") or {}
        url = f"{endpoint.rstrip('/')}/{repo}/resolve/main/{quote(path)}"
        size = lfs.get("size", info.get("size"))
        return RemoteFile(url, _basename(path), size, lfs.get("sha256"), is_mmproj)

    files = [remote(path) for path in chosen]
    if mmproj:
        files.append(remote(mmproj, True))
    return PullPlan(source, _model_name(_basename(chosen[0])), files)


async def _list_repo(
    session: aiohttp.ClientSession, endpoint: str, repo: str, headers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    url = f"{endpoint}/api/models/{repo}?blobs=true"
    try:
        async with session.get(url, headers=headers) as response:
            if response.status in (401, 403):
                raise PullError(
                    f"the hub refused to list {repo} ({response.status}): it is private or "
                    "gated; set HF_TOKEN to a token that may read it",
                    401,
                )
            if response.status == 404:
                raise PullError(f"no repository {repo} at {endpoint}", 404)
            if response.status >= 400:
                raise PullError(f"the hub answered {response.status} for {repo}", 502)
            listing = await response.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise PullError(f"cannot reach the hub at {endpoint}: {exc}", 502) from None
    siblings = listing.get("siblings") if isinstance(listing, dict) else None
    if not isinstance(siblings, list):
        raise PullError(f"the hub's listing of {repo} has no siblings", 502)
    return {s["rfilename"]: s for s in siblings if isinstance(s, dict) and "rfilename" in s}


def _has_tag(path: str, tag: str) -> bool:
    stem = _model_name(_basename(path))
    return re.search(rf"(?:^|[-_.]){re.escape(tag)}(?:$|[-_.])", stem, re.IGNORECASE) is not None


def _choose(repo: str, siblings: dict[str, Any], quant: str | None) -> tuple[list[str], str | None]:
    """The model's parts for ``quant`` (or Q4_K_M, else the first GGUF), and a projector."""
    ggufs = sorted(p for p in siblings if p.lower().endswith(".gguf"))
    models = [p for p in ggufs if "mmproj" not in _basename(p).lower()]
    firsts = [p for p in models if not _SPLIT.match(p) or int(_SPLIT.match(p)["part"]) == 1]  # type: ignore[index]
    if not firsts:
        raise PullError(f"{repo} has no GGUF model file", 404)
    if quant:
        matching = [p for p in firsts if _has_tag(p, quant)]
        if not matching:
            tags = sorted({_model_name(_basename(p)).rsplit("-", 1)[-1] for p in firsts})
            raise PullError(f"{repo} has no {quant} GGUF; it has {', '.join(tags)}", 404)
    else:
        matching = [p for p in firsts if _has_tag(p, DEFAULT_QUANT)] or firsts
    chosen = min(matching, key=lambda p: (len(p), p))
    projectors = [p for p in ggufs if "mmproj" in _basename(p).lower()]
    preferred = [p for p in projectors if quant and _has_tag(p, quant)]
    preferred += [p for p in projectors if _has_tag(p, "f16")] + projectors
    return _parts(chosen), (preferred[0] if preferred else None)
