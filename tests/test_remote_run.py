"""`minipaas run` over MINIPAAS_URL with the caller's terminal or piped stdin (api/remote_run.py,
attach_client.py): through Caddy's HTTPS at minipaas.localhost, with its internal CA, to a real
server running real bwrap dynos; the client on a real pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.paas import SAMPLES, Paas, deployed, git_repo, ssh_push
from tests.support import localhost_cli, sleeper
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

APP = "rrun"


@pytest.fixture(scope="module")
def app(env: tuple[Paas, SSHServer], tmp_path_factory: pytest.TempPathFactory) -> str:
    paas, sshd = env
    paas.cli("apps:create", APP)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path_factory.mktemp("rrun") / APP)
    deployed(ssh_push(sshd, repo, APP))
    return APP


@pytest.fixture(scope="module")
def remote(env: tuple[Paas, SSHServer]) -> dict[str, str]:
    """A laptop's environment: the server's HTTPS URL (through Caddy), its token and CA."""
    return env[0].remote_env()


class Screen:
    """The master side of the client's terminal: what the client printed, and typing."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.text = ""
        os.set_blocking(master, False)

    def read(self) -> str:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 65536):
                self.text += chunk.decode(errors="replace")
        return self.text

    def wait(self, wanted: str, timeout: float = 30) -> None:
        wait_for(
            lambda: wanted in self.read(),
            timeout=timeout,
            interval=0.05,
            message=f"{wanted!r} on the screen: {self.text[-500:]!r}",
        )

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())


@dataclass
class Session:
    """The CLI's `run` over MINIPAAS_URL on a terminal of its own (a pty of 24 x 80)."""

    client: subprocess.Popen[bytes]
    screen: Screen  # what it printed; typing
    slave: int  # its side of the terminal, for sizes and modes
    before: list[Any]  # the terminal's modes before it started


@contextlib.contextmanager
def session(remote: dict[str, str], *args: str, ctty: bool = False) -> Iterator[Session]:
    """`minipaas run ARGS…` on a new terminal; `ctty`: it leads a session on that terminal (as
    in a real one), so a size change reaches it as SIGWINCH. Killed if still running at the
    end."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    before = termios.tcgetattr(slave)
    argv = localhost_cli.argv("run", *args)
    client = subprocess.Popen(
        ["setsid", "--ctty", *argv] if ctty else argv,
        stdin=slave, stdout=slave, stderr=slave, env=remote,
    )  # fmt: skip
    try:
        yield Session(client, Screen(master), slave, before)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        os.close(master)
        os.close(slave)


def test_a_shell_on_the_callers_terminal(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str]
) -> None:
    with session(remote, "-a", app, "--", "sh", ctty=True) as run:
        screen = run.screen
        screen.wait("$ ")
        # Ctrl-C reaches the command in the foreground, not the sandbox around the shell
        # (which died of it, and the whole session with it).
        screen.type("sleep 60; echo not-interrupted\r")
        wait_for(lambda: "sleep 60" in screen.read(), timeout=30, interval=0.05)
        screen.type("\x03")
        screen.type("test -t 0 && tty; echo $((6*7))\r")
        screen.wait("42")
        # (bwrap shows the terminal as /dev/console, as for a run over `ssh -t`)
        assert "not a tty" not in screen.text and "/dev/console" in screen.text, screen.text
        assert "\nnot-interrupted" not in screen.text  # (the typed line holds it too)
        fcntl.ioctl(run.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        screen.type("stty size\r")
        screen.wait("33 101")
        screen.type("exit 3\r")
        assert run.client.wait(timeout=30) == 3, screen.read()
        # raw mode is over: the terminal is as the client found it
        assert termios.tcgetattr(run.slave) == run.before


def test_ctrl_c_reaches_a_repl_and_the_session_goes_on(app: str, remote: dict[str, str]) -> None:
    """A REPL is no job-control shell: the terminal's foreground group was the sandbox's own, so
    Ctrl-C killed bubblewrap and the session ended (130); then the dyno's `sh -c` still ended
    with it, whatever the REPL's exit status. As on `heroku run python`: KeyboardInterrupt."""
    with session(remote, "-a", app, "--", "python", "-q") as run:
        screen = run.screen
        screen.wait(">>> ")
        screen.type("import time; time.sleep(60)\r")
        screen.type("\x03")
        screen.wait("KeyboardInterrupt")
        screen.type("exit(3)\r")
        assert run.client.wait(timeout=30) == 3, screen.read()


def test_piped_stdin_reaches_the_dyno_and_stderr_stays_apart(
    app: str, remote: dict[str, str]
) -> None:
    result = subprocess.run(
        localhost_cli.argv("run", "-a", app, "--", "sh", "-c", "wc -l; echo oops >&2; exit 4"),
        input="a\nb\n",
        capture_output=True,
        text=True,
        env=remote,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (4, "2", "oops\n"), result


@pytest.mark.parametrize(
    ("on_a_terminal", "how"),
    [(False, signal.SIGKILL), (True, signal.SIGKILL), (False, signal.SIGINT)],
    ids=["pipes", "tty", "ctrl-c"],
)
def test_a_client_that_goes_away_takes_its_dyno_along(
    app: str, remote: dict[str, str], on_a_terminal: bool, how: signal.Signals
) -> None:
    """Pipes: the dyno's stdin ends and it is killed after HANGUP_GRACE; a terminal hangs up
    (SIGHUP), which ends `sleep` at once. SIGKILL: no goodbye, the connection just drops;
    Ctrl-C (no terminal, so a real SIGINT): the client closes it and says nothing."""
    marker = sleeper.marker()
    master, slave = os.openpty()
    client = subprocess.Popen(
        localhost_cli.argv("run", "-a", app, "--", f"sleep {marker}"),
        stdin=slave if on_a_terminal else subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=remote,
        # SIGINT as a terminal's user has it: a test run started in the background (`&` in a
        # script) ignores SIGINT, its children inherit that, and Python then never raises
        # KeyboardInterrupt (the ctrl-c case waited for good).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
    finally:
        client.send_signal(how)
        _, err = client.communicate(timeout=30)
        os.close(master)
        os.close(slave)
    if how == signal.SIGINT:
        assert (client.returncode, err) == (130, b""), err
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)


@pytest.mark.parametrize("where", ["remote", "local", "ssh"])
@pytest.mark.parametrize(
    ("word", "exited"),
    [("run", "Process exited with status 73"), ("ps:exec", "ps:exec exited with status 73")],
)
def test_a_command_on_pipes_gets_sighup_when_its_client_goes_away(
    env: tuple[Paas, SSHServer],
    app: str,
    remote: dict[str, str],
    word: str,
    exited: str,
    where: str,
) -> None:
    """A terminal's hangup sends SIGHUP; with pipes the command only saw its stdin end, and
    was killed HANGUP_GRACE later without a word (remote), or at once (local: the server's
    run socket), or never (`ssh minipaas@host run` without -t: the CLI behind sshd waited on,
    the dyno held sshd's pipes). Now its process group gets SIGHUP too: this command answers
    it with status 73, which the dyno's exit line in the app's log shows (`& wait`: a shell
    whose foreground job dies of SIGHUP says "Hangup" on its stderr, whose reader is gone, and
    then dies of SIGPIPE instead)."""
    paas, sshd = env
    marker = sleeper.marker()

    def said() -> int:
        return paas.cli("logs", "-a", app, "-n", "2000").stdout.count(exited)

    before = said()
    script = f"trap 'exit 73' HUP; sleep {marker} & wait"
    argv = (
        [*sshd.ssh_argv(), word, "-a", app, "--", shlex.quote(script)]
        if where == "ssh"  # no terminal: the session's stdio are sshd's pipes
        else localhost_cli.argv(word, "-a", app, "--", script)
    )
    client = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=remote if where == "remote" else paas.env,
    )  # fmt: skip
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
    finally:
        client.kill()  # no goodbye: the connection drops
        client.wait(timeout=30)
    wait_for(lambda: said() == before + 1, timeout=30, interval=0.2)
    assert not sleeper.sleeping(marker)


@contextlib.contextmanager
def attach(paas: Paas, app: str, token: str | None) -> Iterator[ClientConnection]:
    """The WebSocket, through Caddy, checked against its CA and the name minipaas.localhost."""
    context = ssl.create_default_context(cafile=str(paas.ca))
    sock = socket.create_connection(("127.0.0.1", paas.https_port), timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with connect(
        f"wss://minipaas.localhost:{paas.https_port}/api/apps/{app}/run/attach",
        sock=sock,
        ssl=context,
        server_hostname="minipaas.localhost",
        additional_headers=headers,
        open_timeout=10,
    ) as conn:
        yield conn


BAD_STARTS: list[tuple[str | bytes, str]] = [
    ("not json", "'not json' is not JSON"),
    ("[1, 2]", "is not a JSON object"),
    ('{"type": "resize", "cols": 80, "rows": 24}', 'must be of type "start", not "resize"'),
    ('{"type": "start"}', "No command given"),
    ('{"type": "start", "command": "   "}', "No command given"),
    ('{"type": "start", "command": "a\\u0000b"}', "NUL character"),
    ('{"type": "start", "command": "sh", "tty": "yes"}', "'tty' must be true or false, not \"y"),
    ('{"type": "start", "command": "sh", "bare": "no"}', "'bare' must be true or false"),
    ('{"type": "start", "command": "sh", "tty": true, "cols": 0, "rows": 24}', "'cols'"),
    ('{"type": "start", "command": "sh", "tty": true, "cols": 80}', "'rows'"),
    (b"\x00ls\n", "must be a JSON text frame"),
]


@pytest.mark.parametrize(("frame", "sentence"), BAD_STARTS)
def test_a_bad_start_frame_is_answered_with_one_sentence(
    env: tuple[Paas, SSHServer],
    app: str,
    remote: dict[str, str],
    frame: str | bytes,
    sentence: str,
) -> None:
    paas, _ = env
    with attach(paas, app, remote["MINIPAAS_TOKEN"]) as conn:
        conn.send(frame)
        answer = json.loads(conn.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:  # then the close, 4000 + HTTP's 400
            conn.recv(timeout=10)
    assert answer["type"] == "error" and sentence in answer["error"], answer
    assert answer["error"].count(". ") == 0 and answer["error"].endswith("."), answer
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


def test_no_app_no_run(env: tuple[Paas, SSHServer], remote: dict[str, str]) -> None:
    paas, _ = env
    with attach(paas, "nosuchapp", remote["MINIPAAS_TOKEN"]) as conn:
        conn.send(json.dumps({"type": "start", "command": "ls"}))
        answer = json.loads(conn.recv(timeout=10))
    assert answer["type"] == "error" and "nosuchapp" in answer["error"], answer


@pytest.mark.parametrize(
    ("token", "sentence"), [(None, "Missing API token"), ("nope", "Invalid API token")]
)
def test_without_a_valid_token_the_upgrade_is_refused(
    env: tuple[Paas, SSHServer], app: str, token: str | None, sentence: str
) -> None:
    paas, _ = env
    with pytest.raises(InvalidStatus) as refused, attach(paas, app, token):
        pass
    assert refused.value.response.status_code == 401
    assert sentence in json.loads(refused.value.response.body or b"{}")["error"]


def test_the_cli_says_the_same_without_a_valid_token(app: str, remote: dict[str, str]) -> None:
    result = subprocess.run(
        localhost_cli.argv("run", "-a", app, "--", "true"),
        input="",
        capture_output=True,
        text=True,
        env={**remote, "MINIPAAS_TOKEN": "nope"},
        timeout=60,
    )
    assert result.returncode == 1 and "Invalid API token" in result.stderr, result
    assert "nope" not in result.stderr


def test_a_session_outlives_a_change_of_routes(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str]
) -> None:
    """Caddy closes the WebSockets it proxies when its config is replaced, and minipaas
    replaces it on every change of routes (a domain, a deploy, a scale): any app's change
    would cut every remote shell."""
    paas, _ = env
    try:
        with session(remote, "-a", app, "--", "bash") as run:
            run.screen.wait("$ ")
            paas.cli("domains:add", "outlive.example.test", "-a", app)
            paas.wait_body("outlive.example.test", "hello from python-stdlib")  # Caddy has it
            run.screen.type("echo $((6*7))\r")
            run.screen.wait("42")
            run.screen.type("exit\r")
            assert run.client.wait(timeout=30) == 0, run.screen.read()
    finally:
        paas.cli("domains:remove", "outlive.example.test", "-a", app)


def test_the_protocol_frame_by_frame(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str]
) -> None:
    """Output comes as it is written (not at the end), on its channel; stdin and its end reach
    the dyno; the exit frame ends the run. A bad frame mid-run is one sentence, and the run is
    hung up."""
    paas, _ = env
    script = "echo first; read x; echo got:$x; echo warn >&2; cat >/dev/null; exit 7"
    with attach(paas, app, remote["MINIPAAS_TOKEN"]) as conn:
        conn.send(json.dumps({"type": "start", "command": script, "tty": False}))
        assert conn.recv(timeout=30) == b"\x01first\n"  # while the dyno waits for input
        conn.send(b"\x00hello\n")
        seen = {conn.recv(timeout=30), conn.recv(timeout=30)}
        assert seen == {b"\x01got:hello\n", b"\x02warn\n"}
        conn.send(json.dumps({"type": "resize", "cols": 100, "rows": 30}))  # no tty: ignored
        conn.send(json.dumps({"type": "eof"}))
        assert json.loads(conn.recv(timeout=30)) == {"type": "exit", "code": 7}

    marker = sleeper.marker()
    with attach(paas, app, remote["MINIPAAS_TOKEN"]) as conn:
        conn.send(json.dumps({"type": "start", "command": f"sleep {marker}"}))
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
        conn.send(json.dumps({"type": "resize", "cols": -1, "rows": 30}))
        answer = json.loads(conn.recv(timeout=10))
    assert answer["type"] == "error" and "'cols'" in answer["error"], answer
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)
    assert remote["MINIPAAS_TOKEN"] not in paas.log.read_text()  # nor anywhere in the log


def test_a_server_without_the_route_says_to_upgrade(
    env: tuple[Paas, SSHServer], remote: dict[str, str]
) -> None:
    """A server from before the attached run refuses the upgrade (403, or 404 where uvicorn
    has no WebSocket support): one sentence saying so, not "refused"; here a path prefix under
    which no route is makes the server look that old."""
    paas, _ = env
    old = {**remote, "MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}/before"}
    result = subprocess.run(
        localhost_cli.argv("run", "-a", APP, "--", "cat"),
        input="x\n",
        capture_output=True,
        text=True,
        env=old,
        timeout=60,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result
    assert "has no attached `run` (HTTP 403); upgrade minipaas there" in result.stderr, result


@pytest.mark.parametrize("stop", ["terminate", "kill9"])
def test_a_server_that_goes_away_ends_the_session_and_restores_the_terminal(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str], stop: str
) -> None:
    """A restart (SIGTERM) or a crash (kill -9) of the server: the client says so in one
    sentence, exits 1 and leaves the terminal as it found it (not in raw mode)."""
    paas, _ = env
    try:
        with session(remote, "-a", app, "--", "sh") as run:
            run.screen.wait("$ ")
            assert termios.tcgetattr(run.slave) != run.before  # raw mode
            assert paas.proc is not None
            if stop == "terminate":
                paas.proc.terminate()
                paas.proc.wait(timeout=60)
            else:
                paas.kill9()
            assert run.client.wait(timeout=60) == 1, run.screen.read()
            assert termios.tcgetattr(run.slave) == run.before
            said = {
                "terminate": "The minipaas server stopped during this run.",
                "kill9": f"The connection to {remote['MINIPAAS_URL']} broke off before the "
                "command",
            }
            assert said[stop] in run.screen.read(), run.screen.text
    finally:
        if paas.proc is None or paas.proc.poll() is not None:
            paas.restart()
