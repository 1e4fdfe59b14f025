"""The Redis add-on (`addons:create heroku-redis`): a `redis-server` of its own per app.

Layout of one app's dir (owned by the `redis` system user, mode 0700): `redis.conf` (0600, written
by minipaas: the port it picked, the password, the memory cap, persistence and what a client may
not do), `redis.pid` (written by redis-server), `appendonlydir/` (the append-only file: the data)
and `redis.log` (its output, the server's user's alone).

Every instance listens on 127.0.0.1 only, on its own port (never 6379, the distribution's), and
asks for its password; dynos share the host's network, so any dyno could reach any port: the
password is what keeps one app out of another's data. The client may not rewrite where redis
writes files (`enable-protected-configs no`: `CONFIG SET dir` is refused), load modules or use
DEBUG, nor change the config at all (its `default` user's ACL denies CONFIG SET and REWRITE, ACL
SETUSER, REPLICAOF, SHUTDOWN, …): with plain `requirepass` a client could `CONFIG SET bind
0.0.0.0` and put its Redis on the network. The config holds the password's SHA-256 only: the
password itself is only in the app's REDIS_URL (the deployer hands it to `info`), never in an
argv or a log (minipaas speaks RESP itself).

`redis:credentials --reset` (`set_password`) puts a new password's SHA-256 in the default
user's line of redis.conf (the rest of the line, what the client may not do, kept) and restarts
the instance: every client of the old password is disconnected, and every later start (after a
kill -9 too) asks for the new one.

`redis:maxmemory` changes the eviction policy of a running instance: minipaas rewrites the
`maxmemory-policy` line of redis.conf (so a restart keeps it), then says `CONFIG SET` as a second
ACL user, `minipaas`, which may do nothing else (`-@all +config|set`). Its password is in
`minipaas.secret` (0600, the server's own user's, never the `redis` user's, never in the app's
env, an argv or a log); the config holds its SHA-256. An instance made before that user existed
gets it on its next start; `set_policy` restarts such an instance (its append-only file keeps
the data).

Like the PostgreSQL cluster, an instance runs in its own session: a restart of `minipaas server`
leaves it serving and the next start adopts it (its pid file, and a command line naming this very
config file: `set-proc-title no` keeps it), `watch` starts it again if it dies, `stop_all` (on
`minipaas down`) stops it; the process bookkeeping is `minipaas.daemon`'s. This module never
reads the store or config vars.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minipaas.daemon import (
    Daemon,
    StopSignals,
    as_system_user,
    free_port,
    names_in_argv,
    stop_pid,
)
from minipaas.errors import UserError

log = logging.getLogger(__name__)

#: The add-on's name, Heroku's; `service_name` accepts the alias too.
SERVICE = "heroku-redis"
ALIASES = frozenset({SERVICE, "redis"})
#: Where Debian's `redis-server` package puts the server.
EXECUTABLE = Path("/usr/bin/redis-server")
#: The system user the instances run as when minipaas runs as root (the package creates it).
SYSTEM_USER = "redis"
#: Ports tried (in random order) for a new instance: never 6379, the distribution's own.
PORTS = range(6380, 7000)
#: What the app's client (the `default` user) may not do: change the config (where redis listens
#: or writes, its memory cap), the users (its password), replicate, shut redis down.
DENIED = (
    "config|set", "config|rewrite", "config|resetstat", "acl|setuser", "acl|deluser",
    "acl|load", "acl|save", "replicaof", "slaveof", "failover", "sync", "psync", "shutdown",
    "debug", "module|load", "module|loadex", "module|unload",
)
#: Each instance's memory cap: Heroku's smallest plan has 25 MB; 64 MB leaves room for a busy
#: job queue while ten apps' instances still fit in under 1 GB.
MAXMEMORY = "64mb"
#: `redis:maxmemory --policy`: Heroku's policies, in the order its CLI lists them, and what
#: each does.
POLICIES = {
    "noeviction": "return errors when memory limit is reached",
    "allkeys-lfu": "evict the least frequently used keys out of all keys",
    "volatile-lfu": "evict the least frequently used keys out of keys with an expire set",
    "allkeys-lru": "evict the least recently used keys out of all keys",
    "volatile-lru": "evict the least recently used keys out of keys with an expire set",
    "allkeys-random": "evict random keys out of all keys",
    "volatile-random": "evict random keys out of keys with an expire set",
    "volatile-ttl": "evict the keys with the shortest time to live out of keys with an expire set",
}
#: Heroku's default, and a new instance's.
DEFAULT_POLICY = "noeviction"
#: The ACL user minipaas changes the policy as; its password file in the instance's dir.
ADMIN_USER = "minipaas"
ADMIN_SECRET = "minipaas.secret"  # noqa: S105 (a file name)
START_TIMEOUT = 30.0
STOP_GRACE = 30.0
COMMAND_TIMEOUT = 10.0
_APP = re.compile(r"^[a-z][a-z0-9-]{0,29}$")


def service_name(text: str) -> tuple[str, str | None]:
    """(`heroku-redis`, the plan given or None) for `heroku-redis[:PLAN]` and `redis`;
    `UserError` naming the value for anything else."""
    service, _, plan = text.strip().partition(":")
    if service.lower() not in ALIASES:
        shown = text if len(text) <= 60 else f"{text[:60]}…"
        raise UserError(f"Unknown add-on {shown!r}: this is heroku-redis (also called redis).")
    return SERVICE, (plan or None)


def check_policy(text: str) -> str:
    """`text` if it names one of `POLICIES` (any case, spaces around); `UserError` naming it and
    the policies offered otherwise."""
    policy = text.strip().lower()
    if policy in POLICIES:
        return policy
    shown = text if len(text) <= 60 else f"{text[:60]}…"
    raise UserError(
        f"Unknown maxmemory policy {shown!r}: choose one of {', '.join(POLICIES)}."
    )


def find_executable(path: Path = EXECUTABLE) -> Path:
    """`path` if it is an executable file; `UserError` saying what to install otherwise."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise UserError(
        f"Redis is not installed on this server (no {path}): install it with "
        "`apt-get install redis-server`, then run addons:create again."
    )


def admin_line(admin_password: str) -> str:
    """The config line of minipaas's own ACL user: it may only CONFIG SET (the policy)."""
    digest = hashlib.sha256(admin_password.encode()).hexdigest()
    return f"user {ADMIN_USER} on #{digest} resetkeys resetchannels -@all +config|set\n"


def render_config(
    root: Path, port: int, password: str, *, admin_password: str | None = None,
    policy: str = DEFAULT_POLICY,
) -> str:
    """The whole `redis.conf` of the instance in `root` (a pure function: tested as text)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    denied = " ".join(f"-{c}" for c in DENIED)
    admin = admin_line(admin_password) if admin_password is not None else ""
    return (
        "# Written by minipaas (addons:create heroku-redis); the port and password are in the\n"
        "# app's REDIS_URL.\n"
        "bind 127.0.0.1\n"
        f"port {port}\n"
        "protected-mode yes\n"
        # `requirepass`, with what the client may not do: the password as its SHA-256.
        f"user default on #{digest} ~* &* +@all {denied}\n"
        f"{admin}"
        "unixsocket \"\"\n"
        "daemonize no\n"
        "supervised no\n"
        # The command line keeps naming this file: how minipaas recognises its instance.
        "set-proc-title no\n"
        f'pidfile "{root / "redis.pid"}"\n'
        'logfile ""\n'
        "always-show-logo no\n"
        "tcp-backlog 128\n"
        "maxclients 1000\n"
        f"maxmemory {MAXMEMORY}\n"
        f"maxmemory-policy {check_policy(policy)}\n"
        f'dir "{root}"\n'
        "appendonly yes\n"
        "appendfsync everysec\n"
        'appenddirname "appendonlydir"\n'
        'save ""\n'
        # What a client must never do: make redis write elsewhere (CONFIG SET dir/dbfilename),
        # load code into it, or poke at its memory.
        "enable-protected-configs no\n"
        "enable-debug-command no\n"
        "enable-module-command no\n"
    )


def _server_pid(root: Path) -> int | None:
    """The live redis-server of `root` according to its pid file, or None: the pid must be
    alive and its command line must name this very config file."""
    try:
        pid = int((root / "redis.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if names_in_argv(pid, str(root / "redis.conf")) else None


def _stop_signals(grace: float) -> StopSignals:
    """SIGTERM (redis flushes its append-only file and exits), SIGKILL after `grace`."""
    return ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0))


def stop_orphans(root: Path, timeout: float = STOP_GRACE) -> int:
    """`minipaas down` without a server: stop every instance in `root`; how many ran."""
    stopped = 0
    with contextlib.suppress(OSError):
        for entry in sorted(root.iterdir()):
            pid = _server_pid(entry)
            if pid is not None:
                stop_pid(pid, _stop_signals(timeout))
                stopped += 1
    return stopped


def _write_private(path: Path, text: str) -> None:
    """`text` in a new owner-only file at `path` (replacing one there)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class RespError(Exception):
    """An error reply (`-ERR …`) or a broken connection."""


def password_of(url: str) -> str:
    """The password in a REDIS_URL (`redis://:PASSWORD@127.0.0.1:PORT`)."""
    match = re.fullmatch(r"redis://[^:@/]*:([^@]*)@[^@]+", url)
    if match is None:
        raise UserError("The app's REDIS_URL holds no password; the add-on's config is damaged.")
    return match.group(1)


async def command(port: int, password: str | None, *args: str, user: str | None = None) -> Any:
    """AUTH with `password` (unless None; as `user` if given, else the default user), then run
    one command on 127.0.0.1:`port`; its reply (str, int, list or None). A minimal RESP2
    client: the password stays in this process."""

    def encode(words: tuple[str, ...]) -> bytes:
        parts = [f"*{len(words)}\r\n".encode()]
        for word in words:
            data = word.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    async def read(reader: asyncio.StreamReader) -> Any:
        line = (await reader.readline()).rstrip(b"\r\n")
        if not line:
            raise RespError("the connection closed")
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            data = await reader.readexactly(int(rest) + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            return [await read(reader) for _ in range(max(0, int(rest)))]
        raise RespError(f"an unexpected reply {line[:40]!r}")

    async def talk() -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if password is not None:
                auth = ("AUTH", password) if user is None else ("AUTH", user, password)
                writer.write(encode(auth))
            writer.write(encode(args))
            await writer.drain()
            if password is not None:
                await read(reader)
            return await read(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        return await asyncio.wait_for(talk(), COMMAND_TIMEOUT)
    except TimeoutError:  # before OSError, its base class; str() of it is empty
        raise RespError(f"no answer within {COMMAND_TIMEOUT:g} s") from None
    except asyncio.IncompleteReadError:
        raise RespError("the connection closed") from None
    except OSError as exc:
        # asyncio's strerror is "Connect call failed ('127.0.0.1', 6380)": the errno's words.
        raise RespError(os.strerror(exc.errno) if exc.errno else str(exc)) from None


@dataclass(frozen=True)
class RedisInfo:
    """What `redis:info` shows of one app's instance."""

    version: str
    port: int
    used_memory: int
    maxmemory: int
    policy: str
    clients: int
    keys: int
    persistence: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "port": self.port,
            "used_memory": self.used_memory,
            "maxmemory": self.maxmemory,
            "maxmemory_policy": self.policy,
            "clients": self.clients,
            "keys": self.keys,
            "persistence": self.persistence,
        }


def parse_info(text: str, port: int) -> RedisInfo:
    """`RedisInfo` from the text of INFO (pure)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    keys = sum(
        int(m.group(1))
        for k, v in fields.items()
        if re.fullmatch(r"db\d+", k) and (m := re.search(r"keys=(\d+)", v))
    )
    if fields.get("aof_enabled") == "1":
        persistence = f"append-only file (last write {fields.get('aof_last_write_status', '?')})"
    else:
        persistence = "none"
    return RedisInfo(
        version=fields.get("redis_version", "?"),
        port=port,
        used_memory=int(fields.get("used_memory", "0")),
        maxmemory=int(fields.get("maxmemory", "0")),
        policy=fields.get("maxmemory_policy", "?"),
        clients=int(fields.get("connected_clients", "0")),
        keys=keys,
        persistence=persistence,
    )


class Instance(Daemon):
    """One app's redis-server, in `root` (`<data-dir>/redis/<app>`)."""

    STOP_SIGNALS = _stop_signals(STOP_GRACE)

    def __init__(self, root: Path, *, executable: Path = EXECUTABLE) -> None:
        super().__init__(root)
        self.title = f"redis-server of {root.name}"
        self.executable = executable

    @property
    def conf(self) -> Path:
        return self.root / "redis.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def exists(self) -> bool:
        return self.conf.is_file()

    def _setting(self, name: str) -> str:
        match = re.search(rf'^{name} "?([^"\n]+)"?$', self.conf.read_text(), re.MULTILINE)
        if match is None:
            raise UserError(f"{self.conf} names no {name}; the add-on's config is damaged.")
        return match.group(1)

    def port(self) -> int:
        return int(self._setting("port"))

    def url(self, password: str) -> str:
        """REDIS_URL, Heroku's form (no user name: the default user and its password)."""
        return f"redis://:{password}@127.0.0.1:{self.port()}"

    @staticmethod
    def _owner() -> dict[str, Any]:
        """The Popen arguments that switch to the `redis` user (none without root)."""
        return as_system_user(SYSTEM_USER, "Redis", "redis-server")

    def create(self, port: int, password: str) -> None:
        """The dir and config of a new instance (blocking: call it in a thread). Made under
        another name and renamed when complete."""
        if any(c in str(self.root) for c in "\"'\\\n"):
            # It is written into redis.conf between double quotes.
            raise UserError(
                f"The data dir {self.root} holds a quote, a backslash or a newline, which "
                "Redis's configuration cannot take; use another data dir."
            )
        owner = self._owner()
        self.root.parent.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.root.parent, 0o755)  # noqa: S103 (the redis user traverses it)
        fresh = self.root.with_name(f".{self.root.name}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(mode=0o700)
        admin = secrets.token_hex(32)
        _write_private(fresh / ADMIN_SECRET, admin)  # the server's own user's, not redis's
        # Written with the final paths: the dir is renamed before redis ever reads it.
        conf = fresh / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(render_config(self.root, port, password, admin_password=admin))
        if owner:
            os.chown(conf, owner["user"], owner["group"])
            os.chown(fresh, owner["user"], owner["group"])
        os.rename(fresh, self.root)

    # -- the eviction policy (`redis:maxmemory`) ----------------------------------------------

    @property
    def admin_secret(self) -> Path:
        return self.root / ADMIN_SECRET

    def policy(self) -> str:
        """The `maxmemory-policy` of the config (what a start uses)."""
        return self._setting("maxmemory-policy")

    def _admin_password(self) -> str:
        """minipaas's own ACL user's password; an instance made before that user existed gets
        one now (its config a `user minipaas` line: it knows it from its next start). Blocking."""
        text = self.conf.read_text()
        with contextlib.suppress(OSError):
            password = self.admin_secret.read_text().strip()
            if password and admin_line(password) in text:
                return password
        password = secrets.token_hex(32)
        text = re.sub(rf"^user {ADMIN_USER} .*\n", "", text, flags=re.MULTILINE)
        at = re.search(r"^user default .*\n", text, re.MULTILINE)
        if at is None:
            raise UserError(f"{self.conf} names no default user; the add-on's config is damaged.")
        _write_private(self.admin_secret, password)
        self._rewrite_config(text[: at.end()] + admin_line(password) + text[at.end() :])
        return password

    def _rewrite_config(self, text: str) -> None:
        """Replace redis.conf whole (a new file renamed over it: redis never reads half of it),
        with its owner and mode."""
        owner = self._owner()
        fresh = self.conf.with_name(".redis.conf.new")
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            if owner:  # by the descriptor: the dir is the redis user's, the name could change
                os.fchown(fd, owner["user"], owner["group"])
            out.write(text)
        os.replace(fresh, self.conf)

    def own_paths(self) -> bool:
        """Make the config's `dir` and `pidfile` name this instance's dir, after `apps:rename`
        moved it (or start-up finished or undid a rename): True if it was rewritten. Blocking;
        the instance must be stopped (a running redis keeps the paths it started with)."""
        try:
            text = self.conf.read_text()
        except FileNotFoundError:
            return False
        new = re.sub(r"^pidfile .*$", lambda _m: f'pidfile "{self.root / "redis.pid"}"', text,
                     flags=re.MULTILINE)
        new = re.sub(r"^dir .*$", lambda _m: f'dir "{self.root}"', new, flags=re.MULTILINE)
        if new == text:
            return False
        self._rewrite_config(new)
        return True

    def _write_policy(self, policy: str) -> str:
        """Put `policy` in the config; the admin password (blocking)."""
        password = self._admin_password()
        text = self.conf.read_text()
        new, found = re.subn(r"^maxmemory-policy .*$", f"maxmemory-policy {policy}", text,
                             flags=re.MULTILINE)
        if not found:
            raise UserError(f"{self.conf} names no maxmemory-policy; the add-on's config is "
                            "damaged.")
        if new != text:
            self._rewrite_config(new)
        return password

    async def set_policy(self, policy: str) -> bool:
        """Make `policy` the instance's eviction policy, now (CONFIG SET, no restart) and from
        its next start on (the config); True if it had to be restarted (made before minipaas
        had its own user in it). `UserError` for an unknown policy."""
        policy = check_policy(policy)
        async with self._lock:
            if not self.exists():
                raise UserError(f"There is no Redis add-on in {self.root}.")
            password = await asyncio.to_thread(self._write_policy, policy)
            await self._start()  # a stopped one starts with the new config
            port = self.port()
            try:
                await command(port, password, "CONFIG", "SET", "maxmemory-policy", policy,
                              user=ADMIN_USER)
                return False
            except RespError as exc:
                if not str(exc).startswith("WRONGPASS"):
                    raise UserError(f"The Redis server on port {port} did not take the policy: "
                                    f"{exc}.") from None
        # It runs a config from before its `minipaas` user: a restart reads the new one (its
        # append-only file is flushed on SIGTERM and read back).
        log.warning("restarting %s to set its maxmemory-policy", self.title)
        await self.stop()
        await self.start()
        return True

    # -- the password (`redis:credentials --reset`) --------------------------------------------

    def _write_password(self, password: str) -> None:
        """Put the SHA-256 of `password` in the default user's line of the config, keeping
        the rest of the line (what the client may not do). Blocking."""
        text = self.conf.read_text()
        digest = hashlib.sha256(password.encode()).hexdigest()
        new, found = re.subn(r"^(user default on )#[0-9a-f]{64}( )", rf"\g<1>#{digest}\g<2>",
                             text, count=1, flags=re.MULTILINE)
        if not found:
            raise UserError(f"{self.conf} names no default user; the add-on's config is damaged.")
        self._rewrite_config(new)

    async def set_password(self, password: str) -> None:
        """The default user's password is `password` from now on: the config says so (a
        restart, a kill -9 and `watch`'s start read it), and the instance, if it ran, is
        restarted with it, which disconnects every client of the old password (its
        append-only file is flushed on SIGTERM and read back: the data stays)."""
        async with self._lock:
            if not self.exists():
                raise UserError(f"There is no Redis add-on in {self.root}.")
            await asyncio.to_thread(self._write_password, password)
        await self.stop()
        await self.start()

    # -- lifecycle -------------------------------------------------------------------------

    def live_pid(self) -> int | None:
        return _server_pid(self.root)

    async def _start(self) -> None:
        if self.running() or self.adopt():
            return
        if not self.exists():
            raise UserError(f"There is no Redis add-on in {self.root}.")
        executable = find_executable(self.executable)
        await asyncio.to_thread(self._admin_password)  # an older instance's config gets it
        owner = self._owner()
        argv = [str(executable), str(self.conf)]
        # Owner-only log: it may name the port, never the password (redis does not log it).
        await self._spawn(argv, owner, {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, self.root)
        port = self.port()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            # Without the password: asking for it means it serves (LOADING while it reads
            # its append-only file).
            try:
                await command(port, None, "PING")
            except RespError as exc:
                if str(exc).startswith("NOAUTH"):
                    return
            if not self.running():
                raise UserError(f"redis-server did not start (see {self.log_file}): "
                                f"{self._log_tail()}")
            if time.monotonic() > deadline:
                raise UserError(f"redis-server did not answer within {START_TIMEOUT:g} s "
                                f"(see {self.log_file}).")
            await asyncio.sleep(0.02)

    async def info(self, password: str) -> RedisInfo:
        async with self._lock:
            await self._start()
        port = self.port()
        try:
            text = await command(port, password, "INFO")
        except RespError as exc:
            raise UserError(
                f"The Redis server on port {port} did not answer INFO: {exc}."
            ) from None
        return parse_info(str(text), port)


class RedisServers:
    """Every app's instance under `root` (`<data-dir>/redis`)."""

    def __init__(self, root: Path, *, executable: Path = EXECUTABLE) -> None:
        self.root = root
        self.executable = executable
        self._instances: dict[str, Instance] = {}
        self._changed = asyncio.Event()

    def instance(self, app: str) -> Instance:
        if not _APP.match(app):
            raise UserError(f"Invalid app name {app!r}.")
        found = self._instances.get(app)
        if found is None:
            found = self._instances[app] = Instance(self.root / app, executable=self.executable)
            self._changed.set()  # `watch` watches it from now on
        return found

    async def create(self, app: str) -> str:
        """A new instance for `app`, started; its REDIS_URL. Nothing is left if this fails."""
        find_executable(self.executable)  # before anything is written
        instance = self.instance(app)
        if instance.exists():
            # The deployer found no add-on for the app: a dir left by a crash half-way
            # through a create or a destroy, whose data nobody can reach any more.
            log.warning("removing %s: left over from an earlier add-on", instance.root)
            await self.destroy(app)
            instance = self.instance(app)
        password = secrets.token_hex(32)
        try:
            await asyncio.to_thread(instance.create, self._free_port(), password)
            await instance.start()
        except BaseException:
            await self.destroy(app)
            raise
        return instance.url(password)

    async def start(self, app: str) -> None:
        await self.instance(app).start()

    def adopt(self, app: str) -> bool:
        return self.instance(app).adopt()

    async def destroy(self, app: str) -> None:
        """Stop the app's instance and delete its dir (its data); none is fine."""
        instance = self.instance(app)
        await instance.stop()
        await asyncio.to_thread(shutil.rmtree, instance.root, True)
        await asyncio.to_thread(shutil.rmtree, instance.root.with_name(f".{app}.new"), True)
        self._instances.pop(app, None)
        self._changed.set()

    async def stop(self, app: str) -> None:
        """Stop the app's instance and forget it, keeping its dir (`apps:rename` moves it)."""
        await self.instance(app).stop()
        self._instances.pop(app, None)
        self._changed.set()

    def own_paths(self, app: str) -> bool:
        """See `Instance.own_paths` (blocking; the instance stopped). A throwaway `Instance`:
        this starts nothing and `watch` does not learn of it."""
        if not _APP.match(app):
            raise UserError(f"Invalid app name {app!r}.")
        return Instance(self.root / app, executable=self.executable).own_paths()

    async def info(self, app: str, url: str) -> RedisInfo:
        """`redis:info` of the app's instance, asked with the password in its `url`."""
        return await self.instance(app).info(password_of(url))

    async def set_policy(self, app: str, policy: str) -> bool:
        """`redis:maxmemory`: the app's instance evicts by `policy` from now on; True if it
        was restarted for it (see `Instance.set_policy`)."""
        return await self.instance(app).set_policy(policy)

    async def set_password(self, app: str, password: str) -> str:
        """`redis:credentials --reset`: the app's instance asks for `password` from now on
        (restarted with it: every client is disconnected); its new REDIS_URL."""
        instance = self.instance(app)
        await instance.set_password(password)
        return instance.url(password)

    async def stop_all(self) -> None:
        """`minipaas down`: every instance in `root` stops, adopted or not."""
        with contextlib.suppress(OSError):
            for entry in self.root.iterdir():
                if _APP.match(entry.name):
                    self.instance(entry.name)
        await asyncio.gather(*(i.stop() for i in self._instances.values()))

    def detach(self) -> None:
        for instance in self._instances.values():
            instance.detach()

    async def watch(self) -> None:
        """Until cancelled: one `Instance.watch` per instance known (started, adopted)."""
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                self._changed.clear()
                for app, instance in self._instances.items():
                    if app not in tasks:
                        tasks[app] = asyncio.create_task(instance.watch())
                for app in [a for a in tasks if a not in self._instances]:
                    tasks.pop(app).cancel()
                await self._changed.wait()
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _free_port(self) -> int:
        """A port no other instance has recorded (running or not) and nothing listens on."""
        taken: set[int] = set()
        with contextlib.suppress(OSError):
            for conf in self.root.glob("*/redis.conf"):
                with contextlib.suppress(OSError, ValueError, UserError):
                    taken.add(Instance(conf.parent).port())
        return free_port(PORTS, "Redis", taken)
