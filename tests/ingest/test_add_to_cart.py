"""A real add-to-cart is its own event type, never a disguised CTA click."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ingest_factory import REPO

from core.layout import Layout
from core.settings import load_config
from features.config import SignalsConfig
from features.events import Event, EventType
from features.ingest.importers.suggest import guess_type
from features.signals import Ev, SessionState, update


@pytest.mark.parametrize("name", ["Product Added", "Added to Cart", "add_to_cart", "Add To Basket"])
def test_track_names_of_carts_are_guessed_as_add_to_cart(name: str) -> None:
    assert guess_type(name) == EventType.ADD_TO_CART


def test_cta_failures_are_still_guessed_as_failures() -> None:
    assert guess_type("Add To Cart Failed") == EventType.CTA_FAIL


def test_event_contract_accepts_add_to_cart() -> None:
    event = Event.model_validate(
        {
            "event_id": "e1",
            "user_id": "u1",
            "ts": datetime(2016, 2, 14, 10, tzinfo=UTC),
            "type": "add_to_cart",
            "step": "cart",
            "target": "item-81766",
            "value": 1.0,
        }
    )
    assert event.type == EventType.ADD_TO_CART


def test_add_to_cart_is_an_interaction_but_no_click_or_failure() -> None:
    cfg = load_config(SignalsConfig, layout=Layout.under(REPO))
    state = SessionState(session_id="s")
    update(state, Ev(0.0, "view", "cart"), cfg)
    update(state, Ev(20.0, "add_to_cart", "cart", "item-1", 1.0), cfg)
    assert state.interactions == 2 and state.pauses == 1  # the view, then it ended a 20 s pause
    assert state.clicks == 0 and state.cta_fails == 0
