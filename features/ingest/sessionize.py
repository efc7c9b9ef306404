"""Sessions for events that arrive without one: a new session after a gap of inactivity.

Each actor (user_id, else anonymous_id - resolved to the user it was identified as) is split
into sessions wherever the gap between two consecutive events exceeds the configured
inactivity (exactly the gap still continues the session, the usual analytics convention).
The id hashes the actor and the session's first timestamp, so re-running on the same input
yields the same ids (idempotent ingestion).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SESSION_PREFIX = "s-"


def session_key(actor: str, first_ts_us: int) -> str:
    """Deterministic id of a derived session: actor + first event time (microseconds)."""
    digest = hashlib.sha1(f"{actor}\x1f{first_ts_us}".encode(), usedforsecurity=False)
    return SESSION_PREFIX + digest.hexdigest()[:20]


def derive_sessions(events: pa.Table, gap_minutes: float) -> tuple[pa.Table, int]:
    """Fill null `session_id`s by inactivity; returns the table and the number of sessions made.

    Rows that already carry a session id are left alone and do not take part: a source
    that sends ids owns its sessions. Needs `user_id, anonymous_id, session_id, ts` with
    `ts` a non-null timestamp column.
    """
    missing = pc.fill_null(pc.is_null(events["session_id"]), True).combine_chunks()
    if not pc.any(missing).as_py():
        return events, 0
    sub = events.select(["user_id", "anonymous_id", "ts"]).filter(missing)
    actor = _actors(sub)
    codes = pc.dictionary_encode(actor).indices.to_numpy(zero_copy_only=False)
    ts = pc.cast(sub["ts"], pa.int64()).to_numpy()
    order = np.lexsort((ts, codes))  # ties in ts cannot move a session boundary
    c, t = codes[order], ts[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (c[1:] != c[:-1]) | (np.diff(t) > round(gap_minutes * 60 * 1_000_000))
    start_actors = actor.take(pa.array(order[starts], pa.int64())).to_pylist()
    keys = [session_key(a, int(x)) for a, x in zip(start_actors, t[starts], strict=True)]
    ids = np.empty(len(order), dtype=object)
    ids[order] = np.array(keys, dtype=object)[np.cumsum(starts) - 1]
    filled = pc.replace_with_mask(
        events["session_id"].combine_chunks(), missing, pa.array(ids, pa.string())
    )
    index = events.schema.get_field_index("session_id")
    return events.set_column(index, events.schema.field(index), filled), len(keys)


def _actors(sub: pa.Table) -> pa.Array:
    """`u\x1f<user_id>` or `a\x1f<anonymous_id>`: a user and a device never share a key.

    An anonymous id that the batch links to a user id (a row carrying both, as after an
    identify call) counts as that user, so the events before and after identification stay
    in one session; the earliest link wins.
    """
    user = sub["user_id"].combine_chunks()
    anon = sub["anonymous_id"].combine_chunks()
    both = pc.and_(pc.is_valid(user), pc.is_valid(anon))
    if pc.any(both).as_py():
        links = sub.filter(both).sort_by([("ts", "ascending")])
        frame = pd.DataFrame(
            {"anon": links["anonymous_id"].to_pandas(), "user": links["user_id"].to_pandas()}
        ).drop_duplicates("anon")
        index = pc.index_in(anon, value_set=pa.array(frame["anon"], pa.string()))
        user = pc.coalesce(user, pc.take(pa.array(frame["user"], pa.string()), index))
    return pc.coalesce(
        pc.binary_join_element_wise("u", user, "\x1f"),
        pc.binary_join_element_wise("a", anon, "\x1f"),
    )
