"""`minipaas ps:exec`: a command (or a shell) inside a RUNNING dyno (supervisor.exec_attached,
sandbox.exec_argv): a real server, real bwrap dynos, the client on pipes or a real terminal,
locally, over `ssh -t` and over MINIPAAS_URL (through Caddy's HTTPS)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.paas import SAMPLES, Paas, deployed, git_repo, ssh_push
from tests.support import localhost_cli, sleeper
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer
from tests.support.terminal import terminal

APP = "pexec"
#: The web dyno writes this into its /tmp as it starts (its own tmpfs: not the host's /tmp).
PROCFILE = "web: echo marker-of-$DYNO > /tmp/marker && exec python app.py\n"


@pytest.fixture(scope="module")
def app(env: tuple[Paas, SSHServer], tmp_path_factory: pytest.TempPathFactory) -> str:
    paas, sshd = env
    paas.cli("apps:create", APP)
    src = tmp_path_factory.mktemp("src") / "app"
    shutil.copytree(SAMPLES / "python-stdlib", src)
    (src / "Procfile").write_text(PROCFILE)
    deployed(ssh_push(sshd, git_repo(src, tmp_path_factory.mktemp("repo") / APP), APP))
    web_1(paas)
    return APP


def web_1(paas: Paas) -> dict[str, Any]:
    """The app's web.1 once it is up (`ps --json`)."""

    def up() -> dict[str, Any] | None:
        dynos = json.loads(paas.cli("ps", "-a", APP, "--json").stdout)["dynos"]
        found = [d for d in dynos if d["name"] == "web.1" and d["state"] == "up"]
        return found[0] if found else None

    found: dict[str, Any] = wait_for(up, timeout=60, interval=0.2)
    return found


@pytest.fixture(scope="module")
def remote(env: tuple[Paas, SSHServer]) -> dict[str, str]:
    """A laptop's environment: the server's HTTPS URL (through Caddy), its token and CA."""
    return env[0].remote_env()


def host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_the_command_sees_the_dyno_as_the_app_does(env: tuple[Paas, SSHServer], app: str) -> None:
    paas, _ = env
    dyno = web_1(paas)
    script = (
        "cat /tmp/marker; echo uid=$(id -u) gid=$(id -g); pwd; grep -E '^(Cap|Seccomp:)' "
        "/proc/self/status; echo port=$PORT dyno=$DYNO; cat /proc/1/cmdline | tr '\\0' ' '; "
        "echo; ls /proc | grep -c '^[0-9]'; ps -eo args | grep -c '^python app.py'"
    )
    result = paas.cli("ps:exec", "-a", app, "-d", "web.1", "--", "sh", "-c", script)
    lines = result.stdout.splitlines()
    uid = host_uid(dyno["pid"])  # bwrap's outer process runs as the app's uid
    assert uid != 0
    assert lines[0] == "marker-of-web.1", result.stdout  # the dyno's own /tmp
    assert lines[1] == f"uid={uid} gid={uid}", result.stdout
    assert lines[2] == "/app"
    caps = [line.split() for line in lines if line.startswith("Cap")]
    assert len(caps) == 5 and all(int(value, 16) == 0 for _, value in caps), caps
    assert "Seccomp:\t2" in result.stdout  # the dyno's filter (no TIOCSTI)
    assert f"port={dyno['port']} dyno=web.1" in lines, result.stdout
    # Its PID namespace: pid 1 is the dyno's bubblewrap init, a handful of processes in all
    # (the host has hundreds), and the dyno's own command among them.
    at = lines.index(f"port={dyno['port']} dyno=web.1")
    assert lines[at + 1].split()[0].endswith("bwrap"), result.stdout
    assert int(lines[at + 2]) < 12 and int(lines[at + 3]) == 1, result.stdout
    logs = paas.cli("logs", "-a", app, "--source", "minipaas", "-n", "20").stdout
    assert "Started ps:exec on web.1 by admin" in logs, logs


def test_a_file_written_by_exec_is_the_dynos(env: tuple[Paas, SSHServer], app: str) -> None:
    """The same writable layer: what ps:exec writes under /app the dyno's next command sees,
    and the slug stays untouched (a second exec reads it back from the dyno's layer)."""
    paas, _ = env
    paas.cli("ps:exec", "-a", app, "--", "sh", "-c", "echo from-exec > /app/written")
    assert paas.cli("ps:exec", "-a", app, "--", "cat", "/app/written").stdout == "from-exec\n"


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_shell_on_a_terminal(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str], where: str
) -> None:
    paas, _ = env
    if where == "local":
        argv, environ = [str(paas.exe), "ps:exec", "-a", app], paas.env
    else:
        argv, environ = localhost_cli.argv("ps:exec", "-a", app), remote
    with terminal(argv, environ) as term:
        term.type(b"echo $((6*7)); cat /tmp/marker\r")
        term.expect(b"42")
        term.expect(b"marker-of-web.1")
        term.type(b"exit 3\r")
        assert term.wait() == 3, bytes(term.seen)


def test_over_ssh_with_a_tty(env: tuple[Paas, SSHServer], app: str) -> None:
    paas, sshd = env
    script = "test -t 0 && echo on-a-tty; read line; echo got:$line; cat /tmp/marker; exit 5"
    result = subprocess.run(
        [*sshd.ssh_argv(tty=True), "ps:exec", "-a", app, "--", "sh", "-c", f"'{script}'"],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "on-a-tty" in result.stdout and "got:hello" in result.stdout, result.stdout
    assert "marker-of-web.1" in result.stdout, result.stdout
    logs = paas.cli("logs", "-a", app, "--source", "minipaas", "-n", "50").stdout
    assert "Started ps:exec on web.1 by tester (ssh)" in logs, logs


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_client_that_goes_away_leaves_nothing_behind(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str], where: str
) -> None:
    """Killed client: every process of the session goes, also a background job of its shell
    (which `set -m` or `&` puts outside the session leader's process group)."""
    paas, _ = env
    marker = sleeper.marker()
    command = ["ps:exec", "-a", app, "--", "sh", "-c", f"sleep {marker} & sleep {marker}; wait"]
    argv = [str(paas.exe), *command] if where == "local" else localhost_cli.argv(*command)
    client = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=paas.env if where == "local" else remote,
    )
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)
    web_1(paas)  # the dyno itself lives on


@pytest.mark.parametrize("where", ["local", "remote"])
def test_a_process_that_left_the_session_with_setsid_ends_with_it(
    env: tuple[Paas, SSHServer], app: str, remote: dict[str, str], where: str
) -> None:
    """A process started in a ps:exec session that called setsid(2) is in no session or group
    of the session's; it lived until the dyno ended. The session's mark in its environment
    (MINIPAAS_EXEC_SESSION) finds it when the session ends. The command waits until the
    escaped process runs (it wrote its pid), then ends."""
    paas, _ = env
    marker = sleeper.marker()
    script = (
        f"setsid sh -c 'echo $$ > /tmp/escaped-{marker}; exec sleep {marker}' "
        f"</dev/null >/dev/null 2>&1 & until [ -s /tmp/escaped-{marker} ]; do :; done; "
        'echo "$MINIPAAS_EXEC_SESSION" | wc -c'
    )
    command = ["ps:exec", "-a", app, "--", "sh", "-c", script]
    argv = [str(paas.exe), *command] if where == "local" else localhost_cli.argv(*command)
    result = subprocess.run(
        argv, input="", capture_output=True, text=True, timeout=60,
        env=paas.env if where == "local" else remote,
    )  # fmt: skip
    assert (result.returncode, result.stdout.strip()) == (0, "33"), result  # 32 hex digits
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)
    web_1(paas)  # the dyno itself lives on


def test_a_terminal_session_that_goes_away_takes_its_jobs_along(
    env: tuple[Paas, SSHServer], app: str
) -> None:
    """On a terminal the shell has job control: each job is a process group of its own, which
    killing the session leader's group would miss (a background job lived on in the dyno)."""
    paas, _ = env
    marker = sleeper.marker()
    with terminal([str(paas.exe), "ps:exec", "-a", app, "--", "sh"], paas.env) as term:
        term.type(f"sleep {marker} & echo started\r".encode())
        term.expect(b"started")
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
        term.proc.kill()
        term.proc.wait(timeout=30)
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)


def test_it_ends_with_the_dyno(env: tuple[Paas, SSHServer], app: str) -> None:
    paas, _ = env
    marker = sleeper.marker()
    client = subprocess.Popen(
        [str(paas.exe), "ps:exec", "-a", app, "--", f"sleep {marker}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=paas.env,
    )
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
        paas.cli("ps:restart", "web.1", "-a", app)
        assert client.wait(timeout=60) != 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert not sleeper.sleeping(marker)
    web_1(paas)


def test_bad_targets(env: tuple[Paas, SSHServer], app: str, remote: dict[str, str]) -> None:
    paas, _ = env
    paas.cli("apps:create", "pexec-empty")
    marker = sleeper.marker()
    one_off = paas.run_in_background(app, f"sleep {marker}", stdin=subprocess.PIPE)
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
        rows = [
            ((app, "-d", "web.5"), "has no dyno web.5; its dynos are: web.1"),
            ((app, "-d", "worker"), "has no dyno worker.1"),
            ((app, "-d", "web.x"), "Invalid process type or dyno 'web.x'"),
            (("pexec-empty",), "'pexec-empty' has no dynos running"),
            (("pexec-none",), "pexec-none"),
            ((app, "-d", "run.1"), "run.1 of 'pexec' is a one-off dyno"),
        ]
        for args, said in rows:
            a, *rest = args
            for argv, environ in (
                ([str(paas.exe), "ps:exec", "-a", a, *rest, "--", "true"], paas.env),
                (localhost_cli.argv("ps:exec", "-a", a, *rest, "--", "true"), remote),
            ):
                result = subprocess.run(
                    argv, capture_output=True, text=True, env=environ, timeout=60,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
                assert result.returncode == 1, (argv, result)
                assert said in result.stderr, (argv, result.stderr)
                assert len(result.stderr.strip().splitlines()) == 1, result.stderr
                assert "Traceback" not in result.stderr
    finally:
        one_off.kill()
        one_off.wait()


def test_a_dyno_starting_or_crashed_is_refused_in_one_sentence(
    env: tuple[Paas, SSHServer], remote: dict[str, str], tmp_path: Path
) -> None:
    """ps:exec enters an up dyno only: a web dyno still starting (here kept so by its health
    check's min_uptime) and a worker crashed (it exits at every start, the crashy sample's
    CRASH_AT_START) are refused, locally and over MINIPAAS_URL, each in one sentence, exit 1."""
    paas, sshd = env
    app = "pexec-states"
    paas.cli("apps:create", app)
    src = tmp_path / "app"
    shutil.copytree(SAMPLES / "crashy", src)
    (src / "Procfile").write_text("web: python app.py\nworker: CRASH_AT_START=1 python app.py\n")
    deployed(ssh_push(sshd, git_repo(src, tmp_path / app), app))

    def state(name: str) -> str | None:
        dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
        found = [d["state"] for d in dynos if d["name"] == name]
        return found[-1] if found else None

    def refused(dyno: str, said: str) -> None:
        for argv, environ in (
            ([str(paas.exe), "ps:exec", "-a", app, "-d", dyno, "--", "true"], paas.env),
            (localhost_cli.argv("ps:exec", "-a", app, "-d", dyno, "--", "true"), remote),
        ):
            result = subprocess.run(
                argv, capture_output=True, text=True, env=environ, timeout=60,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            assert (result.returncode, result.stdout) == (1, ""), (argv, result)
            assert result.stderr == f" !    {said}\n", (argv, result.stderr)

    paas.cli("checks:set", "-a", app, "min_uptime=30", "timeout=120")
    scaling = subprocess.Popen(
        [str(paas.exe), "ps:scale", "web=2", "-a", app], env=paas.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: state("web.2") == "starting", timeout=30, interval=0.2)
        refused("web.2", f"The dyno web.2 of {app!r} is not up (it is starting).")
        assert state("web.2") == "starting"  # still: the refusal was for that state
    finally:
        scaling.wait(timeout=150)
    paas.cli("ps:scale", "web=1", "worker=1", "-a", app)
    wait_for(lambda: state("worker.1") == "crashed", timeout=120, interval=0.3)
    refused("worker.1", f"The dyno worker.1 of {app!r} is not up (it is crashed).")
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_during_a_rolling_restart_it_enters_the_dyno_that_is_up(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A rolling restart (or a deploy) starts the new web.1 beside the old one, which serves
    until the new one is up. ps:exec -d web.1 then took the newest of the two, still starting,
    and refused; it enters the one that is up, as `ps` shows it serving."""
    paas, sshd = env
    app = "pexec-rolling"
    paas.cli("apps:create", app)
    src = tmp_path / "app"
    shutil.copytree(SAMPLES / "crashy", src)
    deployed(ssh_push(sshd, git_repo(src, tmp_path / app), app))
    paas.cli("checks:set", "-a", app, "min_uptime=30", "timeout=120")

    def web_1s() -> list[dict[str, Any]]:
        dynos = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["dynos"]
        return [d for d in dynos if d["name"] == "web.1"]

    old = next(d for d in web_1s() if d["state"] == "up")["pid"]
    restarting = subprocess.Popen(
        [str(paas.exe), "ps:restart", "web", "-a", app], env=paas.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: "starting" in [d["state"] for d in web_1s()], timeout=30, interval=0.2)
        result = paas.cli("ps:exec", "-a", app, "-d", "web.1", "--", "sh", "-c", "echo in $DYNO",
                          check=False)
        assert (result.returncode, result.stdout) == (0, "in web.1\n"), result
        assert [d["pid"] for d in web_1s() if d["state"] == "up"] == [old]  # the old one
    finally:
        restarting.wait(timeout=150)
    paas.cli("apps:destroy", "-a", app, "--confirm", app)


def test_the_apps_path_does_not_choose_the_tools_run_as_root(
    env: tuple[Paas, SSHServer], app: str, tmp_path: Path
) -> None:
    """A dyno's start and ps:exec's host side run as root with the dyno's environment, whose
    PATH the app's config may set: each tool of the chain (setsid, choom, prlimit, unshare,
    nsenter, setpriv, bwrap, mount...) must be the system's, not one of the same name in a
    directory of the app's choosing."""
    paas, _ = env
    tools = tmp_path / "tools"
    tools.mkdir()
    tools.chmod(0o755)
    for name in ("setsid", "choom", "prlimit", "unshare", "nsenter", "setpriv", "bwrap", "mount"):
        fake = tools / name
        real = shutil.which(name)
        fake.write_text(f'#!/bin/sh\ntouch "{tools}/ran-{name}"\nexec {real} "$@"\n')
        fake.chmod(0o755)
    path = f"{tools}:/usr/local/bin:/usr/bin:/bin"
    paas.cli("config:set", f"PATH={path}", "-a", app)
    try:
        # The dyno restarted with that PATH: its own start (sandbox_argv, sandbox_init.sh)
        # ran choom, prlimit and setpriv from there too, as root.
        wait_for(lambda: web_1(paas)["pid"] and True, timeout=60, interval=0.2)
        assert sorted(p.name for p in tools.glob("ran-*")) == []
        result = paas.cli("ps:exec", "-a", app, "--", "sh", "-c", "echo $PATH")
        # the dyno's environment as it is (.profile.d put the app's venv first)
        assert result.stdout.endswith(f":{path}\n"), result
        with terminal([str(paas.exe), "ps:exec", "-a", app, "--", "true"], paas.env) as term:
            assert term.wait() == 0
        assert sorted(p.name for p in tools.glob("ran-*")) == []
    finally:
        paas.cli("config:unset", "PATH", "-a", app)
        web_1(paas)


def test_a_dyno_adopted_after_a_restart_of_the_server(
    env: tuple[Paas, SSHServer], app: str
) -> None:
    """Dynos outlive `minipaas server`: the new server knows them by their recorded pid only,
    and ps:exec finds the namespaces from there (the dyno's /tmp still holds what it wrote)."""
    paas, _ = env
    before = web_1(paas)["pid"]
    assert paas.proc is not None
    paas.proc.terminate()  # what an upgrade does; the dynos keep running
    paas.proc.wait(timeout=60)
    paas.restart()
    assert web_1(paas)["pid"] == before  # adopted, not restarted
    result = paas.cli("ps:exec", "-a", app, "--", "cat", "/tmp/marker")
    assert result.stdout == "marker-of-web.1\n", result
