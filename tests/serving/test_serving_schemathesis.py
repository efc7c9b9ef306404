"""Schemathesis over every operation of the OpenAPI document, against real servers: no
5xx, and every answer (status, content type, body) conforms to the document.

Bounded: `SCHEMATHESIS_EXAMPLES` examples per operation (default 40), derandomized, so a
run takes a known time; raise it locally for a deeper search.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving_helpers import QUIET, real_server, tmp_layout

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))


def conformance_failures(base_url: str, examples: int) -> list[str]:
    """Run schemathesis' checks over every operation; returns the failures, one line each."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{base_url}/docs.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def run(case) -> None:
            case.call_and_validate(base_url=base_url, checks=checks)

        try:
            run()
        except Exception as exc:  # every operation is tried; all failures are reported
            failures.append(f"{op.label}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    assert operations == 9, operations
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bare", "bentoml"])
def test_schemathesis_finds_no_5xx_and_no_nonconformance(tmp_path: Path, kind: str) -> None:
    layout = tmp_layout(tmp_path / "home", QUIET)
    with real_server(kind, layout, tmp_path / "server.log") as (port, _):
        failures = conformance_failures(f"http://127.0.0.1:{port}", EXAMPLES)
    assert failures == [], "\n".join(failures)
