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
- Host allow-list: a request whose ``Host`` is not an allowed name (loopback names by
  default) is refused before anything else. Otherwise a page on another site could point
  a DNS name of its own at the dashboard's address (DNS rebinding): the browser would
  then treat the dashboard as that site, send it requests, read its pages and its CSRF
  token, and act; the Origin check sees matching names and cannot tell.
- Every response carries a Content-Security-Policy that allows only this app's own
  scripts and styles (no inline script), so a payload that slipped past escaping could
  still not run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import InvalidArgument, InvalidType

__all__ = [
    "CSRF_COOKIE",
    "LOOPBACK_HOSTS",
    "AllowedHosts",
    "Auth",
    "SecurityHeaders",
    "check_host_pattern",
    "csrf_nonce",
    "csrf_ok",
    "csrf_token",
    "host_allowed",
    "same_origin",
]

CSRF_COOKIE = "delayq_csrf"

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The ``Host`` names the dashboard answers by default."""

_HOST_PATTERN = re.compile(r"^(\*|(\*\.)?[a-z0-9_.-]+|\[?[0-9a-f:.]+\]?)$")

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


def check_host_pattern(pattern: object) -> str:
    """Check one entry of an allowed-hosts list: a name, an IP address, ``*.domain`` or ``*``.

    Raises:
        InvalidType: Not a str.
        InvalidArgument: Not a host name (a port, a scheme or a path are not part of it).
    """
    if not isinstance(pattern, str):
        raise InvalidType(f"allowed_hosts must hold host names (str), got {pattern!r:.80}")
    if not _HOST_PATTERN.match(pattern.lower()) or len(pattern) > 253:
        raise InvalidArgument(f"allowed_hosts: {pattern!r:.80} is not a host name (no scheme, port or path), '*.domain' or '*'")
    return pattern


def _host_of(header: str) -> str:
    """The name in a Host header, without the port, lower case ("[::1]:8000" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") > 1:  # a bare IPv6 address
        return header
    return header.partition(":")[0].rstrip(".")


def host_allowed(header: str, patterns: Sequence[str]) -> bool:
    """Whether a request's Host header names one of the allowed hosts."""
    host = _host_of(header)
    if not host:
        return False
    for given in patterns:
        pattern = given.lower().strip("[]")
        if pattern in ("*", host) or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


class AllowedHosts:
    """ASGI middleware: a request whose Host is not allowed gets 400 and goes no further."""

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = tuple(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = ""
            for name, value in scope["headers"]:
                if name == b"host":
                    header = value.decode("latin-1")
                    break
            if not host_allowed(header, self.hosts):
                shown = header[:100].encode("ascii", "backslashreplace").decode()
                text = (
                    f"Host {shown!r} is not one this dashboard answers to. Its operator can add it to "
                    "allowed_hosts ($DELAYQ_WEB_ALLOWED_HOSTS, delayq web --allow-host).\n"
                )
                await PlainTextResponse(text, 400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
