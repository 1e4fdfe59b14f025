"""The router: Caddy in front of every app, configured whole from state.

`render` turns a `RouterState` into Caddy's JSON (pure), `CaddyAdmin` loads it over the admin
unix socket, `CaddyProcess` runs the binary, `ResolverProcess` tells Caddy over DNS where each
app's web dynos are, and `Router` ties them together for the server. The package keeps no state
of its own beyond the last document Caddy accepted and the last upstream table it published.

Names are imported on first use: the resolver process imports `minipaas.router.resolver` and
must not pay for the HTTP client and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light and pure, and `render` is also a submodule's name (which would shadow a lazy attribute).
from minipaas.router.errors import RouterError
from minipaas.router.render import AppRoute, RouterState, render, tls_mode

if TYPE_CHECKING:
    from minipaas.router.admin import CaddyAdmin
    from minipaas.router.caddy import CaddyProcess, find_caddy
    from minipaas.router.router import Router

_WHERE = {
    "CaddyAdmin": "admin",
    "CaddyProcess": "caddy",
    "Router": "router",
    "find_caddy": "caddy",
}

__all__ = [
    "AppRoute",
    "CaddyAdmin",
    "CaddyProcess",
    "Router",
    "RouterError",
    "RouterState",
    "find_caddy",
    "render",
    "tls_mode",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
