"""The Redis add-on (`addons:create heroku-redis`): names, the generated config and INFO parsing
(pure; a server without redis-server is in test_addons), then one real server with real
redis-server processes: a deployed app's one-off dyno reaching its Redis through REDIS_URL,
another app's password and a wrong one refused, `CONFIG SET dir` refused, the data surviving a
restart of the server (same pid) and a kill -9 (restarted, AOF kept), `redis:maxmemory`
(evicting instead of OOM at 64 MB, live and across restarts), addons:destroy and
apps:destroy stopping it and deleting its dir, bad input at the CLI and the API, and no
redis-server left behind (checked by pid)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from minipaas import addons
from minipaas.cli import REDIS_CLI
from minipaas.errors import UserError
from minipaas.redis import (
    POLICIES,
    check_policy,
    find_executable,
    parse_info,
    render_config,
    servers,
)
from tests.paas import (
    SAMPLES,
    Paas,
    commit,
    deployed,
    git_repo,
    https_push,
    start_paas,
)
from tests.support import localhost_cli
from tests.support.ports import free_port, wait_for
from tests.support.terminal import terminal

# -- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "service", "plan"),
    [
        ("heroku-redis", "heroku-redis", None),
        ("heroku-redis:mini", "heroku-redis", "mini"),
        ("redis", "heroku-redis", None),
        ("Heroku-Redis:premium-0", "heroku-redis", "premium-0"),
        ("postgres:mini", "heroku-postgresql", "mini"),
        ("heroku-postgresql", "heroku-postgresql", None),
    ],
)
def test_the_registry_names_each_service(text: str, service: str, plan: str | None) -> None:
    kind, given = addons.service(text)
    assert (kind.name, given) == (service, plan)
    assert kind.config_var == {"heroku-redis": "REDIS_URL"}.get(service, "DATABASE_URL")


@pytest.mark.parametrize("text", ["", "heroku-kafka", "redis-ha", "mysql:small"])
def test_the_registry_refuses_other_names_naming_what_it_offers(text: str) -> None:
    with pytest.raises(UserError) as caught:
        addons.service(text)
    assert str(caught.value) == (
        f"Unknown add-on {text!r}: minipaas offers heroku-postgresql (also called postgresql "
        "or postgres) and heroku-redis (also called redis)."
    )


def test_the_config_binds_loopback_asks_a_password_and_refuses_protected_configs() -> None:
    text = render_config(Path("/d/redis/app"), 6400, "s3cret")
    assert "s3cret" not in text  # only its SHA-256
    lines = text.splitlines()
    user = [line for line in lines if line.startswith("user default on #")]
    assert len(user) == 1 and hashlib.sha256(b"s3cret").hexdigest() in user[0], user
    assert " +@all " in user[0] and " -config|set " in user[0] and " -acl|setuser " in user[0]
    assert not any(line.startswith("requirepass") for line in lines)
    for wanted in (
        "bind 127.0.0.1", "port 6400", "protected-mode yes",
        "maxmemory 64mb", "maxmemory-policy noeviction", 'dir "/d/redis/app"',
        "appendonly yes", "appendfsync everysec", "enable-protected-configs no",
        "enable-debug-command no", "enable-module-command no", "set-proc-title no",
    ):
        assert wanted in lines, wanted


def test_the_config_has_minipaas_own_user_and_the_policy_given() -> None:
    text = render_config(Path("/d/redis/app"), 6400, "s3cret", admin_password="adm1n",
                         policy="allkeys-lru")
    assert "adm1n" not in text
    lines = text.splitlines()
    admin = [line for line in lines if line.startswith("user minipaas on #")]
    assert admin == [f"user minipaas on #{hashlib.sha256(b'adm1n').hexdigest()} resetkeys "
                     "resetchannels -@all +config|set"], admin
    assert "maxmemory-policy allkeys-lru" in lines and "maxmemory 64mb" in lines
    assert "maxmemory-policy noeviction" in render_config(Path("/d"), 6400, "s").splitlines()


def test_a_policy_is_one_of_herokus() -> None:
    assert list(POLICIES) == [
        "noeviction", "allkeys-lfu", "volatile-lfu", "allkeys-lru", "volatile-lru",
        "allkeys-random", "volatile-random", "volatile-ttl",
    ]
    assert check_policy(" AllKeys-LRU ") == "allkeys-lru"
    for bad in ("", "lru", "allkeys_lru", "noeviction x", "x" * 100):
        with pytest.raises(UserError) as caught:
            check_policy(bad)
        shown = bad if len(bad) <= 60 else f"{bad[:60]}…"
        assert str(caught.value) == (
            f"Unknown maxmemory policy {shown!r}: choose one of noeviction, allkeys-lfu, "
            "volatile-lfu, allkeys-lru, volatile-lru, allkeys-random, volatile-random, "
            "volatile-ttl."
        )


def test_info_is_parsed() -> None:
    text = (
        "# Server\r\nredis_version:7.0.15\r\n# Clients\r\nconnected_clients:3\r\n"
        "# Memory\r\nused_memory:1048576\r\nmaxmemory:67108864\r\n"
        "maxmemory_policy:noeviction\r\n# Persistence\r\naof_enabled:1\r\n"
        "aof_last_write_status:ok\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"
        "db3:keys=5,expires=1,avg_ttl=0\r\n"
    )
    info = parse_info(text, 6400)
    assert (info.version, info.clients, info.used_memory, info.maxmemory, info.keys) == (
        "7.0.15", 3, 1048576, 67108864, 7)
    assert info.persistence == "append-only file (last write ok)"


def test_a_redis_that_does_not_answer_is_said_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped (SIGSTOP) or overloaded redis-server: `redis:info` said 'Redis did not answer
    INFO: TimeoutError'; now how long it waited, and a refused port by its reason."""
    monkeypatch.setattr(servers, "COMMAND_TIMEOUT", 0.2)

    async def ask() -> tuple[str, str]:
        async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)  # accepts, reads nothing, answers nothing
            w.close()

        listening = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        said = []
        for target in (port, free_port()):
            with pytest.raises(servers.RespError) as caught:
                await servers.command(target, "pw", "INFO")
            said.append(str(caught.value))
        listening.close()
        return said[0], said[1]

    stuck, closed = asyncio.run(ask())
    assert stuck == "no answer within 0.2 s"
    assert closed == "Connection refused"


def test_without_redis_server_the_add_on_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        find_executable(tmp_path / "redis-server")
    assert str(caught.value) == (
        f"Redis is not installed on this server (no {tmp_path / 'redis-server'}): install it "
        "with `apt-get install redis-server`, then run addons:create again."
    )


# -- a real server and real redis-servers ----------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2 :].split()[0] not in "ZX"


def redis_pid(paas: Paas, app: str) -> int | None:
    """The live redis-server of the app, by its pid file and a command line naming its
    config."""
    root = paas.data_dir / "redis" / app
    try:
        pid = int((root / "redis.pid").read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if os.fsencode(root / "redis.conf") in argv and _alive(pid) else None


def all_redis_pids(paas: Paas) -> list[int]:
    root = paas.data_dir / "redis"
    apps = [e.name for e in root.iterdir()] if root.is_dir() else []
    return [pid for app in apps if (pid := redis_pid(paas, app)) is not None]


def host_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """redis-cli on the host against `url`'s port with its password (in the environment)."""
    match = re.fullmatch(r"redis://:([^@]*)@127\.0\.0\.1:(\d+)", url)
    assert match is not None, url
    password, port = match.groups()
    env = {"PATH": "/usr/bin:/bin", **({"REDISCLI_AUTH": password} if password else {})}
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", port, *args], capture_output=True, text=True,
        timeout=30, env=env, check=False,
    )


def resp(url: str, *commands: tuple[str, ...]) -> list[str]:
    """Each command's reply's first line (`+OK`, `-OOM …`, `:1`), on one connection to `url`'s
    port, after AUTH with its password (its reply first)."""
    match = re.fullmatch(r"redis://:([^@]*)@127\.0\.0\.1:(\d+)", url)
    assert match is not None, url
    password, port = match.groups()
    replies = []
    with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as sock:
        reader = sock.makefile("rb")
        for words in (("AUTH", password), *commands):
            data = [w.encode() for w in words]
            sock.sendall(b"*%d\r\n" % len(data)
                         + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in data))
            replies.append(reader.readline().decode().rstrip("\r\n"))
    return replies


def fill(url: str, prefix: str, count: int = 1000, size: int = 100_000) -> list[str]:
    """SET `prefix`0 … `prefix`N-1 to `size` bytes each (100 MB in all: past the 64 MB cap) as
    the app's client; each SET's reply."""
    value = "x" * size
    replies = resp(url, *(("SET", f"{prefix}{i}", value) for i in range(count)))
    assert replies[0] == "+OK", replies[0]  # AUTH
    return replies[1:]


class Rd:
    def __init__(self, paas: Paas, app: str, work: Path) -> None:
        self.paas, self.app, self.work = paas, app, work

    def url(self, app: str | None = None) -> str:
        return self.paas.cli("config:get", "REDIS_URL", "-a", app or self.app).stdout.strip()

    def in_dyno(self, *words: str, app: str | None = None) -> str:
        """A Redis command through redis-cli and REDIS_URL inside a one-off dyno (redis-cli
        7.0's `-u` sends no password when the URL's user is empty, Heroku's form: REDIS_CLI
        passes it in REDISCLI_AUTH, as `redis:cli` does)."""
        command = f"{REDIS_CLI} {' '.join(words)}"
        return self.paas.cli("run", "-a", app or self.app, "--", "sh", "-c", command,
                             input="").stdout.strip()

    def ensure(self) -> None:
        """The app has its Redis with `kept` in it (when a test runs alone)."""
        if redis_pid(self.paas, self.app) is None:
            self.paas.cli("addons:create", "heroku-redis", "-a", self.app)
            self.in_dyno("SET", "kept", "yes")


@pytest.fixture(scope="module")
def rd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rd]:
    work = tmp_path_factory.mktemp("redis")
    paas = start_paas(work / "authorized_keys", work / "server.log")
    seen: set[int] = set()
    try:
        app = "rdapp"
        paas.cli("apps:create", app)
        token = paas.cli("auth:token").stdout.strip()
        deployed(https_push(paas, git_repo(SAMPLES / "python-stdlib", work / app), app, token))
        rd = Rd(paas, app, work)
        yield rd
    finally:
        seen.update(all_redis_pids(paas))
        paas.stop()
        left = [pid for pid in seen if _alive(pid)]
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    assert left == [], f"redis-server processes left after `minipaas down`: {left}"
    paas.assert_no_crashes()


def test_a_dyno_reaches_its_redis_and_no_other_password_opens_it(rd: Rd) -> None:
    paas, app = rd.paas, rd.app
    releases = len(json.loads(paas.cli("releases", "-a", app, "--json").stdout))
    started = time.monotonic()
    out = paas.cli("addons:create", "heroku-redis:mini", "-a", app).stdout
    took = time.monotonic() - started
    assert re.fullmatch(
        r"Created heroku-redis redis-rdapp-[0-9a-f]{6} for rdapp \(plan 'mini' ignored: one "
        r"local plan\); its URL is set as REDIS_URL\.\n", out), out
    url = rd.url()
    match = re.fullmatch(r"redis://:([0-9a-f]{64})@127\.0\.0\.1:(\d+)", url)
    assert match is not None, url
    password, port = match.group(1), int(match.group(2))
    assert port != 6379
    # Set through the config path: a release, the web dyno restarted with it.
    after = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    assert len(after) == releases + 1
    newest = max(after, key=lambda r: r["version"])
    assert newest["description"] == "Set REDIS_URL", newest
    print(f"addons:create heroku-redis took {took:.2f} s (config release included)")

    # A one-off dyno reaches it with REDIS_URL.
    assert rd.in_dyno("PING") == "PONG"
    assert rd.in_dyno("SET", "greeting", "hello") == "OK"
    assert rd.in_dyno("GET", "greeting") == "hello"
    # redis:cli -c: redis-cli in a dyno, the password not on its command line.
    ran = paas.cli("redis:cli", "-a", app, "-c", "INCRBY counter 41", input="")
    assert ran.stdout.strip() == "41", ran
    assert paas.cli("redis:cli", "-a", app, "-c", "INCR counter", input="").stdout.strip() == "42"

    # A client may not make redis write files elsewhere (its ACL refuses CONFIG SET; behind
    # it, enable-protected-configs no, which the config test above checks, would too), nor
    # load modules or use DEBUG (enable-*-command no, checked before the ACL).
    refused = rd.in_dyno("CONFIG", "SET", "dir", "/tmp")
    assert refused == "NOPERM this user has no permissions to run the 'config|set' command"
    assert "NOPERM" in rd.in_dyno("CONFIG", "SET", "dbfilename", "x.rdb")
    assert "DEBUG command not allowed" in rd.in_dyno("DEBUG", "SLEEP", "0")
    assert "MODULE command not allowed" in rd.in_dyno("MODULE", "LOAD", "/tmp/x.so")
    # Nor change where it listens, its password, or stop it; it may read its config.
    for words in (("CONFIG", "SET", "bind", "0.0.0.0"), ("CONFIG", "SET", "port", "6379"),
                  ("CONFIG", "SET", "maxmemory", "0"), ("CONFIG", "REWRITE"),
                  ("ACL", "SETUSER", "default", "+@all"), ("REPLICAOF", "127.0.0.1", "1"),
                  ("SHUTDOWN",)):
        refused = rd.in_dyno(*words)
        assert "NOPERM" in refused, (words, refused)
    assert rd.in_dyno("CONFIG", "GET", "maxmemory") == "maxmemory\n67108864"

    # Another app's password does not open this one, nor a wrong one, nor none.
    paas.cli("apps:create", "other")
    paas.cli("addons:create", "redis", "-a", "other")
    other = rd.url("other")
    other_pw, other_port = re.findall(r"redis://:([^@]+)@127\.0\.0\.1:(\d+)", other)[0]
    assert int(other_port) not in (port, 6379)
    assert host_cli(other, "PING").stdout.strip() == "PONG"
    assert host_cli(other, "GET", "greeting").stdout.strip() == ""  # its own, empty
    for pw in (other_pw, "wrong"):
        refused_run = host_cli(f"redis://:{pw}@127.0.0.1:{port}", "GET", "greeting")
        assert "WRONGPASS" in refused_run.stdout + refused_run.stderr, refused_run
    no_auth = host_cli(f"redis://:@127.0.0.1:{port}", "GET", "greeting")
    assert "NOAUTH" in no_auth.stdout + no_auth.stderr, no_auth

    # What runs: redis-server as the redis user, its config its own and owner-only.
    root = paas.data_dir / "redis" / app
    pid = redis_pid(paas, app)
    assert pid is not None
    assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam("redis").pw_uid
    conf = (root / "redis.conf").stat()
    assert (conf.st_uid, conf.st_mode & 0o777) == (pwd.getpwnam("redis").pw_uid, 0o600)
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / "appendonlydir").is_dir()
    assert password not in (root / "redis.conf").read_text()  # only in REDIS_URL
    rss = int(re.findall(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[0])
    print(f"redis-server idle RSS: {rss} kB")

    # Listed, described, and protected like DATABASE_URL, never showing the password.
    listed = paas.cli("addons").stdout
    assert re.search(r"rdapp +heroku-redis +redis-rdapp-[0-9a-f]{6} +local +REDIS_URL",
                     listed), listed
    assert password not in listed
    info = paas.cli("redis:info", "-a", app).stdout
    assert re.search(r"=== REDIS_URL \(redis-rdapp-[0-9a-f]{6}\)", info), info
    assert "Version:     7." in info and "used of 64.0 MB (policy noeviction)" in info, info
    assert "Keys:        2" in info and "Persistence: append-only file" in info, info
    assert password not in info
    assert "heroku-redis (redis-rdapp-" in paas.cli("apps:info", "-a", app).stdout
    for log in (paas.log, root / "redis.log"):
        text = log.read_text(errors="replace")
        assert password not in text and other_pw not in text, log


def test_redis_cli_gets_the_callers_terminal(rd: Rd) -> None:
    """`redis:cli` without -c: an interactive redis-cli on a real terminal (a pty)."""
    paas = rd.paas
    rd.ensure()
    with terminal([str(paas.exe), "redis:cli", "-a", rd.app], paas.env) as term:
        term.expect(b"127.0.0.1:", timeout=60)  # its prompt: a terminal
        term.type(b"ECHO interactive-42\r")
        term.expect(b'"interactive-42"')
        term.type(b"QUIT\r")
        assert term.wait() == 0, term.seen.decode(errors="replace")


def test_redis_cli_works_on_an_app_never_pushed(rd: Rd) -> None:
    """As `pg:psql`: Heroku's redis-cli runs on the user's side, so an app with the add-on and
    no push has it too (the system's redis-cli in a one-off without the slug, as the app's uid,
    with its REDIS_URL), locally and over MINIPAAS_URL."""
    paas, app = rd.paas, "unpushedrd"
    rd.ensure()
    paas.cli("apps:create", app)
    try:
        paas.cli("addons:create", "heroku-redis", "-a", app)
        ran = paas.cli("redis:cli", "-a", app, "-c", "PING", input="")
        assert ran.stdout == "PONG\n", ran
        paas.cli("redis:cli", "-a", app, "-c", "SET mine here", input="")
        remote = subprocess.run(
            localhost_cli.argv("redis:cli", "-a", app, "-c", "GET mine"),
            input="", capture_output=True, text=True, env=paas.remote_env(), timeout=120,
        )
        assert (remote.returncode, remote.stdout) == (0, "here\n"), remote
        # Its own Redis: the deployed app's keys are not there.
        rd.in_dyno("SET", "theirs", "x")
        ran = paas.cli("redis:cli", "-a", app, "-c", "EXISTS theirs", input="")
        assert ran.stdout == "0\n", ran
    finally:
        paas.cli("apps:destroy", "--confirm", app, "-a", app)


def test_the_data_survives_a_server_restart_and_a_kill_9(rd: Rd) -> None:
    paas = rd.paas
    rd.ensure()
    rd.in_dyno("SET", "kept", "yes")
    before = redis_pid(paas, rd.app)
    assert before is not None

    # A restart of minipaas: redis-server keeps running and is adopted, not restarted.
    assert paas.proc is not None
    paas.proc.send_signal(signal.SIGTERM)
    paas.proc.wait(timeout=60)
    assert redis_pid(paas, rd.app) == before
    paas.restart()
    assert redis_pid(paas, rd.app) == before
    assert rd.in_dyno("GET", "kept") == "yes"

    # kill -9: minipaas starts it again (a new pid), which reloads its append-only file.
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: (now := redis_pid(paas, rd.app)) is not None and now != before,
             timeout=60)
    assert host_cli(rd.url(), "GET", "kept").stdout.strip() == "yes"
    assert f"redis-server of {rd.app} (pid {before}) stopped; starting it again" in (
        paas.log.read_text())


def test_a_rollback_keeps_redis_url(rd: Rd) -> None:
    paas, app = rd.paas, rd.app
    rd.ensure()
    url = rd.url()
    releases = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    first = min(r["version"] for r in releases if r["status"] == "succeeded")
    assert "REDIS_URL" not in json.loads(
        paas.cli("releases:info", f"v{first}", "-a", app, "--json").stdout)["config"]
    paas.cli("rollback", f"v{first}", "-a", app)
    assert rd.url() == url
    assert rd.in_dyno("GET", "kept") == "yes"


def test_app_json_heroku_redis_is_provisioned_by_the_first_deploy(rd: Rd) -> None:
    paas, app = rd.paas, "jsonrd"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", rd.work / app)
    (repo / "app.json").write_text(json.dumps(
        {"addons": ["heroku-redis:mini", {"plan": "heroku-redis", "as": "CACHE"}]}))
    release = f"{REDIS_CLI} SET released yes"
    (repo / "Procfile").write_text(f"web: python app.py\nrelease: {release}\n")
    commit(repo, "an app.json asking for Redis")
    token = paas.cli("auth:token").stdout.strip()
    out = deployed(https_push(paas, repo, app, token))
    assert re.search(r"-----> Provisioned heroku-redis \(redis-jsonrd-[0-9a-f]{6}\) as "
                     r"REDIS_URL, as app\.json asks; the plan 'mini' is ignored", out), out
    # A second one (Heroku attaches it as CACHE_URL) is said to be skipped, not left unsaid.
    assert ("remote:  !     app.json asks for heroku-redis again (as 'CACHE'): an app has one "
            "heroku-redis add-on here, its REDIS_URL; skipped") in out, out
    assert rd.in_dyno("GET", "released", app=app) == "yes"  # the release phase had it
    assert "REDIS_URL" in json.loads(
        paas.cli("releases:info", "v1", "-a", app, "--json").stdout)["config"]
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
    assert not (paas.data_dir / "redis" / app).exists()


def test_bad_input(rd: Rd) -> None:
    paas, app = rd.paas, rd.app
    rd.ensure()

    assert paas.fails("addons:create", "heroku-redis", "-a", app) == (
        f" !    The app '{app}' already has heroku-redis; see `minipaas addons -a {app}`."
    )
    # Heroku's flags: --wait is taken (creating returns once it is ready), --as names the
    # one attachment offered or is refused, and addons:destroy takes the config var's name.
    assert "already has heroku-redis" in paas.fails("addons:create", "heroku-redis", "--wait",
                                               "--as", "REDIS", "-a", app)
    assert paas.fails("addons:create", "heroku-redis", "--as", "CACHE", "-a", app, code=2) == (
        "--as 'CACHE' is not offered: an app has one heroku-redis add-on here, always "
        "attached as REDIS_URL."
    )
    assert paas.fails("addons:destroy", "REDIS_URL", "-a", app, code=2) == (
        f"Destroying heroku-redis of '{app}' deletes its Redis server and all its data; "
        f"run again with --confirm {app}."
    )
    assert paas.fails("addons:create", "redis-ha", "-a", app) == (
        " !    Unknown add-on 'redis-ha': minipaas offers heroku-postgresql (also called "
        "postgresql or postgres) and heroku-redis (also called redis)."
    )
    name = json.loads(paas.cli("addons", "-a", app, "--json").stdout)[0]["name"]
    for args in (("config:unset", "REDIS_URL"), ("config:set", "REDIS_URL=redis://x", "A=1")):
        assert paas.fails(*args, "-a", app) == (
            f" !    REDIS_URL belongs to the heroku-redis add-on of '{app}' ({name}) and "
            "cannot be set or unset; destroy the add-on with `minipaas addons:destroy "
            f"heroku-redis -a {app} --confirm {app}`."
        )
    paas.cli("apps:create", "ownurl")
    paas.cli("config:set", "REDIS_URL=redis://cache.example.com:6379", "-a", "ownurl")
    assert paas.fails("addons:create", "heroku-redis", "-a", "ownurl") == (
        " !    The app 'ownurl' already sets REDIS_URL itself; nothing was changed "
        "(unset it with `minipaas config:unset REDIS_URL -a ownurl` first)."
    )
    assert rd.url("ownurl") == "redis://cache.example.com:6379"
    assert not (paas.data_dir / "redis" / "ownurl").exists()
    assert paas.fails("redis:info", "-a", "ownurl") == (
        " !    The app 'ownurl' has no heroku-redis add-on; create one with "
        "`minipaas addons:create heroku-redis -a ownurl`."
    )
    assert "has no heroku-redis add-on" in paas.fails("redis:cli", "-a", "ownurl", "-c", "PING")
    assert "has no heroku-redis add-on" in paas.fails(
        "addons:destroy", "redis", "-a", "ownurl", "--confirm", "ownurl")
    assert paas.fails("addons:destroy", "heroku-redis", "-a", app, code=2) == (
        f"Destroying heroku-redis of '{app}' deletes its Redis server and all its data; "
        f"run again with --confirm {app}."
    )
    assert paas.fails("redis:cli", "-a", app, "-c", " ", code=2) == (
        "No Redis command given after -c; say one, such as -c PING."
    )
    # Heroku's DATABASE argument (`redis:info REDIS_URL`) names the app's one Redis.
    assert json.loads(paas.cli("redis:info", "REDIS_URL", "-a", app, "--json").stdout)[
        "name"] == name
    assert paas.fails("redis:info", "DATABASE_URL", "-a", app) == (
        f" !    The app '{app}' has no heroku-redis add-on named 'DATABASE_URL': name it "
        f"REDIS_URL or {name}, or leave it out (an app has one)."
    )
    assert paas.fails("redis:cli", "-a", app, "--confirm", "other", code=2) == (
        f"--confirm 'other' does not name the app '{app}'; leave it out or say --confirm {app}."
    )
    assert "No app named 'nope'" in paas.fails("addons:create", "redis", "-a", "nope")
    paas.cli("apps:destroy", "-a", "ownurl", "--confirm", "ownurl")

    # The API: a second one is a conflict (the table in test_api_bad_input has the rest).
    token = paas.cli("auth:token").stdout.strip()
    base = f"http://127.0.0.1:{paas.api_port}/api/apps/{app}/addons"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        answer = c.post(base, json={"service": "redis:mini"})
        assert answer.status_code == 409, answer.text
        assert "already has heroku-redis" in answer.json()["error"]


def test_redis_maxmemory_evicts_instead_of_failing_now_and_after_restarts(rd: Rd) -> None:
    """A cache that fills its 64 MB: with noeviction (the default) writes fail with OOM;
    `redis:maxmemory --policy allkeys-lru` changes the running redis-server (same pid) and
    writes succeed, the oldest keys evicted; the policy survives a restart of minipaas and a
    kill -9 of redis-server. The app's client still cannot CONFIG SET."""
    paas, app = rd.paas, "cache"
    paas.cli("apps:create", app)
    paas.cli("addons:create", "heroku-redis", "-a", app)
    url, root = rd.url(app), paas.data_dir / "redis" / app
    pid = redis_pid(paas, app)
    assert pid is not None
    assert "(policy noeviction)" in paas.cli("redis:info", "-a", app).stdout

    before = fill(url, "a")
    assert before[0] == "+OK"
    oom = [r for r in before if r != "+OK"]
    assert oom and all(r.startswith("-OOM command not allowed") for r in oom), oom[:1]
    print(f"noeviction: {len(before) - len(oom)} of {len(before)} 100 kB SETs taken, "
          "then OOM")

    name = json.loads(paas.cli("addons", "-a", app, "--json").stdout)[0]["name"]
    started = time.monotonic()
    out = paas.cli("redis:maxmemory", "-a", app, "--policy", "allkeys-lru").stdout
    took = time.monotonic() - started
    print(f"redis:maxmemory took {took:.2f} s from the CLI")
    assert out == (
        f"Maxmemory policy for {name} (REDIS_URL) set to allkeys-lru.\n"
        "allkeys-lru evict the least recently used keys out of all keys.\n"
    )
    assert redis_pid(paas, app) == pid  # applied live, not by a restart
    conf_stat = (root / "redis.conf").stat()  # rewritten: still the redis user's, owner-only
    assert (conf_stat.st_uid, conf_stat.st_mode & 0o777) == (pwd.getpwnam("redis").pw_uid, 0o600)
    assert "\nmaxmemory-policy allkeys-lru\n" in (root / "redis.conf").read_text()
    after = fill(url, "b")
    assert set(after) == {"+OK"}, [r for r in after if r != "+OK"][:1]
    # Old keys made room: Redis's LRU is approximate (sampled, a clock of 1 s resolution, so keys
    # written in the same second are alike to it), so which of the "a" keys went is its choice.
    taken = len(before) - len(oom)
    kept, newest = resp(url, ("EXISTS", *(f"a{n}" for n in range(taken))), ("EXISTS", "b999"))[1:]
    assert int(kept[1:]) < taken and newest == ":1", (kept, taken, newest)
    info = json.loads(paas.cli("redis:info", "REDIS_URL", "-a", app, "--json").stdout)
    assert info["maxmemory_policy"] == "allkeys-lru", info
    assert "(policy allkeys-lru)" in paas.cli("redis:info", "-a", app).stdout
    assert f"set the maxmemory policy of {name} to allkeys-lru" in paas.cli(
        "logs", "-a", app, "-n", "20").stdout

    # The app's client still may not change the config, and its password is not minipaas's.
    assert resp(url, ("CONFIG", "SET", "maxmemory-policy", "noeviction"))[1] == (
        "-NOPERM this user has no permissions to run the 'config|set' command")
    app_password = servers.password_of(url)
    assert resp(url, ("AUTH", "minipaas", app_password))[1].startswith("-WRONGPASS")
    # minipaas's password: owner-only, the server's user's (not redis's), nowhere else.
    secret = root / "minipaas.secret"
    stat = secret.stat()
    assert (stat.st_uid, stat.st_mode & 0o777) == (os.geteuid(), 0o600)
    admin = secret.read_text().strip()
    assert len(admin) == 64 and admin not in (root / "redis.conf").read_text()
    for text in (paas.log.read_text(errors="replace"), (root / "redis.log").read_text(),
                 paas.cli("config", "-a", app, "--json").stdout):
        assert admin not in text
    # It may only CONFIG SET (no data).
    assert resp(url, ("AUTH", "minipaas", admin), ("GET", "b999"))[2].startswith("-NOPERM")

    # A restart of minipaas (redis-server adopted), then a kill -9 (started from its config).
    def policy() -> str:
        return host_cli(url, "CONFIG", "GET", "maxmemory-policy").stdout.split()[-1]

    assert paas.proc is not None
    paas.proc.send_signal(signal.SIGTERM)
    paas.proc.wait(timeout=60)
    paas.restart()
    assert redis_pid(paas, app) == pid and policy() == "allkeys-lru"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (now := redis_pid(paas, app)) is not None and now != pid, timeout=60)
    wait_for(lambda: "PONG" in host_cli(url, "PING").stdout, timeout=60)
    assert policy() == "allkeys-lru"
    assert resp(url, ("EXISTS", "b999"))[1] == ":1"  # its append-only file, read back

    # An instance made before minipaas had its own user in it gets one on its next start …
    conf = root / "redis.conf"
    conf.write_text(re.sub(r"^user minipaas .*\n", "", conf.read_text(), flags=re.MULTILINE))
    secret.unlink()
    pid = redis_pid(paas, app)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (now := redis_pid(paas, app)) is not None and now != pid, timeout=60)
    wait_for(lambda: "PONG" in host_cli(url, "PING").stdout, timeout=60)
    assert secret.is_file() and "\nuser minipaas on #" in conf.read_text()
    # … and one whose config names a password its running process does not know (upgraded
    # while it ran) is restarted to take the policy, its data kept.
    pid = redis_pid(paas, app)
    secret.write_text("0" * 64)
    conf.write_text(re.sub(r"^user minipaas .*\n", servers.admin_line("0" * 64),
                           conf.read_text(), flags=re.MULTILINE))
    paas.cli("redis:maxmemory", "REDIS_URL", "-a", app, "-p", "volatile-ttl")
    assert redis_pid(paas, app) not in (None, pid)
    assert policy() == "volatile-ttl"
    assert resp(url, ("EXISTS", "b999"))[1] == ":1"
    assert f"restarting redis-server of {app} to set its maxmemory-policy" in (
        paas.log.read_text())
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_redis_maxmemory_bad_input(rd: Rd) -> None:
    paas, app = rd.paas, rd.app
    rd.ensure()

    assert paas.fails("redis:maxmemory", "-a", app, "--policy", "lru") == (
        " !    Unknown maxmemory policy 'lru': choose one of noeviction, allkeys-lfu, "
        "volatile-lfu, allkeys-lru, volatile-lru, allkeys-random, volatile-random, "
        "volatile-ttl."
    )
    assert "--policy" in paas.fails("redis:maxmemory", "-a", app, code=2)
    assert paas.fails("redis:maxmemory", "DATABASE_URL", "-a", app, "-p", "allkeys-lru").startswith(
        f" !    The app '{app}' has no heroku-redis add-on named 'DATABASE_URL'")
    paas.cli("apps:create", "nocache")
    assert paas.fails("redis:maxmemory", "-a", "nocache", "-p", "allkeys-lru") == (
        " !    The app 'nocache' has no heroku-redis add-on; create one with "
        "`minipaas addons:create heroku-redis -a nocache`."
    )
    paas.cli("apps:destroy", "-a", "nocache", "--confirm", "nocache")
    assert "No app named 'nope'" in paas.fails("redis:maxmemory", "-a", "nope", "-p", "noeviction")
    # Nothing changed.
    assert json.loads(paas.cli("redis:info", "-a", app, "--json").stdout)[
        "maxmemory_policy"] == "noeviction"


def test_addons_destroy_and_apps_destroy_stop_it_and_delete_its_dir(rd: Rd) -> None:
    paas = rd.paas
    for app in ("dropme", "gone"):
        paas.cli("apps:create", app)
        paas.cli("addons:create", "heroku-redis", "-a", app)
    pids = {app: redis_pid(paas, app) for app in ("dropme", "gone")}
    assert None not in pids.values(), pids
    url = rd.url("dropme")

    name = json.loads(paas.cli("addons", "-a", "dropme", "--json").stdout)[0]["name"]
    out = paas.cli("addons:destroy", "heroku-redis", "-a", "dropme", "--confirm", "dropme")
    assert out.stdout == f"Destroyed heroku-redis {name} of dropme; REDIS_URL is unset.\n"
    assert "REDIS_URL" not in json.loads(paas.cli("config", "-a", "dropme", "--json").stdout)
    assert not _alive(pids["dropme"] or 0)
    assert not (paas.data_dir / "redis" / "dropme").exists()
    assert host_cli(url, "PING").returncode != 0 or "PONG" not in host_cli(url, "PING").stdout
    # A new one: a new password, no old data.
    paas.cli("addons:create", "heroku-redis", "-a", "dropme")
    assert rd.url("dropme") != url
    # By the add-on's own name, as `addons` lists it.
    named = json.loads(paas.cli("addons", "-a", "dropme", "--json").stdout)[0]["name"]
    out = paas.cli("addons:destroy", named, "-a", "dropme", "--confirm", "dropme")
    assert out.stdout == f"Destroyed heroku-redis {named} of dropme; REDIS_URL is unset.\n"

    paas.cli("apps:destroy", "-a", "gone", "--confirm", "gone")
    assert not _alive(pids["gone"] or 0)
    assert not (paas.data_dir / "redis" / "gone").exists()
    paas.cli("apps:destroy", "-a", "dropme", "--confirm", "dropme")


def test_down_stops_redis_a_killed_server_left_behind(rd: Rd) -> None:
    paas = rd.paas
    rd.ensure()
    paas.kill9()  # redis-server keeps running, by design, like the dynos and Caddy
    running = all_redis_pids(paas)
    assert running, running
    out = paas.cli("down", "--data-dir", str(paas.data_dir))
    assert "Redis" in out.stdout, out.stdout
    wait_for(lambda: not any(_alive(pid) for pid in running), timeout=30)
