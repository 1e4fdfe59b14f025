"""The supervisor's contract types: what to run, what is running, what happened.

Plain frozen data, no behaviour. The rest of minipaas talks to the supervisor in these terms
only ("run this command from this slug with this env, check it like this"), which keeps the dyno
runtime swappable: `DynoSpec` and `HealthCheck` go in; `DynoStatus`, `DynoRecord` (what the
server persists to re-adopt dynos after a restart) and `DynoEvent` come out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Dyno states, Heroku's words. `down` = exited, waiting to be restarted (with backoff);
#: `crashed` = exited too often in a row, retried only every `BackoffPolicy.cap` seconds.
STATES = ("starting", "up", "crashed", "stopping", "down")

#: Kinds of `DynoEvent`.
EVENT_KINDS = ("started", "up", "exited", "restarting", "crashed", "stopped")


@dataclass(frozen=True)
class HealthCheck:
    """When a new web dyno counts as ready (besides accepting connections on its PORT).

    `path`: GET http://127.0.0.1:PORT{path} must answer 2xx (and contain `expect` in its body
    when set); `min_uptime`: the dyno must have been up that many seconds; `timeout`: give up
    after that many seconds (None: the supervisor's `ready_timeout`).
    """

    path: str | None = None
    expect: str | None = None
    min_uptime: float = 0.0
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"health check path {self.path!r} must start with /")
        if self.min_uptime < 0 or (self.timeout is not None and self.timeout <= 0):
            raise ValueError("health check times must be positive")


@dataclass(frozen=True)
class DynoSpec:
    """Run `command` (a Procfile command, through /bin/sh -c) from `slug` with `env`.

    `env` holds the app's config vars; the supervisor adds PORT, DYNO and HOME. Two dynos whose
    specs compare equal are interchangeable; a different spec (new release, new config, new
    check, new size) means the dyno is replaced. `memory`: the memory quota in bytes of the
    dyno's whole process tree (None: none), enforced through `Supervisor.check_memory`.
    """

    app: str
    process_type: str
    release: int
    slug: Path
    command: str
    env: Mapping[str, str]
    uid: int | None = None
    check: HealthCheck | None = None
    memory: int | None = None


@dataclass(frozen=True)
class DynoStatus:
    """A snapshot of one dyno. `started_at` is wall-clock (time.time()) of its latest start.

    `state` is one of `STATES`; `reason` says why a dyno is `crashed` or `down` (None otherwise).
    `memory`: its memory quota in bytes (None: none). `last_error`: why the supervisor last
    killed it (`Error R15 (Memory quota vastly exceeded): ...`), kept once it runs again.
    """

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
    reason: str | None = None
    memory: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class DynoRecord:
    """What the server persists for each running dyno, to adopt it after a restart.

    `pid` leads the dyno's process group; `start_ticks` is field 22 of /proc/<pid>/stat (its
    start time in clock ticks since boot), so a recycled pid is never mistaken for the dyno.
    """

    app: str
    name: str
    process_type: str
    release: int
    pid: int
    start_ticks: int
    port: int | None
    started_at: float
    restarts: int


@dataclass(frozen=True)
class DynoEvent:
    """Something that happened to a dyno. `kind` is one of `EVENT_KINDS`; `at` is time.time().

    `detail`: started → "pid N"; up → "port N" or ""; exited → "status 3" / "signal 9" /
    "unknown (adopted)"; restarting → the delay ("in 2 s"); crashed → the reason;
    stopped → "".
    """

    app: str
    dyno: str
    process_type: str
    release: int
    kind: str
    detail: str
    at: float
