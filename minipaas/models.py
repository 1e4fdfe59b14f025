"""The records the store returns and the API serialises: plain frozen dataclasses.

No behaviour beyond small derived properties and `to_json()`; no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class App:
    id: int
    name: str
    created_at: float
    current_release: int | None
    maintenance: bool

    @property
    def uid(self) -> int:
        """The unprivileged uid (and gid) this app's builds and dynos run as, when root."""
        return 20000 + self.id

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Build:
    id: int
    app_id: int
    sha: str
    status: str
    buildpacks: list[str]
    slug: str | None
    started_at: float
    finished_at: float | None
    log: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Release:
    id: int
    app_id: int
    version: int
    build_id: int | None
    sha: str | None
    slug: str | None
    static_root: str | None
    config: dict[str, str]
    process_types: dict[str, str]
    description: str
    created_by: str
    created_at: float
    status: str
    #: From app.json: {"healthchecks": {...}, "cron": [{"command", "schedule"}]}.
    app_json: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, with_config: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_config:
            # Config values are secrets: only their names leave the server by default.
            data["config"] = sorted(self.config)
        return data


@dataclass(frozen=True)
class ReleaseOutput:
    """What a release's release phase printed (`releases:output vN`)."""

    version: int
    output: str
    #: None: killed at its timeout.
    exit_code: int | None
    started_at: float
    finished_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SSHKey:
    id: int
    name: str
    fingerprint: str
    public_key: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Domain:
    hostname: str
    app: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Drain:
    """A log drain of an app (`drains:add`)."""

    token: str
    app: str
    url: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Addon:
    """An add-on of an app (`addons:create`): the service and the name it has there. No secret:
    the credentials live in the app's config var (`config_var`)."""

    service: str
    app: str
    name: str
    config_var: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Backup:
    """A dump of an app's add-on database (`pg:backups:capture`, or a scheduled one); the
    dump itself is a file, `<data-dir>/backups/<app>/<id>.dump`."""

    app: str
    number: int
    kind: str  # manual | scheduled
    status: str  # running | completed | failed
    error: str | None
    size: int | None
    created_at: float
    finished_at: float | None

    @property
    def id(self) -> str:
        """Heroku's name for it: b001, b002, …"""
        return f"b{self.number:03d}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass(frozen=True)
class DynoRecord:
    """What the store remembers of a running dyno (written from supervisor events)."""

    app: str
    name: str
    process_type: str
    release: int
    pid: int | None
    port: int | None
    started_at: float | None
    state: str
    extra: dict[str, Any] = field(default_factory=dict)
