"""Who may use the console and the admin actions: the admin token, as a bearer header (scripts,
the CLI) or as the console's session cookie (a browser, whose ``EventSource`` cannot send
headers).

The cookie is set by ``POST /ui/login`` once the token is given; it holds an expiry and an
HMAC of it keyed by the admin token — never the token itself — so any replica that knows the
token accepts it, and changing the token ends every session. It is ``HttpOnly`` (scripts on
the page cannot read it) and ``SameSite=Strict`` (no other site's page sends it); a change
made with it must also carry :data:`CONSOLE_HEADER`, which a cross-site form cannot add.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.config import Settings
from gateway.errors import AuthenticationFailed

__all__ = [
    "CONSOLE_HEADER",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "admin_or_session",
    "sign_session",
    "token_matches",
]

SESSION_COOKIE = "lg_console"
#: A session lasts a working day; then the console asks for the token again.
SESSION_SECONDS = 12 * 3600
CONSOLE_HEADER = "x-console"

_OFF = "Admin access is off: start the gateway with --admin-token to use it."


def _mac(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"console:{expires}".encode(), hashlib.sha256).hexdigest()


def sign_session(token: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    return f"{expires}.{_mac(token, expires)}"


def session_valid(token: str, value: str, now: float | None = None) -> bool:
    expires_text, _, mac = value.partition(".")
    if not expires_text.isdigit():
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, expires).encode())


def token_matches(token: str, given: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def admin_or_session(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard: the admin token as ``Authorization: Bearer``, or a valid session cookie."""
    settings: Settings = connection.app.state["settings"]
    token = settings.admin_token
    if not token:
        raise AuthenticationFailed(_OFF)
    scheme, _sep, given = connection.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token_matches(token, given):
        return
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie and session_valid(token, cookie):
        reads = not isinstance(connection, Request) or connection.method in ("GET", "HEAD")
        if reads or connection.headers.get(CONSOLE_HEADER):
            return
        raise AuthenticationFailed(f"A change from the console must carry {CONSOLE_HEADER}.")
    raise AuthenticationFailed("Invalid or missing admin token.")
