"""Entities: who or what a feature row is about. Every join key is a STRING."""

from __future__ import annotations

from feast import Entity, ValueType


def declare() -> tuple[Entity, Entity, Entity]:
    """The user, session and funnel-step entities (new objects per call: `apply` stamps them)."""
    user = Entity(
        name="user",
        join_keys=["user_id"],
        value_type=ValueType.STRING,
        description="A person across sessions (the event's user_id, pseudonymous).",
        tags={"key_from": "event.user_id", "personal_data": "pseudonymous"},
    )
    session = Entity(
        name="session",
        join_keys=["session_id"],
        value_type=ValueType.STRING,
        description="One visit: the client's session_id, else split at configs/events.yaml's gap.",
        tags={"key_from": "event.session_id", "config": "configs/events.yaml"},
    )
    step = Entity(
        name="step",
        join_keys=["step"],
        value_type=ValueType.STRING,
        description="A funnel step named in configs/funnel.yaml.",
        tags={"key_from": "event.step", "config": "configs/funnel.yaml"},
    )
    return user, session, step
