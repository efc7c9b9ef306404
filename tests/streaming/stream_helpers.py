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


def crash_before_ack(root: str, cfg_json: str) -> None:
    """Consume one batch, store it, then die by SIGKILL before XACK (a crash, no cleanup)."""
    from streaming.jobs import consume

    cfg = StreamConfig.model_validate(json.loads(cfg_json))
    layout = Layout.under(Path(root), configs=REPO / "configs").ensure()

    def die(_result) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    consume(layout, cfg, "doomed", threading.Event(), push=False, before_ack=die)


if __name__ == "__main__":  # python stream_helpers.py <layout root> <config json>
    crash_before_ack(sys.argv[1], sys.argv[2])
