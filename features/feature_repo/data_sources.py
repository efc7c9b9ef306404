"""Data sources: the offline tables `intent features build` writes, the push source the
server writes live session rows through, and the request data of a decision."""

from __future__ import annotations

from dataclasses import dataclass

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Float64

from features.store.definitions import (
    REQUEST_SOURCE,
    REQUEST_TS,
    SESSION_PUSH,
    SESSION_STATE,
    STEP_STATS,
    TIMESTAMP_FIELD,
    USER_STATS,
    RepoValues,
    pinned,
)


@dataclass(frozen=True)
class Sources:
    """The repo's data sources, by name."""

    user_stats_source: FileSource
    step_stats_source: FileSource
    session_state_source: FileSource
    session_state_push: PushSource
    decision_request: RequestSource


def declare(values: RepoValues) -> Sources:
    """Sources over the layout's tables (`values.tables`), stamps pinned (`pinned`)."""

    def table(view: str, description: str) -> FileSource:
        return pinned(
            FileSource(
                name=f"{view}_source",
                path=values.tables[view],
                timestamp_field=TIMESTAMP_FIELD,
                created_timestamp_column=values.created_columns[view],
                description=description,
                tags={"written_by": "intent features build"},
            )
        )

    session_state_source = table(SESSION_STATE, "Session snapshots replayed from raw events.")
    return Sources(
        user_stats_source=table(USER_STATS, "Per-user aggregates, one row per user and day."),
        step_stats_source=table(STEP_STATS, "Per-step statistics, one row per step and day."),
        session_state_source=session_state_source,
        session_state_push=pinned(
            PushSource(
                name=SESSION_PUSH,
                batch_source=session_state_source,
                description="Live session snapshots the server pushes after each event.",
                tags={"written_by": "intent serve"},
            )
        ),
        decision_request=pinned(
            RequestSource(
                name=REQUEST_SOURCE,
                schema=[Field(name=REQUEST_TS, dtype=Float64)],
                description="The decision time (epoch seconds) sent with each request.",
            )
        ),
    )
