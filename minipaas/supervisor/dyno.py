"""The supervisor's contract types: what to run (`DynoSpec`) and what is running (`DynoStatus`).

Plain frozen data, no behaviour. The rest of minipaas talks to the supervisor in these terms
only ("run this command from this slug with this env"), which keeps the dyno runtime swappable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Dyno states, Heroku's words.
STATES = ("starting", "up", "crashed", "stopping", "down")


@dataclass(frozen=True)
class DynoSpec:
    """Run `command` (a Procfile command, through /bin/sh -c) from `slug` with `env`.

    `env` holds the app's config vars; the supervisor adds PORT, DYNO and HOME. Two dynos whose
    specs compare equal are interchangeable; a different spec (new release, new config) means
    the dyno is replaced.
    """

    app: str
    process_type: str
    release: int
    slug: Path
    command: str
    env: Mapping[str, str]
    uid: int | None = None


@dataclass(frozen=True)
class DynoStatus:
    """A snapshot of one dyno. `started_at` is wall-clock (time.time()) of its latest start."""

    app: str
    name: str
    process_type: str
    release: int
    state: str
    pid: int | None
    port: int | None
    started_at: float | None
    restarts: int
    command: str
    exit_code: int | None
