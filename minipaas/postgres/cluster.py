"""minipaas's own PostgreSQL cluster in `<data-dir>/postgres`, and the apps' databases in it.

Layout: `<data-dir>/postgres/data` is the cluster (PGDATA, owned by the `postgres` system user,
mode 0700; its unix socket lives in it too), `postgres.log` is the postmaster's output.
`data/minipaas.conf` holds what minipaas chose (port, listen address, socket dir); the port in
it is the one every app's DATABASE_URL names, so it is picked once, at `initdb`.

Who may connect (pg_hba.conf): the superuser `postgres` only over the unix socket, and only as
the cluster's own OS user (peer, mapped); app roles only over TCP on 127.0.0.1 with
scram-sha-256. Every app database has CONNECT revoked from PUBLIC, so one app's role cannot even
open another app's database. Passwords never reach an argv or a log: the server is sent a SCRAM
verifier computed here (`scram_verifier`), on psql's standard input, and errors are reported
without the statement (`log_min_error_statement = panic`, psql's terse verbosity).

`set_password` gives an app's role a new password (`pg:credentials:rotate`) and ends the
role's sessions; `activity`, `signal_backend` and `terminate_all` (`pg:ps`, `pg:kill`,
`pg:killall`) see and stop only the connections to one app's database: the check that a pid
belongs to it is in the very statement that signals it.

The postmaster runs in its own session, like Caddy: a restart of `minipaas server` leaves it
serving, and the next start adopts it by `postmaster.pid` (pid + a command line naming this
data dir, so a recycled pid is never mistaken for it). `watch` restarts it if it dies (the
process bookkeeping is `minipaas.daemon`'s).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minipaas.daemon import (
    Daemon,
    StopSignals,
    alive,
    as_system_user,
    free_port,
    names_in_argv,
    stop_pid,
)
from minipaas.errors import Conflict, UserError

log = logging.getLogger(__name__)

#: The add-on's name, Heroku's; `service_name` accepts these others too.
SERVICE = "heroku-postgresql"
ALIASES = frozenset({SERVICE, "postgresql", "postgres"})
#: Where Debian and Ubuntu install each major version (`/usr/lib/postgresql/15/bin`).
VERSIONS_ROOT = Path("/usr/lib/postgresql")
#: The system user the cluster runs as when minipaas runs as root (the `postgresql` package's).
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
#: Ports tried (in random order) for a new cluster: never 5432, the distro's own cluster's.
PORTS = range(5433, 6000)
START_TIMEOUT = 60.0
CLIENT_CHECK = "5s"
"""How often a backend running a query checks that its client is still there (PostgreSQL 14+'s
`client_connection_check_interval`): a query whose client died (a killed `run` dyno, a dyno
stopped by a deploy) is cancelled within this, instead of running on, locks held, to its end."""
STOP_GRACE = 30.0
SQL_TIMEOUT = 120.0
#: The longest a `pg_dump` or `pg_restore` of one app's database may take.
BACKUP_TIMEOUT = 4 * 3600.0
SCRAM_ITERATIONS = 4096
_MAX_SOCKET_PATH = 107
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def service_name(text: str) -> tuple[str, str | None]:
    """(`heroku-postgresql`, the plan given or None) for `heroku-postgresql[:PLAN]` and its
    aliases; `UserError` naming the value for anything else."""
    service, _, plan = text.strip().partition(":")
    if service.lower() not in ALIASES:
        shown = text if len(text) <= 60 else f"{text[:60]}…"
        raise UserError(
            f"Unknown add-on {shown!r}: minipaas offers heroku-postgresql "
            "(also called postgresql or postgres)."
        )
    return SERVICE, (plan or None)


def database_name(app: str) -> str:
    """A new role and database name for `app`: its name (dashes as underscores, which app
    names never hold, so two apps never map to one) and a random suffix."""
    return f"{app.replace('-', '_')}_{secrets.token_hex(4)}"


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5803 / 7677): given
    instead of the password, the plain text never reaches the server or its logs."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def find_bindir(version: str | None = None, root: Path = VERSIONS_ROOT) -> Path:
    """The bin dir of PostgreSQL `version` (the newest installed one if None); `UserError`
    saying what to install when there is none."""
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            bindir = entry / "bin"
            tools = ("postgres", "initdb", "psql")
            if entry.name.isdigit() and all((bindir / t).is_file() for t in tools):
                found[int(entry.name)] = bindir
    if version is not None:
        if version.isdigit() and int(version) in found:
            return found[int(version)]
        raise UserError(
            f"The add-on database cluster needs PostgreSQL {version}, which is not installed "
            f"in {root}: install it with `apt-get install postgresql-{version}`."
        )
    if not found:
        raise UserError(
            f"PostgreSQL is not installed on this server (nothing in {root}): install it with "
            "`apt-get install postgresql`, then run addons:create again."
        )
    return found[max(found)]


def _postmaster_pid(pgdata: Path) -> int | None:
    """The live postmaster of `pgdata` according to its postmaster.pid, or None: the pid must
    be alive and its command line must name this very data dir."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0].strip())
    except (OSError, ValueError, IndexError):
        return None
    return pid if names_in_argv(pid, str(pgdata)) else None


def _postmaster_status(pgdata: Path) -> tuple[int, str] | None:
    """(pid, status) from postmaster.pid once the postmaster has written its status line."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[0].strip()), lines[7].strip()
    except (OSError, ValueError, IndexError):
        return None


def stop_orphan(root: Path, timeout: float = STOP_GRACE) -> bool:
    """`minipaas down` without a server: stop the cluster in `root` if it runs; True if it did.

    SIGINT is PostgreSQL's fast shutdown (clients disconnected, a clean checkpoint); SIGQUIT
    after `timeout`, then SIGKILL."""
    pid = _postmaster_pid(root / "data")
    if pid is None:
        return False
    stop_pid(pid, _stop_signals(timeout))
    return True


@dataclass(frozen=True)
class DatabaseInfo:
    """What `pg:info` shows of one app's database."""

    name: str
    size: int
    connections: int
    version: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "connections": self.connections,
            "version": self.version,
            "port": self.port,
        }


def _stop_signals(grace: float) -> StopSignals:
    """Fast shutdown (SIGINT: clients disconnected, a clean checkpoint), SIGQUIT after
    `grace`, then SIGKILL."""
    return ((signal.SIGINT, grace), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))


class Cluster(Daemon):
    """The cluster in `root` (`<data-dir>/postgres`): its postmaster is the daemon."""

    title = "postgres"
    STOP_SIGNALS = _stop_signals(STOP_GRACE)

    def __init__(self, root: Path, *, bindir: Callable[[str | None], Path] = find_bindir) -> None:
        super().__init__(root)
        self._bindir = bindir

    # -- paths and settings ----------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def conf(self) -> Path:
        return self.pgdata / "minipaas.conf"

    def exists(self) -> bool:
        return (self.pgdata / "PG_VERSION").is_file()

    def version(self) -> str:
        return (self.pgdata / "PG_VERSION").read_text().strip()

    def port(self) -> int:
        """The TCP port recorded at `initdb` (in `minipaas.conf`)."""
        match = re.search(r"^port = (\d+)$", self.conf.read_text(), re.MULTILINE)
        if match is None:
            raise UserError(f"{self.conf} names no port; the add-on cluster is damaged.")
        return int(match.group(1))

    def url(self, name: str, password: str) -> str:
        """The DATABASE_URL of role and database `name` (dynos share the host's network)."""
        return f"postgres://{name}:{password}@127.0.0.1:{self.port()}/{name}"

    def _owner(self) -> tuple[str, dict[str, Any]]:
        """The OS user the cluster runs as, and the Popen arguments that switch to it."""
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid()).pw_name, {}
        return SYSTEM_USER, as_system_user(SYSTEM_USER, "PostgreSQL", "postgresql")

    def _env(self) -> dict[str, str]:
        # Explicit and minimal: minipaas's own environment (tokens, PG* variables) is not the
        # cluster's business.
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "PGAPPNAME": "minipaas"}

    # -- lifecycle -------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Create the cluster if there is none (`initdb`), then make sure it runs."""
        async with self._lock:
            if not self.exists():
                bindir = self._bindir(None)
                await asyncio.to_thread(self._initdb, bindir)
                await self._start()
                await self._superuser_sql(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;\n"
                    "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC;\n"
                )
            else:
                await self._start()

    def live_pid(self) -> int | None:
        return _postmaster_pid(self.pgdata)

    async def _start(self) -> None:
        if self.running():
            return
        if not self.exists():
            raise UserError(f"There is no add-on database cluster in {self.root} yet.")
        if self.adopt():
            return
        bindir = self._bindir(self.version())
        _, owner = self._owner()
        await asyncio.to_thread(self._forget_stale_lock)
        version = self.version()
        argv = [str(bindir / "postgres"), "-D", str(self.pgdata)]
        if version.isdigit() and int(version) >= 14:  # on the command line: older clusters too
            argv += ["-c", f"client_connection_check_interval={CLIENT_CHECK}"]
        await self._spawn(argv, owner, self._env(), self.root)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            status = _postmaster_status(self.pgdata)
            if status is not None and status == (self._pid, "ready"):
                return
            if not self.running():
                raise UserError(
                    f"PostgreSQL did not start (see {self.log_file}): {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise UserError(
                    f"PostgreSQL did not get ready within {START_TIMEOUT:g} s "
                    f"(see {self.log_file})."
                )
            await asyncio.sleep(0.05)

    def _forget_stale_lock(self) -> None:
        """Remove a postmaster.pid whose pid is alive but is no postmaster of this cluster.

        After a reboot the pid a lock file left by a crash names may be another process's;
        if that one runs as the same user (say the distribution's own PostgreSQL), PostgreSQL
        would refuse to start ("lock file already exists") until someone deletes the file. The
        file is not what keeps two servers off one cluster's memory: PostgreSQL finds a shared
        memory segment still in use by orphaned backends from the data dir's inode, and a
        live postmaster of ours is recognised here by its command line (it is adopted)."""
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if alive(pid) and _postmaster_pid(self.pgdata) is None:
            log.warning("removing %s: its pid %s is now another process", lock, pid)
            lock.unlink(missing_ok=True)

    def _open_log(self) -> int:
        """The log, owner-only (it may name roles and databases); a descriptor to hand over."""
        return os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    # -- initdb ----------------------------------------------------------------------------

    def _initdb(self, bindir: Path) -> None:
        """A new cluster in `pgdata`: made under another name and renamed when complete, so
        a failed `initdb` never leaves something that looks like a cluster."""
        os_user, owner = self._owner()
        socket_path = self.pgdata / ".s.PGSQL.65535"
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise UserError(
                f"The add-on cluster's socket path {socket_path} is too long for a unix "
                "socket; use a shorter data dir."
            )
        if "'" in str(self.pgdata) or "\\" in str(self.pgdata):
            # It is written into postgresql.conf between single quotes.
            raise UserError(
                f"The data dir {self.pgdata} holds a quote or a backslash, which PostgreSQL's "
                "configuration cannot take; use another data dir."
            )
        self.root.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.root, 0o755)  # noqa: S103 (the postgres user traverses it to PGDATA)
        fresh = self.root / "data.new"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(mode=0o700)
        if owner:
            os.chown(fresh, owner["user"], owner["group"])
        argv = [
            str(bindir / "initdb"),
            "-D", str(fresh),
            "-U", SUPERUSER,
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
        ]
        with os.fdopen(self._open_log(), "ab") as out:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                timeout=300,
                check=False,
                **owner,
            )
        if done.returncode != 0:
            shutil.rmtree(fresh, ignore_errors=True)
            raise UserError(f"initdb failed (see {self.log_file}): {self._log_tail()}")
        port = free_port(PORTS, "PostgreSQL")
        files = {
            "minipaas.conf": (
                "# Written by minipaas at initdb: the port is in every app's DATABASE_URL.\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {port}\n"
                f"unix_socket_directories = '{self.pgdata}'\n"
                "unix_socket_permissions = 0700\n"
                "password_encryption = 'scram-sha-256'\n"
                "# Statements hold passwords (as verifiers): none in the log, even failed.\n"
                "log_min_error_statement = panic\n"
                "cluster_name = 'minipaas'\n"
            ),
            "pg_hba.conf": (
                "# Written by minipaas. The superuser: over the unix socket only, and only as\n"
                "# the cluster's OS user. Apps: over TCP with their password.\n"
                "local   all   postgres   peer   map=minipaas\n"
                "host    all   postgres   0.0.0.0/0   reject\n"
                "host    all   all        127.0.0.1/32   scram-sha-256\n"
            ),
            "pg_ident.conf": f"minipaas   {os_user}   {SUPERUSER}\n",
        }
        for name, text in files.items():
            (fresh / name).write_text(text)
        with (fresh / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude = 'minipaas.conf'\n")
        for name in (*files, "postgresql.conf"):
            path = fresh / name
            path.chmod(0o600)
            if owner:
                os.chown(path, owner["user"], owner["group"])
        os.rename(fresh, self.pgdata)

    # -- databases -------------------------------------------------------------------------

    async def _superuser_sql(self, script: str, database: str = "postgres") -> str:
        """Run `script` as the superuser over the unix socket (on stdin: no secret in an argv);
        its output. `UserError` with psql's terse message (no statement text) on failure."""
        bindir = self._bindir(self.version())
        _, owner = self._owner()
        argv = [
            str(bindir / "psql"),
            "-X", "-q", "-A", "-t", "-F", "|",
            "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
            "-h", str(self.pgdata), "-p", str(self.port()),
            "-U", SUPERUSER, "-d", database, "-f", "-",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.root,
            env=self._env(),
            **owner,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(script.encode()), SQL_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise UserError(f"PostgreSQL did not answer within {SQL_TIMEOUT:g} s.") from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise UserError(
                "PostgreSQL refused: " + (message[-1] if message else f"exit {proc.returncode}")
            )
        return out.decode(errors="replace")

    @staticmethod
    def _checked(name: str) -> str:
        if not _NAME.match(name):
            raise UserError(f"Invalid database name {name!r}.")
        return name

    async def create_database(self, name: str, password: str) -> None:
        """Role `name` (login, nothing more) with `password`, and database `name` owned by it
        that no other role may connect to."""
        name = self._checked(name)
        verifier = scram_verifier(password)
        async with self._lock:
            await self._start()
            # `name` matched _NAME: it holds nothing that could leave the quotes.
            existing = await self._superuser_sql(
                f"SELECT 1 FROM pg_roles WHERE rolname = '{name}' "  # noqa: S608
                f"UNION SELECT 1 FROM pg_database WHERE datname = '{name}';"
            )
            if existing.strip():
                raise Conflict(f"The database {name!r} exists already.")
            try:
                await self._superuser_sql(
                    f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                    f"NOREPLICATION PASSWORD '{verifier}';\n"
                    f'CREATE DATABASE "{name}" OWNER "{name}";\n'
                    f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;\n'
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._drop(name)
                raise

    async def drop_database(self, name: str) -> None:
        """Drop database and role `name` (connections to it are closed); none is fine, and so
        is no cluster at all (its directory deleted by hand: nothing is left to drop)."""
        name = self._checked(name)
        if not self.exists():
            log.warning("no cluster in %s: database %s is gone already", self.root, name)
            return
        async with self._lock:
            await self._start()
            await self._drop(name)

    async def _drop(self, name: str) -> None:
        await self._superuser_sql(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);\nDROP ROLE IF EXISTS "{name}";\n'
        )

    async def reset_database(self, name: str) -> None:
        """Drop database `name` (connections to it are closed) and create it again, empty,
        owned by the same role: the role and its password, so DATABASE_URL, stay valid."""
        name = self._checked(name)
        async with self._lock:
            await self._start()
            await self._superuser_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);\n'
                f'CREATE DATABASE "{name}" OWNER "{name}";\n'
                f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;\n'
            )

    async def dump(self, name: str, out: int) -> None:
        """A consistent dump of database `name` in `pg_dump`'s custom format, written to the
        file descriptor `out` (opened by the caller: `pg_dump` runs as the cluster's OS user
        and never needs to reach the file's directory). `UserError` saying why it failed."""
        name = self._checked(name)
        async with self._lock:
            await self._start()
        await self._tool("pg_dump", ["--format=custom", "--dbname", name], stdin=None, out=out)

    async def restore(self, name: str, dump: int) -> None:
        """Load the custom-format dump readable from the file descriptor `dump` into database
        `name`, replacing the objects it holds (`--clean --if-exists`). It runs as the app's
        role (`--role`, and no owner or grant from the dump), so what it creates is the app's,
        and in one transaction: a dump that fails half-way changes nothing."""
        name = self._checked(name)
        async with self._lock:
            await self._start()
        await self._tool(
            "pg_restore",
            [
                "--clean", "--if-exists", "--no-owner", "--no-acl", f"--role={name}",
                "--single-transaction", "--exit-on-error", "--dbname", name,
            ],
            stdin=dump,
            out=subprocess.DEVNULL,
        )

    async def _tool(self, tool: str, args: list[str], *, stdin: int | None, out: int) -> None:
        """`tool` (pg_dump, pg_restore) as the superuser over the unix socket (peer: no
        password anywhere); `UserError` with its last line of complaint if it fails."""
        bindir = self._bindir(self.version())
        _, owner = self._owner()
        argv = [
            str(bindir / tool),
            "--host", str(self.pgdata), "--port", str(self.port()), "--username", SUPERUSER,
            "--no-password", *args,
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=self.root,
            env=self._env(),
            **owner,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), BACKUP_TIMEOUT)
        except BaseException as exc:  # the timeout, or a cancel: never leave it running
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise UserError(
                    f"{tool} did not finish within {BACKUP_TIMEOUT / 3600:g} hours."
                ) from None
            raise
        if proc.returncode != 0:
            # Its first error line says what went wrong (DETAIL, HINT and the statement follow).
            lines = err.decode(errors="replace").strip().splitlines()
            errors = [line for line in lines if line.startswith(f"{tool}: error: ")]
            why = (errors or lines or [f"exit status {proc.returncode}"])[0]
            raise UserError(f"{tool} failed: {why.removeprefix(f'{tool}: error: ')}")

    async def info(self, name: str) -> DatabaseInfo:
        name = self._checked(name)
        async with self._lock:
            await self._start()
            out = await self._superuser_sql(
                f"SELECT pg_database_size('{name}'), "  # noqa: S608 (`name` matched _NAME)
                f"(SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'), "
                "current_setting('server_version');"
            )
        size, connections, version = out.strip().split("|", 2)
        return DatabaseInfo(name, int(size), int(connections), version, self.port())

    # -- credentials and connections (pg:credentials:rotate, pg:ps, pg:kill, pg:killall) ----

    async def set_password(self, name: str, password: str) -> int:
        """Give role `name` the new `password` (as a verifier) and end every session it has
        open, so the old password stops working at once (as Heroku's rotation does); how
        many sessions were ended."""
        name = self._checked(name)
        verifier = scram_verifier(password)
        async with self._lock:
            await self._start()
            out = await self._superuser_sql(
                f"ALTER ROLE \"{name}\" PASSWORD '{verifier}';\n"
                # `name` matched _NAME: it holds nothing that could leave the quotes.
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                f"FROM pg_stat_activity WHERE usename = '{name}' "
                "AND pid <> pg_backend_pid();\n"
            )
        return int(out.strip() or "0")

    async def activity(self, name: str, *, idle: bool = False) -> list[dict[str, Any]]:
        """`pg:ps`: the queries running on database `name` now (the client connections of its
        role `name`, as Heroku's credential sees them: not minipaas's own, a backup's pg_dump
        as the superuser, say; those that are not idle, as Heroku's pg:ps shows them; "idle in
        transaction" ones are; with `idle`, `pg:ps --verbose`, the idle ones too), from
        pg_stat_activity, longest running first: pid, state, source (application_name),
        user, running_for (seconds since its query began), waiting (on a lock) and query (an
        idle one's: its last)."""
        name = self._checked(name)
        not_idle = "" if idle else "AND state IS DISTINCT FROM 'idle' "
        async with self._lock:
            await self._start()
            out = await self._superuser_sql(
                # One JSON document: a query may hold the `|` and newlines psql separates by.
                # `name` matched _NAME: it holds nothing that could leave the quotes.
                "SELECT coalesce(json_agg(a ORDER BY a.running_for DESC NULLS LAST), "  # noqa: S608
                "'[]') FROM (SELECT pid, state, application_name AS source, usename AS user, "
                "extract(epoch FROM clock_timestamp() - query_start)::float8 AS running_for, "
                "coalesce(wait_event_type = 'Lock', false) AS waiting, query "
                "FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND usename = '{name}' "
                f"AND backend_type = 'client backend' {not_idle}AND pid <> pg_backend_pid()) a;\n"
            )
        found: list[dict[str, Any]] = json.loads(out)
        return found

    async def signal_backend(self, name: str, pid: int, *, force: bool) -> bool:
        """`pg:kill`: cancel the query of backend `pid` (pg_cancel_backend), or with `force`
        end its connection (pg_terminate_backend); only if it is a connection to database
        `name` by its role, checked in the same statement: False if it is not (another app's
        backend, the cluster's own processes, minipaas's pg_dump or pg_restore, no such
        pid)."""
        name = self._checked(name)
        call = "pg_terminate_backend" if force else "pg_cancel_backend"
        async with self._lock:
            await self._start()
            out = await self._superuser_sql(
                f"SELECT {call}(pid) FROM pg_stat_activity "  # noqa: S608
                f"WHERE pid = {int(pid)} AND datname = '{name}' AND usename = '{name}' "
                "AND backend_type = 'client backend';\n"
            )
        return out.strip() == "t"

    async def terminate_all(self, name: str) -> int:
        """`pg:killall`: end every client connection of role `name` to database `name` (not
        minipaas's own: a backup or restore in progress goes on); how many."""
        name = self._checked(name)
        async with self._lock:
            await self._start()
            out = await self._superuser_sql(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "  # noqa: S608
                f"FROM pg_stat_activity WHERE datname = '{name}' AND usename = '{name}' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid();\n"
            )
        return int(out.strip() or "0")
