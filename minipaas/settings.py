"""Server settings: one frozen dataclass built by the CLI from flags and defaults.

Pure data; nothing here reads the environment or the disk on import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from minipaas.paths import Paths


def default_ports() -> tuple[int, int]:
    """80/443 as root (binding them needs privileges), else 8080/8443."""
    return (80, 443) if os.geteuid() == 0 else (8080, 8443)


@dataclass(frozen=True)
class Settings:
    """Everything `minipaas server` is configured with."""

    data_dir: Path
    domain: str = "localhost"
    http_port: int = 8080
    https_port: int = 8443
    #: Address the router listens on; "" means every interface (production).
    listen_host: str = ""
    #: Loopback TCP port of the API for direct clients (0 = pick one, None = none). Caddy
    #: publishes the API at minipaas.<domain> through `Paths.proxy_socket`, not through it.
    api_port: int | None = None
    acme_email: str | None = None
    #: The ACME directory URL public names' certificates come from (None: Let's Encrypt).
    acme_ca: str | None = None
    #: Where `keys:add` writes the minipaas user's authorized_keys
    #: (None = <data-dir>/authorized_keys).
    authorized_keys: Path | None = None
    #: How long a stopped dyno gets between SIGTERM and SIGKILL (Heroku: 30 s).
    stop_grace: float = 30.0
    #: Seconds between two samples of dyno CPU/memory (metrics, and memory quota checks).
    metrics_interval: float = 5.0
    #: How long a new web dyno may take to accept connections before a deploy fails.
    boot_timeout: float = 60.0
    #: A fresh deploy whose web dynos crash-loop within this many seconds is rolled back.
    auto_rollback_window: float = 600.0
    #: Bytes of build cache per app before it is cleared after a deploy.
    cache_limit: int = 2 * 2**30
    #: Slugs kept per app (older ones are deleted after a deploy; rollback reaches these).
    keep_slugs: int = 5
    #: The minipaas command written into authorized_keys forced commands.
    minipaas_bin: str = field(default="minipaas")
    #: The unix user SSH forced commands run as: its group may use the API socket and the repos.
    ssh_user: str | None = None

    @property
    def paths(self) -> Paths:
        return Paths(self.data_dir)

    @property
    def authorized_keys_file(self) -> Path:
        return self.authorized_keys or self.data_dir / "authorized_keys"

    def app_host(self, app: str) -> str:
        return f"{app}.{self.domain}"

    def app_url(self, app: str) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.app_host(app)}{port}"

    @property
    def control_url(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://minipaas.{self.domain}{port}"
