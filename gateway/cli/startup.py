"""A failed start told in one line: uvicorn's lifespan, minus the traceback it would log.

When the app's lifespan raises (a runner that dies while loading, a store that cannot be
reached), Litestar sends ``lifespan.startup.failed`` with the formatted traceback — often an
ExceptionGroup some sixty lines long — and uvicorn logs it. :class:`QuietLifespan` keeps the
exception instead, and ``serve`` prints :func:`failure_line` of it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from uvicorn.lifespan.on import LifespanOn

__all__ = ["QuietLifespan", "failure_line", "quiet_uvicorn_failure"]


class QuietLifespan(LifespanOn):
    #: What made the start fail, if it failed.
    failure: BaseException | None = None

    async def send(self, message: Any) -> None:
        if message["type"] == "lifespan.startup.failed":
            # Sent from inside the app's ``except`` block: the exception is the one handled.
            self.failure = sys.exc_info()[1]
            message = {**message, "message": ""}
        await super().send(message)


class _DropStartupFailed(logging.Filter):
    """uvicorn's "Application startup failed. Exiting.": ``serve`` says why instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Application startup failed")


def quiet_uvicorn_failure() -> None:
    logging.getLogger("uvicorn.error").addFilter(_DropStartupFailed())


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups and ``raise … from``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def failure_line(exc: BaseException | None) -> str:
    """One line: what failed, and the last word of the runner's log when it died."""
    if exc is None:
        return "the gateway did not start; run with --log-level debug to see why"
    exc = _leaf(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return f"the gateway did not start: {type(exc).__name__}"
    first = lines[0].rstrip(":")
    if len(lines) > 1:
        # A runner that died: its log's last line usually names the cause.
        return f"{first}: {lines[-1]}"
    return first
