"""`intent traffic`'s pure parts: shifts and the requests built from decision-point rows.
Sending them to a real server is tests/e2e/test_rollout_e2e.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from core.vocabulary import Outcome
from loop.traffic import Shift, TrafficError, build_requests, canary_arm, parse_shift
from serving.schemas import ScoreRequest


def test_shifts_parse_add_subtract_and_scale() -> None:
    assert parse_shift("pause_s=+30") == Shift("pause_s", "+", 30.0)
    assert parse_shift(" pause_s = -5.5 ") == Shift("pause_s", "+", -5.5)
    assert parse_shift("scroll_depth=*0.5") == Shift("scroll_depth", "*", 0.5)


@pytest.mark.parametrize("text", ["pause_s", "pause_s=30", "pause_s=+x", "=+3", "pause_s=/2"])
def test_a_malformed_shift_says_how_to_write_one(text: str) -> None:
    with pytest.raises(TrafficError, match="FEATURE=\\+X"):
        parse_shift(text)


def test_only_request_signals_can_be_shifted() -> None:
    with pytest.raises(TrafficError, match="user_days_since_first_seen is not a request signal"):
        parse_shift("user_days_since_first_seen=+3")


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "session_id": ["s1", "s2", "s3"],
            "step": ["welcome", "profile", "funding"],
            "moment": ["pause", "shallow_scroll", None],
            "episode": ["pause@welcome#1", "shallow_scroll@profile#1", "e3"],
            "device": ["mobile", None, "desktop"],
            "channel": [None, "ads", None],
            "label": [1, 0, None],
            "pause_s": [14.0, math.nan, 3.0],
            "scroll_depth": [90.0, 20.0, 50.0],
            "user_steps_completed_7d": [2.0, 1.0, 0.0],  # stored, not a request signal
        }
    )


def test_requests_carry_the_rows_signals_shifted_and_clipped_and_their_outcome() -> None:
    built = build_requests(frame(), [Shift("pause_s", "+", 60.0), Shift("scroll_depth", "*", 2)])
    bodies, outcomes = zip(*built, strict=True)
    assert outcomes == (Outcome.ABANDONED, Outcome.STEP_COMPLETED, None)
    first, second, third = bodies
    assert first["signals"] == {"pause_s": 74.0, "scroll_depth": 100.0}  # 180 % clipped
    assert second["signals"] == {"scroll_depth": 40.0}  # a missing signal stays missing
    assert third["signals"]["pause_s"] == 63.0
    assert first["device"] == "mobile" and "channel" not in first and "moment" not in third
    for body in bodies:  # the API's own model accepts each
        ScoreRequest.model_validate(body)


def test_a_negative_shift_stops_at_the_signals_lower_bound() -> None:
    (body, _), *_ = build_requests(frame(), [parse_shift("pause_s=-100")])
    assert body["signals"]["pause_s"] == 0.0


def test_the_canary_arm_is_read_from_the_decision() -> None:
    assert canary_arm({"arm": "exp=a,canary=challenger", "holdout": False}) == "challenger"
    assert canary_arm({"arm": "canary=champion", "holdout": False}) == "champion"
    assert canary_arm({"arm": "holdout", "holdout": True}) == "holdout"
    assert canary_arm({"arm": None, "holdout": False}) == "none"


def test_a_server_that_is_not_there_is_one_clear_error() -> None:
    from bench.serving import free_port
    from loop.traffic import send

    url = f"http://127.0.0.1:{free_port()}"
    body, outcome = build_requests(frame())[0]
    with pytest.raises(TrafficError, match="is the server running"):
        send(url, [(body, outcome)], token=None, clients=1, timeout_s=5.0)
