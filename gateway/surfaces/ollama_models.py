"""Ollama's model views — ``/api/tags`` (every model), ``/api/ps`` (the loaded ones) and
``/api/show`` (one model's details) — their routes and what they show; and the two questions
every Ollama route asks of a name: which model it means, and how much context a request of it
gets.

The facts come from the GGUF header for a model the gateway runs itself (or whose file it
can read), and from llama-server's ``/props`` and ``/v1/models`` for a backend given by URL.
A header is read once per file version (:mod:`.ollama_gguf`: milliseconds), in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import math
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import gguf
from litestar import Request, get, post
from litestar.di import NamedDependency

from gateway.errors import GatewayError, ModelNotFound
from gateway.gguf_header import read_header
from gateway.pool.backend import Backend
from gateway.pool.pool import Pool
from gateway.runners.scheduler import MIN_IDLE, Scheduler
from gateway.runners.state import ModelEntry, RunnerState
from gateway.surfaces import Surface
from gateway.surfaces.ollama_requests import read_body, require_model
from gateway.surfaces.openapi import documented

__all__ = [
    "ModelFacts",
    "context_per_request",
    "find_facts",
    "human_number",
    "ps",
    "ps_entry",
    "resolve_model",
    "show",
    "show_answer",
    "tag_entry",
    "tags",
]

PROBE_TIMEOUT = 3.0
#: Arrays longer than this (vocabularies, merges) are left out of ``model_info``, as Ollama
#: leaves them out unless asked to be verbose.
_ARRAY_LIMIT = 64
_CAPABILITY_ORDER = ["completion", "embedding", "vision", "tools", "thinking"]
#: Ollama's "for ever" (a keep-alive of -1): the largest Go duration from now.
_FOREVER = timedelta(seconds=(2**63 - 1) / 1e9)


@dataclass(slots=True)
class ModelFacts:
    family: str = ""
    parameter_count: int = 0
    quantization: str = ""
    #: The context the model was trained for (``{arch}.context_length``).
    context_length: int = 0
    chat_template: str = ""
    #: Bytes of the weights (the file, for a GGUF file here).
    size: int = 0
    modified: float | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)

    def details(self, parent: str = "") -> dict[str, Any]:
        return {
            "parent_model": parent,
            "format": "gguf",
            "family": self.family,
            "families": [self.family] if self.family else None,
            "parameter_size": human_number(self.parameter_count) if self.parameter_count else "",
            "quantization_level": self.quantization,
        }

    def digest(self, model: str) -> str:
        """A stable id for this model version (Ollama's is its manifest's SHA-256; hashing a
        multi-gigabyte file per listing is not worth it): name, size and modification time."""
        return hashlib.sha256(f"{model}:{self.size}:{self.modified}".encode()).hexdigest()


def human_number(count: int) -> str:
    """A parameter count as Ollama writes it: ``135M``, ``134.52M``, ``8B``, ``7.6B``."""
    for scale, unit, decimals in ((1e9, "B", 1), (1e6, "M", 2)):
        if count >= scale:
            number = count / scale
            places = 0 if number == int(number) else decimals
            return f"{number:.{places}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1000 else str(count)


# -- the facts ------------------------------------------------------------------------------


async def find_facts(
    model: str, pool: Pool, scheduler: Scheduler, *, probe_embeddings: bool = False
) -> ModelFacts:
    """What is known of ``model`` (an id, not an alias): the header of its file where the
    gateway can read it, else what one of its backends says. ``probe_embeddings`` asks a
    backend given by URL whether it embeds (one tiny request)."""
    entry = scheduler.entries.get(model)
    backends = pool.ready_models().get(model, [])
    props: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    if backends:
        props, meta = await _describe(backends[0])
    path = entry.spec.path if entry is not None and entry.spec.path else props.get("model_path")
    facts = None
    if path and os.path.isfile(path):
        try:
            facts = await _header_facts(path)
        except (OSError, ValueError, struct.error):  # GGUFHeaderError is a ValueError
            facts = None  # unreadable here: what the backend says will do
    if facts is None:
        facts = _server_facts(props, meta)
    caps = set(facts.capabilities)
    if entry is not None:
        if entry.spec.embeddings:
            caps.add("embedding")
        if entry.spec.mmproj:
            caps.add("vision")
    elif backends and probe_embeddings and await embeds(backends[0]):
        caps.add("embedding")
    if props:
        if (props.get("modalities") or {}).get("vision"):
            caps.add("vision")
        if (props.get("chat_template_caps") or {}).get("supports_tools"):
            caps.add("tools")
        facts.chat_template = props.get("chat_template") or facts.chat_template
    facts.capabilities = sorted(caps, key=_CAPABILITY_ORDER.index)
    return facts


async def embeds(backend: Backend) -> bool:
    """Whether the backend was started with ``--embeddings`` (``/props`` does not say): a
    one-token embedding answers 200 there, 501 elsewhere."""
    try:
        response = await backend.client.open("/v1/embeddings", b'{"input": "a"}')
        await response.read()
    except GatewayError:
        return False
    return True


async def _describe(backend: Backend) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backend's ``/props`` and its model's ``meta`` in ``/v1/models``."""
    try:
        props = await backend.client.get_json("/props", timeout=PROBE_TIMEOUT)
        models = await backend.client.get_json("/v1/models", timeout=PROBE_TIMEOUT)
    except GatewayError:
        return {}, {}
    data = models.get("data") or [{}]
    return props if isinstance(props, dict) else {}, data[0].get("meta") or {}


def _server_facts(props: dict[str, Any], meta: dict[str, Any]) -> ModelFacts:
    template = props.get("chat_template") or ""
    return ModelFacts(
        parameter_count=int(meta.get("n_params") or 0),
        quantization=str(meta.get("ftype") or props.get("model_ftype") or ""),
        context_length=int(meta.get("n_ctx_train") or 0),
        chat_template=template,
        size=int(meta.get("size") or 0),
        model_info={
            "general.parameter_count": int(meta.get("n_params") or 0),
            "general.context_length": int(meta.get("n_ctx_train") or 0),
            "general.embedding_length": int(meta.get("n_embd") or 0),
            "general.vocab_size": int(meta.get("n_vocab") or 0),
        },
        capabilities=["completion", *_template_caps(template)],
    )


async def _header_facts(path: str) -> ModelFacts:
    stat = os.stat(path)
    facts = await asyncio.to_thread(_read_header_once, path, stat.st_size, stat.st_mtime_ns)
    # A copy: callers add capabilities and the template to theirs.
    return dataclasses.replace(facts, capabilities=list(facts.capabilities))


#: One header read at a time: a listing asks for several models at once, often of one file,
#: and the second asker then finds the first one's result in the cache.
_READING = threading.Lock()


def _read_header_once(path: str, size: int, mtime_ns: int) -> ModelFacts:
    with _READING:
        return _read_header(path, size, mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_header(path: str, size: int, mtime_ns: int) -> ModelFacts:
    """The header's facts (cached by file and version: the size and mtime are the key)."""
    header = read_header(path, array_limit=_ARRAY_LIMIT)
    info = dict(header.metadata)
    template = info.pop("tokenizer.chat_template", None)
    template = template if isinstance(template, str) else ""
    arch = str(info.get("general.architecture") or "")
    if not isinstance(info.get("general.parameter_count"), int):
        info["general.parameter_count"] = header.parameters
    caps = ["embedding"] if f"{arch}.pooling_type" in info else ["completion"]  # they pool
    return ModelFacts(
        family=arch,
        parameter_count=int(info["general.parameter_count"]),
        quantization=_file_type(info.get("general.file_type")),
        context_length=int(info.get(f"{arch}.context_length") or 0),
        chat_template=template,
        size=size,
        modified=mtime_ns / 1e9,
        model_info=dict(sorted(info.items())),
        capabilities=caps + _template_caps(template),
    )


def _file_type(value: Any) -> str:
    """``general.file_type`` as Ollama's quantization level: ``Q4_K_M``, ``F16``…"""
    try:
        name = gguf.LlamaFileType(int(value)).name
    except (TypeError, ValueError):
        return ""
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _template_caps(template: str) -> list[str]:
    """Capabilities a chat template shows (Ollama reads its own templates the same way)."""
    caps = []
    if "tools" in template:
        caps.append("tools")
    if "enable_thinking" in template or "<think>" in template:
        caps.append("thinking")
    return caps


# -- the views ------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tag_entry(name: str, facts: ModelFacts, parent: str = "") -> dict[str, Any]:
    """One model of ``/api/tags``."""
    modified = datetime.fromtimestamp(facts.modified or time.time(), UTC)
    return {
        "name": name,
        "model": name,
        "modified_at": _iso(modified),
        "size": facts.size,
        "digest": facts.digest(name),
        "details": facts.details(parent),
    }


def ps_entry(
    model: str, facts: ModelFacts, entry: ModelEntry | None, backends: list[Backend]
) -> dict[str, Any] | None:
    """One loaded model of ``/api/ps``; ``None`` if nothing of it is loaded. A model the
    gateway runs shows its runners' memory and when the keep-alive unloads it; a backend
    given by URL shows its weights, never unloads, and its memory's place is not known."""
    now = datetime.now(UTC)
    if entry is not None:
        runners = [r for r in entry.runners if r.state is RunnerState.READY]
        if not runners:
            return None
        size = sum(r.need for r in runners)
        vram = sum(r.need for r in runners if r.device.id is not None)
        expires = now + _keep_alive_left(entry, [r.last_used for r in runners])
        n_ctx = max((r.backend.n_ctx for r in runners if r.backend is not None), default=0)
    elif backends:
        size, vram, expires = facts.size * len(backends), 0, now + _FOREVER
        n_ctx = max(b.n_ctx for b in backends)
    else:
        return None
    return {
        "name": model,
        "model": model,
        "size": size or facts.size,
        "digest": facts.digest(model),
        "details": facts.details(),
        "expires_at": _iso(expires),
        "size_vram": vram,
        "context_length": n_ctx,
    }


def _keep_alive_left(entry: ModelEntry, last_used: list[float]) -> timedelta:
    """Time until the scheduler's keep-alive unloads the model (its clock is monotonic)."""
    if math.isinf(entry.keep_alive):
        return _FOREVER
    idle = time.monotonic() - max([*last_used, entry.last_demand])
    return timedelta(seconds=max(0.0, max(entry.keep_alive, MIN_IDLE) - idle))


def show_answer(name: str, facts: ModelFacts, n_ctx: int, parent: str = "") -> dict[str, Any]:
    """``/api/show``'s answer. ``parameters`` says the context each request gets (the
    runner's ``-c`` over its slots), in Modelfile syntax."""
    modified = datetime.fromtimestamp(facts.modified or time.time(), UTC)
    parameters = f"num_ctx {n_ctx}" if n_ctx else ""
    return {
        "modelfile": f"# served by llama-gateway\nFROM {parent or name}\n{parameters}\n",
        "parameters": parameters,
        "template": facts.chat_template,
        "details": facts.details(parent),
        "model_info": facts.model_info,
        "capabilities": facts.capabilities,
        "modified_at": _iso(modified),
    }


# -- which model, and how much context ----------------------------------------------------


def resolve_model(pool: Pool, name: str) -> str:
    """The model id ``name`` means; Ollama's implied ``:latest`` tag is accepted."""
    for candidate in dict.fromkeys((name, name.removesuffix(":latest"))):
        try:
            return pool.resolve(candidate)
        except ModelNotFound:
            continue
    raise ModelNotFound(f"model '{name}' not found", param="model")


def context_per_request(model: str, pool: Pool, scheduler: Scheduler) -> int:
    """Tokens one request of ``model`` may use: the widest backend's slot context, or for a
    declared model not loaded yet, its ``ctx_size`` shared by its ``parallel`` slots."""
    widest = max((b.n_ctx for b in pool.serving(model)), default=0)
    entry = scheduler.entries.get(model)
    if widest or entry is None:
        return widest
    unified = any(a in ("-kvu", "--kv-unified") for a in entry.spec.extra_args)
    return entry.spec.ctx_size if unified else entry.spec.ctx_size // max(1, entry.spec.parallel)


# -- the model views ------------------------------------------------------------------------


@get("/tags")
async def tags(
    pool: NamedDependency[Pool], scheduler: NamedDependency[Scheduler]
) -> dict[str, Any]:
    """Every model a ready backend serves and every declared one, then each alias."""
    models = sorted(set(pool.ready_models()) | set(scheduler.entries))
    found = await asyncio.gather(*(find_facts(m, pool, scheduler) for m in models))
    facts = dict(zip(models, found, strict=True))
    listed = [tag_entry(model, facts[model]) for model in models]
    for alias, target in sorted(pool.aliases.items()):
        if target in facts and alias not in facts:
            listed.append(tag_entry(alias, facts[target], parent=target))
    return {"models": listed}


@get("/ps")
async def ps(pool: NamedDependency[Pool], scheduler: NamedDependency[Scheduler]) -> dict[str, Any]:
    """The loaded models: ready runners of declared models, and models of backends by URL."""
    ready = pool.ready_models()
    listed = []
    for model in sorted(set(ready) | set(scheduler.entries)):
        entry = scheduler.entries.get(model)
        if (entry is not None and not entry.ready()) or (entry is None and model not in ready):
            continue
        facts = await find_facts(model, pool, scheduler)
        shown = ps_entry(model, facts, entry, ready.get(model, []))
        if shown is not None:
            listed.append(shown)
    return {"models": listed}


@post("/show", status_code=200, operation_class=documented(None, Surface.OLLAMA))
async def show(
    request: Request, pool: NamedDependency[Pool], scheduler: NamedDependency[Scheduler]
) -> dict[str, Any]:
    name = require_model(read_body(await request.body()), legacy_name=True)
    model = resolve_model(pool, name)
    facts = await find_facts(model, pool, scheduler, probe_embeddings=True)
    parent = model if name not in (model, f"{model}:latest") else ""
    return show_answer(name, facts, context_per_request(model, pool, scheduler), parent)
