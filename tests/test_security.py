"""Isolation, tested as an attacker: one app's own push, build or dyno tries to reach what it must
not (the host outside its sandbox, another app's code, config, logs or traffic, the platform's
keys) on a real server with real builds in bubblewrap, and each attack is shown to fail.

One server (and one sshd) serves the whole module; each test uses its own apps.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from tests.paas import Paas, commit, deployed, git_env, git_repo, ssh_push
from tests.support.dirs import app_readable_dir, app_readable_tmp
from tests.support.ports import free_port, wait_for
from tests.support.server import server_argv
from tests.support.sshd import SSHServer


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, env=git_env(), capture_output=True)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_a_buildpack_ref_cannot_pass_options_to_git_fetch(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`BUILDPACK_URL=file:///bp.git#--upload-pack=/x/payload` once made the second build's
    `git fetch origin REF` run the payload on the host, as the app's uid, outside bubblewrap."""
    paas, sshd = env
    with app_readable_tmp() as shared:
        marker_dir = shared / "out"
        marker_dir.mkdir()
        marker_dir.chmod(0o777)
        payload = shared / "payload.sh"
        _write(payload, f'#!/bin/sh\nid > {marker_dir}/escaped\nexec git-upload-pack "$@"\n', 0o755)
        # A working buildpack whose repository has a branch named like a git option.
        work = shared / "bp"
        _write(work / "bin" / "detect", "#!/bin/sh\necho Evil\n", 0o755)
        _write(work / "bin" / "compile", "#!/bin/sh\n", 0o755)
        release = "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  worker: sleep 1\\n'\n"
        _write(work / "bin" / "release", release, 0o755)
        _git("init", "-q", "-b", "main", cwd=work)
        _git("add", "bin", cwd=work)
        _git("commit", "-q", "-m", "bp", cwd=work)
        ref = f"--upload-pack={payload}"
        _git("update-ref", f"refs/heads/{ref}", "HEAD", cwd=work)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o555 if p.is_dir() else p.stat().st_mode | 0o444)

        paas.cli("apps:create", "bpref")
        paas.cli("config:set", "-a", "bpref", f"BUILDPACK_URL=file://{work}#{ref}")
        repo = git_repo_with(tmp_path / "bpref", {"x": "x\n"})
        outputs = []
        for attempt in range(2):  # the first build clones, the second fetched with the ref
            commit(repo, f"attempt {attempt}")
            result = ssh_push(sshd, repo, "bpref")
            outputs.append(result.stdout + result.stderr)
        assert not (marker_dir / "escaped").exists(), (marker_dir / "escaped").read_text()
        for out in outputs:
            assert "which is not a branch, tag or commit" in out, out


def git_repo_with(dest: Path, files: dict[str, str]) -> Path:
    """A new repository at `dest` holding `files`, committed on main."""
    src = dest.with_name(dest.name + "-src")
    for name, text in files.items():
        _write(src / name, text)
    return git_repo(src, dest)


def test_an_ssh_key_cannot_forward_ports_to_loopback_services(env: tuple[Paas, SSHServer]) -> None:
    """An SSH key reaches the forced command and nothing else: no `ssh -W`/`-L` tunnel to the
    API's loopback port (or Caddy, or any dyno) through the server."""
    paas, sshd = env
    argv = [*sshd.ssh_options(), "-p", str(sshd.port), "-W", f"127.0.0.1:{paas.api_port}"]
    request = b"GET /api/apps HTTP/1.0\r\nHost: x\r\n\r\n"
    result = subprocess.run(
        [*argv, sshd.target], input=request, capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert b"HTTP/1" not in result.stdout, result.stdout
    assert b"forwarding failed" in result.stderr, result.stderr


#: A web dyno that also waits for a loopback port to come free, takes it, and answers whatever
#: reaches it with "stolen" (printing the request: the attacker's log). It lets go of the port
#: after one connection, so the server can start on it again.
SQUATTER = """\
import http.server, os, socket, threading, time

def squat(port):
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            time.sleep(0.02)
            continue
        s.listen(16)
        print("SQUATTING", port, flush=True)
        c, _ = s.accept()
        print("STOLEN", c.recv(65536).decode(errors="replace"), flush=True)
        c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nstolen")
        c.close()
        s.close()
        return

threading.Thread(target=squat, args=(int(os.environ["TARGET_PORT"]),), daemon=True).start()
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                                         http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""


def test_a_dyno_cannot_take_over_the_control_plane_while_minipaas_restarts(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """Caddy and the dynos outlive a restart of minipaas. Caddy dialled the API's loopback TCP
    port, so a dyno that took the port once it came free got every request to minipaas.<domain>
    meanwhile, with the CLI's or git's admin token in it. Caddy now dials a root-only socket."""
    paas, sshd = env
    paas.cli("apps:create", "squat")
    paas.cli("config:set", "-a", "squat", f"TARGET_PORT={paas.api_port}")
    repo = git_repo_with(
        tmp_path / "squat", {"Procfile": "web: python3 squat.py\n", "squat.py": SQUATTER}
    )
    deployed(ssh_push(sshd, repo, "squat"))
    token = (paas.data_dir / "admin-token").read_text().strip()
    outputs = list((paas.data_dir / "run" / "dynos" / "squat").glob("web.1.*/out"))
    assert len(outputs) == 1, outputs

    paas.kill9()  # as a crash or an upgrade does; Caddy and the dynos keep running
    try:
        wait_for(lambda: "SQUATTING" in outputs[0].read_text(), timeout=20)
        status, body = _curl_api(paas, token)
        assert body != "stolen", "Caddy sent the control plane's request to a dyno"
        assert status == 502, (status, body)
        # The dyno holds the TCP port all the same (a direct client would still reach it).
        with socket.create_connection(("127.0.0.1", paas.api_port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(1024).endswith(b"stolen")
        wait_for(lambda: port_is_free(paas.api_port), timeout=10)
    finally:
        paas.restart()
    assert token not in outputs[0].read_text() + paas.cli("logs", "-a", "squat", "-n", "500").stdout
    assert _curl_api(paas, token)[0] == 200  # the API is back behind Caddy


def _curl_api(paas: Paas, token: str) -> tuple[int, str]:
    """GET /api/apps at minipaas.localhost through Caddy, with the admin token."""
    host = "minipaas.localhost"
    argv = [
        "curl", "-sS", "--max-time", "10", "--cacert", str(paas.ca),
        "--resolve", f"{host}:{paas.https_port}:127.0.0.1",
        "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}",
        f"https://{host}:{paas.https_port}/api/apps",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_static_site_cannot_make_caddy_open_a_named_pipe(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A build may leave a FIFO in the site it asks Caddy to serve: each request for it held
    one of Caddy's threads for ever (the open waits for a writer), and at 10,000 Caddy dies
    with every app's routes. What is not a file, a directory or an inside link is not served."""
    paas, sshd = env
    with app_readable_tmp() as shared:
        bp = shared / "fifo-bp"
        _write(bp / "bin" / "detect", "#!/bin/sh\necho Fifo\n", 0o755)
        compile_ = (
            "#!/bin/sh\nset -e\nmkdir -p /app/public /app/.minipaas\n"
            "echo hello > /app/public/index.html\nmkfifo /app/public/pipe\n"
            "echo public > /app/.minipaas/static_root\n"
        )
        _write(bp / "bin" / "compile", compile_, 0o755)
        _write(bp / "bin" / "release", "#!/bin/sh\necho ---\n", 0o755)
        bp.chmod(0o755)
        (bp / "bin").chmod(0o755)
        paas.cli("apps:create", "fifo")
        paas.cli("config:set", "-a", "fifo", f"BUILDPACK_URL={bp}")
        repo = git_repo_with(tmp_path / "fifo", {"x": "x\n"})
        out = deployed(ssh_push(sshd, repo, "fifo"))
    paas.wait_body("fifo.localhost", "hello")
    assert paas.curl("fifo.localhost", "/pipe")[0] == 404  # at once, not after curl's 10 s
    assert "Not serving pipe: it is not a regular file or a directory." in out, out


#: A web dyno that listens on [::1]:$PORT only (as Node's `listen(port, "localhost")` can),
#: once something else answers at 127.0.0.1:$PORT (the attacker, in this test).
IPV6_ONLY = """\
import http.server, os, socket, time

port = int(os.environ["PORT"])
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)

class V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"victim")

V6(("::1", port), Hello).serve_forever()
"""


class _Attacker(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"attacker")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_another_listener_on_127_0_0_1_is_not_taken_for_a_dyno_on_ipv6_loopback(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """Caddy and the health check dial dynos at 127.0.0.1. A dyno listening on [::1] alone
    counted as listening on its port, so whoever took 127.0.0.1 on that port (another app's
    dyno) passed the new dyno's checks and was sent its traffic."""
    paas, sshd = env
    paas.cli("apps:create", "vsix")
    paas.cli("checks:set", "-a", "vsix", "path=/", "timeout=5")
    repo = git_repo_with(
        tmp_path / "vsix", {"Procfile": "web: python3 v6.py\n", "v6.py": IPV6_ONLY}
    )
    results: list[subprocess.CompletedProcess[str]] = []
    pushing = threading.Thread(target=lambda: results.append(ssh_push(sshd, repo, "vsix")))
    pushing.start()
    attacker = None
    try:
        dynos = paas.data_dir / "run" / "dynos" / "vsix"
        meta = wait_for(lambda: next(dynos.glob("web.1.*/dyno.json"), None), timeout=60)
        port = wait_for(lambda: json.loads(meta.read_text() or "{}").get("port"), timeout=10)
        attacker = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Attacker)
        threading.Thread(target=attacker.serve_forever, daemon=True).start()
        pushing.join(timeout=120)
        assert results, "the push did not end"
        assert paas.curl("vsix.localhost")[1] != "attacker", "the app's traffic went elsewhere"
    finally:
        if attacker is not None:
            attacker.shutdown()
            attacker.server_close()
        pushing.join(timeout=120)
    out = results[0].stdout + results[0].stderr
    assert results[0].returncode != 0, out
    assert "another process holds that port" in out, out


def test_a_dyno_cannot_make_user_namespaces(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """`unshare -r` gave a dyno a root of its own (and the kernel's namespace-only code paths,
    where local privilege escalations usually start); bubblewrap now forbids nested ones."""
    paas, sshd = env
    paas.cli("apps:create", "nons")
    repo = git_repo_with(tmp_path / "nons", {"Procfile": "worker: sleep 3600\n"})
    deployed(ssh_push(sshd, repo, "nons"))
    result = paas.cli("run", "-a", "nons", "--", "sh", "-c", "unshare -r id -u", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "unshare failed" in out, out


def test_destroy_removes_the_apps_buildpack_clones(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`apps:destroy` left the app's git buildpack clones behind, owned by its uid; a new app
    of the same name then built with the clone the old owner had fetched."""
    paas, sshd = env
    with app_readable_tmp() as shared:
        work = shared / "bp"
        _write(work / "bin" / "detect", "#!/bin/sh\necho Cloned\n", 0o755)
        _write(work / "bin" / "compile", "#!/bin/sh\necho compiled by v1\n", 0o755)
        _write(work / "bin" / "release", "#!/bin/sh\necho ---\n", 0o755)
        _git("init", "-q", "-b", "main", cwd=work)
        _git("add", "bin", cwd=work)
        _git("commit", "-q", "-m", "v1", cwd=work)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o555 if p.is_dir() else p.stat().st_mode | 0o444)
        clones = paas.data_dir / "cache" / "_buildpacks" / "reborn"

        def deploy_reborn(name: str) -> str:
            paas.cli("apps:create", "reborn")
            paas.cli("config:set", "-a", "reborn", f"BUILDPACK_URL=file://{work}")
            return deployed(ssh_push(sshd, git_repo_with(tmp_path / name, {"x": "x\n"}), "reborn"))

        assert "compiled by v1" in deploy_reborn("first")
        first_uid = clones.stat().st_uid
        paas.cli("apps:destroy", "-a", "reborn", "--confirm", "reborn")
        assert not clones.exists()

        _write(work / "bin" / "compile", "#!/bin/sh\necho compiled by v2\n", 0o755)
        _git("commit", "-q", "-am", "v2", cwd=work)
        assert "compiled by v2" in deploy_reborn("second")
        assert clones.stat().st_uid != first_uid or first_uid == 0


def test_a_local_buildpack_path_tells_nothing_about_root_only_directories(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """Checked as root, a BUILDPACK_URL path inside a root-only directory failed one way when
    it existed and another when it did not: an app could map what the host hides from it."""
    paas, sshd = env
    paas.cli("apps:create", "oracle")
    repo = git_repo_with(tmp_path / "oracle", {"x": "x\n"})
    with app_readable_tmp() as shared:
        private = shared / "private"
        (private / "exists" / "bin").mkdir(parents=True)
        private.chmod(0o700)
        outputs = {}
        for name in ("exists", "absent"):
            url = f"{private / name}"
            paas.cli("config:set", "-a", "oracle", f"BUILDPACK_URL={url}")
            commit(repo, name)
            result = ssh_push(sshd, repo, "oracle")
            assert result.returncode != 0
            out = result.stdout + result.stderr
            outputs[name] = out.replace(url, "URL")
            expected = f"Buildpack {url!r} is not a directory that the app may read on this server."
            assert expected in out, out
        errors = {k: [ln for ln in v.splitlines() if "!" in ln] for k, v in outputs.items()}
        assert errors["exists"] == errors["absent"]


#: Types "id # <marker>\n" into its terminal, if the kernel lets it (the marker is spelled from
#: character codes so that only typed bytes can show it), and says what happened.
TIOCSTI = """\
import fcntl, termios
typed = bytes([105, 100, 32, 35, 32, 80, 87, 78, 69, 68, 10])
try:
    for byte in typed:
        fcntl.ioctl(0, termios.TIOCSTI, bytes([byte]))
    print("TIOCSTI allowed", flush=True)
except OSError as exc:
    print("TIOCSTI refused:", exc.strerror, flush=True)
"""


def test_an_attached_run_cannot_type_into_the_users_terminal(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`minipaas run` hands the user's terminal to the dyno as its controlling terminal; with
    TIOCSTI the app's code typed a command there, which the user's shell ran as them (root on
    the server) once the run ended. A seccomp filter now refuses that ioctl."""
    paas, sshd = env
    paas.cli("apps:create", "typer")
    repo = git_repo_with(
        tmp_path / "typer", {"Procfile": "worker: sleep 3600\n", "typer.py": TIOCSTI}
    )
    deployed(ssh_push(sshd, repo, "typer"))
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [str(paas.exe), "run", "-a", "typer", "--", "python3 typer.py; sleep 0.2"],
            stdin=slave, stdout=slave, stderr=slave, env=paas.env, start_new_session=True,
        )
        os.close(slave)
        seen = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 1.0)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave descriptor is closed
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            proc.wait(timeout=60)
    finally:
        os.close(master)
    text = seen.decode(errors="replace")
    assert "TIOCSTI refused: Operation not permitted" in text, text
    assert "PWNED" not in text, text  # what was typed is echoed by the terminal


def test_without_api_port_the_api_listens_on_no_tcp_port(tmp_path: Path) -> None:
    """Caddy reaches the API on its unix socket, so by default nothing listens on a loopback
    TCP port for the API: no port for a dyno to take over, nor to guess tokens at."""
    base = app_readable_dir()
    keys = tmp_path / "authorized_keys"
    keys.touch()
    paas = Paas(
        data_dir=base / "data", http_port=free_port(), https_port=free_port(),
        authorized_keys=keys, log=tmp_path / "server.log",
    )
    argv = server_argv(
        paas.exe, paas.data_dir, http_port=paas.http_port, https_port=paas.https_port,
        api_port=0, authorized_keys=keys,
    )
    at = argv.index("--api-port")
    del argv[at : at + 2]
    with paas.log.open("ab") as out:
        paas.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=paas.env, start_new_session=True
        )
    try:
        wait_for(
            lambda: paas.cli("status", check=False).returncode == 0 and paas.ca.exists(),
            timeout=60,
        )
        assert _tcp_listeners(paas.proc.pid) == set()
        token = (paas.data_dir / "admin-token").read_text().strip()
        assert _curl_api(paas, token)[0] == 200
    finally:
        paas.stop()
        shutil.rmtree(base, ignore_errors=True)


def _tcp_listeners(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                inodes[f"socket:[{fields[9]}]"] = int(fields[1].rsplit(":", 1)[1], 16)
    fds = Path(f"/proc/{pid}/fd")
    links = {os.readlink(fd) for fd in fds.iterdir()}
    return {port for inode, port in inodes.items() if inode in links}
