"""The ASGI gateway in front of the API routes: content type, size limits, bearer token.

Runs before any route or body parsing, in both servers (BentoML and bare uvicorn):

- Content type: a POST / PUT / PATCH body must be JSON (`application/json`, `*+json`, or no
  Content-Type at all); anything else - form data, multipart with or without a boundary,
  text - gets 415 before the body is read (it used to be a 500 deep in a form parser).
- Request size: a body over `limits.max_body_bytes` gets 413 (declared length checked up
  front; an undeclared, chunked body is counted while buffered).
- Auth: when the token variable (`auth.token_env`) is set, every path but the public ones
  (health, docs) needs `Authorization: Bearer <token>`; compared in constant time.

Every refusal has the API's error shape (`serving.schemas.ErrorBody`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_body(error: str, detail: list[Any]) -> dict[str, Any]:
    """The API's error shape: one line, and where (pydantic-style `loc` / `msg` / `type`)."""
    return {"error": error, "detail": detail}


async def send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _refusal(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, error_body(message, [{"loc": ["body"], "msg": message, "type": kind}])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def is_json(content_type: bytes | None) -> bool:
    """No Content-Type (curl without -H, many clients) or a JSON media type."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in (b"", b"application/json") or media.endswith(b"+json")


class Gateway:
    """The gateway's settings (held by the serving state)."""

    def __init__(self, token: str | None, public_paths: list[str], max_body_bytes: int) -> None:
        self.token = token.encode() if token else None
        self.public = tuple(public_paths)
        self.max_body_bytes = max_body_bytes

    def is_public(self, path: str) -> bool:
        if self.token is None:
            return True
        return any(path == p or (p != "/" and path.startswith(p + "/")) for p in self.public)

    def authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        value = _header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)


class GatewayMiddleware:
    """Pure ASGI middleware: `gateway()` gives the settings (None before start-up: pass)."""

    def __init__(self, app: Any, gateway: Callable[[], Gateway | None]) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        gateway = self.gateway()
        if gateway is None:
            return await self.app(scope, receive, send)
        if not gateway.is_public(scope["path"]) and not gateway.authorized(scope):
            return await send_json(
                send,
                *_refusal(401, "unauthorized", "missing or invalid bearer token (Authorization)"),
            )
        if scope["method"] in _BODY_METHODS:
            if not is_json(_header(scope, b"content-type")):
                return await send_json(
                    send,
                    *_refusal(
                        415,
                        "unsupported_media_type",
                        "the body must be JSON: send Content-Type: application/json",
                    ),
                )
            limit = gateway.max_body_bytes
            declared = _content_length(scope)
            too_large = _refusal(413, "too_large", f"request body over the {limit}-byte limit")
            if declared is not None and declared > limit:
                return await send_json(send, *too_large)
            if declared is None:  # chunked: buffer and count
                body = bytearray()
                while True:
                    message = await receive()
                    body.extend(message.get("body", b""))
                    if len(body) > limit:
                        return await send_json(send, *too_large)
                    if not message.get("more_body", False):
                        break
                receive = _replay(bytes(body))
        return await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
