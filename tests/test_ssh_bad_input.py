"""Bad input to the SSH forced command (`minipaas ssh --key FPR`, the command in
SSH_ORIGINAL_COMMAND): every answer is one sentence naming the bad value, with exit status 1
(2 for usage errors), within a deadline, with no traceback, and nothing on the server changes.

The forced command runs as sshd runs it (a subprocess with SSH_ORIGINAL_COMMAND set, bytes and
all) against one real server per module; a few cases also go through the real sshd.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minipaas.client import Client
from minipaas.names import RESERVED_APP_NAMES
from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support.sshd import SSHServer

DEADLINE = 20.0
"""Seconds any refusal may take (they take ~0.1 s; a hang fails the test instead of the run)."""
APP = "keeper"
"""The one deployed app: bad input must leave its release and config as they are."""
LONG = "a" * 100_000


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout of the deployed app (later pushes build on its history)."""
    return git_repo(SAMPLES / "python-stdlib", tmp_path_factory.mktemp("src") / APP)


@pytest.fixture(scope="module")
def server(env: tuple[Paas, SSHServer], source: Path) -> Paas:
    paas, sshd = env
    paas.cli("apps:create", APP)
    paas.cli("config:set", "KEEP=1", "-a", APP)
    deployed(ssh_push(sshd, source, APP))
    return paas


@pytest.fixture(scope="module")
def fingerprint(server: Paas) -> str:
    keys = json.loads(server.cli("keys", "--json").stdout)
    return str(next(k["fingerprint"] for k in keys if k["name"] == "tester"))


def state(paas: Paas) -> dict[str, Any]:
    """What bad input must not change: apps and their releases, the keeper's config, keys."""
    with Client(socket=paas.data_dir / "minipaas.sock", timeout=10.0) as client:
        client.get("/api/status")
        return {
            "apps": sorted((a["name"], a["release"]) for a in client.get("/api/apps")),
            "config": client.get(f"/api/apps/{APP}/config"),
            "keys": sorted(k["fingerprint"] for k in client.get("/api/keys")),
            "buildpacks": client.buildpacks(APP),
        }


@pytest.fixture
def unchanged(server: Paas) -> Iterator[None]:
    """The server answers and holds the same state after the test as before it."""
    before = state(server)
    yield
    assert state(server) == before


def forced(
    paas: Paas, fingerprint: str, command: str | bytes, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run the forced command as sshd does: SSH_ORIGINAL_COMMAND holds the client's bytes."""
    env = {os.fsencode(k): os.fsencode(v) for k, v in paas.env.items()}
    env.pop(b"MINIPAAS_DATA_DIR", None)  # the authorized_keys line passes --data-dir
    env[b"SSH_ORIGINAL_COMMAND"] = command if isinstance(command, bytes) else command.encode()
    argv = [str(paas.exe), "ssh", "--data-dir", str(paas.data_dir), "--key", fingerprint]
    return subprocess.run(
        argv, env=env, input=stdin, capture_output=True, timeout=DEADLINE, check=False
    )


def one_sentence(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a refusal (nothing on stdout, no traceback anywhere)."""
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in out + err, err
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert len(lines[0]) < 400, lines[0][:400]  # a 100 kB value is cut short, not echoed
    return lines[0]


def case(command: str | bytes, status: int, expected: str) -> Any:
    return pytest.param(command, status, expected, id=repr(command)[:40])


# Commands that are not a client word, or cannot be read at all.
NOT_COMMANDS = [
    case("frobnicate", 1, "Unknown command 'frobnicate'"),
    case("rm -rf /", 1, "Unknown command 'rm'"),
    case("apps;id", 1, "Unknown command 'apps;id'"),
    case("$(id)", 1, "Unknown command '$(id)'"),
    case("`id`", 1, "Unknown command '`id`'"),
    case("-- apps", 1, "Unknown command '--'"),
    case("--version", 1, "Unknown command '--version'"),
    case("server --data-dir /tmp", 1, "Unknown command 'server'"),
    case("down", 1, "Unknown command 'down'"),
    case("ssh --key SHA256:x", 1, "Unknown command 'ssh'"),
    case("_router-resolver", 1, "Unknown command '_router-resolver'"),
    case("git-upload-archive 'keeper.git'", 1, "Unknown command 'git-upload-archive'"),
    case("APPS", 1, "Unknown command 'APPS'"),
    case("\u202eapps", 1, "Unknown command '\\u202eapps'"),
    case(LONG, 1, "Unknown command 'aaaaaaaaaa"),
    case("apps 'unterminated", 1, 'Cannot parse the command "apps \'unterminated": no closing'),
    case('apps "x', 1, "no closing quotation"),
    case("apps x\\", 1, "no escaped character"),
    case("'" + LONG, 1, "Cannot parse the command \"'aaaaaaaaaa"),
    case(b"\xff", 1, "The command b'\\xff' is not UTF-8 text."),
    case(b"apps:info -a \xff\xfe", 1, "b'apps:info -a \\xff\\xfe' is not UTF-8"),
    case(b"git-receive-pack '\xff.git'", 1, "\\xff.git'\" is not UTF-8"),
    case(b"config:set -a keeper A=\xed\xa0\x80", 1, "A=\\xed\\xa0\\x80' is not UTF-8"),
    case(b"apps " + b"\xc3" * 100_000, 1, "is not UTF-8 text"),
]

# Client words with missing, extra or malformed arguments (argparse and the CLI's own checks).
USAGE = [
    case("apps extra", 2, "unrecognized arguments: extra"),
    case("apps --bogus", 2, "unrecognized arguments: --bogus"),
    case("apps " + "x " * 50_000, 2, "unrecognized arguments: x x x"),
    case("apps:create", 2, "the following arguments are required: name"),
    case("apps:create a b", 2, "unrecognized arguments: b"),
    case("apps:info", 2, "No app given"),
    case("apps:info -a", 2, "argument -a/--app: expected one argument"),
    case("apps:destroy -a keeper", 2, "run again with --confirm keeper"),
    case("apps:destroy -a keeper --confirm other", 2, "--confirm keeper"),
    case("apps:destroy keeper", 2, "run again with --confirm keeper"),  # Heroku's [APP]
    case("apps:destroy keeper -a other --confirm keeper", 2,
         "Two apps given, 'keeper' and -a 'other': name one."),
    case("apps:info keeper -a other", 2, "Two apps given, 'keeper' and -a 'other': name one."),
    case("config:get -a keeper", 2, "the following arguments are required: key"),
    case("config:set -a keeper", 2, "the following arguments are required: KEY=VALUE"),
    case("config:set -a keeper KEEP", 2, "Expected KEY=VALUE, got 'KEEP'."),
    case("config:unset -a keeper", 2, "the following arguments are required: KEY"),
    case("ps:scale -a keeper", 2, "the following arguments are required: TYPE=COUNT"),
    case("ps:scale -a keeper web", 2, "Expected TYPE=COUNT or TYPE+N / TYPE-N, got 'web'."),
    case("ps:scale -a keeper web=two", 2, "Invalid count 'two' for 'web'"),
    case("ps:scale -a keeper web=1.5", 2, "Invalid count '1.5' for 'web'"),
    case("ps:stop -a keeper", 2, "the following arguments are required: type"),
    case("ps:restart -a keeper web worker", 2, "unrecognized arguments: worker"),
    case("logs -a keeper -n x", 2, "argument -n/--num: invalid int value: 'x'"),
    case("logs -a keeper --source nope", 2, "invalid choice: 'nope'"),
    case("metrics -a keeper --since x", 2, "argument --since: invalid int value: 'x'"),
    case("releases:info -a keeper", 2, "the following arguments are required: vN"),
    case("rollback -a keeper vx", 2, "Invalid release 'vx'"),
    case("run -a keeper", 2, "No command given"),
    case("run -a keeper --", 2, "No command given"),
    case("git:remote -a keeper --ssh --https", 2, "not allowed with argument --ssh"),
    case("tui", 2, "The terminal UI needs a terminal"),
    case("tui x", 2, "unrecognized arguments: x"),
    case("keys:add", 2, "the following arguments are required: name"),
    # Paths on the server are not for SSH keys to name (--file would read the SSH user's files).
    case("keys:add x --file /etc/passwd", 2, "--file '/etc/passwd' is not available over SSH"),
    case("keys:add x --fi /etc/hostname", 2, "--file '/etc/hostname' is not available over SSH"),
    case("keys:add x --file=/etc/passwd", 2, "--file '/etc/passwd' is not available"),
    case("apps --data-dir /tmp", 2, "--data-dir '/tmp' is not available over SSH"),
    case("apps --data /tmp", 2, "--data-dir '/tmp' is not available over SSH"),
    case("ps -a keeper --data-dir=/", 2, "--data-dir '/' is not available over SSH"),
    case("buildpacks:set -a keeper", 2, "the following arguments are required: URL"),
    case("buildpacks:add -a keeper -i x heroku/python", 2, "-i/--index: invalid int value: 'x'"),
    case("buildpacks:remove -a keeper", 2, "Name the buildpack to remove: buildpacks:remove URL"),
    case("buildpacks:remove heroku/python -i 1 -a keeper", 2,
         "Give the buildpack to remove by URL ('heroku/python') or by -i 1, not both."),
    case("buildpacks:clear -a keeper heroku/python", 2, "unrecognized arguments: heroku/python"),
]

BAD_APP_NAMES = [
    "A",
    "..",
    "../x",
    "a/b",
    "a b",
    "é",
    "keeper?",
    "keeper#",
    "keeper/../x",
    "%2e%2e",
    "a\nb",
    "'",
    '"',
    "$(id)",
    "`id`",
    "a;b",
    "-",
    "1app",
    "a" * 31,
    "\u202e",
    "\x1b[31mred",
    "minipaas",
    "www",
]


def _app_case(word: str, name: str, rest: str = "") -> Any:
    """`word -a NAME rest` (`apps:create NAME`): refused, naming NAME (the first 40 chars)."""
    where = "" if word == "apps:create" else "-a "
    expected = "is reserved" if name in RESERVED_APP_NAMES else f"Invalid app name {name!r}"[:40]
    return case(f"{word} {where}{shlex.quote(name)}{rest}", 1, expected)


# Bad values: each is refused by the client or the server, naming the value, with status 1.
VALUES = [
    *(_app_case("apps:create", name) for name in BAD_APP_NAMES),
    *(_app_case("apps:info", name) for name in BAD_APP_NAMES),
    _app_case("apps:create", "a" * 200),
    _app_case("ps", "a" * 200),
    case("apps:info -a " + LONG, 1, "Invalid app name 'aaaaaaaaaa"),
    _app_case("ps", "../keeper"),
    _app_case("config", "keeper?x=1"),
    _app_case("config:set", "keeper?x", " A=1"),
    _app_case("logs", "é"),
    _app_case("releases", "keeper/x"),
    _app_case("apps:destroy", "keeper?", " --confirm 'keeper?'"),
    _app_case("maintenance:on", "keeper#"),
    _app_case("run", "keeper/..", " -- true"),
    case("apps:info -a ghost", 1, "No app named 'ghost'"),
    case("apps:create keeper", 1, "'keeper'"),
    case("config:get -a keeper NOPE", 1, "NOPE is not set on keeper."),
    case("config:set -a keeper =x", 1, "Invalid config key ''"),
    case("config:set -a keeper é=x", 1, "Invalid config key 'é'"),
    case("config:set -a keeper '1A=x'", 1, "Invalid config key '1A'"),
    case("config:unset -a keeper 'a b'", 1, "Invalid config key 'a b'"),
    case("ps:scale -a keeper =1", 1, "Invalid process type ''"),
    case("ps:scale -a keeper é=1", 1, "Invalid process type 'é'"),
    case("ps:scale -a keeper web=-1", 1, "-1"),
    case("ps:scale -a keeper nope=1", 1, "'nope'"),
    case("ps:scale -a keeper web=" + "9" * 30, 1, "9" * 20),
    case("ps:restart -a keeper 'a b'", 1, "Invalid process type 'a b'"),
    case("ps:stop -a keeper 'a/b'", 1, "Invalid process type 'a/b'"),
    case("ps:start -a keeper é", 1, "Invalid process type 'é'"),
    case("logs -a keeper --dyno 'a b'", 1, "Invalid dyno name 'a b'"),
    case("logs -a keeper --dyno é", 1, "Invalid dyno name 'é'"),
    case("logs -a keeper -n -1", 1, "Invalid line count -1"),
    case("logs -a keeper -n " + "9" * 30, 1, "Invalid line count " + "9" * 20),
    case("metrics -a keeper --since " + "9" * 30, 1, "Invalid since '" + "9" * 20),
    case("releases:info -a keeper é", 1, "Invalid release 'é'"),
    case("releases:info -a keeper 'v 1'", 1, "Invalid release 'v 1'"),
    case("releases:info -a keeper 'v1?x'", 1, "Invalid release 'v1?x'"),
    case("releases:info -a keeper v999", 1, "v999"),
    case("rollback -a keeper v" + "9" * 30, 1, "Invalid release 'v" + "9" * 20),
    case("rollback -a keeper v999", 1, "v999"),
    case("checks:set -a keeper path=x", 1, "Invalid health check path 'x'"),
    case("checks:set -a keeper foo", 1, "got 'foo'"),
    case("checks:set -a keeper bogus=1", 1, "Unknown health check setting 'bogus'"),
    case("checks:set -a keeper timeout=1e999", 1, "Invalid health check timeout '1e999'"),
    case("checks:set -a keeper path=/x min_uptime=nan", 1, "min_uptime 'nan'"),
    case("domains:add -a keeper 'not a host'", 1, "Invalid hostname 'not a host'"),
    case("domains:add -a keeper " + "a" * 300, 1, "Invalid hostname 'aaaaaaaaaa"),
    case("domains:remove -a keeper 'a b'", 1, "Invalid hostname 'a b'"),
    case("domains:remove -a keeper a/b", 1, "Invalid hostname 'a/b'"),
    case("domains:remove -a keeper www.example.test", 1, "'www.example.test'"),
    case("keys:remove é", 1, "Invalid key name 'é'"),
    case("keys:remove 'x y'", 1, "Invalid key name 'x y'"),
    case("keys:remove 'tester?x'", 1, "Invalid key name 'tester?x'"),
    case("keys:remove a/b", 1, "Invalid key name 'a/b'"),
    case("keys:add x", 1, "Expected exactly one public key line"),
    _app_case("buildpacks:set", "keeper?", " heroku/python"),
    case("buildpacks -a ghost", 1, "No app named 'ghost'"),
    case("buildpacks:set -a keeper heroku/ruby", 1, "Unknown buildpack 'heroku/ruby': the"),
    case("buildpacks:add -a keeper ruby", 1, "Buildpack 'ruby' is neither a directory path"),
    case("buildpacks:add -a keeper 'https://h/b.git#--upload-pack=/x'", 1,
         "names the ref '--upload-pack=/x', which is not a branch, tag or commit"),
    case("buildpacks:set -a keeper -i 0 heroku/python", 1, "Invalid buildpack index '0'"),
    case("buildpacks:set -a keeper -i 2 heroku/python", 1, "Invalid index 2: 'keeper' has 0"),
    case("buildpacks:add -a keeper " + LONG, 1, "Buildpack 'aaaaaaaaaa"),
    case("buildpacks:remove -a keeper heroku/python", 1, "'keeper' has no buildpack 'heroku/"),
    case("buildpacks:remove -a keeper -i 1", 1, "Invalid index 1: 'keeper' has no buildpacks."),
]

# git-receive-pack / git-upload-pack whose arguments are wrong: refused on stderr.
GIT_USAGE = [
    case("git-receive-pack", 1, "git-receive-pack takes one repository path"),
    case("git-upload-pack", 1, "git-upload-pack takes one repository path"),
    case("git-upload-pack 'keeper.git' extra", 1, "not \"git-upload-pack 'keeper.git' extra\""),
    case("git-receive-pack keeper.git; rm -rf /", 1, "takes one repository path"),
    case("git-receive-pack 'keeper.git", 1, "Cannot parse the command"),
    case("git-receive-pack x.git " + LONG, 1, "not 'git-receive-pack x.git aaaaa"),
]


@pytest.mark.parametrize(("command", "status", "expected"), NOT_COMMANDS + USAGE + VALUES)
@pytest.mark.usefixtures("unchanged")
def test_refused_in_one_sentence(
    server: Paas, fingerprint: str, command: str | bytes, status: int, expected: str
) -> None:
    result = forced(server, fingerprint, command)
    line = one_sentence(result)
    assert result.returncode == status, line
    assert expected in line


@pytest.mark.parametrize(("command", "status", "expected"), GIT_USAGE)
@pytest.mark.usefixtures("unchanged")
def test_git_usage_refused_in_one_sentence(
    server: Paas, fingerprint: str, command: str, status: int, expected: str
) -> None:
    result = forced(server, fingerprint, command)
    line = one_sentence(result)
    assert result.returncode == status, line
    assert expected in line


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("git-receive-pack '../x.git'", "Invalid repository path '../x.git'"),
        ("git-receive-pack '/abs.git'", "No app named 'abs'"),
        ("git-receive-pack 'a b.git'", "Invalid app name 'a b'"),
        ("git-upload-pack ''", "Invalid repository path ''"),
        ("git-upload-pack '/'", "Invalid repository path '/'"),
        ("git-upload-pack '.git'", "Invalid repository path '.git'"),
        ("git-upload-pack '/keeper.git/'", "Invalid repository path '/keeper.git/'"),
        ("git-upload-pack '//keeper.git'", "Invalid repository path '//keeper.git'"),
        ("git-receive-pack '~/keeper.git'", "Invalid repository path '~/keeper.git'"),
        ("git-receive-pack '/repos/keeper.git'", "Invalid repository path '/repos/keeper.git'"),
        ("git-receive-pack '\\keeper.git'", "Invalid repository path '\\\\keeper.git'"),
        ("git-receive-pack 'é.git'", "Invalid app name 'é'"),
        ("git-receive-pack '$(id).git'", "Invalid app name '$(id)'"),
        ('git-receive-pack "`id`.git"', "Invalid app name '`id`'"),
        ("git-receive-pack 'a;b.git'", "Invalid app name 'a;b'"),
        ("git-receive-pack 'a\nb.git'", "Invalid app name 'a\\nb'"),
        ("git-receive-pack 'KEEPER.git'", "Invalid app name 'KEEPER'"),
        ("git-receive-pack 'www.git'", "The app name 'www' is reserved"),
        ("git-upload-pack 'ghost.git'", "No app named 'ghost'"),
        ("git-receive-pack '" + LONG + ".git'", "Invalid app name 'aaaaaaaaaa"),
        ("git-receive-pack '/" + "a/" * 50_000 + ".git'", "Invalid repository path '/a/a/a/"),
    ],
    ids=lambda value: repr(value)[:40],
)
@pytest.mark.usefixtures("unchanged")
def test_bad_repository_paths_get_one_err_packet(
    server: Paas, fingerprint: str, command: str, expected: str
) -> None:
    """Git shows an ERR packet as `fatal: remote error: <message>`: one valid pkt-line."""
    result = forced(server, fingerprint, command)
    assert result.returncode == 1
    assert result.stderr == b"", result.stderr
    length = int(result.stdout[:4], 16)
    assert length == len(result.stdout), result.stdout[:200]
    message = result.stdout[4:].decode()
    assert message.startswith("ERR ")
    assert expected in message
    assert len(message) < 400, message[:400]


@pytest.mark.parametrize("command", ["", " ", "\t", "\n", "  \t \n "])
@pytest.mark.usefixtures("unchanged")
def test_no_command_prints_the_help(server: Paas, fingerprint: str, command: str) -> None:
    """Without a terminal, an empty command is `ssh minipaas@host`: a short help, exit 0."""
    result = forced(server, fingerprint, command)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().startswith("minipaas over SSH. Try:")


@pytest.mark.usefixtures("unchanged")
def test_client_hanging_up_is_one_sentence(server: Paas, fingerprint: str) -> None:
    """A git client that goes away before sending anything (stdin at EOF)."""
    for service in ("git-receive-pack", "git-upload-pack"):
        result = forced(server, fingerprint, f"{service} '/{APP}.git'")
        assert result.returncode == 1
        err = result.stderr.decode()
        assert err == "minipaas: the git client hung up before finishing.\n", err


@pytest.mark.usefixtures("unchanged")
def test_unknown_key_is_refused_before_the_command(server: Paas) -> None:
    result = forced(server, "SHA256:nope", b"apps:info -a \xff")
    assert result.returncode == 1
    assert one_sentence(result).startswith(" !    Unknown SSH key 'SHA256:nope'")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([b"apps:info", b"-a", b"\xff"], "is not UTF-8 text"),
        (["keys:add", "x", "--file", "/etc/hostname"], "--file '/etc/hostname' is not available"),
        (["apps:info", "-a", "'keeper?'"], "Invalid app name 'keeper?'"),
        (["git-receive-pack", "'../x.git'"], "ERR Invalid repository path '../x.git'"),
        ([LONG], "Unknown command 'aaaaaaaaaa"),
    ],
    ids=lambda value: repr(value)[:40],
)
@pytest.mark.usefixtures("unchanged")
def test_through_sshd(
    env: tuple[Paas, SSHServer], server: Paas, words: list[str | bytes], expected: str
) -> None:
    """The same answers through the real sshd (which joins the words into the command)."""
    _, sshd = env
    result = subprocess.run(
        [*sshd.ssh_argv(), *words], capture_output=True, timeout=DEADLINE, check=False
    )
    err = result.stderr.decode(errors="replace")
    assert result.returncode in (1, 2), err
    assert "Traceback" not in err
    assert expected in err or expected in result.stdout.decode(errors="replace"), err[:400]


def test_a_bad_push_keeps_the_release(
    env: tuple[Paas, SSHServer], server: Paas, source: Path
) -> None:
    """A push whose Procfile or app.json is refused fails with the reason; v1 keeps serving."""
    _, sshd = env
    before = state(server)
    repo = source
    procfile = (repo / "Procfile").read_text()
    bad = [
        ("Procfile", "web: python app.py\0\n", "Procfile line 1 gives the process type 'web'"),
        ("app.json", '{"formation": {"web": {"quantity": ' + "9" * 5000 + "}}}", "5000 digits"),
        ("app.json", '{"cron": [{"command": "x", "schedule": "* * ² * *"}]}', "field '²'"),
        ("app.json", '{"healthchecks": {"web": [{"path": "/\\u0000"}]}}', "NUL character"),
        ("app.json", '{"buildpacks": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ]
    for name, text, expected in bad:
        (repo / "Procfile").write_text(procfile)
        (repo / "app.json").unlink(missing_ok=True)
        (repo / name).write_text(text)
        commit(repo, f"bad {name}")
        result = ssh_push(sshd, repo, APP)
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert "Traceback" not in out
        assert expected in out, out
    assert state(server) == before
    server.wait_body(f"{APP}.localhost", "hello from python-stdlib")
