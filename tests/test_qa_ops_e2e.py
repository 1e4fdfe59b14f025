"""QA of the operations features against a real server: what happens to an app's one-off dynos
(`run`, the path cron jobs take) when the app is destroyed, and more."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support import sleeper
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer


def test_destroy_kills_the_apps_one_off_dynos(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """`apps:destroy` left a running `minipaas run` (and so a cron job: the same one-off path)
    running for up to an hour, under the app's uid, and its exit line recreated the destroyed
    app's log directory."""
    paas, sshd = env
    app = "qaops-gone"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    detached, attached = sleeper.marker(), sleeper.marker() + "1"
    # stdin /dev/null: the API's streamed run (run_once, as cron); a pipe: the attached run.
    clients = [
        paas.run_in_background(app, f"sleep {marker}; echo done", stdin=stdin)
        for marker, stdin in ((detached, subprocess.DEVNULL), (attached, subprocess.PIPE))
    ]
    try:
        both = (detached, attached)
        wait_for(lambda: all(sleeper.sleeping(m) for m in both), timeout=30, interval=0.1)
        paas.cli("apps:destroy", "-a", app, "--confirm", app)
        assert not any(sleeper.sleeping(m) for m in both)  # gone before it answered
        for client in clients:
            client.wait(timeout=30)
    finally:
        for client in clients:
            client.kill()
            client.wait()
            if client.stdin is not None:
                client.stdin.close()
    assert not (paas.data_dir / "logs" / app).exists()
    paas.cli("apps:create", app)  # the name is free again, with no logs of the old app
    assert "sleep" not in paas.cli("logs", "-a", app).stdout
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def _web_pids(paas: Paas, app: str) -> list[int]:
    dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
    return sorted(int(d["pid"]) for d in dynos if d["type"] == "web" and d["state"] == "up")


def test_checks_set_applies_to_the_next_restart(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`checks:set` says it "applies from the next deploy or restart", but `ps:restart` reused
    the check the dynos were started with: a dyno failing the new check went live."""
    paas, sshd = env
    app = "qaops-check"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")
    before = _web_pids(paas, app)
    paas.cli("checks:set", "path=/health", "expect=NOPE", "timeout=2", "-a", app)

    failed = paas.cli("ps:restart", "-a", app, check=False)
    assert failed.returncode == 1 and "health check" in failed.stderr, failed.stderr
    assert "The previous dynos keep running" in failed.stderr
    assert _web_pids(paas, app) == before
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")

    paas.cli("checks:set", "path=/health", "expect=hello", "timeout=5", "-a", app)
    paas.cli("ps:restart", "web", "-a", app)
    after = _web_pids(paas, app)
    assert after and after != before
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_ps_lists_running_one_off_dynos(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """`ps` never showed a running `run` or cron job (Heroku's lists its one-off processes): a
    cron job that hung for its hour was invisible."""
    paas, sshd = env
    app = "qaops-ps"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    marker = sleeper.marker()
    client = paas.run_in_background(app, f"sleep {marker}")
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
        data = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
        [one_off] = data["one_offs"]
        assert one_off["name"] == "run.1" and one_off["type"] == "run"
        assert one_off["command"] == f"sh -c 'sleep {marker}'" and one_off["release"] == 1
        assert [d["name"] for d in data["dynos"]] == ["web.1"]  # not part of the formation
        text = paas.cli("ps", "-a", app).stdout
        assert "=== one-off processes (1)" in text
        assert f"s v1 pid={one_off['pid']}: sh -c 'sleep {marker}'" in text
        assert "run.1: up " in text
        paas.cli("ps:scale", "web=0", "-a", app)
        assert "run.1: up" in paas.cli("ps", "-a", app).stdout  # not "No dynos"

        # and `ps:stop run.1` stops it, as on Heroku (a hung cron job: `ps:stop cron.1`)
        started = time.monotonic()
        assert "Stopped run.1 of" in paas.cli("ps:stop", "run.1", "-a", app).stdout
        assert not sleeper.sleeping(marker) and time.monotonic() - started < 8  # SIGTERM did it
        client.wait(timeout=30)
        data = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
        assert data["one_offs"] == [] and data["stopped"] == []
        for bad, message in (
            ("run.1", "runs no one-off dyno 'run.1'"),
            ("web.1", "to stop a process type, use `ps:stop web`"),
            ("run.x", "'run.x'"),
        ):
            result = paas.cli("ps:stop", bad, "-a", app, check=False)
            assert result.returncode == 1 and message in result.stderr, result.stderr
    finally:
        client.kill()
        client.wait()
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_metrics_count_exactly_the_requests_and_404s_sent(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A known load on a static site (its 404.html answers misses): `metrics` counts exactly
    the requests and the 4xx answers sent, and no 5xx."""
    paas, sshd = env
    app = "qaops-metered"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "static-site", tmp_path / app)
    (repo / "404.html").write_text("<h1>not here</h1>")
    commit(repo, "a 404 page")
    deployed(ssh_push(sshd, repo, app))
    host = f"{app}.localhost"
    base = f"https://{host}:{paas.https_port}"
    urls = [f"{base}/"] * 20 + [f"{base}/missing-{n}" for n in range(10)] + [f"{base}/.env"] * 2
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(paas.ca),
            "--resolve",
            f"{host}:{paas.https_port}:127.0.0.1",
            "-w",
            "%{http_code}\n",
            *["-o", "/dev/null"] * len(urls),
            *urls,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out.count("200") == 20 and out.count("404") == 12, out
    assert paas.curl(host, "/nope") == (404, "<h1>not here</h1>")  # the site's own 404 page

    def totals() -> tuple[int, int, int] | None:
        data = json.loads(paas.cli("metrics", "-a", app, "--json").stdout)
        step = data["interval"]
        seen = [round(sum(p[k] * step for p in data["router"])) for k in ("rps", "r4xx", "r5xx")]
        return (seen[0], seen[1], seen[2]) if seen[0] >= 33 else None

    requests, r4xx, r5xx = wait_for(totals, timeout=30, interval=0.5)
    assert (requests, r4xx, r5xx) == (33, 13, 0)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
