"""ASGI middleware of the API: security headers, a request id, and a request size limit.

Written against raw ASGI (not ``BaseHTTPMiddleware``) so that a request pays one function call
per layer, and a body larger than the limit is refused while it is read, before any route sees
it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

Scope = dict[str, Any]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
# The interactive docs (off unless enabled) load their script and style from the page itself.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The public pages (a notice's verification, the exposure check) post their form to themselves;
# nothing else is allowed (no script, no style, no frame).
PAGE_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
PAGE_PATHS = frozenset({"/verify", "/exposure-check"})
DOCS_CSP = (b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
            b"https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'")
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class SecurityHeaders:
    """Adds the security headers and an ``x-request-id`` to every response.

    The request id is generated here (a client's own id is not trusted) and stored in the
    scope, so that the audit events of the request carry it.
    """

    def __init__(self, app: Any, *, tls: bool, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.tls = tls
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope["path"]
        csp = (DOCS_CSP if path in self.docs_paths else PAGE_CSP if path in PAGE_PATHS
               else API_CSP)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"server"]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"content-security-policy", csp))
                headers.append((b"x-request-id", request_id.encode()))
                if self.tls:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, whether announced or streamed."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = self.max_bytes + 1
                if announced > self.max_bytes:
                    await _too_large(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Any) -> None:
    body = json.dumps({"error": "request_too_large"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
