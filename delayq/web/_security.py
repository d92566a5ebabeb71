"""Who may look and who may act: HTTP basic authentication, CSRF tokens, and security headers.

- Credentials come from the environment (``DELAYQ_WEB_USERNAME`` and
  ``DELAYQ_WEB_PASSWORD``) or from ``create_app``. When they are set, every action
  needs them, and so does every page unless ``public_read`` (then anyone may look
  and only the signed-in may act).
- CSRF: a GET gives the browser a random nonce in an HttpOnly, SameSite=Strict cookie;
  every form carries HMAC(secret, nonce); an action is refused unless the form's token
  matches the cookie's nonce and, when the browser sends ``Origin``, the origin is the
  page's own. Basic credentials are sent by the browser with any request to the host,
  so without this another site could make a signed-in operator's browser purge a queue.
- Every response carries a Content-Security-Policy that allows only this app's own
  scripts and styles (no inline script), so a payload that slipped past escaping could
  still not run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_COOKIE", "Auth", "SecurityHeaders", "csrf_nonce", "csrf_ok", "csrf_token", "same_origin"]

CSRF_COOKIE = "delayq_csrf"

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Auth:
    """HTTP basic credentials; both None = no authentication."""

    username: str | None = None
    password: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether credentials are set."""
        return bool(self.username) and bool(self.password)

    def allows(self, request: Request) -> bool:
        """Whether the request carries the credentials (always, when none are set)."""
        if not self.enabled:
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        assert self.username is not None and self.password is not None
        # both compared, always: the time taken says nothing about which one was wrong
        ok_user = hmac.compare_digest(user.encode(), self.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(colon) and ok_user and ok_password


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The browser's CSRF nonce, and whether it is new (then the response must set the cookie)."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(nonce) <= 100 and nonce.isascii():
        return nonce, False
    return secrets.token_urlsafe(32), True


def csrf_token(secret: bytes, nonce: str) -> str:
    """The token forms carry for a nonce: HMAC-SHA256(secret, nonce), hex."""
    return hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, else Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source != "null"
    return urlsplit(source).netloc == request.headers.get("host", "")


def csrf_ok(request: Request, secret: bytes, token: str) -> bool:
    """Whether an action's form token matches the browser's cookie, from the app's own pages."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if not nonce or not token or not nonce.isascii():
        return False
    return hmac.compare_digest(csrf_token(secret, nonce), token) and same_origin(request)


class SecurityHeaders:
    """ASGI middleware: adds :data:`HEADERS` to every HTTP response that does not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
