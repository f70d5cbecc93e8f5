"""The admin's hands on the pool: load, unload and restart the runners of a model the gateway
supervises; drain a backend (no new requests, those in flight finish) and resume it.

``POST /admin/runners/{load|unload|restart}`` with ``{"model": …}`` and
``POST /admin/backends/{drain|resume}`` with ``{"backend": "host:port"}``. Guarded like the
console (the admin token, or the console's session cookie); mounted only with an admin token.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Router, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from gateway.api.session import admin_or_session
from gateway.errors import GatewayError, InvalidRequest
from gateway.pool.pool import Pool
from gateway.runners.scheduler import Scheduler

log = logging.getLogger(__name__)

RUNNER_ACTIONS = ("load", "unload", "restart")
BACKEND_ACTIONS = ("drain", "resume")


class BackendNotFound(GatewayError):
    """No backend of the pool has this name. (404; belongs in ``gateway/errors.py``.)"""

    status = 404
    type = "invalid_request_error"
    code = "backend_not_found"


class _ModelAction(msgspec.Struct, forbid_unknown_fields=True):
    model: str


class _BackendAction(msgspec.Struct, forbid_unknown_fields=True):
    backend: str


def _field(data: dict[str, Any], kind: type[msgspec.Struct], name: str) -> Any:
    try:
        return getattr(msgspec.convert(data, kind), name)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Expected {{'{name}': string}}: {exc}.", param=name) from None


@post("/runners/{action:str}", status_code=200)
async def runner_action(
    action: FromPath[str], data: JSONBody[dict[str, Any]], scheduler: NamedDependency[Scheduler]
) -> dict[str, Any]:
    model = _field(data, _ModelAction, "model")
    if action == "load":
        scheduler.load(model)
        runners = None
    elif action == "unload":
        runners = scheduler.unload(model)
    elif action == "restart":
        runners = scheduler.restart(model)
    else:
        raise InvalidRequest(
            f"Unknown runner action '{action}'; one of {', '.join(RUNNER_ACTIONS)}.",
            param="action",
        )
    log.info("admin: %s %s", action, model)
    return {"model": model, "action": action, "runners": runners}


@post("/backends/{action:str}", status_code=200)
async def backend_action(
    action: FromPath[str], data: JSONBody[dict[str, Any]], pool: NamedDependency[Pool]
) -> dict[str, Any]:
    name = _field(data, _BackendAction, "backend")
    backend = pool.by_name(name)
    if backend is None:
        raise BackendNotFound(f"No backend named '{name}' in the pool.", param="backend")
    if action == "drain":
        pool.drain(backend)
    elif action == "resume":
        pool.resume(backend)
    else:
        raise InvalidRequest(
            f"Unknown backend action '{action}'; one of {', '.join(BACKEND_ACTIONS)}.",
            param="action",
        )
    log.info("admin: %s backend %s", action, backend.name)
    return {"backend": backend.name, "action": action, "draining": backend.draining}


ROUTES = [
    Router("/admin", route_handlers=[runner_action, backend_action], guards=[admin_or_session])
]
