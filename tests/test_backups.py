"""`pg:backups` and `pg:reset` (minipaas/backups.py): ids, times and retention (pure), then a
real server with its real PostgreSQL cluster and a real sshd: capture, change, restore (the
old rows back, still the app's role's), download over the local socket, MINIPAAS_URL and SSH
(a valid custom-format dump), a capture refused while another runs, pg:reset, the daily
schedule, a capture a killed server left half-done, destroy deleting the dumps, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from minipaas.backups import (
    INTERRUPTED,
    Backups,
    backup_number,
    daily_time,
    expired,
    last_due,
    missed_run,
)
from minipaas.errors import UserError
from minipaas.logs import LogStore
from minipaas.models import Backup
from minipaas.paths import Paths
from minipaas.scheduler import CronJob
from minipaas.store import Store
from tests.paas import Paas
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

# -- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"), [("b001", 1), ("b1", 1), ("B012", 12), ("b1000", 1000)]
)
def test_backup_ids(text: str, number: int) -> None:
    assert backup_number(text) == number


@pytest.mark.parametrize(
    "text", ["", "1", "b", "b0", "a001", "b-1", "b1.5", "b²", "b٣", "b" + "9" * 20]
)
def test_bad_backup_ids_are_named(text: str) -> None:
    with pytest.raises(UserError) as caught:
        backup_number(text)
    assert str(caught.value).startswith(f"Invalid backup id {text!r}: use an id as"), caught.value


@pytest.mark.parametrize(
    ("text", "at"),
    [("02:00", "02:00"), ("2:05", "02:05"), ("23:59", "23:59"), ("02:00 UTC", "02:00"),
     (" 2:05  Etc/UTC ", "02:05")],
)
def test_daily_times(text: str, at: str) -> None:
    assert daily_time(text) == at


def test_a_time_zone_other_than_utc_is_named_not_read_as_utc() -> None:
    """Heroku's `--at '02:00 America/Los_Angeles'`: refused by its zone, not taken as 02:00
    UTC, which would back up at another hour than the one asked for."""
    with pytest.raises(UserError) as caught:
        daily_time("02:00 America/Los_Angeles")
    assert str(caught.value) == (
        "Invalid time zone 'America/Los_Angeles' in '02:00 America/Los_Angeles': daily backups "
        "run at a UTC time; use HH:MM in UTC (or HH:MM UTC), e.g. 02:00."
    )


@pytest.mark.parametrize("text", ["24:00", "12:60", "noon", "12", "1:2", "", "12:00:00", "-1:00"])
def test_bad_daily_times_are_named(text: str) -> None:
    with pytest.raises(UserError) as caught:
        daily_time(text)
    assert str(caught.value) == (
        f"Invalid time {text!r}: use HH:MM in UTC, from 00:00 to 23:59, e.g. 02:00."
    )


def _b(number: int, kind: str, status: str = "completed") -> Backup:
    return Backup("a", number, kind, status, None, 1, float(number), float(number))


def test_retention_expires_only_scheduled_backups_past_the_newest_kept() -> None:
    backups = [
        _b(1, "scheduled"), _b(2, "manual"), _b(3, "scheduled"), _b(4, "scheduled", "failed"),
        _b(5, "scheduled"), _b(6, "scheduled", "failed"), _b(7, "scheduled"),
        _b(8, "scheduled", "running"), _b(9, "manual"),
    ]
    assert [b.number for b in expired(backups, keep=2)] == [1, 3]
    assert [b.number for b in expired(backups, keep=1)] == [1, 3, 4, 5]
    assert expired(backups, keep=7) == []


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "now", "due"),
    [
        ("02:00", "2026-12-06 07:00:00", "2026-12-06 02:00"),  # today's has passed
        ("02:00", "2026-12-06 02:00:00", "2026-12-06 02:00"),  # at its very minute
        ("02:00", "2026-12-06 01:59:59", "2026-12-05 02:00"),  # not yet: yesterday's
        ("23:59", "2026-01-01 00:00:30", "2025-12-31 23:59"),  # across the year
    ],
)
def test_the_last_due_run_is_within_the_last_day(at: str, now: str, due: str) -> None:
    assert last_due(at, _at(now)) == _at(due)


def _made(at: str, status: str = "completed", error: str | None = None,
          kind: str = "scheduled") -> Backup:
    when = _at(at).timestamp()
    return Backup("a", 1, kind, status, error, 1, when, when)


@pytest.mark.parametrize(
    ("backups", "missed"),
    [
        ([], True),  # never captured: one catch-up (not one per day since)
        ([_made("2026-12-05 02:00:05")], True),  # only yesterday's
        ([_made("2026-12-06 02:00:01")], False),  # today's ran
        ([_made("2026-12-06 05:00", kind="manual")], False),  # a manual one since counts
        ([_made("2026-12-06 02:00:01", "failed", "pg_dump: error")], False),  # failed: no retry
        ([_made("2026-12-06 02:00:01", "failed", INTERRUPTED)], True),  # cut by the stop
        ([_made("2026-12-06 02:00:01", "running")], False),
    ],
)
def test_a_missed_daily_run_is_the_last_due_one_without_a_capture_since(
    backups: list[Backup], missed: bool
) -> None:
    due = missed_run("02:00", backups, _at("2026-12-06 07:00:00"))
    assert due == (_at("2026-12-06 02:00") if missed else None)


def test_one_missed_capture_failing_does_not_stop_the_others_catch_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backups = Backups(
        store=None, cluster=None, paths=Paths(tmp_path),  # type: ignore[arg-type]
        logs=LogStore(tmp_path / "logs"),
    )
    ran: list[str] = []

    async def run_scheduled(job: CronJob) -> None:
        ran.append(job.app)
        if job.app == "a":
            raise OSError("disk I/O error")

    monkeypatch.setattr(backups, "run_scheduled", run_scheduled)
    jobs = [CronJob(app, 0, "pg:backups:capture", "0 2 * * *", 0) for app in ("a", "b")]
    asyncio.run(backups.catch_up(jobs))
    assert ran == ["a", "b"]


def test_a_scheduled_run_deletes_the_expired_dumps(tmp_path: Path) -> None:
    """run_scheduled's retention with the real store and files; the dump itself is a stand-in
    (the real pg_dump path is the server tests' below)."""

    class DumpingCluster:
        async def dump(self, name: str, out: int) -> None:
            os.write(out, b"PGDMP stand-in")

    async def scenario() -> tuple[list[str], list[str]]:
        paths = Paths(tmp_path)
        store = Store(tmp_path / "minipaas.db")
        await store.open()
        try:
            app = await store.create_app("a")
            await store.add_addon(app, "heroku-postgresql", "a_00000000", "DATABASE_URL")
            backups = Backups(
                store=store, cluster=DumpingCluster(),  # type: ignore[arg-type]
                paths=paths, logs=LogStore(tmp_path / "logs"), keep=2,
            )
            await backups.capture("a")  # manual: never expired
            job = CronJob("a", 0, "pg:backups:capture", "0 2 * * *", 0)
            for _ in range(4):
                await backups.run_scheduled(job)
            kept = [b.id for b in await store.backups(app)]
            files = sorted(p.name for p in paths.app_backups("a").iterdir())
            return kept, files
        finally:
            await store.close()

    kept, files = asyncio.run(scenario())
    assert kept == ["b001", "b004", "b005"]
    assert files == ["b001.dump", "b004.dump", "b005.dump"]


# -- a real server, cluster and sshd ---------------------------------------------------------

APP = "bk"
DAILY = "bkdaily"
#: The server's schedulers' next minute comes this many seconds after it started (a test
#: clock offset), so that the `daily` capture is due a few seconds after the fixture set it,
#: while the first tests run, instead of at the wall clock's next minute (up to 60 s later).
NEXT_MINUTE = 18


def psql(url: str, sql: str) -> str:
    """`sql` as the app's role through DATABASE_URL (as its dynos connect), its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run(
        ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def fails(paas: Paas, *args: str, code: int = 1) -> str:
    result = paas.cli(*args, check=False)
    assert result.returncode == code, result
    assert result.stdout == "", result
    return result.stderr.rstrip("\n")


def listed(paas: Paas, app: str = APP) -> list[dict[str, object]]:
    return list(json.loads(paas.cli("pg:backups", "-a", app, "--json").stdout))


@pytest.fixture(scope="module")
def url(env: tuple[Paas, SSHServer]) -> str:
    paas, _ = env
    paas.cli("apps:create", APP)
    paas.cli("addons:create", "heroku-postgresql", "-a", APP)
    return paas.cli("config:get", "DATABASE_URL", "-a", APP).stdout.strip()


@pytest.fixture(scope="module")
def daily(env: tuple[Paas, SSHServer]) -> str:
    """App DAILY with a database whose daily backup is due at the next whole minute of the
    server's schedulers (the one after if this one is nearly over); that time. Set as the
    first server test starts, so that the minute (NEXT_MINUTE s after the server's start)
    passes while the other tests run instead of in a wait of its own (the server is killed
    and restarted only by the module's last test: a capture due while it is down is not
    caught up)."""
    paas, _ = env
    paas.cli("apps:create", DAILY)
    paas.cli("addons:create", "heroku-postgresql", "-a", DAILY)
    now = paas.scheduler_now()
    at = (now + timedelta(minutes=2 if now.second > 50 else 1)).strftime("%H:%M")
    out = paas.cli("pg:backups:schedule", "-a", DAILY, "--at", at).stdout
    assert out == (f"Scheduled a daily backup of {DAILY}'s database at {at} UTC (the newest 7 "
                   "scheduled ones are kept).\n")
    return at


@pytest.mark.usefixtures("daily")  # its minute passes while this and the next tests run
def test_capture_change_restore(env: tuple[Paas, SSHServer], url: str) -> None:
    paas, _ = env
    assert paas.cli("pg:backups", "-a", APP).stdout == (
        f"{APP} has no backups; capture one with `minipaas pg:backups:capture -a {APP}`.\n"
    )
    psql(url, "create table notes (t text); insert into notes values ('old')")
    # Owner-only even where the directories were made by hand, or by an umask, more open.
    (paas.data_dir / "backups" / APP).mkdir(mode=0o755, parents=True)
    os.chmod(paas.data_dir / "backups", 0o755)
    os.chmod(paas.data_dir / "backups" / APP, 0o755)
    out = paas.cli("pg:backups:capture", "-a", APP).stdout
    assert re.fullmatch(
        rf"Captured b001 of {APP}'s database \(\d+\.\d kB\); download it with "
        rf"`minipaas pg:backups:download b001 -a {APP}`\.\n", out), out

    # Owner-only, complete dumps: no temporary file is left.
    top = paas.data_dir / "backups"
    assert stat.S_IMODE(top.stat().st_mode) == 0o700
    assert stat.S_IMODE((top / APP).stat().st_mode) == 0o700
    assert sorted(p.name for p in (top / APP).iterdir()) == ["b001.dump"]
    dump = top / APP / "b001.dump"
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    [b] = listed(paas)
    assert (b["id"], b["status"], b["kind"], b["size"]) == (
        "b001", "completed", "manual", dump.stat().st_size)
    table = paas.cli("pg:backups", "-a", APP).stdout
    assert re.search(r"b001 +\d{4}-\d\d-\d\d \S+ UTC +Completed \d{4}-\d\d-\d\d \S+ UTC "
                     r"+\d+\.\d kB +manual", table), table
    # Heroku's pg:backups:info: one backup in full, the newest without an id.
    info = paas.cli("pg:backups:info", "-a", APP).stdout
    assert re.fullmatch(r"=== Backup b001\nStarted at:  \S+ \S+ UTC\nFinished at: \S+ \S+ UTC\n"
                        r"Status:      Completed\nType:        Manual\n"
                        r"Backup size: \d+\.\d kB\n", info), info
    assert json.loads(paas.cli("pg:backups:info", "b001", "-a", APP, "--json").stdout) == b

    # Change the data, then restore: the old rows are back, and still the app's role's.
    psql(url, "delete from notes; insert into notes values ('new'); "
              "create table later (n int)")
    out = paas.cli("pg:backups:restore", "b001", "-a", APP, "--confirm", APP).stdout
    role = url.rsplit("/", 1)[1]
    assert out == f"Restored b001 into {APP}'s database {role}.\n"
    assert psql(url, "select t from notes") == "old"
    assert psql(url, "select tableowner from pg_tables where tablename = 'notes'") == role
    psql(url, "insert into notes values ('after'); update notes set t = t || '!'")
    assert psql(url, "select string_agg(t, ',' order by t) from notes") == "after!,old!"
    # Without an id: the newest completed backup; Heroku's words (`[BACKUP] [DATABASE]`,
    # `APP::ID`) as its docs type them.
    out = paas.cli("pg:backups:restore", "-a", APP, "--confirm", APP).stdout
    assert out.startswith("Restored b001 ")
    assert psql(url, "select t from notes") == "old"
    for words in (("b001", "DATABASE_URL"), ("DATABASE_URL",), (f"{APP}::b001", role)):
        out = paas.cli("pg:backups:restore", *words, "-a", APP, "--confirm", APP).stdout
        assert out == f"Restored b001 into {APP}'s database {role}.\n", words
    # A restore that fails half-way changes nothing (one transaction): `zeta` is dropped
    # first (the reverse of the dump's order), then a view of the app's on `notes` keeps
    # `DROP TABLE notes` from working.
    psql(url, "create table zeta (n int); insert into zeta values (7)")
    assert paas.cli("pg:backups:capture", "DATABASE_URL", "--app", APP).stdout.startswith(
        "Captured b002 ")
    psql(url, "insert into notes values ('newer'); create view v as select * from notes")
    failed = fails(paas, "pg:backups:restore", "b002", "-a", APP, "--confirm", APP)
    assert failed.startswith(
        f" !    Restoring b002 into the database of {APP!r} failed and changed nothing: "
        "pg_restore failed: could not execute query: ERROR:  cannot drop table public.notes "
        "because other objects depend on it"), failed
    assert "\n" not in failed
    assert psql(url, "select string_agg(t, ',' order by t) from v") == "newer,old"
    assert psql(url, "select n from zeta") == "7"
    psql(url, "drop view v; drop table zeta; delete from notes where t = 'newer'")
    # No password in the server's log or the cluster's.
    password = url.split(":")[2].split("@")[0]
    for log in (paas.log, paas.data_dir / "postgres" / "postgres.log"):
        assert password not in log.read_text(errors="replace"), log


def pg_restore_list(path: Path) -> str:
    done = subprocess.run(["pg_restore", "-l", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_download_locally_remotely_and_over_ssh(
    env: tuple[Paas, SSHServer], url: str, tmp_path: Path
) -> None:
    paas, sshd = env
    if not listed(paas):
        psql(url, "create table notes (t text); insert into notes values ('old')")
        paas.cli("pg:backups:capture", "-a", APP)
    newest = [b for b in listed(paas) if b["status"] == "completed"][-1]
    original = (paas.data_dir / "backups" / APP / f"{newest['id']}.dump").read_bytes()

    # The local socket, into a named file.
    mine = tmp_path / "mine.dump"
    out = paas.cli("pg:backups:download", str(newest["id"]), "-a", APP, "-o", str(mine)).stdout
    assert re.fullmatch(rf"Downloaded {newest['id']} of {APP} to {re.escape(str(mine))} "
                        r"\(\d+\.\d kB\)\.\n", out), out
    assert mine.read_bytes() == original
    assert "TABLE public notes" in pg_restore_list(mine)
    # The whole database: the caller's alone whatever the umask, as on the server.
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600

    # A remote client (MINIPAAS_URL + token): Heroku's default file name, in its directory.
    token = paas.cli("auth:token").stdout.strip()
    remote = {k: v for k, v in paas.env.items() if k != "MINIPAAS_DATA_DIR"}
    remote |= {"MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}", "MINIPAAS_TOKEN": token}
    done = subprocess.run([str(paas.exe), "pg:backups:download", "-a", APP], cwd=tmp_path,
                          env=remote, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done
    assert done.stdout.startswith(f"Downloaded {newest['id']} of {APP} to latest.dump (")
    assert (tmp_path / "latest.dump").read_bytes() == original
    assert stat.S_IMODE((tmp_path / "latest.dump").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.dump", "mine.dump"]

    # Over SSH: to standard output only (a file would be the SSH user's, on the server).
    done_bytes = subprocess.run(
        [*sshd.ssh_argv(), "pg:backups:download", "-a", APP, "-o", "-"],
        capture_output=True, timeout=120, check=False,
    )
    assert done_bytes.returncode == 0, done_bytes.stderr
    assert done_bytes.stdout == original
    assert done_bytes.stderr.decode() == f"Downloaded {newest['id']} of {APP} to standard output.\n"
    refused = subprocess.run(
        [*sshd.ssh_argv(), "pg:backups:download", "-a", APP],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert (refused.returncode, refused.stdout) == (2, ""), refused
    assert refused.stderr == (
        "-o 'latest.dump' is not available over SSH: download to standard output, "
        "`ssh minipaas@HOST pg:backups:download -a APP -o - > latest.dump`.\n"
    )


def lock_notes(url: str) -> subprocess.Popen[str]:
    """A psql session of the app's role holding an exclusive lock on `notes` (pg_dump waits
    for it) until its standard input says `commit` or it is killed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    holder = subprocess.Popen(
        ["psql", url, "-X", "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("begin; lock table notes in access exclusive mode; select 'locked';\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_one_capture_restore_or_reset_at_a_time(
    env: tuple[Paas, SSHServer], url: str, tmp_path: Path
) -> None:
    paas, _ = env
    # An upload the server refuses before reading it: larger than any socket buffer.
    big = tmp_path / "big.dump"
    with big.open("wb") as out:
        out.write(b"PGDMP")
        out.truncate(64 * 2**20)
    psql(url, "create table if not exists notes (t text)")
    if not [b for b in listed(paas) if b["status"] == "completed"]:
        paas.cli("pg:backups:capture", "-a", APP)  # (when this test runs alone)
    done = [b for b in listed(paas) if b["status"] == "completed"][-1]["id"]
    before = len(listed(paas))
    holder = lock_notes(url)
    capture = None
    try:
        assert holder.stdin is not None
        capture = subprocess.Popen(
            [str(paas.exe), "pg:backups:capture", "-a", APP], env=paas.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        running = wait_for(
            lambda: [b for b in listed(paas)[before:] if b["status"] == "running"], timeout=60
        )
        busy = (f" !    The database of {APP!r} is busy with a capture of backup "
                f"{running[0]['id']}; nothing was done: try again once it is finished.")
        assert fails(paas, "pg:backups:capture", "-a", APP) == busy
        assert fails(paas, "pg:backups:restore", str(done), "-a", APP, "--confirm", APP) == busy
        assert fails(paas, "pg:reset", "-a", APP, "--confirm", APP) == busy
        assert fails(paas, "pg:backups:restore", "-a", APP, "--confirm", APP, "--file",
                     str(big)) == busy
        assert fails(paas, "pg:backups:delete", str(running[0]["id"]), "-a", APP,
                     "--confirm", APP) == (
            f" !    The backup {running[0]['id']} of {APP!r} is being captured; delete it once "
            "it is finished.")
        holder.stdin.write("commit;\n")
        holder.stdin.close()
        out, err = capture.communicate(timeout=120)
        assert capture.returncode == 0, err
        assert out.startswith(f"Captured {running[0]['id']} ")
    finally:
        holder.kill()
        holder.wait()
        if capture is not None and capture.poll() is None:
            capture.kill()
            capture.wait()
    # Only the one capture was made.
    assert [b["status"] for b in listed(paas)[before:]] == ["completed"]


def test_pg_reset_empties_the_database_and_keeps_its_url(
    env: tuple[Paas, SSHServer], url: str
) -> None:
    paas, _ = env
    psql(url, "create table if not exists notes (t text); insert into notes values ('x')")
    releases = len(json.loads(paas.cli("releases", "-a", APP, "--json").stdout))
    assert fails(paas, "pg:reset", "-a", APP, code=2) == (
        f"Resetting the database of {APP!r} deletes all its data; run again with --confirm {APP}."
    )
    role = url.rsplit("/", 1)[1]
    out = paas.cli("pg:reset", "DATABASE_URL", "-a", APP, "--confirm", APP).stdout
    assert out == f"Reset {APP}'s database {role}: it is empty; DATABASE_URL is unchanged.\n"
    assert psql(url, "select count(*) from pg_tables where schemaname = 'public'") == "0"
    # The same URL works, and the role owns the new database (it may create tables).
    assert paas.cli("config:get", "DATABASE_URL", "-a", APP).stdout.strip() == url
    psql(url, "create table fresh (n int); insert into fresh values (1)")
    assert psql(url, "select n from fresh") == "1"
    # No config release, no restart.
    assert len(json.loads(paas.cli("releases", "-a", APP, "--json").stdout)) == releases
    # A restore after a reset brings the backup's tables back.
    paas.cli("pg:backups:restore", "b001", "-a", APP, "--confirm", APP)
    assert psql(url, "select t from notes") == "old"


def test_restore_a_dump_of_your_own(
    env: tuple[Paas, SSHServer], url: str, tmp_path: Path
) -> None:
    """`pg:backups:restore --file`: a file, or stdin, locally, over MINIPAAS_URL and over SSH."""
    paas, sshd = env
    psql(url, "create table mine (t text); insert into mine values ('uploaded')")
    paas.cli("pg:backups:capture", "-a", APP)
    dump = tmp_path / "mine.dump"
    paas.cli("pg:backups:download", "-a", APP, "-o", str(dump))
    role = url.rsplit("/", 1)[1]
    before = listed(paas)

    paas.cli("pg:reset", "-a", APP, "--confirm", APP)
    out = paas.cli("pg:backups:restore", "-a", APP, "--confirm", APP, "--file", str(dump))
    assert out.stdout == f"Restored the dump from {dump} into {APP}'s database {role}.\n"
    assert psql(url, "select t from mine") == "uploaded"
    assert psql(url, "select tableowner from pg_tables where tablename = 'mine'") == role

    token = paas.cli("auth:token").stdout.strip()
    remote = {k: v for k, v in paas.env.items() if k != "MINIPAAS_DATA_DIR"}
    remote |= {"MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}", "MINIPAAS_TOKEN": token}
    for argv, environ in (
        ([str(paas.exe)], remote),
        ([*sshd.ssh_argv()], None),
    ):
        paas.cli("pg:reset", "-a", APP, "--confirm", APP)
        with dump.open("rb") as stdin:
            done = subprocess.run(
                [*argv, "pg:backups:restore", "-a", APP, "--confirm", APP, "--file", "-"],
                stdin=stdin, env=environ, capture_output=True, text=True, timeout=120,
                check=False,
            )
        assert done.returncode == 0, done
        assert done.stdout == (
            f"Restored the dump from standard input into {APP}'s database {role}.\n")
        assert psql(url, "select t from mine") == "uploaded"
    # Nothing is kept of the uploads, and no backup is listed for them.
    assert listed(paas) == before
    assert not [p for p in (paas.data_dir / "backups" / APP).iterdir()
                if not p.name.endswith(".dump")]

    # Bad input: not a dump, a file over SSH, an id and a file.
    text = tmp_path / "notes.sql"
    text.write_text("create table x (n int);\n")
    assert fails(paas, "pg:backups:restore", "-a", APP, "--confirm", APP, "--file",
                 str(text)) == (
        " !    The uploaded file (24 bytes) is not a dump in pg_dump's custom format (made with "
        "`pg_dump -Fc`, as `pg:backups:download` gives): it does not begin with PGDMP.")
    assert psql(url, "select t from mine") == "uploaded"
    assert fails(paas, "pg:backups:restore", "-a", APP, "--confirm", APP, "--file",
                 str(tmp_path / "nope.dump")) == (
        f" !    No such file or directory: {tmp_path / 'nope.dump'}")
    assert fails(paas, "pg:backups:restore", "b001", "-a", APP, "--confirm", APP, "--file",
                 str(dump), code=2) == (
        "Give a backup id (b001) or --file, not both: --file restores a dump of your own.")
    refused = subprocess.run(
        [*sshd.ssh_argv(), "pg:backups:restore", "-a", APP, "--confirm", APP, "--file",
         "/etc/passwd"],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )
    assert (refused.returncode, refused.stderr) == (2, (
        "--file '/etc/passwd' is not available over SSH: send the dump on standard input, "
        "`ssh minipaas@HOST pg:backups:restore -a APP --confirm APP --file - < latest.dump`.\n"
    )), refused
    psql(url, "drop table mine")


def test_bad_input(env: tuple[Paas, SSHServer], url: str, tmp_path: Path) -> None:
    paas, _ = env
    target = tmp_path / "out.dump"
    assert fails(paas, "pg:backups:download", "b099", "-a", APP, "-o", str(target)) == (
        f" !    The app {APP!r} has no backup b099; see `minipaas pg:backups -a {APP}`."
    )
    assert list(tmp_path.iterdir()) == []  # not even a temporary file was left
    assert fails(paas, "pg:backups:restore", "b099", "-a", APP, "--confirm", APP) == (
        f" !    The app {APP!r} has no backup b099; see `minipaas pg:backups -a {APP}`."
    )
    assert fails(paas, "pg:backups:info", "b099", "-a", APP) == (
        f" !    The app {APP!r} has no backup b099; see `minipaas pg:backups -a {APP}`."
    )
    assert fails(paas, "pg:backups:download", "x9", "-a", APP) == (
        " !    Invalid backup id 'x9': use an id as `minipaas pg:backups` lists it, e.g. b001."
    )
    assert fails(paas, "pg:backups:restore", "b001", "-a", APP, "--confirm", "other",
                 code=2) == (
        f"Restoring a backup into the database of {APP!r} overwrites its data; run again with "
        f"--confirm {APP}."
    )
    assert fails(paas, "pg:backups:delete", "b001", "-a", APP, code=2) == (
        f"Deleting backup b001 of {APP!r} cannot be undone; run again with --confirm {APP}."
    )
    assert fails(paas, "pg:backups:schedule", "-a", APP, "--at", "25:00") == (
        " !    Invalid time '25:00': use HH:MM in UTC, from 00:00 to 23:59, e.g. 02:00."
    )
    # -o that cannot be written: named as given, before any request (not as a failed request
    # to the server about a hidden temporary file).
    assert fails(paas, "pg:backups:download", "-a", APP, "-o", str(tmp_path / "no" / "x")) == (
        f" !    Cannot write the backup to {str(tmp_path / 'no' / 'x')!r}: there is no "
        f"directory {str(tmp_path / 'no')!r}."
    )
    assert fails(paas, "pg:backups:download", "-a", APP, "-o", f"{tmp_path}/") == (
        f" !    Cannot write the backup to {f'{tmp_path}/'!r}: it is a directory; name a file "
        f"in it, e.g. -o {tmp_path / 'latest.dump'}."
    )
    assert list(tmp_path.iterdir()) == []
    # Heroku's DATABASE argument names the app's one database, or is refused by name.
    role = url.rsplit("/", 1)[1]
    assert fails(paas, "pg:backups:restore", "b001", "HEROKU_POSTGRESQL_RED", "-a", APP,
                 "--confirm", APP) == (
        f" !    The app {APP!r} has no heroku-postgresql add-on named 'HEROKU_POSTGRESQL_RED': "
        f"name it DATABASE_URL or {role}, or leave it out (an app has one)."
    )
    assert "named 'REDIS_URL'" in fails(paas, "pg:backups:capture", "REDIS_URL", "-a", APP)
    assert fails(paas, "pg:backups:restore", "other::b001", "-a", APP, "--confirm", APP) == (
        " !    Restoring another app's backup ('other::b001') is not offered: download it with "
        "`minipaas pg:backups:download b001 -a other` and restore that file with --file."
    )
    assert "the following arguments are required: --at" in fails(
        paas, "pg:backups:schedule", "-a", APP, code=2)
    assert fails(paas, "pg:backups:unschedule", "-a", APP) == (
        f" !    The app {APP!r} has no backup schedule."
    )
    paas.cli("apps:create", "nodb")
    no_addon = (" !    The app 'nodb' has no heroku-postgresql add-on, so no backups; create "
                "one with `minipaas addons:create heroku-postgresql -a nodb`.")
    for args in (("pg:backups",), ("pg:backups:info",), ("pg:backups:capture",),
                 ("pg:backups:download", "-o", "x"),
                 ("pg:backups:restore", "--confirm", "nodb"), ("pg:reset", "--confirm", "nodb"),
                 ("pg:backups:schedule", "--at", "02:00"), ("pg:backups:unschedule",),
                 ("pg:backups:schedules",)):
        assert fails(paas, *args, "-a", "nodb") == no_addon, args
    assert "No app named 'ghost'" in fails(paas, "pg:backups", "-a", "ghost")
    paas.cli("apps:destroy", "-a", "nodb", "--confirm", "nodb")

    # A failed capture is listed with why; it has no dump to download or restore.
    paas.cli("pg:backups:delete", "b001", "-a", APP, "--confirm", APP)
    assert "b001" not in [b["id"] for b in listed(paas)]
    assert not (paas.data_dir / "backups" / APP / "b001.dump").exists()
    # Numbers are never given twice: the next one follows the newest ever made.
    newest = max(int(str(b["id"])[1:]) for b in listed(paas))
    paas.cli("pg:backups:capture", "-a", APP)
    assert listed(paas)[-1]["id"] == f"b{newest + 1:03d}"


def test_a_daily_schedule_captures_at_its_minute(
    env: tuple[Paas, SSHServer], daily: str
) -> None:
    """The schedule the `daily` fixture set as the module's first server test began: its
    minute has come meanwhile, or comes while this waits."""
    paas, _ = env
    assert f"Daily backups at {daily} UTC (the newest 7 kept)." in paas.cli(
        "pg:backups", "-a", DAILY).stdout
    assert paas.cli("pg:backups:schedules", "-a", DAILY).stdout == (  # Heroku's word
        f"=== Backup Schedules\nDATABASE_URL: daily at {daily} UTC (the newest 7 scheduled "
        "backups kept)\n")
    scheduled = wait_for(
        lambda: [b for b in listed(paas, DAILY)
                 if b["kind"] == "scheduled" and b["status"] != "running"],
        timeout=180,
    )
    assert [b["status"] for b in scheduled] == ["completed"], scheduled
    out = paas.cli("pg:backups:unschedule", "-a", DAILY).stdout
    assert out == f"Stopped the daily backups of {DAILY}'s database (those made are kept).\n"
    assert "Daily backups" not in paas.cli("pg:backups", "-a", DAILY).stdout
    assert json.loads(paas.cli("pg:backups:schedules", "-a", DAILY, "--json").stdout)["at"] is None


def test_destroy_deletes_the_backups(env: tuple[Paas, SSHServer], url: str) -> None:
    paas, _ = env
    for app in ("gone", "dropped"):
        paas.cli("apps:create", app)
        paas.cli("addons:create", "heroku-postgresql", "-a", app)
        paas.cli("pg:backups:capture", "-a", app)
    paas.cli("pg:backups:capture", "-a", "dropped")
    paas.cli("pg:backups:schedule", "-a", "dropped", "--at", "03:00")
    name = paas.cli("config:get", "DATABASE_URL", "-a", "dropped").stdout.strip().rsplit("/")[-1]
    out = paas.cli("addons:destroy", "heroku-postgresql", "-a", "dropped", "--confirm", "dropped")
    assert out.stdout == (f"Destroyed heroku-postgresql {name} of dropped and its 2 backups; "
                          "DATABASE_URL is unset.\n")
    assert not (paas.data_dir / "backups" / "dropped").exists()
    # A new add-on starts without backups or schedule.
    paas.cli("addons:create", "heroku-postgresql", "-a", "dropped")
    assert listed(paas, "dropped") == []
    assert "Daily" not in paas.cli("pg:backups", "-a", "dropped").stdout
    out = paas.cli("apps:destroy", "-a", "gone", "--confirm", "gone")
    assert out.stdout == "Destroyed gone and its 1 backup.\n"
    assert not (paas.data_dir / "backups" / "gone").exists()
    assert paas.cli("apps:destroy", "-a", "dropped", "--confirm", "dropped").stdout == (
        "Destroyed dropped.\n")


def test_a_daily_capture_missed_while_the_server_was_down_is_caught_up_once(
    env: tuple[Paas, SSHServer],
) -> None:
    """A daily run time that passed with no capture (the server was down: here, the schedule
    is set just after its minute, which the scheduler therefore never ticked) is captured once
    when the server starts, and not again at the next start."""
    paas, _ = env
    app = "bkmissed"
    paas.cli("apps:create", app)
    paas.cli("addons:create", "heroku-postgresql", "-a", app)
    due = paas.scheduler_now() - timedelta(minutes=1)  # the server's schedulers' clock
    at = due.strftime("%H:%M")
    paas.cli("pg:backups:schedule", "-a", app, "--at", at)
    assert listed(paas, app) == []
    said = f"Capturing the daily backup missed at {due:%Y-%m-%d %H:%M} UTC"

    def restart() -> None:
        assert paas.proc is not None
        paas.proc.send_signal(signal.SIGTERM)
        paas.proc.wait(timeout=60)
        paas.restart()

    def said_times() -> int:
        return paas.cli("logs", "-a", app, "-n", "1000").stdout.count(said)

    restart()
    assert said_times() == 1  # decided before the server said it was ready
    [caught] = wait_for(
        lambda: [b for b in listed(paas, app) if b["status"] != "running"], timeout=120
    )
    assert (caught["kind"], caught["status"]) == ("scheduled", "completed"), caught
    restart()
    assert said_times() == 1
    assert [b["id"] for b in listed(paas, app)] == [caught["id"]]
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_a_capture_a_killed_server_left_half_done_is_failed(
    env: tuple[Paas, SSHServer], url: str
) -> None:
    paas, _ = env
    psql(url, "create table if not exists notes (t text)")
    holder = lock_notes(url)
    capture = None
    try:
        capture = subprocess.Popen(
            [str(paas.exe), "pg:backups:capture", "-a", APP], env=paas.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        [running] = wait_for(
            lambda: [b for b in listed(paas) if b["status"] == "running"], timeout=60
        )
        partial = paas.data_dir / "backups" / APP / f".{running['id']}.dump.partial"
        assert partial.exists()
        paas.kill9()
        paas.restart()
    finally:
        holder.kill()
        holder.wait()
        if capture is not None:
            capture.kill()
            capture.wait()
    [failed] = [b for b in listed(paas) if b["id"] == running["id"]]
    assert (failed["status"], failed["error"]) == ("failed", "the server stopped while it ran")
    assert not partial.exists()
    assert not (paas.data_dir / "backups" / APP / f"{running['id']}.dump").exists()
    assert "Failed: the server stopped while it ran" in paas.cli("pg:backups", "-a", APP).stdout
    assert fails(paas, "pg:backups:download", str(running["id"]), "-a", APP) == (
        f" !    The backup {running['id']} of {APP!r} failed (the server stopped while it ran): "
        "it has no dump."
    )
