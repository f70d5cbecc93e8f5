"""``GET /runners``: the declared models and the runners the scheduler keeps, for
``llama-gateway models`` and for people. Like ``/ready`` it needs no key: it shows states,
devices and addresses, never a request's content."""

from __future__ import annotations

from litestar import get

from gateway.runners.scheduler import Scheduler


@get("/runners")
async def runners(scheduler: Scheduler) -> dict:
    return {
        "models": scheduler.models(),
        "runners": scheduler.runners(),
        "restarts": scheduler.restarts,
    }


ROUTES = [runners]
