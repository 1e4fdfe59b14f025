"""Races and crash consistency against a real server: kill -9 of `minipaas server` at known
points of a deploy, and changes to one app that overlap. SQLite is the source of truth: after
each, the server converges to it (the previous release serving, the app usable, nothing left
running or half-written).

Each interleaving is made deterministic by a step that blocks: a buildpack, release command or
dyno that runs `sleep MARKER` (tests.support.sleeper), found from the host before acting.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from minipaas.api.app import BUSY_WAIT, BUSY_WAIT_ENV, busy_wait
from tests.paas import SAMPLES, Paas, commit, deployed, git_env, git_repo, https_push, ssh_push
from tests.support import sleeper
from tests.support.dirs import app_readable_tmp
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

#: The stop grace of this module's server: long enough for what a test starts while a destroy
#: waits it out (a push, a `run`, a cron job due), short of the default 30 s that each such
#: test waited in full.
GRACE = 10
SERVER_ARGS = ["--stop-grace", str(GRACE)]
#: Seconds from the server's restart in the cron test to its scheduler's next minute: enough
#: for the restart, a `ps:scale` and the worker's first line, so that the minute is then
#: 1 to GRACE - 4 s away (if not, the test waits for the one after, as on the wall clock).
NEXT_CRON_MINUTE = 14
#: How long a change waits for a busy app in the tests of its refusal (a test hook; 20 s in
#: production, which each such test waited in full). Only while those tests run: others
#: wait for a lock legitimately (a scale during a rolling restart).
TEST_BUSY_WAIT = 3


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory app uids can read (buildpacks the builds copy)."""
    with app_readable_tmp() as path:
        yield path


def blocking_buildpack(root: Path, marker: str) -> Path:
    """A buildpack whose compile sleeps MARKER seconds (for good, as far as a test goes)."""
    bp = root / "blocking-bp"
    (bp / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho blocking\n",
        "compile": f"#!/bin/sh\necho compiling\nsleep {marker}\n",
        "release": "#!/bin/sh\necho ---\n",
    }
    for name, text in scripts.items():
        (bp / "bin" / name).write_text(text)
        (bp / "bin" / name).chmod(0o755)
    return bp


def waiting_buildpack(root: Path) -> Path:
    """A buildpack whose compile touches `waiting` in the app's build cache, then waits for a
    file `go` there (the test creates it through the cache dir on the host)."""
    bp = root / "waiting-bp"
    (bp / "bin").mkdir(parents=True)
    scripts = {
        "detect": "#!/bin/sh\necho waiting\n",
        "compile": '#!/bin/sh\ntouch "$2/waiting"\nuntil [ -e "$2/go" ]; do sleep 0.05; done\n',
        "release": "#!/bin/sh\necho ---\n",
    }
    for name, text in scripts.items():
        (bp / "bin" / name).write_text(text)
        (bp / "bin" / name).chmod(0o755)
    return bp


def head(paas: Paas, app: str) -> str:
    """What the app's deploy branch points at in its bare repository."""
    out = subprocess.run(
        ["git", "-C", str(paas.data_dir / "repos" / f"{app}.git"), "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def sha(repo: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def forced_commands(paas: Paas) -> list[int]:
    """Pids of the `minipaas ssh --data-dir DIR --key ...` forced commands of this server."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--key" in argv and b"ssh" in argv and str(paas.data_dir).encode() in argv:
            pids.append(int(proc.name))
    return pids


def push_lock_held(paas: Paas, app: str) -> bool:
    """Some push holds the app's push lock (an flock: taken for an instant if free)."""
    fd = os.open(paas.data_dir / "repos" / f"{app}.git" / "minipaas-push.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


#: A worker that ignores SIGTERM (a destroy then waits out the stop grace) and says so. Its
#: output says 42 where its command, which the logs also show, says $((6*7)).
WORKER = (
    "worker: sh -c 'trap \"echo got TERM $((6*7))\" TERM; echo trap set $((6*7)); "
    "while :; do sleep 1; done'"
)


def in_logs(paas: Paas, app: str, text: str) -> bool:
    return text in paas.cli("logs", "-a", app, "-n", "200", check=False).stdout


def deploy_with_stubborn_worker(paas: Paas, sshd: SSHServer, tmp_path: Path, app: str) -> Path:
    """`app`, deployed from python-stdlib plus WORKER (it ignores SIGTERM, so a destroy waits
    out its stop grace), scaled to one worker whose trap is set; its repository."""
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    (repo / "Procfile").write_text(f"web: python app.py\n{WORKER}\n")
    commit(repo, "a worker that ignores SIGTERM")
    deployed(ssh_push(sshd, repo, app))
    paas.cli("ps:scale", "worker=1", "-a", app)
    wait_for(lambda: in_logs(paas, app, "trap set 42"), timeout=30,
             message="the worker's trap is set")
    return repo


def builds(paas: Paas, app: str) -> list[tuple[int, str, str]]:
    """(id, status, log) of the app's builds, oldest first, read from the database itself."""
    db = sqlite3.connect(f"file:{paas.data_dir / 'minipaas.db'}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT b.id, b.status, b.log FROM builds b JOIN apps a ON a.id = b.app_id "
            "WHERE a.name = ? ORDER BY b.id",
            (app,),
        ).fetchall()
    finally:
        db.close()


def releases(paas: Paas, app: str) -> dict[int, str]:
    """{version: status}."""
    out = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    return {int(r["version"]): r["status"] for r in out}


def current(paas: Paas, app: str) -> int:
    return int(json.loads(paas.cli("apps:info", "-a", app, "--json").stdout)["release"])


def events(paas: Paas, app: str) -> str:
    return paas.cli("logs", "-a", app, "--source", "minipaas", "-n", "300").stdout


def start_push(pool: ThreadPoolExecutor, sshd: SSHServer, repo: Path, app: str) -> Future[str]:
    def run() -> str:
        result = ssh_push(sshd, repo, app)
        return f"exit {result.returncode}\n{result.stdout}{result.stderr}"

    return pool.submit(run)


def kill9_and_restart(paas: Paas, marker: str, how: str = "kill9") -> None:
    """kill -9 the server (or SIGTERM it: `how`) while `sleep MARKER` runs; what it started
    must die with it."""
    if how == "kill9":
        paas.kill9()
    else:
        assert paas.proc is not None
        paas.proc.terminate()
        paas.proc.wait(timeout=60)
    wait_for(lambda: not sleeper.sleeping(marker), timeout=15, message=f"sleep {marker} ended")
    paas.restart()


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_kill9_during_the_build(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path, how: str
) -> None:
    """A build that a killed server left running went on for good (its own session: the server
    gone, nothing killed it) and stayed 'pending' in the database, its scratch dir and
    half-written slug on disk. A stop (SIGTERM) ends it the same way."""
    paas, sshd = env
    app = f"race-build-{how}"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    deployed(ssh_push(sshd, repo, app))
    marker = sleeper.marker()
    (repo / ".buildpacks").write_text(f"{blocking_buildpack(shared_dir, marker)}\n")
    commit(repo, "blocks in the build")
    with ThreadPoolExecutor(1) as pool:
        push = start_push(pool, sshd, repo, app)
        wait_for(lambda: sleeper.sleeping(marker), timeout=60, message="the build started")
        build_id = builds(paas, app)[-1][0]
        kill9_and_restart(paas, marker, how)
        said = push.result(timeout=60)
        assert said.startswith("exit 1"), said
        assert "The minipaas server stopped during this deploy" in said, said

    last = builds(paas, app)[-1]
    assert last[:2] == (build_id, "failed"), last
    assert "the server stopped while it ran (killed or crashed); push again" in last[2]
    assert f"Build {build_id} failed: the server stopped while it ran" in events(paas, app)
    assert not list((paas.data_dir / "run").glob("build-*"))  # scratch dirs
    assert not (paas.data_dir / "slugs" / app / f"b{build_id}").exists()  # half a slug
    assert releases(paas, app) == {1: "succeeded"} and current(paas, app) == 1
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")

    # The app is usable: its lock is free and the next push deploys.
    (repo / ".buildpacks").unlink()
    commit(repo, "no blocking buildpack")
    assert "Deployed v2" in deployed(ssh_push(sshd, repo, app))
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_kill9_during_the_release_phase(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """The release command of a killed server ran on (no one would ever read its status) and
    its release stayed 'pending'."""
    paas, sshd = env
    app = "race-release"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    deployed(ssh_push(sshd, repo, app))
    marker = sleeper.marker()
    procfile = (repo / "Procfile").read_text()
    (repo / "Procfile").write_text(f"{procfile.rstrip()}\nrelease: sleep {marker}\n")
    commit(repo, "a release phase that blocks")
    with ThreadPoolExecutor(1) as pool:
        push = start_push(pool, sshd, repo, app)
        wait_for(lambda: sleeper.sleeping(marker), timeout=120, message="release phase ran")
        kill9_and_restart(paas, marker)
        said = push.result(timeout=60)
        assert said.startswith("exit 1"), said
        assert "The minipaas server stopped during this deploy" in said, said

    assert releases(paas, app) == {1: "succeeded", 2: "failed"}
    assert current(paas, app) == 1
    assert "Release v2 failed: the server stopped before it went live; v1 keeps serving" in (
        events(paas, app)
    )
    assert [b[1] for b in builds(paas, app)] == ["succeeded", "succeeded"]
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")
    (repo / "Procfile").write_text(procfile)
    commit(repo, "no release phase")
    assert "Deployed v3" in deployed(ssh_push(sshd, repo, app))
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def waiting_push(paas: Paas, sshd: SSHServer, tmp_path: Path, shared_dir: Path, app: str) -> Path:
    """App `app` deployed at v1, and its clone with one more commit whose build waits for
    `go` in the app's cache; returns the clone."""
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    deployed(ssh_push(sshd, repo, app))
    shutil.copytree(repo, tmp_path / "other")  # a second clone, still at v1's commit
    (repo / ".buildpacks").write_text(f"{waiting_buildpack(shared_dir)}\n")
    (repo / "Procfile").write_text("web: python3 app.py\n")
    commit(repo, "a build that waits")
    return repo


def test_a_killed_ssh_pusher_still_moves_the_branch(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """The branch moved in the SSH forced command once the server answered: when that process
    died mid-deploy (Ctrl-C, a dropped connection), the deploy went live but the branch stayed
    at the old commit, and the next push from another clone, based on that stale ref, deployed
    over it as if the live release had never been pushed."""
    paas, sshd = env
    app = "race-ref"
    repo = waiting_push(paas, sshd, tmp_path, shared_dir, app)
    before, pushed = head(paas, app), sha(repo)
    cache = paas.data_dir / "cache" / app
    with ThreadPoolExecutor(2) as pool:
        push = start_push(pool, sshd, repo, app)
        wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
        for pid in wait_for(lambda: forced_commands(paas), timeout=10):
            os.kill(pid, signal.SIGKILL)
        assert push.result(timeout=60).startswith("exit ")  # the client saw its server go

        # Another clone pushes a commit based on the branch as it was before that deploy.
        other = tmp_path / "other"
        (other / "note.txt").write_text("pushed from the other clone\n")
        commit(other, "other change")
        late = start_push(pool, sshd, other, app)
        # Its gate runs (it holds the push lock, free since the first pusher died) and waits
        # for the app: the branch it saw is the old one.
        wait_for(lambda: push_lock_held(paas, app), timeout=60, message="second push gated")
        (cache / "go").touch()  # the first deploy finishes (the second one waited for it)
        refused = late.result(timeout=120)

    assert current(paas, app) == 2 and releases(paas, app) == {1: "succeeded", 2: "succeeded"}
    assert head(paas, app) == pushed != before  # the branch follows what serves
    assert refused.startswith("exit 1"), refused
    assert "the branch moved while you pushed" in refused.lower(), refused
    # The next push from the first clone is computed against the right ref and deploys.
    commit(repo, "next")
    assert "Deployed v3" in deployed(ssh_push(sshd, repo, app))
    assert head(paas, app) == sha(repo)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_vanished_https_pusher_still_moves_the_branch(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """The same over HTTPS, where the deploy runs in the server's own git worker."""
    paas, sshd = env
    app = "race-ref-https"
    repo = waiting_push(paas, sshd, tmp_path, shared_dir, app)
    pushed = sha(repo)
    cache = paas.data_dir / "cache" / app
    token = paas.cli("auth:token").stdout.strip().splitlines()[-1]
    url = f"https://x:{token}@minipaas.localhost:{paas.https_port}/git/{app}.git"
    client = subprocess.Popen(
        ["git", "-C", str(repo), "push", url, "main"],
        env={**git_env(), "GIT_SSL_CAINFO": str(paas.ca)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
    finally:
        os.killpg(client.pid, signal.SIGKILL)  # git and its remote-https helper: gone
        client.wait(timeout=10)
    (cache / "go").touch()
    wait_for(lambda: current(paas, app) == 2, timeout=60, message="v2 went live")
    wait_for(lambda: head(paas, app) == pushed, timeout=10, message="the branch moved")
    commit(repo, "next")
    assert "Deployed v3" in deployed(https_push(paas, repo, app, token))
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_one_off_started_while_the_app_is_destroyed_does_not_outlive_it(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`apps:destroy` killed the one-off dynos (`run`, cron jobs) that ran when it began, then
    stopped the other dynos (up to the stop grace): one started in between (a cron job due in
    those seconds, a `run`) was never seen and outlived its app, under the app's uid. Both go
    through `Deployer.starting` now; the destroy is held up by a worker that ignores SIGTERM,
    and a `run` is started while it waits out the grace."""
    paas, sshd = env
    app = "race-destroy"
    deploy_with_stubborn_worker(paas, sshd, tmp_path, app)

    def logged(text: str) -> bool:
        return in_logs(paas, app, text)

    marker = sleeper.marker()
    destroy = subprocess.Popen(
        [str(paas.exe), "apps:destroy", "-a", app, "--confirm", app],
        env=paas.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = None
    try:
        wait_for(lambda: logged("got TERM 42"), timeout=30, message="destroy stops the worker")
        run = paas.run_in_background(app, f"sleep {marker}", output=True)
        out, _ = destroy.communicate(timeout=60)
        assert destroy.returncode == 0, out
        said, _ = run.communicate(timeout=60)
    finally:
        for proc in (destroy, run):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not sleeper.sleeping(marker), "the run outlived its destroyed app"
    assert run.returncode == 1 and f"No app named {app!r}" in said, said
    assert not (paas.data_dir / "run" / "dynos" / app).exists()


def test_kill9_while_new_dynos_start(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """kill -9 while `config:set` waits for the new web dyno's health check: the release that
    never went live stayed 'pending' and the config vars kept the new value that no serving
    release has (the next deploy or restart would have used it unasked)."""
    paas, sshd = env
    app = "race-start"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    marker = sleeper.marker()
    web = f"web: sh -c 'if [ -n \"$BLOCK\" ]; then sleep {marker}; fi; exec python app.py'"
    (repo / "Procfile").write_text(f"{web}\n")
    commit(repo, "a web dyno that blocks when BLOCK is set")
    deployed(ssh_push(sshd, repo, app))
    paas.cli("config:set", "GREETING=kept", "-a", app)  # v2
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib kept")

    setting = subprocess.Popen(
        [str(paas.exe), "config:set", "BLOCK=1", "GREETING=new", "-a", app],
        env=paas.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=60, message="the new dyno started")
        paas.kill9()
        setting.wait(timeout=30)
    finally:
        if setting.poll() is None:
            setting.kill()
            setting.wait()
    paas.restart()

    assert releases(paas, app) == {1: "succeeded", 2: "succeeded", 3: "failed"}
    assert current(paas, app) == 2
    config = json.loads(paas.cli("config", "-a", app, "--json").stdout)
    assert config == {"GREETING": "kept"}, config
    assert "Release v3 failed: the server stopped before it went live; v2 keeps serving" in (
        events(paas, app)
    )
    # The dyno of v3 that had started is stopped (it belongs to no serving release).
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, message="v3's dyno stopped")
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib kept")
    paas.cli("ps:restart", "-a", app)  # restarts with v2's config, not BLOCK=1
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib kept")
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_pushes_during_a_destroy(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """A push over SSH and one over HTTPS while `apps:destroy` waits out a worker's stop grace:
    each ends with one sentence (the app is gone), nothing of the app is left (repository,
    dynos), and the name can be created afresh. The push that waited for the other's push lock
    was told "the branch moved while you pushed" (the destroyed repository has no branch)."""
    paas, sshd = env
    app = "race-destroy-push"
    repo = deploy_with_stubborn_worker(paas, sshd, tmp_path, app)
    token = paas.cli("auth:token").stdout.strip().splitlines()[-1]

    def logged(text: str) -> bool:
        return in_logs(paas, app, text)

    commit(repo, "pushed during the destroy")
    destroy = subprocess.Popen(
        [str(paas.exe), "apps:destroy", "-a", app, "--confirm", app],
        env=paas.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: logged("got TERM 42"), timeout=30, message="destroy stops the worker")
        with ThreadPoolExecutor(2) as pool:
            over_ssh = start_push(pool, sshd, repo, app)
            over_https = pool.submit(https_push, paas, repo, app, token)
            out, _ = destroy.communicate(timeout=60)
            assert destroy.returncode == 0, out
            ssh_said = over_ssh.result(timeout=120)
            https_result = over_https.result(timeout=120)
    finally:
        if destroy.poll() is None:
            destroy.kill()
            destroy.wait()
    https_said = f"exit {https_result.returncode}\n{https_result.stdout}{https_result.stderr}"
    for said in (ssh_said, https_said):
        assert said.startswith("exit 1"), (ssh_said, https_said)
        assert f"No app named {app!r}" in said, (ssh_said, https_said)
        assert "Traceback" not in said and "Errno" not in said, said
    assert not (paas.data_dir / "repos" / f"{app}.git").exists()
    assert not (paas.data_dir / "run" / "dynos" / app).exists()
    assert app not in [a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)]
    paas.cli("apps:create", app)
    assert releases(paas, app) == {}
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_changes_and_a_second_push_during_a_deploy(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """While a deploy builds: rollback, ps:scale, ps:restart and ps:stop are each refused in one
    sentence once they have waited BUSY_WAIT for it (nothing changed, no 500), and a push from
    another clone is refused (it either waited for the push lock and finds the branch moved, or
    git itself sees it is behind); the deploy then goes live as if alone. (BUSY_WAIT is made
    TEST_BUSY_WAIT s by a test hook for this test: the refusal is the same, sooner.)"""
    paas, sshd = env
    with paas.restarted_with(MINIPAAS_TEST_BUSY_WAIT=str(TEST_BUSY_WAIT)):
        changes_and_a_second_push_during_a_deploy(paas, sshd, tmp_path, shared_dir)


def changes_and_a_second_push_during_a_deploy(
    paas: Paas, sshd: SSHServer, tmp_path: Path, shared_dir: Path
) -> None:
    app = "race-busy"
    repo = waiting_push(paas, sshd, tmp_path, shared_dir, app)
    cache = paas.data_dir / "cache" / app
    other = tmp_path / "other"
    (other / "note.txt").write_text("pushed from the other clone\n")
    commit(other, "other change")
    with ThreadPoolExecutor(2) as pool:
        push = start_push(pool, sshd, repo, app)
        wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
        rival = start_push(pool, sshd, other, app)
        changes = [
            subprocess.Popen(
                [str(paas.exe), *args, "-a", app],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=paas.env,
            )
            for args in (["rollback"], ["ps:scale", "web=2"], ["ps:restart"], ["ps:stop", "web"])
        ]
        try:
            for change in changes:
                out, err = change.communicate(timeout=90)
                assert change.returncode == 1, (change.args, out, err)
                assert f"'{app}' is busy with a deploy or another change" in err, err
                assert f"(for over {TEST_BUSY_WAIT} s)" in err, err  # not 20 s: the hook is used
                assert "nothing was changed" in err and err.count("\n") == 1, err
        finally:  # a failed check must not leave the pool waiting for the build for ever
            (cache / "go").touch()
        deployed_out = push.result(timeout=120)
        rival_out = rival.result(timeout=120)
    assert deployed_out.startswith("exit 0") and "Deployed v2" in deployed_out, deployed_out
    assert rival_out.startswith("exit 1"), rival_out
    assert "the branch moved while you pushed" in rival_out or "(fetch first)" in rival_out
    assert releases(paas, app) == {1: "succeeded", 2: "succeeded"} and current(paas, app) == 2
    dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
    assert [(d["name"], d["release"]) for d in dynos if d["state"] == "up"] == [("web.1", 2)]
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_app_trees_follow_the_apps_table_after_a_crash(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A server killed inside `apps:destroy` after the app's row was deleted (its dynos were
    stopped first) left the repository, slugs, cache and logs: `apps:create` of that name then
    failed for good ("A repository for app ... already exists"). One killed inside `apps:create`
    before the repository was made left an app no push could reach. Both states are made here
    as those kills leave them (the row deleted, the repository removed, with the server down)."""
    paas, sshd = env
    ghost, hollow = "race-ghost", "race-hollow"
    paas.cli("apps:create", ghost)
    paas.cli("apps:create", hollow)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / ghost), ghost))
    paas.cli("ps:scale", "web=0", "-a", ghost)  # destroy stops the dynos before the row goes
    paas.kill9()
    db = sqlite3.connect(paas.data_dir / "minipaas.db")
    try:
        with db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("DELETE FROM apps WHERE name = ?", (ghost,))
    finally:
        db.close()
    shutil.rmtree(paas.data_dir / "repos" / f"{hollow}.git")
    paas.restart()

    for tree in ("repos/race-ghost.git", "slugs/race-ghost", "cache/race-ghost", "logs/race-ghost"):
        assert not (paas.data_dir / tree).exists(), tree
    paas.cli("apps:create", ghost)
    assert "Deployed" not in paas.cli("logs", "-a", ghost).stdout  # not the old app's logs
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / hollow)
    assert "Deployed v1" in deployed(ssh_push(sshd, repo, hollow))
    for app in (ghost, hollow):
        paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_auto_rollback_never_undoes_a_deploy_that_went_live_meanwhile(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """The automatic rollback of a crash-looping fresh release decided outside the app's lock:
    when a deploy was under way, it waited for that deploy and then rolled back the new,
    healthy release, to the crash-looping one."""
    paas, sshd = env
    app = "race-autorb"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "crashy", tmp_path / app)
    deployed(ssh_push(sshd, repo, app))  # v1
    healthy = (SAMPLES / "crashy" / "app.py").read_text()
    (repo / "app.py").write_text(
        "import os, threading\nthreading.Timer(1.5, lambda: os._exit(4)).start()\n" + healthy
    )
    commit(repo, "dies after 1.5 s")
    deployed(ssh_push(sshd, repo, app))  # v2 goes live, then crash-loops
    (repo / "app.py").write_text(healthy)
    (repo / ".buildpacks").write_text(f"{waiting_buildpack(shared_dir)}\n")
    (repo / "Procfile").write_text("web: python3 app.py\n")
    commit(repo, "the fix, whose build waits")
    cache = paas.data_dir / "cache" / app
    with ThreadPoolExecutor(1) as pool:
        push = start_push(pool, sshd, repo, app)  # v3: holds the app's lock while it builds
        wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
        wait_for(
            lambda: "rolling back automatically" in events(paas, app),
            timeout=180,
            interval=0.5,
            message="v2 is found crash-looping",
        )
        (cache / "go").touch()
        out = push.result(timeout=120)
    assert out.startswith("exit 0") and "Deployed v3" in out, out
    wait_for(
        lambda: "Automatic rollback" in events(paas, app) or 4 in releases(paas, app),
        timeout=60,
        message="the automatic rollback ended",
    )
    assert current(paas, app) == 3, releases(paas, app)
    assert "Automatic rollback failed: v2 is no longer the current release" in events(paas, app)
    paas.wait_body(f"{app}.localhost", "hello from crashy")
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_scale_during_a_rolling_restart(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """`ps:scale` while a rolling restart waits for its new web dyno (a health check with a
    minimum uptime): the scale waits for the restart, then applies; both succeed and the app
    ends with the scaled count, every dyno up and none twice."""
    paas, sshd = env
    app = "race-scale"
    paas.cli("apps:create", app)
    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / app), app))
    paas.cli("checks:set", "path=/", "expect=hello", "min_uptime=3", "timeout=20", "-a", app)

    def web() -> list[dict[str, object]]:
        dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
        return [d for d in dynos if d["type"] == "web"]

    restart = subprocess.Popen(
        [str(paas.exe), "ps:restart", "-a", app],
        env=paas.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: any(d["state"] == "starting" for d in web()),
            timeout=30,
            message="the restart's new web dyno is starting",
        )
        scaled = paas.cli("ps:scale", "web=2", "-a", app, check=False)
        out, _ = restart.communicate(timeout=60)
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait()
    assert restart.returncode == 0, out
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    up = wait_for(
        lambda: (ds := web()) and all(d["state"] == "up" for d in ds) and ds,
        timeout=30,
        message="only up web dynos",
    )
    assert sorted(str(d["name"]) for d in up) == ["web.1", "web.2"], up
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_stop_ends_streamed_runs_and_https_deploys_at_once(
    env: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """SIGTERM while a streamed `run` and an HTTPS push's deploy are under way: the stop waited
    for uvicorn's grace, which then cancelled their answers with a traceback in the server log
    ('Exception in ASGI application'). Both end at once now, the build and the one-off dyno
    with them, and the next start fails the build."""
    paas, sshd = env
    app = "race-stop"
    repo = waiting_push(paas, sshd, tmp_path, shared_dir, app)
    cache = paas.data_dir / "cache" / app
    token = paas.cli("auth:token").stdout.strip().splitlines()[-1]
    marker = sleeper.marker()
    run = paas.run_in_background(app, f"sleep {marker}")
    with ThreadPoolExecutor(1) as pool:
        push = pool.submit(https_push, paas, repo, app, token)
        try:
            wait_for(lambda: sleeper.sleeping(marker), timeout=30, message="the run started")
            wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
            before = len(paas.crashes())
            assert paas.proc is not None
            paas.proc.terminate()
            paas.proc.wait(timeout=60)
            run.communicate(timeout=30)
            pushed = push.result(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert len(paas.crashes()) == before, paas.crashes()
    assert run.returncode != 0 and not sleeper.sleeping(marker)
    assert pushed.returncode != 0, pushed.stdout + pushed.stderr
    paas.restart()
    assert builds(paas, app)[-1][1] == "failed"
    assert current(paas, app) == 1
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_kill9_after_the_switch_keeps_the_new_release(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """kill -9 once the switch to v3 was recorded, while the old dyno drains (a slow request in
    flight holds it for up to the stop grace): v3 serves, so it is the release that succeeded,
    with its config vars; it had stayed 'pending' while current."""
    paas, sshd = env
    app = "race-switch"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    source = (repo / "app.py").read_text()
    slow = '        if self.path == "/slow":\n            import time; time.sleep(30)\n'
    handler = "    def do_GET(self):\n"
    (repo / "app.py").write_text(source.replace(handler, handler + slow, 1))
    commit(repo, "a slow path")
    deployed(ssh_push(sshd, repo, app))
    paas.cli("config:set", "GREETING=old", "-a", app)  # v2
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib old")
    holder = subprocess.Popen(
        ["curl", "-sS", "--max-time", "60", "--cacert", str(paas.ca), "--resolve",
         f"{app}.localhost:{paas.https_port}:127.0.0.1",
         f"https://{app}.localhost:{paas.https_port}/slow"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    setting = subprocess.Popen(
        [str(paas.exe), "config:set", "GREETING=new", "-a", app],
        env=paas.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def switched_not_finished() -> bool:
        out = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
        return any(r["version"] == 3 and r["current"] and r["status"] == "pending" for r in out)

    try:
        wait_for(switched_not_finished, timeout=30, interval=0.02, message="v3 switched to")
        paas.kill9()
    finally:
        for proc in (setting, holder):
            proc.kill()
            proc.wait()
    paas.restart()
    assert releases(paas, app) == {1: "succeeded", 2: "succeeded", 3: "succeeded"}
    assert current(paas, app) == 3
    assert json.loads(paas.cli("config", "-a", app, "--json").stdout) == {"GREETING": "new"}
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib new")
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_cron_job_due_during_a_destroy_does_not_outlive_the_app(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """The cron job of the first bug report: due while `apps:destroy` stops the app (a worker
    ignoring SIGTERM holds it for the stop grace, which spans the minute the job is due), it
    started unseen by the stop and outlived its app. It now waits for the destroy and finds
    the app gone. (Waits for the scheduler's next minute to be 1 to GRACE - 4 s away: cron
    runs on the minute. The server is restarted, before the worker starts, with a scheduler
    clock whose next minute is NEXT_CRON_MINUTE s away, so that this wait is short instead of
    up to a minute of the wall clock.)"""
    paas, sshd = env
    app = "race-cron"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    marker = sleeper.marker()
    (repo / "Procfile").write_text(f"web: python app.py\n{WORKER}\n")
    (repo / "app.json").write_text(
        json.dumps({"cron": [{"command": f"sleep {marker}", "schedule": "* * * * *"}]})
    )
    commit(repo, "a cron job every minute and a worker that ignores SIGTERM")
    deployed(ssh_push(sshd, repo, app))
    assert paas.proc is not None
    paas.proc.terminate()  # the server alone: the web dyno keeps running, and is readopted
    paas.proc.wait(timeout=60)
    paas.set_next_minute(NEXT_CRON_MINUTE)
    paas.restart()
    paas.cli("ps:scale", "worker=1", "-a", app)
    wait_for(
        lambda: "trap set 42" in paas.cli("logs", "-a", app, "-n", "200").stdout,
        timeout=30,
        message="the worker's trap is set",
    )

    # The job must fall due inside the destroy, which waits out the worker's grace.
    wait_for(lambda: 1.0 <= paas.to_next_minute() <= GRACE - 4, timeout=70, interval=0.02)
    started = time.time() + paas.clock_offset  # on the scheduler's clock
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
    ended = time.time() + paas.clock_offset
    due = (started // 60 + 1) * 60
    assert started < due < ended - 1, (started, due, ended)  # the job was due mid-destroy
    assert not sleeper.sleeping(marker), "a cron job outlived its destroyed app"
    assert not (paas.data_dir / "run" / "dynos" / app).exists()
    assert not (paas.data_dir / "logs" / app).exists()
    assert "cron job 0 of race-cron failed to run" not in paas.tail_log(300)


def test_the_busy_wait_test_hook_is_inert_unless_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(BUSY_WAIT_ENV, raising=False)
    assert busy_wait() == BUSY_WAIT == 20
    monkeypatch.setenv(BUSY_WAIT_ENV, "2.5")
    assert busy_wait() == 2.5
    for bad in ("soon", "0", "-1", "21", "nan"):
        monkeypatch.setenv(BUSY_WAIT_ENV, bad)
        with caplog.at_level(logging.WARNING, logger="minipaas.api"):
            assert busy_wait() == BUSY_WAIT
        assert f"MINIPAAS_TEST_BUSY_WAIT={bad!r} is not 0.1 to 20 seconds: ignored" in caplog.text
