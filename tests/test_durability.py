"""Surviving restarts and crashes (issue 3): real server, real dynos, real Caddy, under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.paas import SAMPLES, Paas, commit, deploy_sample, deployed, git_repo, ssh_push
from tests.support.load import Load
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer


def dynos(paas: Paas, app: str) -> list[dict[str, object]]:
    return json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]  # type: ignore[no-any-return]


def readopted(paas: Paas, app: str) -> dict[str, object]:
    """{dyno: pid} right after a restart: the server says it is ready only once it has taken
    the running dynos back, so `ps` must already list them (no waiting here)."""
    events = paas.cli("logs", "-a", app, "--source", "minipaas", "-n", "200").stdout
    assert "Re-adopted running dynos" in events, events
    return {d["name"]: d["pid"] for d in dynos(paas, app)}


def test_kill9_under_load_then_readopt(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "durable")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "worker-web", tmp_path / "durable"), "durable"))
    paas.cli("ps:scale", "web=2", "worker=1", "-a", "durable")
    wait_for(lambda: sum(d["state"] == "up" for d in dynos(paas, "durable")) == 3, timeout=30)
    before = {d["name"]: d["pid"] for d in dynos(paas, "durable")}

    with Load(paas.http_port, "durable.localhost", workers=3) as load:
        wait_for(lambda: load.result.ok > 30, timeout=30)
        paas.kill9()
        served_while_down = load.total()
        wait_for(lambda: load.total() > served_while_down + 200, timeout=30)
        # heartbeats written while nobody watched
        log_file_lines_down = load.total()
        paas.restart()
        wait_for(lambda: load.total() > log_file_lines_down + 100, timeout=30)
    assert load.result.failed == 0, dict(load.result.failures)

    assert readopted(paas, "durable") == before  # re-adopted, not restarted

    # heartbeat numbers are consecutive across the outage: nothing lost, nothing twice
    def beats() -> list[int]:
        out = paas.cli("logs", "-a", "durable", "--dyno", "worker.1", "-n", "100000").stdout
        return [
            int(ln.rsplit("heartbeat ", 1)[1].split()[0])
            for ln in out.splitlines()
            if "heartbeat" in ln
        ]

    numbers = wait_for(lambda: (b := beats()) and len(b) >= 5 and b, timeout=20)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_sigterm_restart_keeps_dynos(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "calm")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / "calm"), "calm"))
    paas.wait_body("calm.localhost", "hello from python-stdlib")
    before = {d["name"]: d["pid"] for d in dynos(paas, "calm")}
    assert paas.proc is not None
    paas.proc.terminate()
    paas.proc.wait(timeout=60)
    assert paas.curl("calm.localhost")[1].startswith("hello from python-stdlib")  # still served
    paas.restart()
    assert readopted(paas, "calm") == before


def test_crashy_restarts_backs_off_and_crashes(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "crashy")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "crashy", tmp_path / "crashy"), "crashy"))
    paas.wait_body("crashy.localhost", "hello from crashy")
    first = dynos(paas, "crashy")[0]["pid"]
    paas.curl("crashy.localhost", "/crash")
    wait_for(
        lambda: (d := dynos(paas, "crashy")[0])["state"] == "up" and d["pid"] != first, timeout=30
    )
    assert dynos(paas, "crashy")[0]["restarts"] >= 1
    paas.wait_body("crashy.localhost", "hello from crashy")

    # A process type that crashes at start: backoff, then `crashed` with the reason, and no
    # process left burning CPU. (A web release that cannot start is refused before the switch,
    # so the crash loop is shown on a worker.)
    repo = tmp_path / "crashy"
    (repo / "Procfile").write_text("web: python app.py\nworker: CRASH_AT_START=1 python app.py\n")
    commit(repo, "a worker that crashes at start")
    deployed(ssh_push(sshd, repo, "crashy"))
    paas.cli("ps:scale", "worker=1", "-a", "crashy")

    def worker() -> dict[str, object]:
        return next(d for d in dynos(paas, "crashy") if d["type"] == "worker")

    states = set()

    def crashed() -> bool:
        state = worker()["state"]
        states.add(state)
        return state == "crashed"

    wait_for(crashed, timeout=120, interval=0.3)
    assert "down" in states  # it waited with backoff between attempts
    assert worker()["pid"] is None and worker()["restarts"] >= 3
    # `ps` says why (the reason never left the supervisor), and no "pid=None"
    reason = worker()["reason"]
    assert isinstance(reason, str) and "status 3" in reason, reason
    listed = paas.cli("ps", "-a", "crashy").stdout
    assert f"worker.1: crashed v2 restarts={worker()['restarts']}: {reason}" in listed, listed
    logs = paas.cli("logs", "-a", "crashy", "--dyno", "worker.1", "-n", "300").stdout
    assert "crashing at start" in logs
    paas.wait_body("crashy.localhost", "hello from crashy")  # web unaffected


def test_fresh_release_that_crash_loops_is_rolled_back(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "autorb")
    repo = git_repo(SAMPLES / "crashy", tmp_path / "autorb")
    deployed(ssh_push(sshd, repo, "autorb"))  # v1
    paas.wait_body("autorb.localhost", "hello from crashy")
    # v2 starts fine (passes the port check) and then dies on every start after a moment
    (repo / "app.py").write_text(
        "import os, threading\n"
        "threading.Timer(1.5, lambda: os._exit(4)).start()\n"
        + (SAMPLES / "crashy" / "app.py").read_text()
    )
    commit(repo, "dies after 1.5 s")
    deployed(ssh_push(sshd, repo, "autorb"))  # v2 goes live, then crash-loops

    def rolled_back() -> bool:
        releases = json.loads(paas.cli("releases", "-a", "autorb", "--json").stdout)
        return releases[0]["description"] == "Rollback to v1" and releases[0]["current"]

    wait_for(rolled_back, timeout=180, interval=1.0)
    logs = paas.cli("logs", "-a", "autorb", "--source", "minipaas", "-n", "200").stdout
    assert "rolling back automatically" in logs
    paas.wait_body("autorb.localhost", "hello from crashy")


def test_unhealthy_deploy_rejected_under_load(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "healthy")
    repo = git_repo(SAMPLES / "python-flask", tmp_path / "healthy")
    deployed(ssh_push(sshd, repo, "healthy"))
    paas.wait_body("healthy.localhost", "hello from python-flask")
    paas.cli("checks:set", "path=/health", "expect=ok", "timeout=8", "-a", "healthy")
    (repo / "app.py").write_text(
        (repo / "app.py").read_text().replace('return "ok"', 'return "no", 500')
    )
    commit(repo, "unhealthy")
    with Load(paas.http_port, "healthy.localhost", workers=3) as load:
        wait_for(lambda: load.result.ok > 20, timeout=30)
        result = ssh_push(sshd, repo, "healthy")
        target = load.total() + 50
        wait_for(lambda: load.total() > target, timeout=30)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "health check GET /health" in out and "500" in out
    assert load.result.failed == 0, dict(load.result.failures)
    assert set(load.result.bodies) == {"hello from python-flask"}


def test_a_killed_caddy_is_started_again_at_once(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """The OOM killer picks Caddy: apps and the control plane answer again without a deploy."""
    paas, sshd = env
    deploy_sample(paas, sshd, "python-stdlib", "phoenix", tmp_path)
    paas.wait_body("phoenix.localhost", "hello from python-stdlib")
    pid_file = paas.data_dir / "caddy" / "caddy.pid"
    killed = json.loads(pid_file.read_text())["pid"]
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: json.loads(pid_file.read_text())["pid"] != killed, timeout=30)
    paas.wait_body("phoenix.localhost", "hello from python-stdlib", timeout=15)
    code, body = paas.curl("minipaas.localhost", "/api/apps")
    assert code == 401, body  # the control plane is routed again too (and wants a token)
    assert f"caddy (pid {killed}) stopped; starting it again" in paas.tail_log(200)


def test_logs_tail_follows_through_a_restart_of_the_server(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`logs -t` outlives an upgrade: it says the server went away, waits, and goes on with
    every heartbeat logged meanwhile, none twice."""
    paas, sshd = env
    deploy_sample(paas, sshd, "worker-web", "beats", tmp_path)
    paas.cli("ps:scale", "worker=1", "-a", "beats")
    out, err = tmp_path / "follow.out", tmp_path / "follow.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        follower = subprocess.Popen(
            [str(paas.exe), "logs", "-t", "-a", "beats", "--dyno", "worker.1", "-n", "0"],
            env=paas.env, stdout=stdout, stderr=stderr, start_new_session=True,
        )
    try:

        def beats() -> list[int]:
            return [int(ln.rsplit("heartbeat ", 1)[1].split()[0])
                    for ln in out.read_text().splitlines() if "heartbeat " in ln]

        wait_for(lambda: len(beats()) >= 2, timeout=30)
        assert paas.proc is not None
        paas.proc.terminate()  # what an upgrade does; the dynos keep running
        paas.proc.wait(timeout=60)
        wait_for(lambda: "went away" in err.read_text(), timeout=30)
        before = len(beats())
        paas.restart()
        wait_for(lambda: len(beats()) >= before + 3, timeout=60)
        assert follower.poll() is None  # still following
    finally:
        # SIGTERM, not SIGINT: a test run started in the background (`… &` in a script, as CI
        # may) has SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
        follower.terminate()
        follower.wait(timeout=30)
    numbers = beats()
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    assert err.read_text().splitlines() == [
        "minipaas: the server went away; reconnecting…", "minipaas: reconnected."
    ]


def test_logs_tail_ends_with_one_sentence_when_the_app_is_destroyed(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    deploy_sample(paas, sshd, "python-stdlib", "doomed", tmp_path)
    out = tmp_path / "follow.out"
    with out.open("w") as stdout:
        follower = subprocess.Popen(
            [str(paas.exe), "logs", "-t", "-a", "doomed"], env=paas.env, text=True,
            stdout=stdout, stderr=subprocess.PIPE, start_new_session=True,
        )
    try:
        wait_for(lambda: "Deployed v1" in out.read_text(), timeout=30)  # it follows now
        paas.cli("apps:destroy", "-a", "doomed", "--confirm", "doomed")
        _, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 1
    assert err.strip() == "!    The app 'doomed' was destroyed.", err


def test_every_app_comes_back_after_a_reboot(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """A host reboot leaves no process: `minipaas down` stands in for it."""
    paas, sshd = env
    paas.cli("apps:create", "reboot")
    deployed(ssh_push(sshd, git_repo(SAMPLES / "worker-web", tmp_path / "reboot"), "reboot"))
    paas.cli("ps:scale", "worker=1", "-a", "reboot")
    paas.cli("ps:stop", "worker", "-a", "reboot")
    paas.wait_body("reboot.localhost", "hello from worker-web")
    paas.cli("down", "--data-dir", str(paas.data_dir))
    assert paas.proc is not None
    paas.proc.wait(timeout=30)
    assert paas.curl("reboot.localhost")[0] == 0  # nothing listens any more
    paas.restart()
    paas.wait_body("reboot.localhost", "hello from worker-web")
    listed = dynos(paas, "reboot")
    assert [d["name"] for d in listed] == ["web.1"]  # the stopped worker stays stopped


def test_ps_says_which_apps_still_wait_to_start_after_a_reboot(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """After a reboot start-up starts two apps per CPU at a time: an app still in the queue has
    no dynos yet, and `ps` / `apps` must say they are coming rather than that there are none."""
    paas, sshd = env
    slow = ["queued-a", "queued-b", "queued-c"]  # each takes 6 s to listen
    for app in slow:
        paas.cli("apps:create", app)
        paas.cli("config:set", "BOOT_SECONDS=6", "-a", app)
    with ThreadPoolExecutor(max_workers=len(slow)) as pool:
        pushes = pool.map(
            lambda app: ssh_push(sshd, git_repo(SAMPLES / "slow-start", tmp_path / app), app), slow
        )
        for result in pushes:
            deployed(result)
    paas.stop()  # `down`: no dyno survives, as after a reboot
    # One CPU: two starts at a time, so while two slow apps boot the third waits its turn.
    paas.launcher = ["taskset", "-c", "0"]
    try:
        paas.start()
        # The checks below take a second or two; the waiting app's turn comes 6 s after the
        # others' (the last in start order is asked first, so it is found at once).
        shown: dict[str, object] = {}
        waiting: list[str] = []
        for app in reversed(slow):
            shown[app] = ps = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
            if ps["start_pending"] and not ps["dynos"]:
                waiting.append(app)
                break
        assert waiting, shown
        out = paas.cli("ps", "-a", waiting[0]).stdout
        assert f"minipaas has just started: {waiting[0]}'s dynos (web=1) are waiting" in out
        assert f"No dynos on {waiting[0]}" not in out
        info = json.loads(paas.cli("apps:info", "-a", waiting[0], "--json").stdout)
        assert info["start_pending"] and not info["dynos"]  # the TUI shows web.1 waiting
        listing = paas.cli("apps").stdout
        assert any(
            line.split()[0] == waiting[0] and "0/1 (starting)" in line
            for line in listing.splitlines()
        ), listing

        def all_up() -> bool:
            for app in slow:
                ps = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
                if ps["start_pending"] or [d["state"] for d in ps["dynos"]] != ["up"]:
                    return False
            return True

        wait_for(all_up, timeout=60)
        out = paas.cli("ps", "-a", waiting[0]).stdout
        assert "waiting" not in out and "web.1: up" in out, out
        assert "(starting)" not in paas.cli("apps").stdout
        # Gone before the restart below: it would start them again, and the module's
        # teardown (`down` waits for the start-up to end) would wait out their 6 s boots.
        for app in slow:
            paas.cli("apps:destroy", "-a", app, "--confirm", app)
    finally:
        paas.stop()
        paas.launcher = []
        paas.start()
