"""The assistive cohort of a simulated run: are they mistaken for bots, do they complete?

Bot scores come from the production rules (`features.ingest.bots`, with the assistive
inference of `features.signals`) on the run's events, so a rule that starts flagging
screen-reader rhythm shows up here as a false-positive rate > 0. Cohorts: `flagged` (the
events carry the assistive flag), `inferred` (assistive users without it: only their
behaviour tells) and `other` humans.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from features.config import BotConfig, SignalsConfig
from features.ingest.bots import score_sessions


def user_cohorts(users: pa.Table) -> pd.Series:
    """user_id -> `flagged`, `inferred` or `other` (bots left out)."""
    people = users.select(["user_id", "is_bot", "assistive", "assistive_flagged"]).to_pandas()
    people = people[~people["is_bot"]]
    cohort = pd.Series("other", index=people["user_id"].to_numpy())
    cohort[people["assistive"].to_numpy()] = "inferred"
    cohort[(people["assistive"] & people["assistive_flagged"]).to_numpy()] = "flagged"
    return cohort


def cohort_report(
    events: pa.Table, users: pa.Table, bots: BotConfig, signals: SignalsConfig | None = None
) -> pd.DataFrame:
    """Per cohort (`flagged`, `inferred`, `other` human users): users, sessions, bot
    false-positive rate (human sessions flagged as bots) and completion rate."""
    people = users.select(["user_id", "is_bot", "completed"]).to_pandas()
    people = people[~people["is_bot"]]
    people["cohort"] = people["user_id"].map(user_cohorts(users))
    owners = events.select(["session_id", "user_id"]).to_pandas().drop_duplicates("session_id")
    flagged = score_sessions(events, bots, signals).select(["session_id", "is_bot"]).to_pandas()
    sessions = owners.merge(flagged, on="session_id").merge(
        people[["user_id", "cohort"]], on="user_id"
    )
    per_user = people.groupby("cohort").agg(
        users=("user_id", "size"), completion=("completed", "mean")
    )
    per_session = sessions.groupby("cohort").agg(
        sessions=("session_id", "size"), bot_false_positive_rate=("is_bot", "mean")
    )
    return per_user.join(per_session, how="left").fillna({"sessions": 0})
