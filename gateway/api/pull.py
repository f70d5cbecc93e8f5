"""Ollama's ``POST /api/pull``: download a model into the gateway's models folder, with the
same code as ``llama-gateway pull`` (:func:`gateway.models.pull`).

``{"model": SOURCE, "stream": true}``, SOURCE being an ``https://`` URL, ``hf:ORG/REPO:QUANT``
or ``hf:ORG/REPO/FILE.gguf``; the answer is Ollama's progress NDJSON (``{"status": "pulling
manifest"}``, ``{"status": "downloading …", "digest", "total", "completed"}``, …,
``{"status": "success"}``), and a failure mid-way is a last ``{"error": "…"}`` line. With
``"stream": false`` one object: the last status, or the error with its status code.

Pulling writes to the gateway's disk, so it needs the admin token (``Authorization: Bearer``);
a gateway started without one refuses every pull with 403. Errors are Ollama's shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Response, Router, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody
from litestar.response import Stream

from gateway.auth.guards import bearer_is
from gateway.config import Settings
from gateway.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from gateway.models import PullError, PullEvent, models_folder, pull

__all__ = ["PULL_ROUTER"]

log = logging.getLogger(__name__)


def pull_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state["settings"]
    if not settings.admin_token:
        raise PermissionDenied(
            "Pulling models through the API is off: start the gateway with an admin token "
            "(--admin-token) and send it as the Bearer token.",
            code="pull_disabled",
        )
    if not bearer_is(connection, settings.admin_token):
        raise AuthenticationFailed("Pulling models needs the admin token.")


def _events(settings: Settings, source: str) -> AsyncIterator[PullEvent]:
    return pull(
        source,
        models_folder(settings),
        hf_endpoint=settings.hf_endpoint,
        hf_token=settings.hf_token,
    )


async def _ndjson(settings: Settings, source: str) -> AsyncIterator[bytes]:
    try:
        async for event in _events(settings, source):
            yield msgspec.json.encode(event.to_dict()) + b"\n"
    except PullError as exc:
        log.warning("pull of %s failed: %s", source, exc.message)
        yield msgspec.json.encode({"error": exc.message}) + b"\n"
    else:
        log.info("pulled %s", source)


@post("/api/pull", status_code=200)
async def pull_model(
    data: JSONBody[dict[str, Any]], settings: NamedDependency[Settings]
) -> Response | Stream:
    source = data.get("model") or data.get("name")
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest("Expected {'model': SOURCE}: a URL, hf:ORG/REPO:QUANT or hf:…/F.gguf")
    if data.get("stream", True) is not False:
        return Stream(_ndjson(settings, source), media_type="application/x-ndjson")
    last: PullEvent | None = None
    try:
        async for event in _events(settings, source):
            last = event
    except PullError as exc:
        return Response({"error": exc.message}, status_code=exc.status)
    return Response(last.to_dict() if last else {"status": "success"})


PULL_ROUTER = Router(
    "/", route_handlers=[pull_model], guards=[pull_guard], opt={"surface": "ollama"}
)
