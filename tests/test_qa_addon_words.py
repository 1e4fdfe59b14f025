"""A Heroku user's pass over the add-on words of the credentials work (`pg:credentials:rotate`,
`redis:credentials`, `pg:ps`, `pg:kill`, `pg:killall`) typed as Heroku's docs write them, on a
real server, its PostgreSQL cluster, real dynos and sshd: `-a` given twice (Heroku's CLI
refuses a flag given twice; here the last one won silently, so `pg:killall -a prod -a
staging` ended staging's connections), a `--confirm` naming another app (named in the
refusal), `pg:ps --verbose` (Heroku's flag: its idle connections too), and what worked as it
should: pg:psql over `ssh -t` on an app never pushed and pg:kill of its session, a rotation
while a dyno holds a connection, then rollback and a server restart, a rotation while a
deploy builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support.dirs import app_readable_tmp
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer
from tests.support.terminal import terminal
from tests.test_addons import psql
from tests.test_races import start_push, waiting_push

APP = "wordsapp"
OTHER = "wordsother"


@pytest.fixture(scope="module")
def apps(env: tuple[Paas, SSHServer]) -> Iterator[tuple[Paas, SSHServer]]:
    """Two apps never pushed, each with a database (its config release is enough), APP with a
    Redis too; psql clients left by a test are ended."""
    paas, _sshd = env
    for app in (APP, OTHER):
        paas.cli("apps:create", app)
        paas.cli("addons:create", "heroku-postgresql", "-a", app)
    paas.cli("addons:create", "heroku-redis", "-a", APP)
    yield env
    paas.assert_no_crashes()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory app uids can read (buildpacks the builds copy)."""
    with app_readable_tmp() as path:
        yield path


def idle_client(paas: Paas, app: str, name: str) -> subprocess.Popen[str]:
    """psql on the host as the app's role, connected and idle (waiting on its stdin)."""
    url = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip()
    pg_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.Popen(["psql", url, "-X", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**pg_env, "PGAPPNAME": name})


def connections(paas: Paas, app: str, *flags: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        paas.cli("pg:ps", "-a", app, "--json", *flags).stdout)
    return found


def pg_connections(paas: Paas, app: str) -> int:
    return int(json.loads(paas.cli("pg:info", "-a", app, "--json").stdout)["connections"])


def ssh(sshd: SSHServer, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*sshd.ssh_argv(), *words], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_app_given_twice_is_refused(apps: tuple[Paas, SSHServer]) -> None:
    paas, sshd = apps
    theirs = idle_client(paas, OTHER, "theirs")
    try:
        wait_for(lambda: pg_connections(paas, OTHER) == 1, timeout=30)
        sentence = f"Two apps given, -a '{APP}' and -a '{OTHER}': name one."
        assert paas.fails("pg:killall", "-a", APP, "-a", OTHER, code=2) == sentence
        assert paas.fails("pg:killall", "--app", APP, "-a", OTHER, code=2) == sentence
        assert paas.fails("pg:credentials:rotate", "-a", APP, "-a", OTHER, "--confirm", OTHER,
                          code=2) == sentence
        assert paas.fails("redis:credentials", "-a", APP, "-a", OTHER, code=2) == sentence
        # Over `ssh minipaas@host` (the forced command, no terminal): the same sentence.
        over_ssh = ssh(sshd, "pg:killall", "-a", APP, "-a", OTHER)
        assert (over_ssh.returncode, over_ssh.stdout) == (2, ""), over_ssh
        assert over_ssh.stderr.strip() == sentence, over_ssh
        # Nothing was done to either app: the other's connection is still there.
        assert theirs.poll() is None
        assert pg_connections(paas, OTHER) == 1
        # The same app twice is that app.
        assert paas.cli("pg:killall", "-a", OTHER, "--app", OTHER).stdout == (
            f"Terminated 1 connection to {OTHER}'s database "
            f"{connections_name(paas, OTHER)}.\n")
        _, said = theirs.communicate("select 1;\n", timeout=30)
        assert theirs.returncode != 0 and "terminating connection due to administrator" in said
    finally:
        stop(theirs)


def connections_name(paas: Paas, app: str) -> str:
    addons = json.loads(paas.cli("addons", "-a", app, "--json").stdout)
    name: str = next(a["name"] for a in addons if a["service"] == "heroku-postgresql")
    return name


def test_a_wrong_confirm_is_named(apps: tuple[Paas, SSHServer]) -> None:
    paas, _sshd = apps
    url = paas.cli("config:get", "DATABASE_URL", "-a", APP).stdout.strip()
    redis_url = paas.cli("config:get", "REDIS_URL", "-a", APP).stdout.strip()
    assert paas.fails("pg:credentials:rotate", "DATABASE_URL", "-a", APP, "--confirm", OTHER,
                      code=2) == (
        f"--confirm '{OTHER}' does not name the app '{APP}': rotating the credentials of its "
        f"database ends its connections and restarts its dynos; run again with --confirm {APP}."
    )
    assert paas.fails("redis:credentials", "-a", APP, "--reset", "--confirm", "nope",
                      code=2) == (
        f"--confirm 'nope' does not name the app '{APP}': rotating the credentials of its "
        f"Redis ends its connections and restarts its dynos; run again with --confirm {APP}."
    )
    assert paas.cli("config:get", "DATABASE_URL", "-a", APP).stdout.strip() == url
    assert paas.cli("config:get", "REDIS_URL", "-a", APP).stdout.strip() == redis_url


def test_pg_ps_verbose_lists_idle_connections(apps: tuple[Paas, SSHServer]) -> None:
    paas, sshd = apps
    name = connections_name(paas, APP)
    assert paas.cli("pg:ps", "-a", APP, "--verbose").stdout == (
        f"No connections to {APP}'s database {name}.\n")
    assert paas.cli("pg:ps", "-a", APP).stdout == (
        f"No queries running on {APP}'s database {name} (idle connections are listed by "
        "pg:ps --verbose).\n")
    idle = idle_client(paas, APP, "idler")
    try:
        wait_for(lambda: pg_connections(paas, APP) == 1, timeout=30)
        # Heroku's pg:ps leaves idle connections out; its --verbose (-v) lists them too.
        assert connections(paas, APP) == []
        rows = connections(paas, APP, "--verbose")
        assert [(r["source"], r["state"]) for r in rows] == [("idler", "idle")], rows
        assert [r["pid"] for r in connections(paas, APP, "-v")] == [rows[0]["pid"]]
        header, _rule, row = paas.cli("pg:ps", "-v", "-a", APP).stdout.splitlines()
        assert header.split() == ["pid", "state", "source", "running_for", "waiting", "query"]
        assert row.split()[:3] == [str(rows[0]["pid"]), "idle", "idler"], row
        # The other app's idle connection is not this app's.
        theirs = idle_client(paas, OTHER, "theirs")
        try:
            wait_for(lambda: pg_connections(paas, OTHER) == 1, timeout=30)
            assert "theirs" not in [r["source"] for r in connections(paas, APP, "-v")]
        finally:
            stop(theirs)
        # Over MINIPAAS_URL and a token (the API's TCP port): the same flag.
        remote_env = {**paas.remote_env(), "MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}"}
        remote = subprocess.run([str(paas.exe), "pg:ps", "-v", "-a", APP, "--json"],
                                capture_output=True, text=True, env=remote_env, timeout=60,
                                check=False)
        assert remote.returncode == 0, remote.stderr
        assert [r["pid"] for r in json.loads(remote.stdout)] == [rows[0]["pid"]]
        # Over `ssh minipaas@host` (no terminal): the same JSON.
        over_ssh = ssh(sshd, "pg:ps", "--verbose", "--json", "-a", APP)
        assert over_ssh.returncode == 0, over_ssh
        assert [r["pid"] for r in json.loads(over_ssh.stdout)] == [rows[0]["pid"]]
        token = paas.cli("auth:token").stdout.strip()
        answer = httpx.get(
            f"http://127.0.0.1:{paas.api_port}/api/apps/{APP}/addons/heroku-postgresql/activity",
            params={"verbose": "yes"}, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "Invalid verbose 'yes': use true or false."
    finally:
        stop(idle)


def test_pg_psql_over_ssh_t_on_an_app_never_pushed_and_pg_kill_of_its_session(
    apps: tuple[Paas, SSHServer],
) -> None:
    """`ssh -t minipaas@host pg:psql -a APP` on an app never pushed: psql on the user's
    terminal; pg:ps --verbose shows its session, pg:kill cancels its query, pg:kill --force
    ends the session (psql says so and connects again), a rotation ends it for good (psql
    cannot connect again with the old password) and its next session uses the new one."""
    paas, sshd = apps
    with terminal([*sshd.ssh_argv(tty=True), "pg:psql", "-a", APP], os.environ) as term:
        term.expect(b"=>", timeout=60)
        term.type(b"select 'pid=' || pg_backend_pid() || '=end' as mine;\n")
        term.expect(b"=end\r\n")
        mine = int(re.findall(rb"pid=(\d+)=end", bytes(term.seen))[0])
        assert mine in [r["pid"] for r in connections(paas, APP, "-v")]
        term.type(b"select pg_sleep(60);\n")
        wait_for(lambda: any(r["pid"] == mine and "pg_sleep" in r["query"]
                             for r in connections(paas, APP)), timeout=30)
        paas.cli("pg:kill", str(mine), "-a", APP)
        term.expect(b"canceling statement due to user request")
        paas.cli("pg:kill", str(mine), "-f", "-a", APP)
        term.type(b"select 'after';\n")
        term.expect(b"terminating connection due to administrator command")
        term.expect(b"Attempting reset: Succeeded.")  # psql connected again (same password)
        paas.cli("pg:credentials:rotate", "DATABASE_URL", "-a", APP, "--confirm", APP)
        term.type(b"select 1;\n")
        term.expect(b"terminating connection due to administrator command")
        term.expect(b"Attempting reset: Failed.")  # the old password opens nothing now
        term.type(b"\\q\n")
        term.wait()
    with terminal([*sshd.ssh_argv(tty=True), "pg:psql", "-a", APP], os.environ) as term:
        term.expect(b"=>", timeout=60)
        term.type(b"select 'ok=' || current_user;\n")
        term.expect(b"ok=")
        term.type(b"\\q\n")
        assert term.wait() == 0, term.seen.decode(errors="replace")


def worker_sessions(paas: Paas, app: str) -> set[int]:
    """The pids of the sessions running the worker's `select pg_sleep(600)`. A stopped dyno's
    may stay a while: PostgreSQL sees its client gone only once the query ends."""
    return {int(row["pid"]) for row in connections(paas, app)
            if "pg_sleep(600)" in (row["query"] or "") and row["state"] == "active"}


def new_session(paas: Paas, app: str, seen: set[int]) -> int:
    """The pid of a worker session not in `seen`, once there is one."""
    return wait_for(lambda: min(worker_sessions(paas, app) - seen, default=None), timeout=90)


def test_rotation_while_a_dyno_holds_a_connection_then_rollback_and_restart(
    apps: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A worker dyno that holds a connection open (a long query, run again when it ends) as
    an app's pool does: pg:credentials:rotate ends its session, the release restarts it with
    the new DATABASE_URL and it connects again; a rollback keeps that URL; after the server
    is killed and started again (the dyno adopted) and a ps:restart, it still connects."""
    paas, sshd = apps
    app = "wordsworker"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    (repo / "Procfile").write_text(
        "web: python app.py\n"
        """worker: sh -c 'while :; do psql "$DATABASE_URL" -X -Atc "select pg_sleep(600)"; """
        """echo "psql ended $?"; sleep 1; done'\n""")
    commit(repo, "a worker holding a connection")
    deployed(ssh_push(sshd, repo, app))
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    paas.cli("ps:scale", "worker=1", "-a", app)
    first = new_session(paas, app, set())
    old = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip()
    before = json.loads(paas.cli("releases", "-a", app, "--json").stdout)[0]["version"]

    paas.cli("pg:credentials:rotate", "-a", app, "--confirm", app)
    new = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip()
    assert new != old
    second = new_session(paas, app, {first})
    assert first not in worker_sessions(paas, app)  # ended by the rotation
    assert psql(old, "select 1").returncode != 0
    # releases:info of the rotation names the var, never its value.
    info = paas.cli("releases:info", f"v{before + 1}", "-a", app).stdout
    assert "Rotate DATABASE credentials" in info and "DATABASE_URL" in info, info
    assert new.split("@")[0].rsplit(":", 1)[1] not in info + paas.cli(
        "releases:info", f"v{before + 1}", "-a", app, "--json").stdout

    paas.cli("rollback", f"v{before}", "-a", app)
    assert paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip() == new
    third = new_session(paas, app, {first, second})

    paas.kill9()
    paas.restart()
    assert paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip() == new
    assert third in worker_sessions(paas, app)  # adopted, its connection untouched
    paas.cli("ps:restart", "worker", "-a", app)
    new_session(paas, app, {first, second, third})
    logs = paas.cli("logs", "-a", app, "-n", "2000").stdout
    for secret in (old.split("@")[0].rsplit(":", 1)[1], new.split("@")[0].rsplit(":", 1)[1]):
        assert secret not in logs and secret not in paas.log.read_text(errors="replace")
    paas.cli("pg:killall", "-a", app)  # the stopped dynos' sessions, still in pg_sleep
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_rotation_while_a_deploy_builds_changes_nothing(
    apps: tuple[Paas, SSHServer], tmp_path: Path, shared_dir: Path
) -> None:
    """pg:credentials:rotate while a push builds: refused once it has waited BUSY_WAIT for the
    deploy, in one sentence, and the password was not changed (the old URL, which the config
    and the dynos still hold, works); once the deploy is live the rotation goes through."""
    paas, sshd = apps
    app = "wordsbusy"
    repo = waiting_push(paas, sshd, tmp_path, shared_dir, app)
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    old = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip()
    cache = paas.data_dir / "cache" / app
    with ThreadPoolExecutor(1) as pool:
        push = start_push(pool, sshd, repo, app)
        wait_for(lambda: (cache / "waiting").exists(), timeout=60, message="the build waits")
        refused = paas.fails("pg:credentials:rotate", "-a", app, "--confirm", app)
        assert refused == (
            f" !    '{app}' is busy with a deploy or another change (for over 20 s); nothing "
            "was changed: try again once it is done.")
        assert psql(old, "select 1").stdout == "1\n"
        assert paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip() == old
        (cache / "go").touch()
        assert push.result(timeout=120).startswith("exit 0"), push.result()
    paas.cli("pg:credentials:rotate", "-a", app, "--confirm", app)
    assert psql(old, "select 1").returncode != 0
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def superuser(paas: Paas) -> list[str]:
    """psql as the cluster's superuser over its unix socket (as minipaas connects)."""
    pgdata = paas.data_dir / "postgres" / "data"
    port = re.search(r"^port = (\d+)$", (pgdata / "minipaas.conf").read_text(), re.M)
    assert port is not None
    return ["psql", "-X", "-At", "-h", str(pgdata), "-p", port.group(1), "-U", "postgres",
            "-d", "postgres"]


def config_of(paas: Paas, app: str) -> dict[str, str]:
    found: dict[str, str] = json.loads(paas.cli("config", "-a", app, "--json").stdout)
    return found


class HeldRole:
    """A superuser's open transaction that changed the app's role: a pg:credentials:rotate
    started meanwhile waits in its ALTER ROLE (as on a slow cluster) until `release`."""

    def __init__(self, paas: Paas, app: str) -> None:
        self.paas = paas
        role = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip().rsplit("/", 1)[1]
        self.proc = subprocess.Popen([*superuser(paas), "-q"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     user="postgres", cwd="/", env={"PATH": "/usr/bin:/bin"})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            f"BEGIN;\nALTER ROLE \"{role}\" CONNECTION LIMIT -1;\nSELECT 'held';\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "held\n"

    def rotation_waits(self) -> bool:
        out = subprocess.run(
            [*superuser(self.paas), "-c", "SELECT count(*) FROM pg_stat_activity WHERE "
             "wait_event_type = 'Lock' AND query LIKE 'ALTER ROLE%PASSWORD%'"],
            capture_output=True, text=True, timeout=60, check=True, user="postgres",
            cwd="/", env={"PATH": "/usr/bin:/bin"}).stdout
        return out.strip() == "1"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate("ROLLBACK;\n", timeout=60)


def started(paas: Paas, procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(paas.exe), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=paas.env)
    procs.append(proc)
    return proc


def ended(procs: list[subprocess.Popen[str]]) -> None:
    """Every CLI `started` is done: those still running are killed, all are waited for."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_a_rotation_holds_the_app_until_its_release(apps: tuple[Paas, SSHServer]) -> None:
    """From its new password to its release a rotation holds the app, as a deploy does: a
    change that came in between (a config:set here; a push's deploy the same) ran while the
    database already refused the URL the config and dynos held, and a deploy's build kept the
    rotation's release waiting (the app on a dead URL) for minutes. Now that change waits for
    the rotation, or is refused once it has waited BUSY_WAIT, in one sentence."""
    paas, _sshd = apps
    app = "wordshold"
    paas.cli("apps:create", app)
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    held = HeldRole(paas, app)
    procs: list[subprocess.Popen[str]] = []
    try:
        rotation = started(paas, procs, "pg:credentials:rotate", "-a", app, "--confirm", app)
        wait_for(held.rotation_waits, timeout=60, message="the rotation's ALTER ROLE waits")
        assert paas.fails("config:set", "FOO=1", "-a", app) == (
            f" !    '{app}' is busy with a deploy or another change (for over 20 s); nothing "
            "was changed: try again once it is done.")
        assert "FOO" not in config_of(paas, app)
        held.release()
        out, err = rotation.communicate(timeout=120)
        assert rotation.returncode == 0, (out, err)
    finally:
        held.release()
        ended(procs)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_addons_destroy_during_a_rotation_leaves_no_url(apps: tuple[Paas, SSHServer]) -> None:
    """addons:destroy while pg:credentials:rotate changes the password (held by a superuser's
    transaction): the rotation released its new URL after the destroy had unset DATABASE_URL
    and dropped the database, a DATABASE_URL of no add-on for a database that is gone. The
    destroy now waits for the rotation; neither leaves a URL behind."""
    paas, _sshd = apps
    app = "wordsrace"
    paas.cli("apps:create", app)
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    held = HeldRole(paas, app)
    procs: list[subprocess.Popen[str]] = []
    try:
        rotation = started(paas, procs, "pg:credentials:rotate", "-a", app, "--confirm", app)
        wait_for(held.rotation_waits, timeout=60, message="the rotation's ALTER ROLE waits")
        destroy = started(paas, procs, "addons:destroy", "heroku-postgresql", "-a", app,
                          "--confirm", app)
        held.release()
        out, err = destroy.communicate(timeout=120)
        assert destroy.returncode == 0, (out, err)
        out, err = rotation.communicate(timeout=120)
        assert json.loads(paas.cli("addons", "-a", app, "--json").stdout) == []
        assert "DATABASE_URL" not in config_of(paas, app), (out, err)
        assert rotation.returncode == 0, (out, err)
    finally:
        held.release()
        ended(procs)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_pg_killall_leaves_minipaas_own_sessions_alone(apps: tuple[Paas, SSHServer]) -> None:
    """pg:ps, pg:kill and pg:killall are about the app's connections (its role's), as
    Heroku's are (its credential cannot see or end the platform's own sessions): a backup's
    pg_dump, run by minipaas as the cluster's superuser, was listed by pg:ps and ended by
    pg:killall, which failed the backup (a restore's pg_restore the same, half-way). Here
    pg_dump waits for a table the app holds locked; pg:killall ends the app's session only,
    and the backup then completes."""
    paas, _sshd = apps
    app = "wordsdump"
    paas.cli("apps:create", app)
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    url = paas.cli("config:get", "DATABASE_URL", "-a", app).stdout.strip()
    assert psql(url, "create table t (n int); insert into t values (1)").returncode == 0
    pg_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    locker = subprocess.Popen(["psql", url, "-X", "-q", "-At"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**pg_env, "PGAPPNAME": "locker"})
    procs: list[subprocess.Popen[str]] = [locker]
    try:
        assert locker.stdin is not None and locker.stdout is not None
        locker.stdin.write("BEGIN;\nLOCK TABLE t IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline() == "locked\n"
        capture = started(paas, procs, "pg:backups:capture", "-a", app)

        def dump_waits() -> int | None:
            out = subprocess.run(
                [*superuser(paas), "-c", "SELECT pid FROM pg_stat_activity WHERE "
                 "application_name = 'minipaas' AND wait_event_type = 'Lock'"],
                capture_output=True, text=True, timeout=60, check=True, user="postgres",
                cwd="/", env={"PATH": "/usr/bin:/bin"}).stdout.split()
            return int(out[0]) if out else None

        dump = wait_for(dump_waits, timeout=60, message="pg_dump waits for the lock")
        listed = [r["pid"] for r in connections(paas, app, "--verbose")]
        assert dump not in listed and len(listed) == 1, listed
        assert "is not a connection" in paas.fails("pg:kill", str(dump), "-a", app)
        assert paas.cli("pg:killall", "-a", app).stdout.startswith("Terminated 1 connection ")
        out, err = capture.communicate(timeout=120)
        assert capture.returncode == 0, (out, err)
        assert out.startswith("Captured b001 of wordsdump's database"), out
    finally:
        ended(procs)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
