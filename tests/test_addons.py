"""The PostgreSQL add-on (`addons:create heroku-postgresql`): names and the SCRAM verifier
(pure), a real server without PostgreSQL and Redis installed, then a real server with its real
cluster: a deployed app's one-off dyno reaching its
database through DATABASE_URL, another app's role refused, the database surviving a restart of
the server and a kill -9 of postgres, addons:destroy and apps:destroy dropping it, bad input at
the CLI and the API, and no postgres process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from minipaas.errors import UserError
from minipaas.postgres import Cluster, find_bindir, scram_verifier, service_name
from tests.paas import (
    SAMPLES,
    Paas,
    commit,
    deployed,
    git_repo,
    hiding,
    https_push,
    start_paas,
)
from tests.support import localhost_cli
from tests.support.ports import wait_for
from tests.support.terminal import terminal

# -- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "plan"),
    [
        ("heroku-postgresql", None),
        ("heroku-postgresql:essential-0", "essential-0"),
        ("postgresql", None),
        ("postgres:mini", "mini"),
        ("Heroku-PostgreSQL", None),
    ],
)
def test_service_names(text: str, plan: str | None) -> None:
    assert service_name(text) == ("heroku-postgresql", plan)


@pytest.mark.parametrize("text", ["heroku-redis", "", "mysql:small", "postgres-ql"])
def test_unknown_services_are_refused_by_name(text: str) -> None:
    with pytest.raises(UserError) as caught:
        service_name(text)
    assert str(caught.value) == (
        f"Unknown add-on {text!r}: minipaas offers heroku-postgresql "
        "(also called postgresql or postgres)."
    )


def test_scram_verifier_is_rfc_7677_shaped() -> None:
    # PostgreSQL's own verifier for password "pencil" with this salt (SELECT from pg_authid
    # after ALTER ROLE ... PASSWORD 'pencil' with the salt forced) is what libpq checks; the
    # real login below proves the whole path, this pins the format.
    verifier = scram_verifier("pencil", salt=b"\x00" * 16)
    assert re.fullmatch(r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:"
                        r"[A-Za-z0-9+/=]{44}", verifier)
    assert verifier == scram_verifier("pencil", salt=b"\x00" * 16)
    assert "pencil" not in verifier
    assert scram_verifier("pencil") != scram_verifier("pencil")  # a fresh salt each time


def test_without_postgresql_addons_create_says_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "lib-postgresql"
    empty.mkdir()
    with pytest.raises(UserError) as caught:
        find_bindir(None, root=empty)
    assert str(caught.value) == (
        f"PostgreSQL is not installed on this server (nothing in {empty}): install it with "
        "`apt-get install postgresql`, then run addons:create again."
    )
    # And the cluster is not even begun: nothing is written.
    cluster = Cluster(tmp_path / "pg", bindir=lambda v: find_bindir(v, root=empty))
    with pytest.raises(UserError, match="apt-get install postgresql"):
        asyncio.run(cluster.ensure())
    assert not (tmp_path / "pg").exists()


def test_dropping_a_database_of_a_cluster_deleted_by_hand_is_not_an_error(
    tmp_path: Path,
) -> None:
    # (apps:destroy drops the app's database first: it must not be stuck for ever on this.)
    asyncio.run(Cluster(tmp_path / "postgres").drop_database("app_1234abcd"))
    assert not (tmp_path / "postgres").exists()


def test_a_data_dir_postgresql_conf_cannot_quote_is_refused_before_initdb(
    tmp_path: Path,
) -> None:
    root = tmp_path / "it's" / "postgres"
    cluster = Cluster(root)
    with pytest.raises(UserError) as caught:
        asyncio.run(cluster.ensure())
    assert str(caught.value) == (
        f"The data dir {root / 'data'} holds a quote or a backslash, which PostgreSQL's "
        "configuration cannot take; use another data dir."
    )
    assert not root.exists()


def test_a_server_without_postgresql_or_redis_says_what_to_install_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A real server in a mount namespace where /usr/lib/postgresql is empty and
    /usr/bin/redis-server is no program, as on a VPS without the packages: `addons:create`
    and a first push whose app.json asks for the add-on each say what to install."""
    paas = start_paas(
        tmp_path / "keys", tmp_path / "server.log",
        launcher=hiding("mount -t tmpfs -o ro none /usr/lib/postgresql && "
                        "mount --bind /dev/null /usr/bin/redis-server"),
    )
    missing = {
        "heroku-postgresql": (
            "PostgreSQL is not installed on this server (nothing in /usr/lib/postgresql): "
            "install it with `apt-get install postgresql`, then run addons:create again."
        ),
        "heroku-redis": (
            "Redis is not installed on this server (no /usr/bin/redis-server): install it "
            "with `apt-get install redis-server`, then run addons:create again."
        ),
    }
    try:
        paas.cli("apps:create", "noaddons")
        token = paas.cli("auth:token").stdout.strip()
        repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "noaddons")
        for service, said in missing.items():
            result = paas.cli("addons:create", service, "-a", "noaddons", check=False)
            assert (result.returncode, result.stderr) == (1, f" !    {said}\n"), result
            assert json.loads(paas.cli("config", "-a", "noaddons", "--json").stdout) == {}
            assert json.loads(paas.cli("addons", "--json").stdout) == []
            (repo / "app.json").write_text(json.dumps({"addons": [f"{service}:mini"]}))
            commit(repo, f"asks for {service}")
            pushed = https_push(paas, repo, "noaddons", token)
            assert pushed.returncode != 0
            assert (f"app.json asks for {service}, which could not be provisioned: "
                    f"{said.split(':')[0]}") in pushed.stderr, pushed.stderr
            assert json.loads(paas.cli("releases", "-a", "noaddons", "--json").stdout) == []
            assert json.loads(paas.cli("addons", "--json").stdout) == []
        assert not (paas.data_dir / "postgres").exists()
        assert not (paas.data_dir / "redis").exists()
    finally:
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


# -- a real server and cluster ---------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if (fields := _stat(pid)) is not None and fields[0] not in "ZX"]


def cluster_pids(paas: Paas) -> list[int]:
    """The running postmaster of the data dir's cluster and its children (the backends and
    workers, whose command lines postgres rewrites and which name no data dir)."""
    found = postmaster(paas)
    if found is None or not alive([found[0]]):
        return []
    children = [int(e.name) for e in Path("/proc").iterdir()
                if e.name.isdigit() and (f := _stat(int(e.name))) and int(f[1]) == found[0]]
    return alive([found[0], *children])


def postmaster(paas: Paas) -> tuple[int, str] | None:
    """(pid, status) of the cluster's postmaster.pid."""
    try:
        lines = (paas.data_dir / "postgres" / "data" / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), lines[7].strip()
    except (OSError, ValueError, IndexError):
        return None


def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """psql on the host (as a client elsewhere on the machine would connect)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        ["psql", url, "-X", "-Atc", sql], capture_output=True, text=True, timeout=60,
        env=env, check=False,
    )


def superuser_databases(paas: Paas) -> set[str]:
    """The cluster's databases, asked as its superuser over the unix socket (as minipaas)."""
    pgdata = paas.data_dir / "postgres" / "data"
    port = re.search(r"^port = (\d+)$", (pgdata / "minipaas.conf").read_text(), re.M)
    assert port is not None
    out = subprocess.run(
        ["psql", "-X", "-At", "-h", str(pgdata), "-p", port.group(1), "-U", "postgres",
         "-d", "postgres", "-c", "SELECT datname FROM pg_database"],
        capture_output=True, text=True, timeout=60, check=True, user="postgres",
        cwd="/", env={"PATH": "/usr/bin:/bin"},
    ).stdout
    return set(out.split())


class Pg:
    def __init__(self, paas: Paas, app: str) -> None:
        self.paas, self.app = paas, app

    def url(self, app: str | None = None) -> str:
        return self.paas.cli("config:get", "DATABASE_URL", "-a", app or self.app).stdout.strip()

    def in_dyno(self, sql: str, app: str | None = None) -> str:
        """`sql` through psql "$DATABASE_URL" inside a one-off dyno of the app."""
        result = self.paas.cli(
            "run", "-a", app or self.app, "--", "sh", "-c", f'psql "$DATABASE_URL" -X -Atc "{sql}"'
        )
        return result.stdout.strip()


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pg]:
    work = tmp_path_factory.mktemp("addons")
    paas = start_paas(work / "authorized_keys", work / "server.log")
    try:
        app = "pgapp"
        paas.cli("apps:create", app)
        token = paas.cli("auth:token").stdout.strip()
        deployed(https_push(paas, git_repo(SAMPLES / "python-stdlib", work / app), app, token))
        yield Pg(paas, app)
    finally:
        running = cluster_pids(paas)
        paas.stop()
        left = alive(running)
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    assert left == [], f"postgres processes left after `minipaas down`: {left}"
    paas.assert_no_crashes()


def test_a_dyno_reaches_its_database_and_another_apps_role_cannot(pg: Pg) -> None:
    paas, app = pg.paas, pg.app
    releases = len(json.loads(paas.cli("releases", "-a", app, "--json").stdout))
    out = paas.cli("addons:create", "heroku-postgresql:essential-0", "-a", app).stdout
    assert re.fullmatch(
        r"Created heroku-postgresql pgapp_[0-9a-f]{8} for pgapp \(plan 'essential-0' ignored: "
        r"one local plan\); its URL is set as DATABASE_URL\.\n",
        out,
    ), out
    url = pg.url()
    match = re.fullmatch(r"postgres://(pgapp_[0-9a-f]{8}):([0-9a-f]{48})@127\.0\.0\.1:(\d+)/\1",
                         url)
    assert match is not None, url
    role, password, port = match.groups()
    assert int(port) != 5432
    # Set through the config path: a release, and the web dyno restarted with it.
    after = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    assert len(after) == releases + 1
    newest = max(after, key=lambda r: r["version"])
    assert newest["description"] == "Set DATABASE_URL", newest
    wait_for(lambda: any(d["state"] == "up" and d["release"] == newest["version"]
                         for d in json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]),
             timeout=60)

    # A dyno connects with DATABASE_URL (over 127.0.0.1, scram-sha-256).
    assert pg.in_dyno("select current_user, 41 + 1") == f"{role}|42"
    # pg:psql: psql on the caller's stdin/stdout, in a dyno.
    ran = paas.cli("pg:psql", "-a", app, "-c", "create table notes (t text); "
                   "insert into notes values ('kept')", input="")
    assert "INSERT 0 1" in ran.stdout, ran
    assert pg.in_dyno("select t from notes") == "kept"

    # Another app (never deployed: the config release is enough) gets a database of its own;
    # its role cannot open the first app's database, nor can the first's reach the second's.
    paas.cli("apps:create", "other")
    paas.cli("addons:create", "postgres", "-a", "other")
    other = pg.url("other")
    other_role, other_pw = re.findall(r"postgres://([^:]+):([^@]+)@", other)[0]
    assert psql(other, "select 1").stdout == "1\n"
    refused = psql(f"postgres://{other_role}:{other_pw}@127.0.0.1:{port}/{role}", "select 1")
    assert refused.returncode != 0
    assert f'permission denied for database "{role}"' in refused.stderr, refused.stderr
    refused = psql(f"postgres://{role}:{password}@127.0.0.1:{port}/{other_role}", "select 1")
    assert f'permission denied for database "{other_role}"' in refused.stderr
    # Nor the maintenance database, nor the superuser over TCP.
    refused = psql(f"postgres://{role}:{password}@127.0.0.1:{port}/postgres", "select 1")
    assert 'permission denied for database "postgres"' in refused.stderr
    refused = psql(f"postgres://postgres:x@127.0.0.1:{port}/postgres", "select 1")
    assert refused.returncode != 0 and "rejects connection" in refused.stderr, refused.stderr

    # Listed and described without the password.
    listed = paas.cli("addons").stdout
    assert re.search(rf"pgapp +heroku-postgresql +{role} +local +DATABASE_URL", listed), listed
    assert "other" in listed and password not in listed
    mine = json.loads(paas.cli("addons", "-a", app, "--json").stdout)
    assert [(a["service"], a["name"], a["config_var"]) for a in mine] == [
        ("heroku-postgresql", role, "DATABASE_URL")
    ]
    assert password not in json.dumps(mine)
    assert f"Add-ons:   heroku-postgresql ({role})\n" in paas.cli("apps:info", "-a", app).stdout
    info = paas.cli("pg:info", "-a", app).stdout
    assert f"=== DATABASE_URL ({role})" in info and "PG Version:  15." in info, info
    assert re.search(r"Data Size:   \d+\.\d MB", info) and "Connections: " in info, info
    assert password not in info
    # The cluster's files are its OS user's alone, its log the server's.
    pgdata = paas.data_dir / "postgres" / "data"
    assert (pgdata.stat().st_uid, pgdata.stat().st_mode & 0o777) == (
        pwd.getpwnam("postgres").pw_uid, 0o700)
    assert (paas.data_dir / "postgres" / "postgres.log").stat().st_mode & 0o777 == 0o600
    # No password in any log: the server's, the cluster's.
    for log in (paas.log, paas.data_dir / "postgres" / "postgres.log"):
        text = log.read_text(errors="replace")
        assert password not in text and other_pw not in text, log


def test_pg_psql_gets_the_callers_terminal(pg: Pg) -> None:
    """`pg:psql` without -c: an interactive psql on a real terminal (a pty), as on Heroku."""
    paas = pg.paas
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", pg.app)
    with terminal([str(paas.exe), "pg:psql", "-a", pg.app], paas.env) as term:
        term.expect(b"=>", timeout=60)  # psql's prompt: it saw a terminal
        term.type(b"select 6 * 7 as answer;\n")
        term.expect(b"42")
        term.type(b"\\q\n")
        assert term.wait() == 0, term.seen.decode(errors="replace")
    assert b"answer" in term.seen


def test_pg_psql_works_on_an_app_never_pushed(pg: Pg) -> None:
    """Heroku's psql runs on the user's side, so an app with the add-on and no push has it
    too: the system's psql in a one-off without the slug, as the app's uid, with the app's own
    DATABASE_URL; through the attached run (pipes), the streamed run (stdin /dev/null) and over
    MINIPAAS_URL. `run` itself still wants a push (there is no app code to run)."""
    paas, app = pg.paas, "unpushed"
    paas.cli("apps:create", app)
    try:
        paas.cli("addons:create", "heroku-postgresql", "-a", app)
        role = re.findall(r"postgres://([^:]+):", pg.url(app))[0]
        assert paas.fails("run", "-a", app, "--", "true") == (
            f" !    {app!r} has no release to run commands in; push first."
        )
        ran = paas.cli("pg:psql", "-a", app, "-c", "select 1", input="")
        assert ran.stdout.split() == ["?column?", "----------", "1", "(1", "row)"], ran
        ran = paas.cli("pg:psql", "-a", app, "-c", "select current_user", input="")
        assert role in ran.stdout.split(), ran  # the app's role, not the superuser
        ran = paas.cli("pg:psql", "-a", app, "-c", r"\! id -u; ls -A /app", input="")
        uid = ran.stdout.split()
        assert len(uid) == 1 and uid != ["0"], ran  # the app's uid (not root), an empty /app
        streamed = subprocess.run(
            [str(paas.exe), "pg:psql", "-a", app, "-c", "select 40 + 2 as n"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=paas.env, timeout=120,
        )
        assert streamed.returncode == 0 and "42" in streamed.stdout.split(), streamed
        remote = subprocess.run(
            localhost_cli.argv("pg:psql", "-a", app, "-c", "select 'far' as w"),
            input="", capture_output=True, text=True, env=paas.remote_env(), timeout=120,
        )
        assert remote.returncode == 0 and "far" in remote.stdout.split(), remote
    finally:
        paas.cli("apps:destroy", "--confirm", app, "-a", app)


def test_the_database_survives_a_server_restart_and_a_kill_9(pg: Pg) -> None:
    paas = pg.paas
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", pg.app)
        pg.in_dyno("create table notes (t text); insert into notes values ('kept')")
    before = postmaster(paas)
    assert before is not None and before[1] == "ready"

    # A restart of minipaas: the cluster keeps running and is adopted, not restarted.
    assert paas.proc is not None
    paas.proc.send_signal(signal.SIGTERM)
    paas.proc.wait(timeout=60)
    assert postmaster(paas) == before
    paas.restart()
    assert postmaster(paas) == before
    assert pg.in_dyno("select t from notes") == "kept"

    # kill -9 of the postmaster: minipaas starts it again (a new pid), the data is kept.
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: (now := postmaster(paas)) is not None and now[0] != before[0]
             and now[1] == "ready", timeout=90)
    assert pg.in_dyno("select t from notes") == "kept"
    log = paas.log.read_text()
    assert f"postgres (pid {before[0]}) stopped; starting it again" in log  # it said why
    # Only real deaths are reported (and count towards the backoff of the next one).
    assert "postgres (pid None)" not in log


def test_a_rollback_keeps_the_addons_database_url(pg: Pg) -> None:
    paas, app = pg.paas, pg.app
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", app)
    url = pg.url()
    releases = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    before = max(r["version"] for r in releases if r["version"] < max(
        x["version"] for x in releases) and r["status"] == "succeeded")
    assert "DATABASE_URL" not in json.loads(
        paas.cli("releases:info", f"v{before}", "-a", app, "--json").stdout)["config"]
    # Back to code and config from before the add-on: the database stays, and so does its URL.
    paas.cli("rollback", f"v{before}", "-a", app)
    assert pg.url() == url
    assert pg.in_dyno("select 1") == "1"


def test_backup_and_restore_as_the_readme_says(pg: Pg) -> None:
    paas = pg.paas
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", pg.app)
        pg.in_dyno("create table notes (t text); insert into notes values ('kept')")
    dump = paas.cli(
        "run", "-a", pg.app, "--", "sh", "-c", "pg_dump --no-owner \"$DATABASE_URL\"", input=""
    ).stdout
    assert "CREATE TABLE public.notes" in dump, dump[:2000]
    pg.in_dyno("drop table notes")
    # Loaded back through `run`'s stdin (the attached path), as the README says.
    paas.cli("run", "-a", pg.app, "--", "sh", "-c", "psql -X -q \"$DATABASE_URL\"", input=dump)
    assert pg.in_dyno("select t from notes") == "kept"


def test_app_json_addons_are_provisioned_by_the_first_deploy(pg: Pg, tmp_path: Path) -> None:
    """app.json `addons`, as Heroku's app setup reads them: the first deploy creates the
    database before the release phase (whose command uses DATABASE_URL), skips an add-on
    minipaas does not offer with a line in the build log, and later deploys provision
    nothing again, not even after an addons:destroy."""
    paas = pg.paas
    app = "jsonpg"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    (repo / "app.json").write_text(json.dumps(
        {"addons": ["heroku-postgresql:essential-0", {"plan": "papertrail:choklad"}]}
    ))
    release = 'psql "$DATABASE_URL" -X -q -c "create table if not exists seen (n int)"'
    (repo / "Procfile").write_text(f"web: python app.py\nrelease: {release}\n")
    commit(repo, "an app.json asking for a database")
    token = paas.cli("auth:token").stdout.strip()
    out = deployed(https_push(paas, repo, app, token))
    provisioned = (r"-----> Provisioned heroku-postgresql \(jsonpg_[0-9a-f]{8}\) as DATABASE_URL, "
                   r"as app\.json asks; the plan 'essential-0' is ignored")
    assert re.search(provisioned, out), out
    assert ("app.json asks for the add-on 'papertrail:choklad', which minipaas does not offer: "
            "skipped") in out, out
    addons = json.loads(paas.cli("addons", "-a", app, "--json").stdout)
    assert [a["service"] for a in addons] == ["heroku-postgresql"]
    url = pg.url(app)
    assert url.startswith(f"postgres://{addons[0]['name']}:")
    # The release phase ran with it, and v1 carries it (no separate config release).
    assert pg.in_dyno("select count(*) from seen", app) == "0"
    releases = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    assert [r["version"] for r in releases] == [1], releases
    assert "DATABASE_URL" in json.loads(
        paas.cli("releases:info", "v1", "-a", app, "--json").stdout)["config"]
    assert url.split("@")[0].split(":")[-1] not in paas.log.read_text(errors="replace")

    (repo / "note.txt").write_text("a second deploy\n")
    commit(repo, "second")
    out = deployed(https_push(paas, repo, app, token))
    assert "Provisioned" not in out and pg.url(app) == url, out
    paas.cli("addons:destroy", "heroku-postgresql", "-a", app, "--confirm", app)
    (repo / "Procfile").write_text("web: python app.py\n")
    commit(repo, "third, without the release command")
    out = deployed(https_push(paas, repo, app, token))
    assert "Provisioned" not in out, out
    assert json.loads(paas.cli("addons", "-a", app, "--json").stdout) == []
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_bad_input(pg: Pg) -> None:
    paas, app = pg.paas, pg.app
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", app)

    assert paas.fails("addons:create", "heroku-kafka", "-a", app) == (
        " !    Unknown add-on 'heroku-kafka': minipaas offers heroku-postgresql "
        "(also called postgresql or postgres) and heroku-redis (also called redis)."
    )
    assert paas.fails("addons:create", "heroku-postgresql", "-a", app) == (
        f" !    The app '{app}' already has heroku-postgresql; see `minipaas addons -a {app}`."
    )
    # The add-on's var is the add-on's: its password is nowhere else.
    role = pg.url().rsplit("/", 1)[1]
    for args in (("config:unset", "DATABASE_URL"), ("config:set", "DATABASE_URL=x", "A=1")):
        assert paas.fails(*args, "-a", app) == (
            f" !    DATABASE_URL belongs to the heroku-postgresql add-on of '{app}' ({role}) and "
            "cannot be set or unset; destroy the add-on with `minipaas addons:destroy "
            f"heroku-postgresql -a {app} --confirm {app}`."
        )
    assert pg.url().endswith(role) and "A" not in json.loads(
        paas.cli("config", "-a", app, "--json").stdout)
    paas.cli("apps:create", "ownurl")
    paas.cli("config:set", "DATABASE_URL=postgres://me@db.example.com/mine", "-a", "ownurl")
    assert paas.fails("addons:create", "postgresql", "-a", "ownurl") == (
        " !    The app 'ownurl' already sets DATABASE_URL itself; nothing was changed "
        "(unset it with `minipaas config:unset DATABASE_URL -a ownurl` first)."
    )
    assert pg.url("ownurl") == "postgres://me@db.example.com/mine"
    assert json.loads(paas.cli("addons", "-a", "ownurl", "--json").stdout) == []
    assert paas.fails("pg:info", "-a", "ownurl") == (
        " !    The app 'ownurl' has no heroku-postgresql add-on; create one with "
        "`minipaas addons:create heroku-postgresql -a ownurl`."
    )
    assert "has no heroku-postgresql add-on" in paas.fails("pg:psql", "-a", "ownurl")
    assert "has no heroku-postgresql add-on" in paas.fails(
        "addons:destroy", "heroku-postgresql", "-a", "ownurl", "--confirm", "ownurl"
    )
    assert paas.fails("addons:destroy", "heroku-postgresql", "-a", app, code=2) == (
        f"Destroying heroku-postgresql of '{app}' deletes its database and all its data; "
        f"run again with --confirm {app}."
    )
    assert "No app named 'nope'" in paas.fails("addons:create", "postgres", "-a", "nope")
    paas.cli("apps:destroy", "-a", "ownurl", "--confirm", "ownurl")

    # The API's own answers to bad input: tests/test_api_bad_input.py (addons rows); a second
    # add-on needs an app that has one, which the table's app has not.
    token = paas.cli("auth:token").stdout.strip()
    base = f"http://127.0.0.1:{paas.api_port}/api/apps/{app}/addons"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        answer = c.post(base, json={"service": "postgres"})
        assert answer.status_code == 409, answer.text
        assert "already has heroku-postgresql" in answer.json()["error"]


def test_addons_destroy_and_apps_destroy_drop_the_database(pg: Pg) -> None:
    paas = pg.paas
    for app in ("dropme", "gone"):
        paas.cli("apps:create", app)
        paas.cli("addons:create", "heroku-postgresql", "-a", app)
    names = {app: pg.url(app).rsplit("/", 1)[1] for app in ("dropme", "gone")}
    assert set(names.values()) <= superuser_databases(paas)
    url = pg.url("dropme")

    out = paas.cli("addons:destroy", "heroku-postgresql", "-a", "dropme", "--confirm", "dropme")
    assert out.stdout == (
        f"Destroyed heroku-postgresql {names['dropme']} of dropme; DATABASE_URL is unset.\n"
    )
    assert "DATABASE_URL" not in json.loads(paas.cli("config", "-a", "dropme", "--json").stdout)
    assert names["dropme"] not in superuser_databases(paas)
    assert psql(url, "select 1").returncode != 0  # the role is gone too
    assert json.loads(paas.cli("addons", "-a", "dropme", "--json").stdout) == []
    # And it can have a new one (a new name, a new password).
    paas.cli("addons:create", "heroku-postgresql", "-a", "dropme")
    assert pg.url("dropme") != url

    # By the add-on's own name, as `addons` lists it (Heroku takes either).
    named = pg.url("dropme").rsplit("/", 1)[1]
    out = paas.cli("addons:destroy", named, "-a", "dropme", "--confirm", "dropme")
    assert out.stdout == f"Destroyed heroku-postgresql {named} of dropme; DATABASE_URL is unset.\n"
    # Another app's add-on name is not one of this app's.
    assert "Unknown add-on" in paas.cli(
        "addons:destroy", names["gone"], "-a", "dropme", "--confirm", "dropme", check=False
    ).stderr
    paas.cli("addons:create", "heroku-postgresql", "-a", "dropme")
    paas.cli("apps:destroy", "-a", "gone", "--confirm", "gone")
    assert names["gone"] not in superuser_databases(paas)
    paas.cli("apps:destroy", "-a", "dropme", "--confirm", "dropme")
    assert not any(n.startswith("dropme_") for n in superuser_databases(paas))


def test_a_lock_file_naming_another_process_after_a_reboot_does_not_keep_postgres_down(
    pg: Pg,
) -> None:
    paas = pg.paas
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", pg.app)
        pg.in_dyno("create table notes (t text); insert into notes values ('kept')")
    paas.stop()  # `down`: the cluster stops cleanly and removes its postmaster.pid
    assert postmaster(paas) is None
    # After a reboot the pid in a lock file left by a crash may be some other process's, one
    # of the same user (PostgreSQL ignores one it may not signal).
    other = subprocess.Popen(["sleep", "600"], user="postgres", cwd="/")
    try:
        lock = paas.data_dir / "postgres" / "data" / "postmaster.pid"
        lock.write_text(f"{other.pid}\n{lock.parent}\n")
        paas.start()
        assert pg.in_dyno("select t from notes") == "kept"
        now = postmaster(paas)
        assert now is not None and now[0] != other.pid and now[1] == "ready"
        assert f"its pid {other.pid} is now another process" in paas.log.read_text()
    finally:
        other.kill()
        other.wait()


def test_down_stops_a_cluster_a_killed_server_left_behind(pg: Pg) -> None:
    paas = pg.paas
    if postmaster(paas) is None:
        paas.cli("addons:create", "heroku-postgresql", "-a", pg.app)
    paas.kill9()  # the cluster keeps running, by design, like dynos and Caddy
    running = cluster_pids(paas)
    assert len(running) > 1, running  # the postmaster and its workers
    out = paas.cli("down", "--data-dir", str(paas.data_dir))
    assert "PostgreSQL" in out.stdout, out.stdout
    assert alive(running) == []
