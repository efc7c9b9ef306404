"""The API's OpenAPI document: what FastAPI derives, plus what only we know.

FastAPI documents the response models; the routes read their bodies raw (one-pass
`model_validate_json`), so the request schemas, their examples, the limits that come from
config (`limits.*`: batch sizes, id lengths) and the bearer scheme are added here. The
document is the dispatcher's contract: schemathesis checks the server against it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
PUBLIC_GET = ("/livez", "/readyz")


def request_schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """Validation-mode JSON schemas of the request models, refs under components."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return top.get("$defs", {})


def apply_limits(schemas: dict[str, Any], state: Any) -> None:
    """Config limits the server enforces, stated in the schemas (so clients can know)."""
    if state is None:
        return
    rules = state.rules
    events = schemas.get("EventsRequest", {}).get("properties", {}).get("events")
    if events is not None:
        events["maxItems"] = rules.max_events
    batch = schemas.get("ScoreBatchRequest", {}).get("properties", {}).get("requests")
    if batch is not None:
        batch["maxItems"] = rules.max_batch
    for name, fields in (
        ("ScoreRequest", ("user_id", "session_id", "episode")),
        ("EventIn", ("event_id", "user_id", "anonymous_id", "session_id")),
        ("OutcomeRequest", ("decision_id",)),
    ):
        props = schemas.get(name, {}).get("properties", {})
        for f in fields:
            _set_max_length(props.get(f), rules.max_id_length)
    for name in ("ScoreRequest", "EventIn"):
        props = schemas.get(name, {}).get("properties", {})
        for f in ("device", "channel"):
            _set_max_length(props.get(f), rules.max_label_length)


def _set_max_length(prop: dict[str, Any] | None, limit: int) -> None:
    if prop is None:
        return
    for option in prop.get("anyOf", [prop]):
        if option.get("type") == "string":
            option["maxLength"] = limit


def install_openapi(
    api: FastAPI, models: Sequence[type[BaseModel]], state: Callable[[], Any]
) -> None:
    """Replace `api.openapi` with the completed document (built once, after start-up)."""

    def openapi() -> dict[str, Any]:
        current = state()
        if api.openapi_schema is not None:
            return api.openapi_schema
        doc = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name, schema in request_schemas(models).items():
            schemas.setdefault(name, schema)
        apply_limits(schemas, current)
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "required when the server's token variable "
                "(serving.yaml auth.token_env) is set",
            }
        }
        doc["security"] = [{"bearer": []}]
        for path in PUBLIC_GET:
            op = doc.get("paths", {}).get(path, {}).get("get")
            if op is not None:
                op["security"] = []
        if current is not None:  # limits known: keep it
            api.openapi_schema = doc
        return doc

    api.openapi = openapi  # type: ignore[method-assign]
