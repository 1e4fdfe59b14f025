"""A real `minipaas server` for end-to-end tests: started as a subprocess, driven by its CLI.

Everything listens on 127.0.0.1 with free ports; Caddy uses its internal CA for `localhost`
(no ACME). `stop()` kills by pid, dynos and Caddy included (the server's shutdown does that).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.dirs import app_readable_dir
from tests.support.ports import free_port, wait_for
from tests.support.procs import mentioning, run_group
from tests.support.server import server_argv
from tests.support.sshd import SSHServer

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "sample-apps"
BIN = Path(sys.executable).parent
#: How the server's log starts a traceback that no test may cause (`Paas.crashes`).
CRASH_MARKERS = ("Task exception was never retrieved", "ERROR:    Exception in ASGI application")


@dataclass
class Paas:
    data_dir: Path
    http_port: int
    https_port: int
    authorized_keys: Path
    api_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path("/dev/null"))
    #: The `minipaas` command: the dev venv's, or a built binary (tests/test_binary.py).
    exe: Path = BIN / "minipaas"
    #: PATH after the command's own dir (None: this process's PATH).
    path: str | None = None
    #: Runs the server (e.g. `taskset -c 0` to give it one CPU); empty: run it directly.
    launcher: list[str] = field(default_factory=list)
    #: More `minipaas server` flags (e.g. `--metrics-interval 1`).
    server_args: list[str] = field(default_factory=list)
    #: Seconds the server's cron and backup schedulers add to the wall clock (the hidden test
    #: hook MINIPAAS_TEST_CLOCK_OFFSET), kept across restarts; see `set_next_minute`.
    clock_offset: float = 0.0
    #: More environment for the server (hidden test hooks such as MINIPAAS_TEST_BUSY_WAIT).
    server_env: dict[str, str] = field(default_factory=dict)

    def set_next_minute(self, seconds: float) -> None:
        """Offset the scheduler clock of the server started next (`start`, `restart`) so that
        its next whole minute comes `seconds` from now instead of at the wall clock's."""
        self.clock_offset = -(time.time() + seconds) % 60

    def scheduler_now(self) -> datetime:
        """What the server's schedulers take for now (UTC): the wall clock plus the offset."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def to_next_minute(self) -> float:
        """Seconds until the server's schedulers' next whole minute (their next tick)."""
        return 60 - (time.time() + self.clock_offset) % 60

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_")}
        env["MINIPAAS_DATA_DIR"] = str(self.data_dir)
        rest = self.path if self.path is not None else env.get("PATH", "/usr/bin:/bin")
        env["PATH"] = f"{self.exe.parent}:{rest}"
        return env

    @property
    def ca(self) -> Path:
        return (
            self.data_dir
            / "caddy"
            / "data"
            / "caddy"
            / "pki"
            / "authorities"
            / "local"
            / "root.crt"
        )

    def start(self) -> None:
        argv = server_argv(
            self.exe,
            self.data_dir,
            http_port=self.http_port,
            https_port=self.https_port,
            api_port=self.api_port,
            authorized_keys=self.authorized_keys,
        )
        env = {**self.env, **self.server_env}
        if self.clock_offset:
            env["MINIPAAS_TEST_CLOCK_OFFSET"] = repr(self.clock_offset)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.launcher, *argv, *self.server_args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            wait_for(self._ready, timeout=60, interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"server not ready:\n{self.tail_log()}") from exc

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"minipaas server exited {self.proc.returncode}:\n{self.tail_log()}")
        return self.cli("status", check=False).returncode == 0 and self.ca.exists()

    def crashes(self) -> list[str]:
        """What the server's log says went wrong unasked: a background task that died with an
        exception nobody read, or a request answered 500. Each with the lines after it."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [
            "\n".join(lines[n : n + 25])
            for n, line in enumerate(lines)
            if line.startswith(CRASH_MARKERS)
        ]

    def assert_no_crashes(self) -> None:
        """Fail with the tracebacks when `crashes` finds any (a fixture's last word)."""
        crashes = self.crashes()
        assert not crashes, "the server logged unexpected errors:\n" + "\n\n".join(crashes)

    def tail_log(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """`minipaas down` (server, dynos, Caddy); SIGKILL and `down` again if it hangs. Then
        nothing may be left that names the data dir (a second server started over a running
        one, a cluster `down` missed): it is killed and the test fails, naming it."""
        if self.proc is None:
            return
        try:
            self.cli("down", "--data-dir", str(self.data_dir), check=False, timeout=90)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.cli("down", "--data-dir", str(self.data_dir), check=False, timeout=90)
        try:
            wait_for(lambda: not mentioning(str(self.data_dir)), timeout=10, interval=0.1)
        except TimeoutError:
            left = {pid: _cmdline(pid) for pid in mentioning(str(self.data_dir))}
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"left running after `minipaas down`: {left}") from None

    def kill9(self) -> None:
        """SIGKILL the server alone: its dynos and Caddy keep running, by design."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start the server again after `kill9` or a SIGTERM (`proc.terminate()`) has stopped
        it; a running one would be left running next to the new one, which `down` misses."""
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("restart() needs the server stopped first (kill9 or terminate)")
        self.start()

    @contextlib.contextmanager
    def restarted_with(self, **server_env: str) -> Iterator[None]:
        """Restart the server (SIGTERM: its dynos keep running) with more environment (test
        hooks), and at the end restart it again as it was."""
        before = dict(self.server_env)
        self.terminate_and_restart({**before, **server_env})
        try:
            yield
        finally:
            self.terminate_and_restart(before)

    def terminate_and_restart(self, server_env: dict[str, str]) -> None:
        """SIGTERM the server (the server alone stops), then start it with `server_env`."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.server_env = server_env
        self.start()

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.exe), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"minipaas {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def fails(self, *args: str, code: int = 1) -> str:
        """`minipaas ARGS…`, which must exit with `code`; what it said on stderr."""
        result = self.cli(*args, check=False)
        assert result.returncode == code, result
        return result.stderr.rstrip("\n")

    def remote_env(self) -> dict[str, str]:
        """A laptop's environment for the CLI: the server's HTTPS URL (through Caddy), an API
        token and Caddy's CA; no data dir."""
        token = self.cli("auth:token").stdout.strip()
        environ = {k: v for k, v in self.env.items() if k != "MINIPAAS_DATA_DIR"}
        environ.update(
            MINIPAAS_URL=f"https://minipaas.localhost:{self.https_port}",
            MINIPAAS_TOKEN=token,
            MINIPAAS_CA_FILE=str(self.ca),
        )
        return environ

    def run_in_background(
        self, app: str, command: str, *, stdin: int = subprocess.DEVNULL, output: bool = False
    ) -> subprocess.Popen[str]:
        """`minipaas run -a APP -- sh -c COMMAND` left running; stdin a pipe makes it an
        attached run, /dev/null the streamed one (as cron's). Its output (stdout and stderr, as
        text) is discarded, or with `output` kept for `communicate`."""
        return subprocess.Popen(
            [str(self.exe), "run", "-a", app, "--", "sh", "-c", command],
            stdin=stdin,
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
            text=True,
            env=self.env,
        )

    def curl(self, host: str, path: str = "/", *, https: bool = True) -> tuple[int, str]:
        port = self.https_port if https else self.http_port
        scheme = "https" if https else "http"
        argv = [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--resolve",
            f"{host}:{port}:127.0.0.1",
            "-w",
            "\n%{http_code}",
            f"{scheme}://{host}:{port}{path}",
        ]
        if https:
            argv[1:1] = ["--cacert", str(self.ca)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if out.returncode != 0:
            return 0, out.stderr
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body

    def wait_body(self, host: str, expected: str, path: str = "/", timeout: float = 30) -> str:
        last: list[tuple[int, str]] = []

        def check() -> bool:
            last[:] = [self.curl(host, path)]
            return last[0][0] == 200 and expected in last[0][1]

        try:
            wait_for(check, timeout=timeout, interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{host}{path} never answered {expected!r}; last: {last}") from exc
        return last[0][1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"


def hiding(mount: str) -> list[str]:
    """A launcher that starts the server in a private mount namespace once the shell command
    `mount` ran there: a mount that makes a program or directory look missing, as on a VPS
    without some package."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"',
            "sh"]  # fmt: skip


def start_paas(
    authorized_keys: Path,
    log: Path,
    *,
    exe: Path | None = None,
    path: str | None = None,
    server_args: Sequence[str] = (),
    launcher: Sequence[str] = (),
    next_minute: float | None = None,
) -> Paas:
    """A running server; its log goes to `log` (kept in pytest's tmp dirs for post-mortems).
    `exe` runs another `minipaas` command (a built binary), `path` replaces the PATH after it,
    `server_args` are more `minipaas server` flags, `launcher` what runs it (see `hiding`),
    `next_minute` the seconds from now to its schedulers' next minute (`set_next_minute`;
    None: the wall clock's)."""
    base = app_readable_dir()
    paas = Paas(
        data_dir=base / "data",
        http_port=free_port(),
        https_port=free_port(),
        authorized_keys=authorized_keys,
        api_port=free_port(),
        log=log,
        exe=exe or BIN / "minipaas",
        path=path,
        server_args=list(server_args),
        launcher=list(launcher),
    )
    if next_minute is not None:
        paas.set_next_minute(next_minute)
    try:
        paas.start()
    except BaseException:
        paas.stop()  # a server that never became ready is still ours to stop
        raise
    return paas


def git_repo(src: Path, dest: Path, message: str = "initial") -> Path:
    """Copy a sample app into `dest` and commit it on branch main."""
    shutil.copytree(src, dest)
    env = git_env()
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True, env=env)
    commit(dest, message)
    return dest


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "t@example.test",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "t@example.test",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }
    )
    return env


def commit(repo: Path, message: str) -> None:
    env = git_env()
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", message],
        check=True,
        env=env,
    )


def push(
    repo: Path,
    url: str,
    *,
    env: dict[str, str] | None = None,
    ref: str = "main",
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    full = git_env()
    full.update(env or {})
    return run_group(["git", "-C", str(repo), "push", url, ref], env=full, timeout=timeout)


def ssh_push(
    sshd: SSHServer, repo: Path, app: str, ref: str = "main"
) -> subprocess.CompletedProcess[str]:
    return push(
        repo, sshd.url(f"{app}.git"), env={"GIT_SSH_COMMAND": sshd.git_ssh_command()}, ref=ref
    )


def https_push(paas: Paas, repo: Path, app: str, token: str) -> subprocess.CompletedProcess[str]:
    url = f"https://x:{token}@minipaas.localhost:{paas.https_port}/git/{app}.git"
    return push(repo, url, env={"GIT_SSL_CAINFO": str(paas.ca)})


def deploy_sample(paas: Paas, sshd: SSHServer, sample: str, app: str, work: Path) -> Path:
    """`apps:create APP`, then a push of the sample app over SSH; its repository (for more
    commits), under `work`."""
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / sample, work / app)
    deployed(ssh_push(sshd, repo, app))
    return repo


def deployed(result: subprocess.CompletedProcess[str]) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "remote: -----> Deployed v" in out, out
    return out
