"""The ASGI gateway in front of the BentoML routes: size limits, bearer token, GET endpoints.

- Request size: a body over `limits.max_body_bytes` gets 413 before any parsing (declared
  length checked up front; an undeclared, chunked body is counted while buffered).
- Auth: when the token variable (`auth.token_env`) is set, every path but the public ones
  (health, docs) needs `Authorization: Bearer <token>`; compared in constant time.
- `GET /readyz` answers with JSON saying where the model comes from (registry / bundle /
  rules) - BentoML's own /readyz is plain text - and `GET /model` describes the model.

The service instance is found through `bentoml.get_current_service()`; before start-up has
finished there is none and every request passes straight through.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

Scope = dict[str, Any]


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
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


class GatewayMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        import bentoml

        service = bentoml.get_current_service()
        gateway = getattr(service, "gateway", None)
        if gateway is None:
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        method: str = scope["method"]

        if not gateway.is_public(path) and not gateway.authorized(scope):
            return await _send_json(
                send, 401, {"error": "missing or invalid bearer token (Authorization header)"}
            )
        if method == "GET" and path == "/readyz":
            status, body = await service.readiness_async()
            return await _send_json(send, status, body)
        if method == "GET" and path == "/model":
            return await _send_json(send, 200, service.model_info().model_dump(mode="json"))

        if method in ("POST", "PUT", "PATCH"):
            limit = gateway.max_body_bytes
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                return await _send_json(
                    send, 413, {"error": f"request body over the {limit}-byte limit"}
                )
            if declared is None:  # chunked: buffer and count
                body = bytearray()
                while True:
                    message = await receive()
                    body.extend(message.get("body", b""))
                    if len(body) > limit:
                        return await _send_json(
                            send, 413, {"error": f"request body over the {limit}-byte limit"}
                        )
                    if not message.get("more_body", False):
                        break
                receive = _replay(bytes(body))
        return await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
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


class Gateway:
    """The gateway's settings, held by the service instance."""

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
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self.token
                )
        return False
