"""The one table of on-disk paths under the data dir (see ARCHITECTURE.md, "On disk").

Pure: computing a path never touches the file system; `ensure()` creates the top-level tree.
Every function that takes an app name expects one already validated by `minipaas.names`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    """`/var/lib/minipaas` as root, else `~/.local/share/minipaas`."""
    if os.geteuid() == 0:
        return Path("/var/lib/minipaas")
    return Path.home() / ".local" / "share" / "minipaas"


@dataclass(frozen=True)
class Paths:
    """Where everything lives for one data dir."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "minipaas.db"

    @property
    def socket(self) -> Path:
        return self.root / "minipaas.sock"

    @property
    def proxy_socket(self) -> Path:
        """The API as Caddy reaches it (token-checked like TCP), in the root-only `caddy/`: a
        loopback port could be taken over by a dyno while minipaas restarts, and Caddy would
        hand it every request to `minipaas.<domain>`, admin tokens included."""
        return self.caddy / "api.sock"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def slugs(self) -> Path:
        return self.root / "slugs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def caddy(self) -> Path:
        return self.root / "caddy"

    @property
    def trash(self) -> Path:
        """Trees renamed out of the way (old slugs, destroyed apps), deleted in the background."""
        return self.root / "trash"

    @property
    def rename_journal(self) -> Path:
        """`apps:rename` under way: `{"old": …, "new": …}`, written before the app's trees move
        and removed once its row has the new name; start-up finishes or undoes what it names."""
        return self.root / "rename.json"

    def app_trees(self, app: str) -> list[Path]:
        """Every per-app tree named after the app (what `apps:rename` moves): repository,
        slugs, build cache, buildpack clones, backups, logs and its Redis add-on's dir."""
        return [
            self.repo(app),
            self.app_slugs(app),
            self.app_cache(app),
            self.app_buildpacks(app),
            self.app_backups(app),
            self.app_logs(app),
            self.app_redis(app),
        ]

    @property
    def redis(self) -> Path:
        """The apps' Redis add-on instances (`redis/<app>`: config, data, pid file)."""
        return self.root / "redis"

    def app_redis(self, app: str) -> Path:
        return self.redis / app

    @property
    def run(self) -> Path:
        """Scratch space for running dynos and builds (mount points, pid files)."""
        return self.root / "run"

    def repo(self, app: str) -> Path:
        return self.repos / f"{app}.git"

    def app_slugs(self, app: str) -> Path:
        return self.slugs / app

    def slug(self, app: str, build_id: str) -> Path:
        return self.slugs / app / build_id

    @property
    def backups(self) -> Path:
        """Dumps of the apps' add-on databases (`pg:backups`), owner-only."""
        return self.root / "backups"

    def app_backups(self, app: str) -> Path:
        return self.backups / app

    @property
    def empty_slug(self) -> Path:
        """An empty directory, the /app of one-offs that run no app code (`pg:psql`,
        `redis:cli`, also before the first push); no app name starts with `_`."""
        return self.slugs / "_empty"

    def app_cache(self, app: str) -> Path:
        return self.cache / app

    @property
    def buildpacks(self) -> Path:
        """Clones of git buildpacks, per app (no app name starts with `_`)."""
        return self.cache / "_buildpacks"

    def app_buildpacks(self, app: str) -> Path:
        return self.buildpacks / app

    def app_logs(self, app: str) -> Path:
        return self.logs / app

    def ensure(self) -> None:
        """Create the data dir tree (owner-only where secrets may live)."""
        self.root.mkdir(parents=True, exist_ok=True)
        # App uids must traverse the root to reach their own (0700) slugs; nothing secret is
        # directly inside it (the db, socket and token file are 0600).
        os.chmod(self.root, 0o755)  # noqa: S103
        for sub in (self.repos, self.slugs, self.cache, self.logs, self.run):
            sub.mkdir(exist_ok=True)
        self.empty_slug.mkdir(exist_ok=True)
        os.chmod(self.empty_slug, 0o755)  # noqa: S103 - empty, and read-only in every sandbox
        self.caddy.mkdir(mode=0o700, exist_ok=True)
        # Only the server reads logs (clients go through the API); app uids, which fetch
        # buildpacks on the host, must not read other apps' output. Also for older data dirs.
        os.chmod(self.logs, 0o700)
