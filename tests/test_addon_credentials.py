"""Credentials of the add-ons and the database's connections, on one real server with its real
PostgreSQL cluster and redis-server: `pg:credentials:rotate` (the old password refused, its
sessions ended, the new URL in a config release the dynos restart with), `redis:credentials`
and its `--reset` (clients disconnected, the new password kept across a kill -9), `pg:ps`,
`pg:kill` and `pg:killall` on real long queries (`SELECT pg_sleep(60)` from psql as the app's
role), another app's backend refused, bad input at the CLI and the API, and no new password
in the server's log."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, https_push, start_paas
from tests.support.ports import wait_for
from tests.test_addons import psql
from tests.test_redis import host_cli, redis_pid

APP = "credapp"
OTHER = "otherapp"


class Env:
    def __init__(self, paas: Paas) -> None:
        self.paas = paas
        self.sleepers: list[subprocess.Popen[str]] = []

    def url(self, var: str, app: str = APP) -> str:
        return self.paas.cli("config:get", var, "-a", app).stdout.strip()

    def sleeper(self, url: str, seconds: int = 60, name: str = "sleeper") -> subprocess.Popen[str]:
        """psql on the host as the app's role, running `SELECT pg_sleep(seconds)`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        proc = subprocess.Popen(
            ["psql", url, "-X", "-Atc", f"select pg_sleep({seconds})"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**env, "PGAPPNAME": name},
        )
        self.sleepers.append(proc)
        return proc

    def connections(self, app: str = APP) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(
            self.paas.cli("pg:ps", "-a", app, "--json").stdout)
        return found

    def sleeping(self, name: str, app: str = APP) -> int:
        """The pid of the backend running the sleeper called `name`, once pg:ps shows it."""
        def seen() -> int | None:
            for row in self.connections(app):
                if row["source"] == name and "pg_sleep" in (row["query"] or "") and (
                        row["state"] == "active"):
                    return int(row["pid"])
            return None
        return wait_for(seen, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("creds")
    paas = start_paas(work / "authorized_keys", work / "server.log")
    it = Env(paas)
    try:
        paas.cli("apps:create", APP)
        token = paas.cli("auth:token").stdout.strip()
        deployed(https_push(paas, git_repo(SAMPLES / "python-stdlib", work / APP), APP, token))
        paas.cli("addons:create", "heroku-postgresql", "-a", APP)
        paas.cli("addons:create", "heroku-redis", "-a", APP)
        paas.cli("apps:create", OTHER)  # never deployed: its config release is enough
        paas.cli("addons:create", "heroku-postgresql", "-a", OTHER)
        yield it
    finally:
        for proc in it.sleepers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


def newest_release(paas: Paas, app: str = APP) -> dict[str, Any]:
    releases = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    newest: dict[str, Any] = max(releases, key=lambda r: r["version"])
    return newest


def web_up_on(paas: Paas, version: int) -> bool:
    dynos = json.loads(paas.cli("ps", "-a", APP, "--json").stdout)["dynos"]
    return any(d["type"] == "web" and d["state"] == "up" and d["release"] == version
               for d in dynos)


def test_pg_credentials_rotate(env: Env) -> None:
    paas = env.paas
    old = env.url("DATABASE_URL")
    role, old_pw, port = re.findall(r"postgres://([^:]+):([^@]+)@127\.0\.0\.1:(\d+)/", old)[0]
    assert psql(old, "select 1").stdout == "1\n"
    session = env.sleeper(old, name="before-rotation")
    env.sleeping("before-rotation")

    # Refused without --confirm, as pg:reset is; nothing changed.
    assert paas.fails("pg:credentials:rotate", "-a", APP, code=2) == (
        f"Rotating the credentials of {APP}'s database ends its connections and restarts its "
        f"dynos; run again with --confirm {APP}."
    )
    assert paas.fails("pg:credentials:rotate", "-a", APP, "--confirm", OTHER, code=2)
    assert env.url("DATABASE_URL") == old

    before = newest_release(paas)["version"]
    started = time.monotonic()
    out = paas.cli("pg:credentials:rotate", "DATABASE_URL", "-a", APP, "--confirm", APP).stdout
    print(f"pg:credentials:rotate took {time.monotonic() - started:.2f} s (release included)")
    assert out == (
        f"Rotated the credentials of {role} (DATABASE_URL) of {APP}: the old password no "
        f"longer works; released v{before + 1} with the new DATABASE_URL.\n"
    ), out
    new = env.url("DATABASE_URL")
    match = re.fullmatch(rf"postgres://{role}:([0-9a-f]{{48}})@127\.0\.0\.1:{port}/{role}", new)
    assert match is not None, new
    new_pw = match.group(1)
    assert new_pw != old_pw
    release = newest_release(paas)
    assert (release["version"], release["description"]) == (
        before + 1, "Rotate DATABASE credentials"), release

    # The old password is refused, the new one works; the session of the old one is gone.
    refused = psql(old, "select 1")
    assert refused.returncode != 0
    assert f'password authentication failed for user "{role}"' in refused.stderr, refused.stderr
    assert psql(new, "select current_user").stdout == f"{role}\n"
    assert session.wait(timeout=30) != 0
    assert "terminating connection due to administrator command" in session.communicate()[1]
    # The dynos have it: the web dyno restarted on the new release, a one-off dyno connects.
    wait_for(lambda: web_up_on(paas, before + 1), timeout=60)
    ran = paas.cli("run", "-a", APP, "--", "sh", "-c", 'psql "$DATABASE_URL" -X -Atc "select 42"',
                   input="")
    assert ran.stdout.strip() == "42", ran
    # A rollback to the release before the rotation keeps the new URL (add-ons are not rolled
    # back, as on Heroku): the old password would no longer open the database.
    paas.cli("rollback", f"v{before}", "-a", APP)
    assert env.url("DATABASE_URL") == new
    # The other app's database and password are untouched.
    assert psql(env.url("DATABASE_URL", OTHER), "select 1").stdout == "1\n"
    # No password in a log: the server's, the app's, the cluster's.
    logs = paas.cli("logs", "-a", APP, "-n", "1000").stdout
    assert "rotated the credentials of heroku-postgresql" in logs, logs
    for text in (paas.log.read_text(errors="replace"), logs,
                 (paas.data_dir / "postgres" / "postgres.log").read_text(errors="replace")):
        assert new_pw not in text and old_pw not in text


def test_pg_ps_kill_and_killall_on_real_queries(env: Env) -> None:
    paas = env.paas
    url, other_url = env.url("DATABASE_URL"), env.url("DATABASE_URL", OTHER)
    role = url.rsplit("/", 1)[1]

    first = env.sleeper(url, name="first")
    pid = env.sleeping("first")
    started = time.monotonic()
    shown = paas.cli("pg:ps", "-a", APP).stdout
    print(f"pg:ps took {time.monotonic() - started:.2f} s")
    header, _rule, *rows = shown.splitlines()
    assert header.split() == ["pid", "state", "source", "running_for", "waiting", "query"]
    row = next(r for r in rows if r.startswith(f"{pid} "))
    assert re.search(r" active +first +\d\d:\d\d:\d\d\.\d{3} +no +select pg_sleep\(60\)$",
                     row), shown
    # Over MINIPAAS_URL and a token too (the API's TCP port: `minipaas.localhost`, Caddy's
    # name for it, resolves only where the resolver knows *.localhost).
    remote_env = {**paas.remote_env(), "MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}"}
    remote = subprocess.run([str(paas.exe), "pg:ps", "-a", APP, "--json"], capture_output=True,
                            text=True, env=remote_env, timeout=60, check=False)
    assert remote.returncode == 0, remote.stderr
    assert pid in [r["pid"] for r in json.loads(remote.stdout)]
    listed = next(r for r in env.connections() if r["pid"] == pid)
    assert listed["user"] == role and listed["waiting"] is False
    assert listed["running_for"] >= 0

    # Another app's query: pg:ps of this app does not show it, pg:kill refuses its pid.
    theirs = env.sleeper(other_url, name="theirs")
    their_pid = env.sleeping("theirs", OTHER)
    assert their_pid not in [r["pid"] for r in env.connections()]
    for force in ((), ("--force",)):
        assert paas.fails("pg:kill", str(their_pid), *force, "-a", APP) == (
            f" !    The pid {their_pid} is not a connection to the database of '{APP}'; see "
            f"`minipaas pg:ps -a {APP}`."
        )
    pidfile = paas.data_dir / "postgres" / "data" / "postmaster.pid"
    postmaster = int(pidfile.read_text().split()[0])
    assert "is not a connection" in paas.fails("pg:kill", str(postmaster), "-a", APP)
    assert theirs.poll() is None

    # pg:kill cancels the query (psql says so); the connection would stay.
    started = time.monotonic()
    out = paas.cli("pg:kill", str(pid), "-a", APP).stdout
    print(f"pg:kill took {time.monotonic() - started:.2f} s")
    assert out == f"Cancelled the query of pid {pid} on {APP}'s database {role}.\n"
    assert first.wait(timeout=30) != 0
    assert "canceling statement due to user request" in first.communicate()[1]

    # --force ends the connection.
    second = env.sleeper(url, name="second")
    pid = env.sleeping("second")
    out = paas.cli("pg:kill", "--force", str(pid), "DATABASE_URL", "-a", APP).stdout
    assert out == f"Terminated the connection of pid {pid} to {APP}'s database {role}.\n"
    assert second.wait(timeout=30) != 0
    assert "terminating connection due to administrator command" in second.communicate()[1]

    # pg:killall ends every connection to this app's database, idle ones too (which pg:ps
    # leaves out, as Heroku's does), and none of the other's.
    sleepers = [env.sleeper(url, name=f"many{n}") for n in range(2)]
    for n in range(2):
        env.sleeping(f"many{n}")
    pg_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    idle = subprocess.Popen(["psql", url, "-X", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**pg_env, "PGAPPNAME": "idle"})
    env.sleepers.append(idle)
    wait_for(lambda: json.loads(paas.cli("pg:info", "-a", APP, "--json").stdout)[
        "connections"] == 3, timeout=30)
    assert "idle" not in [r["source"] for r in env.connections()]
    out = paas.cli("pg:killall", "-a", APP).stdout
    assert out == f"Terminated 3 connections to {APP}'s database {role}.\n", out
    for proc in sleepers:
        assert proc.wait(timeout=30) != 0
    _, said = idle.communicate("select 1;\n", timeout=30)
    assert idle.returncode != 0 and "terminating connection due to administrator" in said, said
    assert env.connections() == []
    assert paas.cli("pg:ps", "-a", APP).stdout == (
        f"No queries running on {APP}'s database {role} (idle connections are listed by "
        "pg:ps --verbose).\n")
    assert theirs.poll() is None and their_pid in [r["pid"] for r in env.connections(OTHER)]
    assert paas.cli("pg:killall", "-a", OTHER).stdout.startswith("Terminated 1 connection to ")
    assert theirs.wait(timeout=30) != 0


def test_a_query_whose_client_died_does_not_run_on(env: Env) -> None:
    """A client killed mid-query (a `run` dyno killed, a dyno stopped by a deploy): PostgreSQL
    only noticed when the query ended, so a long one ran on, its locks held (a killed
    migration blocked the next). Backends now look for their client every CLIENT_CHECK."""
    from minipaas.postgres.cluster import CLIENT_CHECK

    sleeper = env.sleeper(env.url("DATABASE_URL"), seconds=600, name="orphaned")
    pid = env.sleeping("orphaned")
    sleeper.kill()
    sleeper.wait()
    started = time.monotonic()
    wait_for(lambda: pid not in [r["pid"] for r in env.connections()], timeout=60)
    print(f"the orphaned query ended {time.monotonic() - started:.1f} s after its client "
          f"(check every {CLIENT_CHECK})")


def test_redis_credentials_and_reset(env: Env) -> None:
    paas = env.paas
    old = env.url("REDIS_URL")
    old_pw, port = re.findall(r"redis://:([^@]+)@127\.0\.0\.1:(\d+)", old)[0]
    assert paas.cli("redis:credentials", "-a", APP).stdout == old + "\n"
    assert host_cli(old, "SET", "kept", "yes").stdout.strip() == "OK"
    pid = redis_pid(paas, APP)
    assert pid is not None
    # A client connected with the old password.
    client = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    client.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(old_pw), old_pw.encode()))
    reader = client.makefile("rb")
    assert reader.readline() == b"+OK\r\n"

    assert paas.fails("redis:credentials", "--reset", "-a", APP, code=2) == (
        f"Rotating the credentials of {APP}'s Redis ends its connections and restarts its "
        f"dynos; run again with --confirm {APP}."
    )
    assert env.url("REDIS_URL") == old
    before = newest_release(paas)["version"]
    started = time.monotonic()
    out = paas.cli("redis:credentials", "--reset", "-a", APP, "--confirm", APP).stdout
    print(f"redis:credentials --reset took {time.monotonic() - started:.2f} s (release included)")
    name = json.loads(paas.cli("addons", "-a", APP, "--json").stdout)
    redis_name = next(a["name"] for a in name if a["service"] == "heroku-redis")
    assert out == (
        f"Reset the credentials of {redis_name} (REDIS_URL) of {APP}: the old password no "
        f"longer works; released v{before + 1} with the new REDIS_URL.\n"
    ), out
    new = env.url("REDIS_URL")
    match = re.fullmatch(rf"redis://:([0-9a-f]{{64}})@127\.0\.0\.1:{port}", new)
    assert match is not None, new
    new_pw = match.group(1)
    assert new_pw != old_pw
    assert newest_release(paas)["description"] == "Rotate REDIS credentials"
    assert paas.cli("redis:credentials", "-a", APP).stdout == new + "\n"

    # The client of the old password was disconnected; the old one is refused, the new works,
    # the data stayed.
    try:
        client.sendall(b"*1\r\n$4\r\nPING\r\n")
        answer = reader.readline()
    except (ConnectionResetError, BrokenPipeError):  # the close seen as a reset: as good
        answer = b""
    assert answer == b"", answer
    client.close()
    refused = host_cli(old, "GET", "kept")
    assert "WRONGPASS" in refused.stderr and "kept" not in refused.stdout, refused
    assert host_cli(new, "GET", "kept").stdout.strip() == "yes"
    # The denied commands are still denied.
    assert "NOPERM" in host_cli(new, "CONFIG", "SET", "bind", "0.0.0.0").stdout
    wait_for(lambda: web_up_on(paas, before + 1), timeout=60)
    ran = paas.cli("redis:cli", "-a", APP, "-c", "GET kept", input="")
    assert ran.stdout.strip() == "yes", ran

    # kill -9: started again from its config, with the new password.
    pid = redis_pid(paas, APP)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (now := redis_pid(paas, APP)) is not None and now != pid, timeout=60)
    wait_for(lambda: host_cli(new, "GET", "kept").stdout.strip() == "yes", timeout=30)
    refused = host_cli(old, "PING")
    assert "WRONGPASS" in refused.stderr and "PONG" not in refused.stdout, refused

    for text in (paas.log.read_text(errors="replace"),
                 paas.cli("logs", "-a", APP, "-n", "1000").stdout,
                 (paas.data_dir / "redis" / APP / "redis.log").read_text(errors="replace"),
                 (paas.data_dir / "redis" / APP / "redis.conf").read_text()):
        assert new_pw not in text and old_pw not in text


def test_a_failed_release_puts_the_old_password_back(env: Env, tmp_path: Path) -> None:
    """The new URL goes out by a config release; if its dynos do not come up (here a web
    process that exits unless its URLs hold KEEP), the release fails, the config keeps the old
    URL, and the old password must work again: it is the one the dynos have."""
    paas, app = env.paas, "failapp"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    (repo / "Procfile").write_text(
        """web: sh -c 'case "$DATABASE_URL|$REDIS_URL" in *"$KEEP"*) exec python app.py;; """
        """esac; exit 1'\n""")
    commit(repo, "a web process that needs KEEP in its URLs")
    token = paas.cli("auth:token").stdout.strip()
    deployed(https_push(paas, repo, app, token))
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    paas.cli("addons:create", "heroku-redis", "-a", app)
    for var, word in (("DATABASE_URL", ("pg:credentials:rotate",)),
                      ("REDIS_URL", ("redis:credentials", "--reset"))):
        url = env.url(var, app)
        password = re.findall(r"//[^:]*:([^@]+)@", url)[0]
        paas.cli("config:set", f"KEEP={password}", "-a", app)
        before = newest_release(paas, app)["version"]
        started = time.monotonic()
        failed = paas.fails(*word, "-a", app, "--confirm", app)
        print(f"{word[0]} whose release failed took {time.monotonic() - started:.2f} s: {failed}")
        assert failed.startswith(" !    ") and "\n" not in failed, failed
        assert env.url(var, app) == url
        release = newest_release(paas, app)
        assert (release["version"], release["status"]) == (before + 1, "failed"), release
        if var == "DATABASE_URL":
            assert psql(url, "select 1").stdout == "1\n"
        else:
            assert host_cli(url, "PING").stdout.strip() == "PONG"
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_bad_input(env: Env) -> None:
    paas = env.paas
    paas.cli("apps:create", "bare")
    no_pg = (" !    The app 'bare' has no heroku-postgresql add-on; create one with "
             "`minipaas addons:create heroku-postgresql -a bare`.")
    no_redis = (" !    The app 'bare' has no heroku-redis add-on; create one with "
                "`minipaas addons:create heroku-redis -a bare`.")
    assert paas.fails("pg:credentials:rotate", "-a", "bare", "--confirm", "bare") == no_pg
    assert paas.fails("pg:ps", "-a", "bare") == no_pg
    assert paas.fails("pg:kill", "123", "-a", "bare") == no_pg
    assert paas.fails("pg:killall", "-a", "bare") == no_pg
    assert paas.fails("redis:credentials", "-a", "bare") == no_redis
    assert paas.fails("redis:credentials", "--reset", "-a", "bare", "--confirm", "bare") == (
        no_redis)
    for word in (("pg:ps",), ("pg:killall",), ("redis:credentials",)):
        assert "No app named 'nope'" in paas.fails(*word, "-a", "nope")
    for pid in ("abc", "-1", "0", "1.5", "99999999999", "12a"):
        assert paas.fails("pg:kill", pid, "-a", APP) == (
            f" !    Invalid pid '{pid}': give a number `minipaas pg:ps -a {APP}` shows."
        ), pid
    assert "has no heroku-postgresql add-on named 'REDIS_URL'" in paas.fails(
        "pg:ps", "REDIS_URL", "-a", APP)
    paas.cli("apps:destroy", "-a", "bare", "--confirm", "bare")

    token = paas.cli("auth:token").stdout.strip()
    base = f"http://127.0.0.1:{paas.api_port}/api/apps/{APP}/addons"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        cases: list[tuple[str, str, Any, int, str]] = [
            ("POST", "/heroku-postgresql/kill", {}, 400, "No pid given"),
            ("POST", "/heroku-postgresql/kill", {"pid": "12"}, 400, 'Invalid pid "12"'),
            ("POST", "/heroku-postgresql/kill", {"pid": True}, 400, "Invalid pid true"),
            ("POST", "/heroku-postgresql/kill", {"pid": -4}, 400, "Invalid pid -4"),
            ("POST", "/heroku-postgresql/kill", {"pid": 2**40}, 400, "Invalid pid 1099511627776"),
            ("POST", "/heroku-postgresql/kill", {"pid": [1]}, 400, "Invalid pid a list"),
            ("POST", "/heroku-postgresql/kill", {"pid": 1, "force": "yes"}, 400,
             "The field 'force' must be true or false"),
            ("POST", "/heroku-postgresql/kill", [1], 400, "must be a JSON object"),
            ("POST", "/heroku-postgresql/kill", {"pid": 1}, 404, "The pid 1 is not a connection"),
            ("POST", "/heroku-redis/kill", {"pid": 1}, 400,
             "Only a heroku-postgresql database has connections to cancel."),
            ("GET", "/heroku-redis/activity", None, 400,
             "Only a heroku-postgresql database has connections to list."),
            ("POST", "/heroku-redis/killall", None, 400, "connections to end"),
            ("GET", "/mysql/activity", None, 400, "Unknown add-on 'mysql'"),
            ("POST", "/heroku-postgresql/credentials/rotate", None, 400,
             f"confirm with `--confirm {APP}`"),
            ("POST", "/heroku-redis/credentials/rotate?confirm=x", None, 400,
             f"confirm with `--confirm {APP}`"),
            ("POST", "/mysql/credentials/rotate?confirm=" + APP, None, 400, "'mysql'"),
            ("GET", "/heroku-postgresql/activity", None, 200, ""),
        ]
        for method, path, body, status, said in cases:
            answer = c.request(method, base + path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            if said:
                assert said in answer.json()["error"], (path, body, answer.text)
        answer = c.post(f"http://127.0.0.1:{paas.api_port}/api/apps/{OTHER}/addons/heroku-redis"
                        f"/credentials/rotate", params={"confirm": OTHER})
        assert answer.status_code == 404 and "no heroku-redis add-on" in answer.json()["error"]
        answer = c.get(f"http://127.0.0.1:{paas.api_port}/api/apps/ghost/addons/heroku-postgresql"
                       "/activity")
        assert answer.status_code == 404 and "No app named 'ghost'" in answer.json()["error"]
        for method, path in (("GET", "credentials"), ("POST", "credentials/rotate?confirm=x"),
                             ("GET", "activity"), ("POST", "kill"), ("POST", "killall")):
            answer = c.request(method, f"http://127.0.0.1:{paas.api_port}/api/apps/Bad_App/"
                               f"addons/heroku-postgresql/{path}", json={"pid": 1})
            assert answer.status_code == 400, (path, answer.text)
            assert "Invalid app name 'Bad_App'" in answer.json()["error"], answer.text


def test_the_words_are_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for word in ("pg:credentials:rotate", "redis:credentials", "pg:ps", "pg:kill", "pg:killall"):
        assert f"`{word}" in readme, word
