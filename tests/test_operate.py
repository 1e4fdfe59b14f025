"""Operating apps like Heroku (issue 3): releases and rollback, scaling, ps:stop/start, one-off
runs, health check settings and their bad input, against a real server, sshd and Caddy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.paas import SAMPLES, Paas, commit, deploy_sample, deployed, git_repo, ssh_push
from tests.support import sleeper
from tests.support.forkbomb import FORK_BOMB
from tests.support.load import Load
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer


def test_rollback_is_instant_and_restores_body_and_config(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "rb")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "rb")
    deployed(ssh_push(sshd, repo, "rb"))  # v1
    paas.wait_body("rb.localhost", "hello from python-stdlib")
    paas.cli("config:set", "GREETING=one", "-a", "rb")  # v2
    (repo / "app.py").write_text((repo / "app.py").read_text().replace("hello from", "v3 from"))
    commit(repo, "v3")
    deployed(ssh_push(sshd, repo, "rb"))  # v3
    paas.wait_body("rb.localhost", "v3 from python-stdlib one")
    builds_before = len(list((paas.data_dir / "slugs" / "rb").iterdir()))

    out = paas.cli("rollback", "-a", "rb").stdout
    assert "Rollback to v2" in out and "v4" in out
    paas.wait_body("rb.localhost", "hello from python-stdlib one")
    assert len(list((paas.data_dir / "slugs" / "rb").iterdir())) == builds_before  # no build

    paas.cli("rollback", "v1", "-a", "rb")
    paas.wait_body("rb.localhost", "hello from python-stdlib")
    assert paas.curl("rb.localhost")[1].strip() == "hello from python-stdlib"
    assert paas.cli("config", "-a", "rb", "--json").stdout.strip() == "{}"  # v1 had no config

    releases = json.loads(paas.cli("releases", "-a", "rb", "--json").stdout)
    assert [r["description"] for r in releases[:2]] == ["Rollback to v1", "Rollback to v2"]
    assert releases[0]["current"] and releases[0]["created_by"] == "admin"
    info = paas.cli("releases:info", "v3", "-a", "rb").stdout
    assert "Deploy" in info and "GREETING" in info  # config names only, never values
    assert "one" not in info.split("Config:")[1].splitlines()[0]

    for bad, message in (
        ("v99", "No release v99"),
        ("vx", "Invalid release"),
        ("v5", "already the current release"),
    ):
        result = paas.cli("rollback", bad, "-a", "rb", check=False)
        assert result.returncode in (1, 2) and message in result.stderr, result.stderr


def test_scale_web_three_all_serving_and_stop_start(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "scaled")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "worker-web", tmp_path / "scaled"), "scaled"))
    paas.wait_body("scaled.localhost", "hello from worker-web")
    paas.cli("ps:scale", "web=3", "-a", "scaled")

    def web_up() -> list[dict[str, object]]:
        dynos = json.loads(paas.cli("ps", "-a", "scaled", "--json").stdout)["dynos"]
        up = [d for d in dynos if d["type"] == "web" and d["state"] == "up"]
        return up if len(up) == 3 else []

    dynos = wait_for(web_up, timeout=30, interval=0.2)
    assert sorted(d["name"] for d in dynos) == ["web.1", "web.2", "web.3"]
    for dyno in dynos:
        body = subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{dyno['port']}/"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        assert body == "hello from worker-web"
    for _ in range(6):
        assert paas.curl("scaled.localhost")[0] == 200

    # bad scaling input changes nothing
    for args, message in (
        (["clock=1"], "No process type 'clock'"),
        (["web=-1"], "Invalid count -1"),
        (["web=1000"], "Invalid count 1000"),
        (["web=x"], "Invalid count 'x'"),
        (["web"], "Expected TYPE=COUNT"),
    ):
        result = paas.cli("ps:scale", *args, "-a", "scaled", check=False)
        assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert len(web_up()) == 3

    # one dyno restarted, as `heroku ps:restart web.2` does: the others keep their processes
    pids = {d["name"]: d["pid"] for d in web_up()}
    out = paas.cli("ps:restart", "web.2", "-a", "scaled").stdout
    assert out.strip() == "Restarted web.2 of scaled."
    after = {d["name"]: d["pid"] for d in wait_for(web_up, timeout=30, interval=0.2)}
    assert after["web.1"] == pids["web.1"] and after["web.3"] == pids["web.3"]
    assert after["web.2"] != pids["web.2"]
    assert paas.curl("scaled.localhost")[0] == 200
    for bad, message in (
        ("web.4", "The app 'scaled' has no dyno web.4 to restart."),
        ("web.0", "Invalid process type or dyno 'web.0'"),
        ("web.x", "Invalid process type or dyno 'web.x'"),
    ):
        result = paas.cli("ps:restart", bad, "-a", "scaled", check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert {d["name"]: d["pid"] for d in web_up()} == after

    paas.cli("ps:scale", "worker=1", "-a", "scaled")
    paas.cli("ps:stop", "worker", "-a", "scaled")
    dynos = json.loads(paas.cli("ps", "-a", "scaled", "--json").stdout)
    assert dynos["formation"]["worker"] == 1  # remembered
    # stopped: listed as stopping until its process is gone, then not at all
    assert all(d["state"] == "stopping" for d in dynos["dynos"] if d["type"] == "worker")

    def workers() -> list[object]:
        listed = json.loads(paas.cli("ps", "-a", "scaled", "--json").stdout)["dynos"]
        return [d for d in listed if d["type"] == "worker"]

    wait_for(lambda: not workers(), timeout=40)
    paas.cli("ps:start", "worker", "-a", "scaled")
    wait_for(lambda: "worker.1: up" in paas.cli("ps", "-a", "scaled").stdout, timeout=20)
    assert paas.cli("ps:stop", "clock", "-a", "scaled", check=False).returncode == 1


def test_one_off_run_passes_output_and_status(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "runner")
    paas.cli("config:set", "GREETING=from-config", "-a", "runner")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / "runner"), "runner"))
    result = paas.cli(
        "run", "-a", "runner", "--", "sh", "-c", "echo $GREETING $DYNO $PORT; id -u; exit 3",
        check=False,
    )
    assert result.returncode == 3, result
    lines = result.stdout.splitlines()
    greeting, dyno, port = lines[0].split()
    assert (greeting, dyno.startswith("run.")) == ("from-config", True)
    assert 1024 < int(port) < 65536  # a one-off dyno has a $PORT too, as on Heroku
    assert lines[1] != "0"
    # over SSH as well
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "run", "-a", "runner", "--", "python", "-c",
         "'import os; print(6*7, int(os.environ[\"PORT\"]) > 1024)'"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert over_ssh.returncode == 0 and "42 True" in over_ssh.stdout, over_ssh.stderr
    empty = paas.cli("run", "-a", "runner", check=False)
    assert empty.returncode == 2 and "No command given" in empty.stderr


def test_run_detached_runs_in_the_background_with_its_output_in_the_logs(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`run:detached` (Heroku's word): the command starts, the CLI returns with the dyno's name,
    the output goes to the app's logs, `ps` lists the dyno and `ps:stop` ends it."""
    paas, sshd = env
    app = "detacher"
    paas.cli("apps:create", app)
    nothing = paas.cli("run:detached", "-a", app, "--", "true", check=False)
    assert nothing.returncode == 1 and "has no release" in nothing.stderr, nothing
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    seconds = sleeper.marker()
    out = paas.cli(
        "run:detached", "-a", app, "--", f"echo detached-$DYNO; sleep {seconds}; echo never"
    ).stdout
    dyno = out.split(" as ", 1)[1].split(":", 1)[0]
    assert out == (
        f"Running `echo detached-$DYNO; sleep {seconds}; echo never` on {app} as {dyno}: see "
        f"its output with `minipaas logs -a {app} --dyno {dyno}`, stop it with "
        f"`minipaas ps:stop {dyno} -a {app}`.\n"
    )
    assert dyno.startswith("run.")
    wait_for(lambda: f"detached-{dyno}" in paas.cli("logs", "-a", app, "--dyno", dyno).stdout,
             timeout=30)
    assert sleeper.sleeping(seconds)
    one_offs = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["one_offs"]
    assert [d["name"] for d in one_offs] == [dyno]
    paas.cli("ps:stop", dyno, "-a", app)
    wait_for(lambda: not sleeper.sleeping(seconds), timeout=30)
    logs = paas.cli("logs", "-a", app, "--dyno", dyno).stdout
    assert f"app[{dyno}]: never" not in logs and f"[{dyno}]: Process exited with signal 15" in logs
    empty = paas.cli("run:detached", "-a", app, check=False)
    assert empty.returncode == 2 and "No command given; use `minipaas run:detached" in empty.stderr
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_fork_bomb_in_a_dyno_leaves_the_host_able_to_fork(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    deploy_sample(paas, sshd, "python-stdlib", "bomber", tmp_path)
    result = paas.cli("run", "-a", "bomber", "--", "python3", "-c", FORK_BOMB, check=False)
    words = result.stdout.split()
    assert words[:3] == ["fork", "failed", "after"], result.stdout + result.stderr
    assert 900 < int(words[3]) < 1024  # the app uid's limit (sandbox.MAX_PROCESSES), not the host's
    assert paas.cli("ps", "-a", "bomber").returncode == 0
    paas.wait_body("bomber.localhost", "hello from python-stdlib")


def test_out_of_memory_the_kernel_picks_a_dyno_not_caddy_or_minipaas(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    deploy_sample(paas, sshd, "python-stdlib", "oomer", tmp_path)
    ran = paas.cli("run", "-a", "oomer", "--", "cat", "/proc/self/oom_score_adj")
    assert ran.stdout.strip() == "500"
    [web] = json.loads(paas.cli("ps", "-a", "oomer", "--json").stdout)["dynos"]
    caddy = json.loads((paas.data_dir / "caddy" / "caddy.pid").read_text())["pid"]
    assert paas.proc is not None

    def score(pid: object) -> str:
        return Path(f"/proc/{pid}/oom_score_adj").read_text().strip()

    assert score(web["pid"]) == "500"
    # -500 where root may lower scores (CAP_SYS_RESOURCE; this test machine's root may not)
    assert int(score(paas.proc.pid)) <= 0 and int(score(caddy)) <= 0


def test_checks_settings_and_bad_input(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "checked")
    assert "no health check" in paas.cli("checks", "-a", "checked").stdout
    paas.cli("checks:set", "path=/health", "expect=ok", "min_uptime=1", "-a", "checked")
    shown = json.loads(paas.cli("checks", "-a", "checked", "--json").stdout)
    assert shown == {
        "check": {"path": "/health", "expect": "ok", "min_uptime": 1.0, "timeout": None},
        "source": "checks:set",
    }
    for pairs, message in (
        (["path=health"], "'health'"),
        (["timeout=-3"], "'-3'"),
        (["colour=red"], "'colour'"),
    ):
        result = paas.cli("checks:set", *pairs, "-a", "checked", check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert json.loads(paas.cli("checks", "-a", "checked", "--json").stdout) == shown
    paas.cli("checks:unset", "-a", "checked")
    assert "no health check" in paas.cli("checks", "-a", "checked").stdout

    # an invalid cron schedule in app.json fails the push; nothing changes
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "checked")
    (repo / "app.json").write_text(
        json.dumps({"cron": [{"command": "python app.py", "schedule": "*/0 * * * *"}]})
    )
    commit(repo, "bad cron")
    result = ssh_push(sshd, repo, "checked")
    assert result.returncode != 0 and "Invalid cron schedule '*/0 * * * *'" in result.stderr
    assert json.loads(paas.cli("releases", "-a", "checked", "--json").stdout) == []


def test_maintenance_mode_and_slug_pruning(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "maint")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "maint")
    deployed(ssh_push(sshd, repo, "maint"))
    paas.wait_body("maint.localhost", "hello from python-stdlib")
    assert "Maintenance mode on" in paas.cli("maintenance:on", "-a", "maint").stdout
    code, body = paas.curl("maint.localhost")
    assert code == 503 and "maintenance" in body.lower()
    assert "web.1: up" in paas.cli("ps", "-a", "maint").stdout  # dynos keep running
    paas.cli("maintenance:off", "-a", "maint")
    paas.wait_body("maint.localhost", "hello from python-stdlib")

    # only the newest five slugs are kept
    for n in range(6):
        (repo / "n.txt").write_text(str(n))
        commit(repo, f"n{n}")
        deployed(ssh_push(sshd, repo, "maint"))
    slugs = sorted(p.name for p in (paas.data_dir / "slugs" / "maint").iterdir())
    assert len(slugs) == 5, slugs
    result = paas.cli("rollback", "v1", "-a", "maint", check=False)
    assert result.returncode == 1 and "pruned" in result.stderr


def test_metrics_after_load(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "metered")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / "metered"), "metered"))
    paas.wait_body("metered.localhost", "hello from python-stdlib")
    with Load(paas.http_port, "metered.localhost", workers=2, max_requests=300) as load:
        wait_for(lambda: load.total() >= 300, timeout=60)
    assert load.result.failed == 0

    def measured() -> dict[str, object] | None:
        data = json.loads(paas.cli("metrics", "-a", "metered", "--json").stdout)
        router_seen = any(p["rps"] and p["p95"] for p in data["router"])
        dyno = data["dynos"].get("web.1") or []
        dyno_seen = any(p.get("rss") and p.get("cpu") is not None for p in dyno)
        return data if router_seen and dyno_seen else None

    data = wait_for(measured, timeout=30, interval=1.0)
    assert data is not None
    # the same traffic as the `router` log source, Heroku style
    router = paas.cli("logs", "-a", "metered", "--source", "router", "-n", "5").stdout
    lines = router.splitlines()
    assert len(lines) == 5 and all(" router[router]: at=info method=GET" in ln for ln in lines)
    assert 'path="/" host=metered.localhost' in lines[0] and "status=200" in lines[0]
    table = paas.cli("metrics", "-a", "metered").stdout
    assert "web.1" in table
    apps = json.loads(paas.cli("apps", "--json").stdout)
    assert any(a["name"] == "metered" and a.get("rss") for a in apps)
    for bad in ("0", "999999"):
        result = paas.cli("metrics", "-a", "metered", "--since", bad, check=False)
        assert result.returncode == 1, result


def test_interactive_run_over_ssh_with_a_tty(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "tty")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / "tty"), "tty"))
    script = "test -t 0 && echo on-a-tty; read line; echo got:$line; exit 5"
    result = subprocess.run(
        [*sshd.ssh_argv(tty=True), "run", "-a", "tty", "--", "sh", "-c", f"'{script}'"],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "on-a-tty" in result.stdout and "got:hello" in result.stdout, result.stdout
    logs = paas.cli("logs", "-a", "tty", "--source", "minipaas", "-n", "50").stdout
    assert "tester (ssh) ran" in logs
