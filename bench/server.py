"""The benchmark's own `minipaas server`: a temporary data dir, free loopback ports, its CLI.

Owns: starting one server subprocess (in its own session, so Caddy and the dynos can be killed
with it), running `minipaas` client commands against it, and pushing git repos to it over HTTPS
with the API token. Must not touch: any other minipaas data dir, or anything outside the
temporary directory it creates (it is removed on `stop()`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, wait_for
from tests.support.procs import run_group
from tests.support.server import server_argv

REPO_ROOT = Path(__file__).resolve().parents[1]


def venv_bin() -> Path:
    """The directory holding the `minipaas` entry point: this interpreter's, else the repo venv."""
    here = Path(sys.executable).parent
    if (here / "minipaas").exists():
        return here
    return REPO_ROOT / ".venv" / "bin"


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "MINIPAAS_"))}
    env.update(
        {
            "GIT_AUTHOR_NAME": "Bench",
            "GIT_AUTHOR_EMAIL": "bench@example.test",
            "GIT_COMMITTER_NAME": "Bench",
            "GIT_COMMITTER_EMAIL": "bench@example.test",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    env.update(extra or {})
    return env


def git(repo: Path, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=git_env(),
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def init_repo(src: Path, dest: Path) -> Path:
    """Copy an app directory to `dest` and commit it on branch main."""
    shutil.copytree(src, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    subprocess.run(
        ["git", "init", "-q", "-b", "main", str(dest)],
        check=True,
        env=git_env(),
        capture_output=True,
        timeout=30,
    )
    commit(dest, "initial")
    return dest


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


@dataclass
class PushResult:
    returncode: int
    seconds: float
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "-----> Deployed v" in self.output


@dataclass
class BenchServer:
    """One running `minipaas server` in a temporary directory."""

    root: Path
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def bin(self) -> Path:
        return venv_bin() / "minipaas"

    @property
    def ca(self) -> Path:
        return self.data_dir / "caddy/data/caddy/pki/authorities/local/root.crt"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_")}
        env["MINIPAAS_DATA_DIR"] = str(self.data_dir)
        env["PATH"] = f"{self.bin.parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    @classmethod
    def create(cls, base: Path) -> BenchServer:
        # Mode 0755 (and `base` like /tmp): app uids must traverse the data dir to their slugs.
        root = Path(tempfile.mkdtemp(prefix="minipaas-bench-", dir=base))
        root.chmod(0o755)
        return cls(root=root)

    def start(self, timeout: float = 90) -> None:
        argv = server_argv(
            self.bin,
            self.data_dir,
            http_port=self.http_port,
            https_port=self.https_port,
            api_port=self.api_port,
            authorized_keys=self.root / "authorized_keys",
        )
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        wait_for(self._ready, timeout=timeout, interval=0.1, message="minipaas server to be ready")
        self.token = self.cli("auth:token").strip()

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"minipaas server exited {self.proc.returncode}:\n{self.tail()}")
        ok = self.run_cli("status").returncode == 0
        return ok and self.ca.exists()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        return int((self.data_dir / "minipaas.pid").read_text().strip())

    def stop(self) -> None:
        """Stop the server, its dynos and Caddy, then remove the temporary directory.

        Dynos and Caddy outlive the server process by design, so SIGTERM alone is not enough:
        `minipaas down` stops all three. Whatever still runs from our directory afterwards
        (a server that hung, a half-started dyno) is killed by process group.
        """
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run_cli("down", "--data-dir", str(self.data_dir), timeout=90)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self._kill_leftovers()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """SIGKILL the process groups of processes whose command line names our directory."""
        needle = str(self.root).encode() + b"/"
        groups = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle in (entry / "cmdline").read_bytes():
                    groups.add(os.getpgid(int(entry.name)))
            except (OSError, ProcessLookupError):
                continue
        for group in groups - {os.getpgrp()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    # -- the CLI -------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def cli(self, *args: str, timeout: float = 120) -> str:
        result = self.run_cli(*args, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"minipaas {' '.join(args)} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    # -- git over HTTPS ------------------------------------------------------------------------

    def git_url(self, app: str) -> str:
        return f"https://x:{self.token}@minipaas.localhost:{self.https_port}/git/{app}.git"

    def push(self, repo: Path, app: str, timeout: float = 600) -> PushResult:
        env = git_env({"GIT_SSL_CAINFO": str(self.ca)})
        start = time.perf_counter()
        argv = ["git", "-C", str(repo), "push", self.git_url(app), "main"]
        result = run_group(argv, env=env, timeout=timeout)
        seconds = time.perf_counter() - start
        return PushResult(result.returncode, seconds, result.stdout + result.stderr)

    def app_host(self, app: str) -> str:
        return f"{app}.localhost"
