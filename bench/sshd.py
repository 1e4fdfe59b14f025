"""A private OpenSSH server for the TUI benchmarks (a trimmed copy of tests/support/sshd.py:
bench/ never imports tests/).

Owns: finding (or fetching with `apt-get download` + `dpkg-deb -x`, never installing) Debian's
openssh-server binaries in the same cache the tests use, and running one `sshd` on a free
127.0.0.1 port inside a private mount namespace (a copy of /etc/passwd adds the `sshd`
privilege-separation user and sets root's shell to /bin/sh; a tmpfs /run holds /run/sshd).
Its AuthorizedKeysFile is the one the bench server's `keys:add` maintains, so the forced command
is the real `minipaas ssh`. Must not touch: the system's ssh configuration, /etc, port 22, or any
process it did not start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.server import free_port, wait_for

HOST = "127.0.0.1"
PACKAGES = ("openssh-server", "libwrap0")
TOOL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def cache_dir() -> Path:
    """The tests' cache (`$MINIPAAS_TEST_CACHE/sshd`, or /var/cache/minipaas-tests/sshd as
    root, else ~/.cache/minipaas-tests/sshd), so a machine that ran the tests fetches nothing."""
    if explicit := os.environ.get("MINIPAAS_TEST_CACHE"):
        return Path(explicit) / "sshd"
    if os.geteuid() == 0:
        return Path("/var/cache/minipaas-tests/sshd")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "minipaas-tests" / "sshd"


def _installed(root: Path) -> tuple[Path, Path] | None:
    sshd = root / "usr" / "sbin" / "sshd"
    libs = sorted(root.glob("usr/lib/*/libwrap.so.0")) + sorted(root.glob("lib/*/libwrap.so.0"))
    if (root / ".complete").exists() and sshd.is_file() and libs:
        return sshd, libs[0].parent
    return None


def ensure_sshd() -> tuple[Path, Path]:
    """(sshd binary, dir holding libwrap.so.0), downloading the debs on first use."""
    cache = cache_dir()
    root = cache / "root"
    if found := _installed(root):
        return found
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if found := _installed(root):
            return found
        with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
            staging = Path(tmp)
            argv = ["apt-get", "download", *PACKAGES]
            kw = {"cwd": staging, "env": TOOL_ENV, "capture_output": True, "text": True}
            done = subprocess.run(argv, timeout=300, check=False, **kw)  # type: ignore[call-overload]
            if done.returncode != 0:
                subprocess.run(["apt-get", "update"], timeout=600, check=False, **kw)  # type: ignore[call-overload]
                done = subprocess.run(argv, timeout=300, check=False, **kw)  # type: ignore[call-overload]
            debs = sorted(staging.glob("*.deb"))
            if done.returncode != 0 or len(debs) < len(PACKAGES):
                raise RuntimeError(f"apt-get download {' '.join(PACKAGES)} failed: {done.stderr}")
            extract = staging / "root"
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(extract)], env=TOOL_ENV,
                               check=True, capture_output=True, timeout=120)
            (extract / ".complete").write_text("\n")
            if root.exists():
                shutil.rmtree(root)
            extract.rename(root)
    found = _installed(root)
    if found is None:
        raise RuntimeError(f"The openssh-server extracted in {root} lacks sshd or libwrap.")
    return found


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        env=TOOL_ENV, check=True, capture_output=True, timeout=30,
    )


def _passwd(dest: Path) -> None:
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == "root":
            fields[6] = "/bin/sh"  # sshd runs forced commands through the login shell
            line = ":".join(fields)
        lines.append(line)
    if not any(line.startswith("sshd:") for line in lines):
        lines.append("sshd:x:101:65534::/run/sshd:/usr/sbin/nologin")
    dest.write_text("\n".join(lines) + "\n")


@dataclass
class BenchSshd:
    """One running private sshd; `ssh_argv()` connects to it as root with the bench's key."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_ed25519"

    @property
    def client_key_pub(self) -> str:
        return (self.workdir / "client_ed25519.pub").read_text()

    def ssh_argv(self, *words: str, tty: bool = False) -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.workdir / 'known_hosts'}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port), *(["-tt"] if tty else []), f"root@{HOST}", *words,
        ]  # fmt: skip

    def log(self) -> str:
        try:
            return (self.workdir / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop sshd, then kill every session left in its private mount namespace."""
        namespace = None
        if self.proc.poll() is None:
            namespace = _namespace(self.proc.pid)
            if namespace == _namespace(os.getpid()):
                namespace = None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if namespace is not None:
            for pid in _pids_in(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pids_in(namespace: str) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _namespace(int(e)) == namespace]


def start_sshd(workdir: Path, authorized_keys: Path, timeout: float = 15) -> BenchSshd:
    """Start sshd reading `authorized_keys` (created if missing); wait until it accepts."""
    sshd_bin, lib_dir = ensure_sshd()
    workdir.mkdir(parents=True, exist_ok=True)
    if not authorized_keys.exists():
        authorized_keys.touch(mode=0o600)
    host_key = workdir / "host_ed25519"
    _keygen(host_key, "minipaas-bench-host")
    _keygen(workdir / "client_ed25519", "minipaas-bench-client")
    passwd = workdir / "passwd"
    _passwd(passwd)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {HOST}", f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}", f"AuthorizedKeysFile {authorized_keys}",
        "AuthenticationMethods publickey", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password",
        "StrictModes no", "PrintMotd no", "PrintLastLog no", "UseDNS no", "LogLevel VERBOSE",
    ]) + "\n")  # fmt: skip
    script = (
        'mount --bind "$1" /etc/passwd && mount -t tmpfs -o mode=0755 tmpfs /run'
        ' && mkdir -m 0755 /run/sshd && exec "$2" -D -e -f "$3"'
    )
    with open(workdir / "sshd.log", "wb") as log:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
             str(passwd), str(sshd_bin), str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**TOOL_ENV, "LD_LIBRARY_PATH": str(lib_dir)}, start_new_session=True,
        )  # fmt: skip
    server = BenchSshd(workdir, port, proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {server.log()[-2000:]}")
        if f"Server listening on {HOST} port {port}." not in server.log():
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return True
        return False

    try:
        wait_for(ready, timeout, what=f"sshd on {HOST}:{port}")
    except BaseException:
        server.stop()
        raise
    pub = " ".join(host_key.with_name("host_ed25519.pub").read_text().split()[:2])
    (workdir / "known_hosts").write_text(f"[{HOST}]:{port} {pub}\n")
    return server
