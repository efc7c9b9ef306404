"""On-demand view `moment_signals`: request-time signals from `features.signals.derive()`."""

from __future__ import annotations

import inspect

from feast import FeatureView, Field, OnDemandFeatureView, RequestSource
from feast.types import Float64

from features.signals import USER_FIRST_SEEN
from features.store.definitions import (
    MOMENT_SIGNALS,
    ON_DEMAND_FIELDS,
    STEP_TYPICAL_PAUSE,
    moment_signals_udf,
)


def declare(
    *,
    session_state: FeatureView,
    step_stats: FeatureView,
    user_stats: FeatureView,
    request: RequestSource,
) -> OnDemandFeatureView:
    """The session row, the step's typical pause, the user's first-seen clock and the
    decision time in; pause, hesitation, ... and tenure out (`moment_signals_udf`)."""
    return OnDemandFeatureView(
        name=MOMENT_SIGNALS,
        sources=[
            session_state,
            step_stats[[STEP_TYPICAL_PAUSE]],
            user_stats[[USER_FIRST_SEEN]],
            request,
        ],
        schema=[Field(name=name, dtype=Float64) for name in ON_DEMAND_FIELDS],
        udf=moment_signals_udf,
        udf_string=inspect.getsource(moment_signals_udf),
        mode="python",
        description="Request-time signals from signals.derive() / derive_user() (pause, ...).",
        tags={"config": "configs/signals.yaml"},
    )
