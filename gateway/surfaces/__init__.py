"""The APIs clients speak, one module each: OpenAI (``openai``), Anthropic Messages
(``anthropic``), llama.cpp's native routes and rerank (``native``), Ollama's (``ollama``).

A surface reads its requests into the gateway's one request value (:mod:`gateway.requests`)
and renders refusals in its own shape (:mod:`gateway.surfaces.errors`); the request path below
never knows which surface a request came from. A route says its surface with
``opt={"surface": Surface.…}``, on the route or on its router.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Surface", "surface_of"]


class Surface(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"


def surface_of(path: str, opt: dict | None = None) -> Surface:
    """The surface a request speaks: its route's ``opt["surface"]``, or — for a request that
    matched no route (404, 405) — the one its path belongs to."""
    if opt and "surface" in opt:
        return Surface(opt["surface"])
    if path.startswith("/api/") or path == "/api":
        return Surface.OLLAMA
    if path.startswith("/v1/messages"):
        return Surface.ANTHROPIC
    return Surface.OPENAI
