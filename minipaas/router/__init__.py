"""The router: Caddy in front of every app, configured whole from state.

`render` turns a `RouterState` into Caddy's JSON (pure), `CaddyAdmin` loads it over the admin
unix socket, `CaddyProcess` runs the binary, and `Router` ties them together for the server.
The package keeps no state of its own beyond the last document Caddy accepted.
"""

from minipaas.router.admin import CaddyAdmin
from minipaas.router.caddy import CaddyProcess, find_caddy
from minipaas.router.errors import RouterError
from minipaas.router.render import AppRoute, RouterState, render, tls_mode
from minipaas.router.router import Router

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
