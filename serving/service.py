"""The scoring service (BentoML 1.4): `bentoml serve serving.service:IntentService`.

BentoML serves the API of `serving.app` (one FastAPI app: routes, auth, limits, OpenAPI),
mounted with `@bentoml.asgi_app` (built on first use, see `LazyApp`). The service builds
the state in `__init__` (model, reader, stores), so the first request is as fast as the
others, and the app finds it through `bentoml.get_current_service()`. BentoML keeps its own
`/metrics` (plus ours, appended by `__metrics__`) and the index page `/`; every other path
goes straight to the app - BentoML's plain-text `/readyz` and its `/docs.json` would
otherwise shadow the app's.

The service declares the registry champion as its model (`champion`): any `bentoml build`
pins it into the Bento (`serving.bento_model`), and the Bento serves it without a registry.

Configured by `configs/serving.yaml` (+ policy, signals, funnel, events) of
`Layout.from_env()`; the optional bearer token comes from the variable `auth.token_env`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any

import bentoml

from serving.bento_model import RegistryChampion
from serving.http import GatewayMiddleware

# Paths BentoML answers itself; all others go to the app.
BENTO_PATHS = ("/metrics", "/static_content/", "/schema.json")


def current_state() -> Any:
    """The `serving.app.ServingState` of this worker's service (None while starting)."""
    service = bentoml.get_current_service()
    return getattr(service, "state", None)


class LazyApp:
    """The API app, built on first use.

    `bentoml serve` imports this module twice, in its supervisor and in each worker; only
    a worker serves. Building the app imports FastAPI, pydantic models, pyarrow and pandas
    (~2 s of CPU), which the supervisor then paid before any worker could start.
    """

    def __init__(self) -> None:
        self._gated: Any = None

    def gated(self) -> Any:
        if self._gated is None:
            from serving.app import build_app, gated

            self._gated = gated(build_app(current_state), current_state)
        return self._gated

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.gated()(scope, receive, send)


API = LazyApp()


class ToApp:
    """ASGI middleware: every request but BentoML's own paths goes to the gated app; those
    pass the same gateway (auth, limits) into BentoML."""

    def __init__(self, app: Any) -> None:
        self.app = GatewayMiddleware(app, lambda: getattr(current_state(), "gateway", None))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path != "/" and not path.startswith(BENTO_PATHS):
                return await API(scope, receive, send)
        return await self.app(scope, receive, send)


@bentoml.service(
    name="intent_service",
    traffic={"timeout": 30},
    # Access lines cost ~10 % of a request; enable with BENTOML_CONFIG_OPTIONS=
    # "services.intent_service.logging.access.enabled=true" where a proxy does not log.
    logging={"access": {"enabled": False}},
)
@bentoml.asgi_app(API, path="/")
class IntentService:
    """Micro-moment decisions for the trigger dispatcher."""

    # `bentoml build` pins the registry champion into the Bento through this declaration.
    champion = RegistryChampion()

    def __init__(self) -> None:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            # In process (`to_asgi()`) BentoML's /metrics still reads a multiprocess folder
            # and fails without one; `bentoml serve` always sets it before we get here.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="intent-metrics-")
        # BentoML 1.4.40 reads `model_fields` off instances, which pydantic 2.11+ flags.
        warnings.filterwarnings("ignore", message="Accessing the 'model_fields' attribute")
        from core.layout import Layout
        from serving.app import open_state

        API.gated()
        self.state = open_state(Layout.from_env())

    @bentoml.on_startup
    def start(self) -> None:
        from serving.app import start_state

        start_state(self.state)

    @bentoml.on_shutdown
    async def stop(self) -> None:
        from serving.app import stop_state

        await stop_state(self.state)

    def __metrics__(self, content: str) -> str:
        from serving.metrics import metrics_text

        return metrics_text(content)


IntentService.add_asgi_middleware(ToApp)
