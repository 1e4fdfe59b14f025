"""A real, private OpenSSH server for tests (stack-trial notes, section 8).

Owns: fetching Debian's openssh-server binaries into a cache dir (`apt-get download` +
`dpkg-deb -x`, never installed system-wide), and running one `sshd` per test on a free
127.0.0.1 port with its own host key, config, client key pair and known_hosts.

The sshd runs as root inside a private mount namespace (`unshare -m`) where a copy of
/etc/passwd adds the `sshd` privilege-separation user and a tmpfs /run holds /run/sshd, so
the host is never changed. Inside that namespace forced commands therefore see an empty
private /run. In the copy, root's login shell is /bin/sh: sshd runs forced commands through
the login shell, and bash would source root's ~/.bashrc (slow and host-specific).

Must not touch: the system's ssh configuration, /etc, port 22, or any process it did not start.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .ports import free_port, wait_for

HOST = "127.0.0.1"
USER = "root"
PACKAGES = ("openssh-server", "libwrap0")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOOL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class SshdUnavailable(RuntimeError):
    """The openssh-server binaries could not be fetched or a required host tool is missing."""


@dataclass(frozen=True)
class SshdInstall:
    """An extracted openssh-server: the sshd binary and the dir holding libwrap.so.0."""

    sshd: Path
    lib_dir: Path


def default_cache_dir() -> Path:
    """Where the extracted debs are cached across test runs.

    `$MINIPAAS_TEST_CACHE/sshd` if set, else `/var/cache/minipaas-tests/sshd` as root, else
    `$XDG_CACHE_HOME/minipaas-tests/sshd` (default `~/.cache`).
    """
    if explicit := os.environ.get("MINIPAAS_TEST_CACHE"):
        return Path(explicit) / "sshd"
    if os.geteuid() == 0:
        return Path("/var/cache/minipaas-tests/sshd")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "minipaas-tests" / "sshd"


def _find_install(root: Path) -> SshdInstall | None:
    sshd = root / "usr" / "sbin" / "sshd"
    libs = sorted(root.glob("usr/lib/*/libwrap.so.0")) + sorted(root.glob("lib/*/libwrap.so.0"))
    if (root / ".complete").exists() and sshd.is_file() and libs:
        return SshdInstall(sshd=sshd, lib_dir=libs[0].parent)
    return None


def _apt_download(apt_get: Sequence[str], dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*apt_get, "download", *PACKAGES],
        cwd=dest,
        env=_TOOL_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ensure_sshd(
    cache_dir: Path | None = None, *, apt_get: Sequence[str] = ("apt-get",)
) -> SshdInstall:
    """Return the cached openssh-server, downloading and extracting it on first use.

    Runs `apt-get update` only when the first download fails. Safe to call from parallel
    test processes (a file lock serialises the extraction, which is renamed into place).
    Raises SshdUnavailable with the apt output when the debs cannot be fetched.
    """
    cache = cache_dir or default_cache_dir()
    root = cache / "root"
    if found := _find_install(root):
        return found
    for tool in ("dpkg-deb", "unshare", "ssh", "ssh-keygen", apt_get[0]):
        if shutil.which(tool, path=_TOOL_ENV["PATH"]) is None and not Path(tool).is_file():
            raise SshdUnavailable(f"The test sshd needs {tool!r}, which is not on this host.")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found := _find_install(root):  # another process finished while we waited
            return found
        with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
            staging = Path(tmp)
            done = _apt_download(apt_get, staging)
            if done.returncode != 0:
                subprocess.run(
                    [*apt_get, "update"],
                    env=_TOOL_ENV,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                done = _apt_download(apt_get, staging)
            debs = sorted(staging.glob("*.deb"))
            if done.returncode != 0 or len(debs) < len(PACKAGES):
                raise SshdUnavailable(
                    f"Could not download {' '.join(PACKAGES)} with `apt-get download` "
                    f"(exit {done.returncode}); the sshd tests need Debian's openssh-server "
                    f"binaries in {cache}: {(done.stderr or done.stdout).strip()[-2000:]}"
                )
            extract = staging / "root"
            for deb in debs:
                subprocess.run(
                    ["dpkg-deb", "-x", str(deb), str(extract)],
                    env=_TOOL_ENV,
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
            (extract / ".complete").write_text(" ".join(deb.name for deb in debs) + "\n")
            if root.exists():
                shutil.rmtree(root)
            extract.rename(root)
    found = _find_install(root)
    if found is None:
        raise SshdUnavailable(f"The openssh-server extracted in {root} lacks sshd or libwrap.")
    return found


@dataclass
class SSHServer:
    """One running private sshd. Connect as root to 127.0.0.1:`port`."""

    port: int
    host_key_pub: str
    known_hosts: Path
    client_key: Path
    authorized_keys: Path
    pid: int
    workdir: Path
    log: Path = field(default=Path(), repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def client_key_pub(self) -> str:
        """The test client's public key line (`ssh-ed25519 AAAA… comment`)."""
        return self.client_key.with_name(self.client_key.name + ".pub").read_text().strip()

    def ssh_options(self) -> list[str]:
        """`ssh` plus the options that pin this server's key and the client key (no -p, no host)."""
        return [
            "ssh",
            "-F", "/dev/null",
            "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def ssh_argv(self, *, tty: bool = False) -> list[str]:
        """Full ssh argv up to and including `root@127.0.0.1`; append the remote command words.

        `tty=True` adds `-tt` (force a PTY even when stdin is not a terminal).
        """
        return [*self.ssh_options(), "-p", str(self.port), *(["-tt"] if tty else []), self.target]

    @property
    def target(self) -> str:
        return f"{USER}@{HOST}"

    def git_ssh_command(self) -> str:
        """A GIT_SSH_COMMAND value. Git adds `-p PORT` itself for `ssh://host:PORT/…` URLs."""
        return shlex.join(self.ssh_options())

    def url(self, path: str) -> str:
        """`ssh://root@127.0.0.1:PORT/<path>`, e.g. url("app.git")."""
        return f"ssh://{USER}@{HOST}:{self.port}/{path.lstrip('/')}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM sshd (SIGKILL after `timeout`), then kill leftover sessions of this server.

        Sessions outlive the listening sshd, so every process still in this sshd's private
        mount namespace is killed by pid too; they can only have been started by it.
        """
        if self._stopped:
            return
        self._stopped = True
        # Only trust the pid while it is our unreaped child (it cannot have been reused), and
        # never sweep our own namespace.
        namespace = None
        if self._proc is not None and self._proc.poll() is None:
            namespace = _mount_namespace(self.pid)
            if namespace == _mount_namespace(os.getpid()):
                namespace = None
        _kill_and_wait(self.pid, self._proc, timeout)
        if namespace is not None:
            killed = _pids_in_namespace(namespace)
            for pid in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # A dying process leaves its namespaces before it has finished exiting: wait for the
            # killed ones themselves too (gone, or a zombie PID 1 has yet to reap).
            try:
                wait_for(
                    lambda: not _pids_in_namespace(namespace)
                    and not any(map(_still_running, killed)),
                    timeout,
                    message=f"the sessions of the sshd on port {self.port} to exit",
                )
            except TimeoutError as exc:
                left = set(_pids_in_namespace(namespace)) | set(filter(_still_running, killed))
                raise TimeoutError(f"{exc} Left: {_describe_pids(left)}") from None

    def __enter__(self) -> SSHServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in_namespace(namespace: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mount_namespace(int(entry)) == namespace:
            pids.append(int(entry))
    return pids


def _still_running(pid: int) -> bool:
    """True while `pid` exists and is not yet a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _describe_pids(pids: set[int]) -> str:
    """`pid STATE argv` of each pid, from /proc (`gone` for one that exited meanwhile), for an
    error that must say which processes are in the way; `none` for no pids."""
    parts = []
    for pid in sorted(pids):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            parts.append(f"{pid} gone")
            continue
        state = stat.rpartition(")")[2].split()[0]
        words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
        # A zombie has no argv left: its comm (in parentheses in stat) still names it.
        argv = shlex.join(words) if words else f"[{stat.partition('(')[2].rpartition(')')[0]}]"
        parts.append(f"{pid} {state} {argv}")
    return "; ".join(parts) or "none"


def _kill_and_wait(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if proc is not None and proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if proc is None:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        env=_TOOL_ENV,
        check=True,
        capture_output=True,
        timeout=30,
    )


def _private_passwd(dest: Path) -> None:
    """/etc/passwd plus the `sshd` privsep user, with root's shell set to /bin/sh."""
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == USER:
            fields[6] = "/bin/sh"
            line = ":".join(fields)
        lines.append(line)
    if not any(line.startswith("sshd:") for line in lines):
        lines.append("sshd:x:101:65534::/run/sshd:/usr/sbin/nologin")
    dest.write_text("\n".join(lines) + "\n")


def _config_text(
    workdir: Path, port: int, host_key: Path, authorized_keys: Path, env: Mapping[str, str]
) -> str:
    lines = [
        f"Port {port}",
        f"ListenAddress {HOST}",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",  # keys live under /tmp (1777); StrictModes would refuse them
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "Subsystem sftp /bin/false",
        "LogLevel VERBOSE",
    ]
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(f"Invalid environment variable name {key!r} for sshd SetEnv.")
        if any(char in value for char in '"\\\n\r'):
            raise ValueError(f"Value of {key} for sshd SetEnv has a quote, backslash or newline.")
        lines.append(f'SetEnv "{key}={value}"')
    return "\n".join(lines) + "\n"


def _namespace_argv(install: SshdInstall, passwd: Path, config: Path) -> list[str]:
    # unshare and sh both exec, so the Popen pid ends up being sshd's own pid.
    script = (
        'mount --bind "$1" /etc/passwd'
        " && mount -t tmpfs -o mode=0755 tmpfs /run"
        " && mkdir -m 0755 /run/sshd"
        ' && exec "$2" -D -e -f "$3"'
    )
    return [
        "unshare", "-m", "--propagation", "private",
        "sh", "-c", script, "sh", str(passwd), str(install.sshd), str(config),
    ]  # fmt: skip


def start_sshd(
    workdir: Path,
    authorized_keys: Path,
    *,
    env_passthrough: Mapping[str, str] | None = None,
    install: SshdInstall | None = None,
    timeout: float = 15.0,
) -> SSHServer:
    """Start a private sshd and wait until it accepts connections.

    `authorized_keys` is the file sshd reads (created empty if missing); write
    `command="…",restrict,pty ssh-ed25519 …` lines into it, e.g. for `client_key_pub`.
    `env_passthrough` becomes `SetEnv` lines: sshd clears the environment, so this is how a
    forced command learns e.g. MINIPAAS_DATA_DIR. The caller must `stop()` the server.
    """
    install = install or ensure_sshd()
    workdir = workdir.absolute()
    authorized_keys = authorized_keys.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if not authorized_keys.exists():
        authorized_keys.touch(mode=0o600)
    host_key = workdir / "host_ed25519"
    client_key = workdir / "client_ed25519"
    _keygen(host_key, "minipaas-test-host")
    _keygen(client_key, "minipaas-test-client")
    host_key_pub = " ".join(host_key.with_name("host_ed25519.pub").read_text().split()[:2])
    passwd = workdir / "passwd"
    _private_passwd(passwd)
    config = workdir / "sshd_config"
    log = workdir / "sshd.log"
    env = {**_TOOL_ENV, "LD_LIBRARY_PATH": str(install.lib_dir)}

    failures: list[str] = []
    for _attempt in range(5):
        port = free_port(HOST)
        config.write_text(
            _config_text(workdir, port, host_key, authorized_keys, env_passthrough or {})
        )
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                _namespace_argv(install, passwd, config),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not sshd
            )
        server = SSHServer(
            port=port,
            host_key_pub=host_key_pub,
            known_hosts=workdir / "known_hosts",
            client_key=client_key,
            authorized_keys=authorized_keys,
            pid=proc.pid,
            workdir=workdir,
            log=log,
            _proc=proc,
        )
        try:
            state = wait_for(
                functools.partial(_readiness, server, proc),
                timeout,
                message=f"sshd to listen on {HOST}:{port} (log: {log})",
            )
        except BaseException:
            server.stop()
            raise
        if state == "ready":
            server.known_hosts.write_text(f"[{HOST}]:{port} {host_key_pub}\n")
            return server
        server.stop()
        failures.append(server.log_text().strip())
        if "Address already in use" not in failures[-1]:
            break  # not a port race: retrying would fail the same way
    raise RuntimeError(
        f"The test sshd in {workdir} did not start; its log says:\n" + "\n---\n".join(failures)
    )


def _readiness(server: SSHServer, proc: subprocess.Popen[bytes]) -> str | None:
    if proc.poll() is not None:
        return "exited"
    if f"Server listening on {HOST} port {server.port}." not in server.log_text():
        return None
    try:
        with socket.create_connection((HOST, server.port), timeout=1):
            return "ready"
    except OSError:
        return None


@contextlib.contextmanager
def running_sshd(
    workdir: Path,
    authorized_keys: Path,
    *,
    env_passthrough: Mapping[str, str] | None = None,
) -> Iterator[SSHServer]:
    """`start_sshd` as a context manager that always stops the server."""
    server = start_sshd(workdir, authorized_keys, env_passthrough=env_passthrough)
    try:
        yield server
    finally:
        server.stop()


def forced_command_line(command: str, public_key: str) -> str:
    """An authorized_keys line running `command` for `public_key`, with `restrict,pty`."""
    if '"' in command or "\n" in command:
        raise ValueError(f"Forced command {command!r} may not contain quotes or newlines.")
    return f'command="{command}",restrict,pty {public_key.strip()}\n'
