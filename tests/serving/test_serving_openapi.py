"""The OpenAPI document is the dispatcher's contract (issue 12 item 4): complete, truthful,
with examples that work as they are (Swagger's "Try it out" defaults)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import QUIET, SERVERS, real_server, tmp_layout

OPERATIONS = {
    ("post", "/score"),
    ("post", "/score_batch"),
    ("post", "/events"),
    ("post", "/outcome"),
    ("post", "/reload"),
    ("post", "/echo"),
    ("get", "/model"),
    ("get", "/readyz"),
    ("get", "/livez"),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    layout = tmp_layout(tmp_path_factory.mktemp("openapi"), QUIET)
    with pytest.MonkeyPatch.context() as mp, SERVERS[request.param](mp, layout) as client:
        yield client, client.get("/docs.json").json()


def _schema(doc: dict, name: str) -> dict:
    return doc["components"]["schemas"][name]


def _nullable(prop: dict) -> bool:
    return any(option.get("type") == "null" for option in prop.get("anyOf", []))


def test_every_operation_is_described(served) -> None:
    from importlib.metadata import version

    _, doc = served
    ops = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert ops == OPERATIONS
    assert doc["info"]["version"] == version("micro-moment-intent")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary") and op.get("description"), (method, path)
            assert "200" in op["responses"], (method, path)


def test_bearer_auth_is_declared_and_health_is_public(served) -> None:
    _, doc = served
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/livez"]["get"]["security"] == []
    assert doc["paths"]["/readyz"]["get"]["security"] == []


def test_the_schemas_say_what_the_server_does(served) -> None:
    _, doc = served
    answer = _schema(doc, "ScoreResponse")["properties"]
    for name in ("cap_reason", "model_version", "arm", "moment", "fallback_reason"):
        assert _nullable(answer[name]), name
    score = _schema(doc, "ScoreRequest")["properties"]
    assert not _nullable(score["signals"])
    tz = next(o for o in score["tz"]["anyOf"] if o.get("type") == "string")
    assert tz["minLength"] == 1  # tz "" is refused
    device = next(o for o in score["device"]["anyOf"] if o.get("type") == "string")
    assert device["maxLength"] == 64  # limits.max_label_length
    assert score["signals"]["additionalProperties"]["type"] == "number"
    events = _schema(doc, "EventsRequest")["properties"]["events"]
    assert events["minItems"] == 1 and events["maxItems"] == 500
    assert {"required": ["user_id"]} in _schema(doc, "EventIn")["anyOf"]  # an actor
    error = _schema(doc, "ErrorBody")["properties"]
    assert error["detail"]["type"] == "array"
    op = doc["paths"]["/score"]["post"]
    assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert {"400", "401", "413", "415", "503"} <= set(op["responses"])


def test_swagger_defaults_work(served) -> None:
    """Each request body's example, sent as is, gets its documented success (or, for
    /outcome, the documented 404 of an unknown decision), never a 400."""
    client, doc = served
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if method == "get":
                r = client.get(path)
            else:
                r = client.post(path, json=body.get("example")) if body else client.post(path)
            expected = 404 if path == "/outcome" else 200
            assert r.status_code == expected, (path, r.text)
    assert "swagger-ui" in client.get("/docs").text


@pytest.mark.slow
def test_a_client_generated_from_the_spec_calls_score_and_events(tmp_path: Path) -> None:
    """openapi-python-generator turns /docs.json into a client package; it talks to a real
    bare server."""
    import httpx

    layout = tmp_layout(tmp_path / "home", QUIET)
    with real_server("bare", layout, tmp_path / "server.log") as (port, _):
        base = f"http://127.0.0.1:{port}"
        spec = tmp_path / "openapi.json"
        spec.write_text(httpx.get(f"{base}/docs.json", timeout=30).text)
        generator = Path(sys.executable).parent / "openapi-python-generator"
        subprocess.run(
            [str(generator), str(spec), str(tmp_path / "intent_client")],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        sys.path.insert(0, str(tmp_path))
        try:
            from intent_client.api_config import APIConfig
            from intent_client.models import EventIn, EventsRequest, ScoreRequest
            from intent_client.services import default_service as api
        finally:
            sys.path.pop(0)
        config = APIConfig(base_path=base)
        decision = api.score_score_post(
            config,
            data=ScoreRequest(
                user_id="u-gen", session_id="s-gen", step="welcome", signals={"pause_s": 12}
            ),
        )
        assert decision.decision_id and decision.source.value == "rules"
        result = api.events_events_post(
            config,
            data=EventsRequest(
                events=[
                    EventIn(
                        event_id="gen-1",
                        user_id="u-gen",
                        session_id="s-gen",
                        ts="2026-01-05T12:00:00Z",
                        type="view",
                        step="welcome",
                    )
                ]
            ),
        )
        assert result.accepted == 1 and result.rejected == []
    assert json.loads(spec.read_text())["info"]["title"]
