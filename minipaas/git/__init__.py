"""Bare git repositories per app, served over smart HTTP (`http`) and over SSH stdio (`stdio`).

The only package that imports dulwich. A push stores the pack, then asks a *gate* (supplied by the
server: build and deploy) whether the ref may move; see `receive`. This package never builds or
deploys by itself. Import `minipaas.git.http` or `minipaas.git.stdio` for a transport; this module
only re-exports the shared types, so the SSH forced command does not pay for the HTTP stack.
"""

from minipaas.git.receive import DEFAULT_MAX_PUSH_BYTES, MOVED, Gate, Progress
from minipaas.git.repos import Repos

__all__ = ["DEFAULT_MAX_PUSH_BYTES", "MOVED", "Gate", "Progress", "Repos"]
