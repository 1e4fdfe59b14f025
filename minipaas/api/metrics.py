"""The metrics routes: an app's series, the host's, and the Prometheus scrape endpoint.

Validation at the boundary (app name, `since`), then the `Metrics` service answers; the store
is asked only whether the app exists. Token auth is the surrounding app's `TokenAuth`, and
`UserError`s become JSON 4xx answers through its exception handlers.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from minipaas import names
from minipaas.api.auth import Tokens
from minipaas.errors import UserError
from minipaas.metrics import CONTENT_TYPE, MAX_SINCE, Metrics
from minipaas.store import Store

DEFAULT_SINCE = 3600


def parse_since(raw: str | None) -> int:
    """`since` in seconds: a whole number from 1 to a day."""
    if raw is None or raw == "":
        return DEFAULT_SINCE
    # isdigit() alone lets '²' through (int() refuses it) and 5000 digits (int() refuses too).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= MAX_SINCE:
        raise UserError(f"Invalid since {raw!r}: use a number of seconds from 1 to {MAX_SINCE}.")
    return int(raw)


def metrics_routes(metrics: Metrics, store: Store, tokens: Tokens | None = None) -> list[BaseRoute]:
    """Routes to add to the API app (`tokens` is unused: auth wraps the whole app)."""

    async def app_metrics(request: Request) -> Response:
        app = await store.app(names.app_name(request.path_params["app"]))
        since = parse_since(request.query_params.get("since"))
        return JSONResponse(await metrics.app_series(app.name, since))

    async def host_metrics(request: Request) -> Response:
        since = parse_since(request.query_params.get("since"))
        return JSONResponse(await metrics.host_series(since))

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics.prometheus(), headers={"Content-Type": CONTENT_TYPE})

    return [
        Route("/api/apps/{app}/metrics", app_metrics),
        Route("/api/metrics/host", host_metrics),
        Route("/metrics", prometheus),
    ]
