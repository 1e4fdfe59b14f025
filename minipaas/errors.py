"""The exceptions that cross module boundaries.

`UserError` and its subclasses carry one sentence meant for the person at the keyboard: the API
maps them to 4xx answers and the CLI prints them and exits 1. Anything else is a bug and surfaces
as such. This module owns no behaviour beyond the classes themselves.
"""

from __future__ import annotations


class MinipaasError(Exception):
    """Base for every error minipaas raises on purpose."""


class UserError(MinipaasError):
    """Bad input or a request that cannot be honoured; the message is shown as is."""

    status = 400


class NotFound(UserError):
    """The named app, release, key or domain does not exist."""

    status = 404


class Conflict(UserError):
    """The thing already exists or the request clashes with current state."""

    status = 409


class TooLarge(UserError):
    """A request body larger than the API reads."""

    status = 413


class Unauthorized(UserError):
    """Missing or wrong credentials."""

    status = 401


class BuildError(UserError):
    """A build failed; the message says why (the full log is kept with the build)."""

    status = 422


class DeployError(UserError):
    """A release could not go live (release phase or start failed); the old one keeps serving."""

    status = 422


class Unavailable(UserError):
    """The server is stopping (a restart, an upgrade): the same request works again soon."""

    status = 503


class DiskFull(UserError):
    """The server's disk (or quota) is full: nothing was changed; it works once space is freed."""

    status = 507

    def __init__(self, where: object) -> None:
        super().__init__(
            f"The server's disk is full (no space left for {where}): free some space on it, "
            "then try again."
        )
