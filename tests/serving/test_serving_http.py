"""The HTTP edge of both servers: any body that is not JSON is a 415, any bad JSON a 400,
never a 5xx (issue 11 item 1: multipart without a boundary used to be a 500)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import MINIMAL, QUIET, SERVERS, tmp_layout

POSTS = ["/score", "/score_batch", "/events", "/outcome", "/echo"]

NOT_JSON = [
    "multipart/form-data",  # no boundary: the old 500
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/xml",
    "application/octet-stream",
]


@pytest.fixture(scope="module", params=list(SERVERS))
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    layout = tmp_layout(tmp_path_factory.mktemp("http"), QUIET)
    with pytest.MonkeyPatch.context() as mp, SERVERS[request.param](mp, layout) as c:
        yield c


@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("path", POSTS)
def test_a_body_that_is_not_json_gets_415(client, path: str, content_type: str) -> None:
    r = client.post(path, content=b'{"a": 1}', headers={"content-type": content_type})
    assert r.status_code == 415, r.text
    body = r.json()
    assert "Content-Type: application/json" in body["error"]
    assert body["detail"][0]["type"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_media_types_are_accepted(client, content_type: str) -> None:
    import json

    r = client.post("/score", content=json.dumps(MINIMAL), headers={"content-type": content_type})
    assert r.status_code == 200, r.text


def test_no_content_type_is_read_as_json(client) -> None:
    """curl -d without -H sends a form type; a client sending none at all is read as JSON."""
    import json

    raw = client.build_request("POST", "/score", content=json.dumps(MINIMAL).encode())
    assert "content-type" not in raw.headers
    assert client.send(raw).status_code == 200


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(POSTS),
    body=st.one_of(
        st.binary(max_size=64),
        JSON_VALUES.map(lambda v: __import__("json").dumps(v).encode()),
        st.fixed_dictionaries({}, optional={k: JSON_VALUES for k in MINIMAL}).map(
            lambda d: __import__("json").dumps(d).encode()
        ),
    ),
    content_type=st.sampled_from([*NOT_JSON, "application/json", None]),
)
def test_no_body_and_no_content_type_gives_a_server_error(client, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code in {200, 400, 404, 415}, (r.status_code, r.text)
    if r.status_code != 200:
        assert r.json()["error"] and isinstance(r.json()["detail"], list)
