"""Dyno sizes and memory quotas, Heroku's R14/R15, against a real server, sshd, Caddy and
bubblewrap dynos: app.json `formation.web.size`, `ps:type` / `ps:resize`, `ps` and the logs.

The server samples dynos every second here (`--metrics-interval 1`) so that a dyno over its
quota is seen within a few seconds; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support.load import Load
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

SERVER_ARGS = ["--metrics-interval", "1"]
MIB = 2**20

#: A web app that keeps `mb` more MB resident on each GET /alloc?mb=N (written bytes, so the
#: pages are really there), and says how much it holds.
LEAKY_APP = r'''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELD = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/alloc?mb="):
            HELD.append(b"\x01" * (int(self.path.split("=", 1)[1]) * 2**20))
        body = f"holding {sum(len(b) for b in HELD) // 2**20} MB pid {os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def leaky_repo(work: Path, app_json: dict[str, Any] | None) -> Path:
    src = work / "src"
    shutil.copytree(SAMPLES / "python-stdlib", src)
    (src / "app.py").chmod(0o644)
    (src / "app.py").write_text(LEAKY_APP)
    if app_json is not None:
        (src / "app.json").write_text(json.dumps(app_json))
    return git_repo(src, work / "repo")


def ps(paas: Paas, app: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
    return data


def web_up(paas: Paas, app: str) -> dict[str, Any] | None:
    dynos = [d for d in ps(paas, app)["dynos"] if d["type"] == "web" and d["state"] == "up"]
    return dynos[0] if len(dynos) == 1 else None


def logs(paas: Paas, app: str) -> str:
    return paas.cli("logs", "-a", app, "-n", "500").stdout


def test_r14_over_the_quota_then_r15_kills_and_restarts(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    app = "leaky"
    paas.cli("apps:create", app)
    size = {"formation": {"web": {"quantity": 1, "size": "64M"}}}
    deployed(ssh_push(sshd, leaky_repo(tmp_path, size), app))
    paas.wait_body(f"{app}.localhost", "holding 0 MB")
    first = wait_for(lambda: web_up(paas, app), timeout=30, interval=0.2)
    assert first["size"] == "64M" and first["memory"] == 64 * MIB  # from app.json
    assert "=== web (1, 64M): python app.py" in paas.cli("ps", "-a", app).stdout

    # ~80 MB on top of Python's own: over the quota, under twice it: R14, nothing killed.
    assert "holding 80 MB" in paas.wait_body(f"{app}.localhost", "holding 80", "/alloc?mb=80")
    wait_for(
        lambda: "Error R14 (Memory quota exceeded)" in logs(paas, app), timeout=30, interval=0.5
    )
    text = logs(paas, app)
    assert "minipaas[web.1]: Process running mem=" in text, text
    still = web_up(paas, app)
    assert still is not None and still["pid"] == first["pid"] and still["restarts"] == 0

    # ~150 MB: over twice the quota: R15, SIGKILL, and the dyno comes back (crash path).
    paas.curl(f"{app}.localhost", "/alloc?mb=70")

    def restarted() -> dict[str, Any] | None:
        dyno = web_up(paas, app)
        return dyno if dyno is not None and dyno["pid"] != first["pid"] else None

    again = wait_for(restarted, timeout=60, interval=0.5)
    assert again["restarts"] >= 1
    assert again["last_error"].startswith("Error R15 (Memory quota vastly exceeded): mem="), again
    text = logs(paas, app)
    assert "Error R15 (Memory quota vastly exceeded)" in text, text
    assert "Process exited with signal 9 (Error R15" in text, text
    out = paas.cli("ps", "-a", app).stdout
    assert "restarts=1: restarted after Error R15 (Memory quota vastly exceeded)" in out, out
    paas.wait_body(f"{app}.localhost", "holding 0 MB")  # a fresh process serves again


def test_ps_type_resizes_without_a_release_and_names_bad_sizes(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    app = "sized"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, leaky_repo(tmp_path, None), app))
    paas.wait_body(f"{app}.localhost", "holding 0 MB")
    first = wait_for(lambda: web_up(paas, app), timeout=30, interval=0.2)
    assert first["size"] is None and first["memory"] is None  # the default: no quota
    shown = paas.cli("ps:type", "-a", app).stdout
    assert "web   -     none" in shown and "no memory quota" in shown, shown
    releases = len(json.loads(paas.cli("releases", "-a", app, "--json").stdout))

    with Load(paas.http_port, f"{app}.localhost", workers=2) as load:  # rolling, as ps:restart
        wait_for(lambda: load.total() >= 20, timeout=30)
        out = paas.cli("ps:type", "web=standard-2x", "-a", app).stdout
        seen = load.total()
        wait_for(lambda: load.total() >= seen + 20, timeout=30)
    assert load.result.failed == 0, load.result.failures
    assert out.strip() == f"Resized web to standard-2x (1G) on {app}; their dynos restart with it."

    def resized() -> dict[str, Any] | None:
        dyno = web_up(paas, app)
        return dyno if dyno is not None and dyno["pid"] != first["pid"] else None

    dyno = wait_for(resized, timeout=30, interval=0.2)
    assert dyno["size"] == "standard-2x" and dyno["memory"] == 1024 * MIB
    assert dyno["restarts"] == 0 and dyno["last_error"] is None
    assert len(json.loads(paas.cli("releases", "-a", app, "--json").stdout)) == releases
    listed = json.loads(paas.cli("ps:type", "-a", app, "--json").stdout)
    assert listed == [{"type": "web", "size": "standard-2x", "memory": 2**30, "quantity": 1}]
    paas.wait_body(f"{app}.localhost", "holding 0 MB")
    assert "Resized web=standard-2x (1G)" in logs(paas, app)

    for bad, message in (
        ("web=huge", "Unknown dyno size 'huge': use one of eco, basic, standard-1x"),
        ("web=0M", "The dyno size '0M' is too small: a memory quota must be at least 64M."),
        ("web=63M", "The dyno size '63M' is too small"),
        ("web=performance-l-ram", "(30G) is more than this server's memory"),
        ("web=100000G", "is more than this server's memory"),
        ("worker=1G", f"No process type 'worker' in '{app}'; its types are: web."),
        ("Web!=1G", "Invalid process type"),
    ):
        result = paas.cli("ps:type", bad, "-a", app, check=False)
        assert result.returncode == 1, (bad, result)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            bad,
            result.stderr,
        )
    usage = paas.cli("ps:type", "web", "-a", app, check=False)
    assert usage.returncode == 2 and "Expected TYPE=SIZE" in usage.stderr, usage.stderr
    assert ps(paas, app)["sizes"] == {"web": "standard-2x"}  # nothing changed

    out = paas.cli("ps:resize", "web=none", "-a", app).stdout  # Heroku's other word
    assert out.strip() == f"Resized web to no quota on {app}; their dynos restart with it."
    wait_for(
        lambda: (d := web_up(paas, app)) is not None and d["memory"] is None,
        timeout=30,
        interval=0.2,
    )
    assert ps(paas, app)["sizes"] == {}


def test_app_json_size_applies_once_and_a_bad_one_fails_the_build(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    app = "jsonsized"
    paas.cli("apps:create", app)
    repo = leaky_repo(tmp_path, {"formation": {"web": {"size": "Huge-9X"}}})
    result = ssh_push(sshd, repo, app)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "app.json formation.web.size: Unknown dyno size 'Huge-9X'" in out, out

    (repo / "app.json").write_text(json.dumps({"formation": {"web": {"size": "standard-1x"}}}))
    commit(repo, "a size that exists")
    deployed(ssh_push(sshd, repo, app))
    assert ps(paas, app)["sizes"] == {"web": "standard-1x"}
    paas.cli("ps:type", "web=128M", "-a", app)
    commit(repo, "another deploy")  # app.json still says standard-1x: ps:type decides now
    deployed(ssh_push(sshd, repo, app))
    assert ps(paas, app)["sizes"] == {"web": "128M"}
    dyno = wait_for(lambda: web_up(paas, app), timeout=30, interval=0.2)
    assert dyno["memory"] == 128 * MIB and dyno["release"] == 2


def test_a_dyno_adopted_after_a_server_restart_keeps_its_quota(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    app = "adopted"
    paas.cli("apps:create", app)
    size = {"formation": {"web": {"size": "64M"}}}
    deployed(ssh_push(sshd, leaky_repo(tmp_path, size), app))
    first = wait_for(lambda: web_up(paas, app), timeout=30, interval=0.2)
    paas.kill9()  # the dyno keeps running; the next server adopts it
    paas.restart()
    adopted = wait_for(lambda: web_up(paas, app), timeout=30, interval=0.2)
    assert adopted["pid"] == first["pid"] and adopted["memory"] == 64 * MIB

    paas.curl(f"{app}.localhost", "/alloc?mb=150")

    def restarted() -> dict[str, Any] | None:
        dyno = web_up(paas, app)
        return dyno if dyno is not None and dyno["pid"] != first["pid"] else None

    again = wait_for(restarted, timeout=60, interval=0.5)
    assert again["last_error"].startswith("Error R15 (Memory quota vastly exceeded)"), again
