"""Why a pull failed, with the HTTP status ``POST /api/pull`` answers it with: 400 a source
that means nothing, 401 the hub wants a token, 404 no such repository or file, 502 the hub
failed or sent bytes that do not match its sha256, 507 the disk is full."""

from __future__ import annotations

__all__ = ["PullError"]


class PullError(Exception):
    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
