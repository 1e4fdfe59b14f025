"""The router's one exception type.

Owns nothing but the class: a `RouterError` says, in one sentence, what Caddy or the router
refused (Caddy's own message included). It is not a `UserError`: callers such as the deploy
pipeline decide how it reaches a user.
"""

from __future__ import annotations

from minipaas.errors import MinipaasError


class RouterError(MinipaasError):
    """Caddy could not be started, reached, or given the rendered configuration."""
