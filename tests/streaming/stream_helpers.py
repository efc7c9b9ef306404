"""Helpers of the stream tests: event objects and a consumer process to kill."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from core.layout import Layout
from streaming.config import StreamConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Bus:
    client: redis.Redis
    cfg: StreamConfig


def event(event_id: str, session: str, minutes_ago: float, kind: str = "view", **extra) -> dict:
    """One valid event object, as POST /events takes it."""
    ts = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "event_id": event_id,
        "user_id": f"u-{session}",
        "session_id": session,
        "ts": ts.isoformat(),
        "type": kind,
        "step": "welcome",
        **extra,
    }


def env_for(layout: Layout) -> dict[str, str]:
    """The environment of a consumer subprocess using `layout` and the repo's configs."""
    return {
        **os.environ,
        "INTENT_HOME": str(layout.root),
        "INTENT_CONFIGS": str(REPO / "configs"),
        "PYTHONPATH": str(REPO),
    }


def crash_before_ack(root: str, cfg_json: str, kill_on: str, max_entries: int | None) -> None:
    """Consume as `doomed`; after a batch is stored and before its XACK, die by SIGKILL (a
    crash, no cleanup) - on every batch, or on the batches holding event `kill_on`."""
    from streaming.jobs import consume

    cfg = StreamConfig.model_validate(json.loads(cfg_json))
    layout = Layout.under(Path(root), configs=REPO / "configs").ensure()

    def die(result) -> None:
        ids = set(result.applied.result.accepted + result.applied.duplicates)
        if not kill_on or kill_on in ids:
            os.kill(os.getpid(), signal.SIGKILL)

    consume(
        layout,
        cfg,
        "doomed",
        threading.Event(),
        max_entries=max_entries,
        push=False,
        before_ack=die,
    )


if __name__ == "__main__":  # python stream_helpers.py ROOT CONFIG_JSON [KILL_ON [MAX]]
    args = [*sys.argv[1:], "", ""][:4]
    crash_before_ack(args[0], args[1], args[2], int(args[3]) if args[3] else None)
