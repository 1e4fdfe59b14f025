"""Operating an app through the CLI the way a Heroku user would, at the edges QA found wrong:
input piped into `run`, an empty or odd release number, counts that `int()` reads too kindly,
and answers that are not JSON. Against a real server, sshd, bubblewrap and Caddy."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from minipaas import names
from minipaas.client import ApiError, Client
from minipaas.errors import UserError
from tests.paas import (
    SAMPLES,
    Paas,
    commit,
    deployed,
    git_env,
    git_repo,
    ssh_push,
)
from tests.support import sleeper
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

APP = "qaops"
ARABIC_ONE = "v\u0661"  # int() reads it as 1
ARABIC_THREE = "\u0663"
#: How long a change waits for a busy app in the test of its refusal (a test hook; 20 s in
#: production, which that test waited in full).
TEST_BUSY_WAIT = 3


@pytest.fixture(scope="module")
def app(env: tuple[Paas, SSHServer], tmp_path_factory: pytest.TempPathFactory) -> str:
    """`qaops`, deployed from python-stdlib (v1), then given a config var (v2)."""
    paas, sshd = env
    paas.cli("apps:create", APP)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path_factory.mktemp("qa") / APP)
    deployed(ssh_push(sshd, repo, APP))
    paas.cli("config:set", "GREETING=hi", "-a", APP)
    return APP


def releases(paas: Paas, app: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(paas.cli("releases", "-a", app, "--json").stdout)
    return result


def test_run_reads_piped_stdin(env: tuple[Paas, SSHServer], app: str) -> None:
    """`seq 3 | minipaas run -- python -c …` fed the dyno nothing (it got /dev/null)."""
    paas, sshd = env
    program = "import sys; print(sum(map(int, sys.stdin)))"
    result = paas.cli("run", "-a", app, "--", "python", "-c", program, input="1\n2\n3\n")
    assert result.stdout.strip() == "6", result
    cat = paas.cli("run", "-a", app, "--", "sh", "-c", "cat; exit 5", input="piped\n", check=False)
    assert (cat.returncode, cat.stdout) == (5, "piped\n"), cat
    # over SSH without a terminal: stdin is the SSH channel
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "run", "-a", app, "--", "sh", "-c", "'tr a-z A-Z'"],
        input="over ssh\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (over_ssh.returncode, over_ssh.stdout) == (0, "OVER SSH\n"), over_ssh
    # stdin on /dev/null still runs through the API: output and status as before
    null = subprocess.run(
        [str(paas.exe), "run", "-a", app, "--", "sh", "-c", "echo $GREETING $DYNO; exit 3"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=paas.env,
        timeout=60,
    )
    assert null.returncode == 3 and null.stdout.startswith("hi run."), null


@pytest.mark.parametrize("version", ["", "v", "vv2", ARABIC_ONE, "v1.0", " v1", "v99999999999"])
def test_rollback_to_a_bad_release_changes_nothing(
    env: tuple[Paas, SSHServer], app: str, version: str
) -> None:
    """`rollback ""` (an empty $VERSION in a script) rolled back to the previous release, and
    `rollback v` + ARABIC-INDIC DIGIT ONE to v1: a typo must never release anything."""
    paas, _ = env
    before = releases(paas, app)
    result = paas.cli("rollback", version, "-a", app, check=False)
    assert result.returncode == (1 if version.startswith("v9") else 2), result
    assert result.stderr.count("\n") == 1 and "Invalid release" in result.stderr, result.stderr
    assert releases(paas, app) == before


@pytest.mark.parametrize("version", ["", "../x", "v1/2", "%", ARABIC_ONE, "1e3"])
def test_releases_info_of_garbage_says_so(
    env: tuple[Paas, SSHServer], app: str, version: str
) -> None:
    """`releases:info ""` crashed with a JSONDecodeError traceback (the server redirected the
    empty segment); `../x` answered "No such API route"."""
    paas, _ = env
    result = paas.cli("releases:info", version, "-a", app, check=False)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "Invalid release" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Release v1 of" in paas.cli("releases:info", "1", "-a", app).stdout


@pytest.mark.parametrize(
    "count",
    [ARABIC_THREE, "+1", " 1", "1_0", "0x2", "9" * 5000],
    ids=["arabic-3", "plus-1", "space-1", "1_0", "0x2", "5000-digits"],
)
def test_scale_refuses_counts_that_are_not_plain_digits(
    env: tuple[Paas, SSHServer], app: str, count: str
) -> None:
    """int() read `web=` and an Arabic-Indic 3 as 3, and `web=+1` (Heroku's "one more" is
    `web+1`) as 1."""
    paas, _ = env
    before = paas.cli("ps", "-a", app, "--json").stdout
    result = paas.cli("ps:scale", f"web={count}", "-a", app, check=False)
    assert result.returncode == 2 and "Invalid count" in result.stderr, result
    assert len(result.stderr) < 400, result.stderr
    assert (
        json.loads(paas.cli("ps", "-a", app, "--json").stdout)["formation"]
        == json.loads(before)["formation"]
    )


def test_a_redirect_from_the_local_socket_is_an_api_error(env: tuple[Paas, SSHServer]) -> None:
    """A 307 (the router's trailing-slash redirect) has an empty body: json.loads crashed."""
    paas, _ = env
    with (
        Client(socket=paas.data_dir / "minipaas.sock") as client,
        pytest.raises(ApiError, match="non-JSON answer \\(HTTP 307\\)"),
    ):
        client.get(f"/api/apps/{APP}/releases/")


class _Html(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not minipaas</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_minipaas() -> Iterator[str]:
    """A web server on 127.0.0.1 that answers every GET with a 200 HTML page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_minipaas_url_at_something_else_is_one_sentence(
    env: tuple[Paas, SSHServer], not_minipaas: str, tmp_path: Path
) -> None:
    """MINIPAAS_URL pointing at a web page printed a JSONDecodeError traceback."""
    paas, _ = env
    result = subprocess.run(
        [str(paas.exe), "apps"],
        capture_output=True,
        text=True,
        env={**paas.env, "MINIPAAS_URL": not_minipaas, "MINIPAAS_TOKEN": "t"},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "non-JSON answer (HTTP 200) to /api/apps; is it a minipaas server?" in result.stderr
    # the attached run (stdin to pass: a WebSocket) too
    run = subprocess.run(
        [str(paas.exe), "run", "-a", "x", "--", "cat"],
        input="data\n",
        capture_output=True,
        text=True,
        env={**paas.env, "MINIPAAS_URL": not_minipaas, "MINIPAAS_TOKEN": "t"},
        timeout=60,
    )
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert "is it a minipaas server?" in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize(
    ("text", "number"), [("v3", 3), ("3", 3), ("v0", 0), ("v2147483647", 2**31 - 1)]
)
def test_release_version_reads_vn(text: str, number: int) -> None:
    assert names.release_version(text) == number


@pytest.mark.parametrize(
    "text", ["", "v", "vv3", ARABIC_ONE, "v-1", "v3 ", "v2147483648", "x" * 500]
)
def test_release_version_refuses_the_rest(text: str) -> None:
    with pytest.raises(UserError, match=r"^Invalid release .*: use vN, e\.g\. v3\.$") as caught:
        names.release_version(text)
    assert len(str(caught.value)) < 160


def remote_cli(paas: Paas, url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**paas.env, "MINIPAAS_URL": url, "MINIPAAS_TOKEN": token}
    return subprocess.run(
        [str(paas.exe), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_remote_token_with_blanks_around_it_works(env: tuple[Paas, SSHServer], app: str) -> None:
    """`MINIPAAS_TOKEN="$(cat f) "` or a pasted line with its newline: "Illegal header value"."""
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    for padded in (f" {token}\n", f"{token}\r\n", f"\t{token}"):
        result = remote_cli(paas, f"http://127.0.0.1:{paas.api_port}", padded, "apps", "--json")
        assert result.returncode == 0, result
        assert app in [a["name"] for a in json.loads(result.stdout)]


@pytest.mark.parametrize("token", ["t\u00f8ken-s3cret", "two words-s3cret", "a\x01b-s3cret"])
def test_remote_token_no_header_can_carry_is_one_sentence(
    env: tuple[Paas, SSHServer], token: str
) -> None:
    """A non-ASCII MINIPAAS_TOKEN crashed with a UnicodeEncodeError traceback (httpx)."""
    paas, _ = env
    result = remote_cli(paas, f"http://127.0.0.1:{paas.api_port}", token, "apps")
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "MINIPAAS_TOKEN is not a minipaas token" in result.stderr
    assert "s3cret" not in result.stderr  # a token is never echoed


def test_remote_url_without_a_scheme_is_one_sentence(env: tuple[Paas, SSHServer]) -> None:
    paas, _ = env
    result = remote_cli(paas, f"127.0.0.1:{paas.api_port}", "t", "apps")
    assert result.returncode == 1, result
    assert f"MINIPAAS_URL '127.0.0.1:{paas.api_port}' is not a URL" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_config_vars_too_large_for_a_process_environment_are_refused(
    env: tuple[Paas, SSHServer], app: str
) -> None:
    """A 140 kB config var was taken, then every start of the app failed ("exited with status
    127 … printed nothing"): execve() refuses an environment string past 128 KiB."""
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    limit = 128 * 1024
    with httpx.Client(
        base_url=f"http://127.0.0.1:{paas.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as api:
        config = f"/api/apps/{app}/config"
        before = api.get(config).json()
        too_long = api.patch(config, json={"BIG": "a" * (limit - len("BIG="))})
        assert too_long.status_code == 400, too_long.text
        assert too_long.json()["error"].startswith("The config var 'BIG' takes 128 KiB; one can")
        assert api.get(config).json() == before
        # the longest one a process can take is taken, and the app still starts with it
        at_limit = api.patch(config, json={"BIG": "a" * (limit - len("BIG=") - 1)})
        assert at_limit.status_code == 200, at_limit.text[:300]
        current = releases(paas, app)[0]
        assert current["current"] and current["status"] == "succeeded", current
        assert "BIG" in paas.cli("run", "-a", app, "--", "sh", "-c", "env | cut -c1-3").stdout
        # all of them together: at most 1 MiB
        first = {f"K{i}": "b" * 120_000 for i in range(5)}
        assert api.patch(config, json=first).status_code == 200
        more = api.patch(config, json={f"M{i}": "c" * 120_000 for i in range(3)})
        assert more.status_code == 400, more.text[:300]
        assert "would take 1065 KiB; they can take at most 1024 KiB" in more.json()["error"]
        unset = api.patch(config, json=dict.fromkeys(["BIG", *first]))
        assert unset.status_code == 200 and unset.json() == before


def test_ps_and_scale_say_a_stopped_type_is_stopped(env: tuple[Paas, SSHServer], app: str) -> None:
    """After `ps:stop web`, `ps` said "No dynos on APP." and `ps:scale web=2` said "Scaled APP
    to web=2." while nothing started: neither said that web was stopped."""
    paas, _ = env
    paas.cli("ps:stop", "web", "-a", app)
    try:
        ps = paas.cli("ps", "-a", app).stdout
        assert f"=== web (1): stopped; `minipaas ps:start web -a {app}`" in ps, ps
        assert "No dynos" not in ps
        scaled = paas.cli("ps:scale", "web=2", "-a", app).stdout
        assert scaled.splitlines() == [
            f"Scaled {app} to web=2.",
            f"web is stopped: its dynos start with `minipaas ps:start web -a {app}`.",
        ], scaled
        data = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
        assert (data["stopped"], data["formation"], data["dynos"]) == (["web"], {"web": 2}, [])
    finally:
        paas.cli("ps:start", "web", "-a", app)
    data = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
    assert data["stopped"] == [] and len(data["dynos"]) == 2, data
    assert "stopped" not in paas.cli("ps:scale", "web=1", "-a", app).stdout


def test_keys_add_of_binary_or_endless_input_is_one_sentence(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`keys:add NAME --file key.der` (or binary stdin) crashed with a UnicodeDecodeError
    traceback; `--file /dev/zero` (or `ssh … keys:add NAME < /dev/zero`) read for ever."""
    paas, sshd = env
    binary = tmp_path / "id.der"
    binary.write_bytes(bytes(range(128, 256)))
    before = paas.cli("keys", "--json").stdout
    for args, stdin, message in (
        (["--file", str(binary)], None, f"The file {str(binary)!r} is not UTF-8 text"),
        ([], binary.read_bytes(), "Standard input is not UTF-8 text"),
        (["--file", "/dev/zero"], None, "The file '/dev/zero' holds more than 64 KiB"),
    ):
        result = subprocess.run(
            [str(paas.exe), "keys:add", "bad", *args],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            env=paas.env,
            timeout=30,
        )
        err = result.stderr.decode()
        assert result.returncode == 1 and message in err, (args, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "keys:add", "bad"],
        input=b"\0" * 200_000,
        capture_output=True,
        timeout=30,
    )
    assert over_ssh.returncode == 1, over_ssh
    assert "Standard input holds more than 64 KiB" in over_ssh.stderr.decode(), over_ssh
    assert paas.cli("keys", "--json").stdout == before


def test_keys_add_takes_a_key_saved_with_a_byte_order_mark(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, _ = env
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bom@qa", "-f", str(key)],
        check=True,
        timeout=30,
    )
    bom = tmp_path / "bom.pub"
    bom.write_bytes(b"\xef\xbb\xbf" + key.with_suffix(".pub").read_bytes())
    assert "Added SSH key bom" in paas.cli("keys:add", "bom", "--file", str(bom)).stdout
    keys = json.loads(paas.cli("keys", "--json").stdout)
    [added] = [k for k in keys if k["name"] == "bom"]
    assert added["public_key"].startswith("ssh-ed25519 "), added
    paas.cli("keys:remove", "bom")


def test_app_names_ending_in_a_dash_are_refused(env: tuple[Paas, SSHServer]) -> None:
    """`apps:create a-` was taken: its hostname `a-.DOMAIN` is no DNS name, and a public CA
    gives it no certificate."""
    paas, _ = env
    result = paas.cli("apps:create", "qa-", check=False)
    assert result.returncode == 1, result
    assert "Invalid app name 'qa-': end it with a letter or digit" in result.stderr
    assert "qa-" not in [a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)]


def test_a_new_app_answers_503_before_its_first_deploy(env: tuple[Paas, SSHServer]) -> None:
    """A freshly created app had no route until something else re-rendered Caddy's config: its
    URL failed the TLS handshake ("internal error") instead of answering 503."""
    paas, _ = env
    paas.cli("apps:create", "qafresh")
    seen: list[tuple[int, str]] = []

    def answers_503() -> bool:
        seen[:] = [paas.curl("qafresh.localhost")]
        return seen[0][0] == 503

    try:
        wait_for(answers_503, timeout=20, interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"qafresh.localhost: {seen}") from exc


def test_logs_dyno_of_a_process_type(env: tuple[Paas, SSHServer], app: str) -> None:
    """`logs --dyno web` printed nothing (Heroku prints every web dyno's lines)."""
    paas, _ = env
    out = paas.cli("logs", "--dyno", "web", "-n", "1000", "-a", app).stdout
    dynos = {line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines()}
    assert "web.1" in dynos and all(d.startswith("web.") for d in dynos), dynos


def test_output_cut_short_by_its_reader_is_not_an_error(
    env: tuple[Paas, SSHServer], app: str
) -> None:
    """`minipaas … | head -1` printed " !    Broken pipe" and exited 1 once the reader left."""
    paas, _ = env
    proc = subprocess.Popen(
        [str(paas.exe), "run", "-a", app, "--", "sh", "-c", "yes | head -c 3000000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=paas.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100) == b"y\n" * 50
    proc.stdout.close()  # as `head` does once it has its lines
    try:
        code = proc.wait(timeout=60)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert (code, err) == (141, ""), err


def test_remote_run_passes_piped_stdin_to_the_dyno(
    env: tuple[Paas, SSHServer], app: str, tmp_path: Path
) -> None:
    """Over MINIPAAS_URL the dyno read /dev/null (and the CLI said so): now the remote run's
    WebSocket carries stdin, here over plain HTTP on the API port (ws://)."""
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    remote = {**paas.env, "MINIPAAS_URL": f"http://127.0.0.1:{paas.api_port}"}
    result = subprocess.run(
        [str(paas.exe), "run", "-a", app, "--", "sh", "-c", "cat; echo done"],
        input="kept\n",
        capture_output=True,
        text=True,
        env={**remote, "MINIPAAS_TOKEN": token},
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "kept\ndone\n", ""), result
    # stdin /dev/null: no input to carry, the streamed run (POST …/run) as before
    quiet = subprocess.run(
        [str(paas.exe), "run", "-a", app, "--", "echo", "ok"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**remote, "MINIPAAS_TOKEN": token},
        timeout=60,
    )
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "ok\n", ""), quiet
    # and a local run with stdin to pass, with no server there, says so in the API's words
    gone = subprocess.run(
        [str(paas.exe), "run", "-a", app, "--", "cat"],
        input="x\n",
        capture_output=True,
        text=True,
        env={**paas.env, "MINIPAAS_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    assert gone.returncode == 1, gone
    assert "Cannot reach the minipaas server at" in gone.stderr, gone.stderr
    assert gone.stderr.count("\n") == 1, gone.stderr


WAIT_FOR_GO = """\
import os, socket, time

while True:  # the release phase holds the deploy until the test opens GO_PORT
    try:
        socket.create_connection(("127.0.0.1", int(os.environ["GO_PORT"])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
"""


def test_changes_during_a_deploy_are_refused_not_made_behind_the_clients_back(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`apps:destroy` or `config:set` during a long deploy waited for it: the CLI gave up after
    60 s ("failed: timed out", exit 1), and the server destroyed the app (or set the var) later
    anyway. Now a change waits up to BUSY_WAIT (20 s; TEST_BUSY_WAIT here, by a test hook set
    for this test only), then gets a 409 and nothing is changed."""
    paas, sshd = env
    with paas.restarted_with(MINIPAAS_TEST_BUSY_WAIT=str(TEST_BUSY_WAIT)):
        changes_during_a_deploy_are_refused(paas, sshd, tmp_path)


def changes_during_a_deploy_are_refused(paas: Paas, sshd: SSHServer, tmp_path: Path) -> None:
    busy = "qabusy"
    go = socket.socket()
    go.bind(("127.0.0.1", 0))
    paas.cli("apps:create", busy)
    paas.cli("config:set", f"GO_PORT={go.getsockname()[1]}", "-a", busy)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / busy)
    (repo / "wait.py").write_text(WAIT_FOR_GO)
    (repo / "Procfile").write_text("web: python app.py\nrelease: python wait.py\n")
    commit(repo, "a release phase that waits")
    pushing = subprocess.Popen(
        ["git", "-C", str(repo), "push", sshd.url(f"{busy}.git"), "main"],
        env={**git_env(), "GIT_SSH_COMMAND": sshd.git_ssh_command()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: "[release.1]: Starting process" in paas.cli("logs", "-a", busy).stdout,
            timeout=120,
            interval=0.3,
        )
        changes = [
            subprocess.Popen(
                [str(paas.exe), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=paas.env,
            )
            for args in (
                ["config:set", "LATE=1", "-a", busy],
                ["apps:destroy", "-a", busy, "--confirm", busy],
            )
        ]
        for change in changes:
            out, err = change.communicate(timeout=90)
            assert change.returncode == 1, (out, err)
            assert f"'{busy}' is busy with a deploy or another change" in err, err
            assert f"(for over {TEST_BUSY_WAIT} s)" in err, err  # not 20 s: the hook is used
            assert "nothing was changed" in err and err.count("\n") == 1, err
        go.listen(8)  # let the release phase finish
        out, _ = pushing.communicate(timeout=120)
        assert pushing.returncode == 0 and "Deployed v2" in out, out
    finally:
        go.close()
        if pushing.poll() is None:
            os.killpg(pushing.pid, signal.SIGKILL)
            pushing.wait()
    assert busy in [a["name"] for a in json.loads(paas.cli("apps", "--json").stdout)]
    assert "LATE" not in json.loads(paas.cli("config", "-a", busy, "--json").stdout)
    paas.cli("apps:destroy", "-a", busy, "--confirm", busy)




def test_a_run_whose_client_is_gone_is_killed(env: tuple[Paas, SSHServer], app: str) -> None:
    """Ctrl-C on `… | minipaas run -- CMD` (or a dropped SSH session) left the dyno running for
    up to a day, still writing to the terminal it was given."""
    paas, _ = env
    marker = sleeper.marker()
    client = paas.run_in_background(app, f"sleep {marker}; echo done", stdin=subprocess.PIPE)
    try:
        wait_for(lambda: sleeper.sleeping(marker), timeout=30, interval=0.1)
    finally:
        client.kill()
        client.wait()
        assert client.stdin is not None
        client.stdin.close()
    wait_for(lambda: not sleeper.sleeping(marker), timeout=30, interval=0.1)


def test_config_vars_the_platform_sets_in_every_dyno_are_refused(
    env: tuple[Paas, SSHServer], app: str
) -> None:
    """PORT, DYNO and HOME were taken, then silently overridden in every dyno."""
    paas, _ = env
    before = paas.cli("config", "-a", app, "--json").stdout
    for key, says in (("PORT", "the port it listens on"), ("DYNO", "its name"), ("HOME", "/app")):
        result = paas.cli("config:set", f"{key}=5000", "-a", app, check=False)
        assert result.returncode == 1, result
        assert f"{key} is set by minipaas in every dyno ({says}" in result.stderr, result.stderr
    assert paas.cli("config", "-a", app, "--json").stdout == before
    paas.cli("config:unset", "PORT", "-a", app)  # unsetting (an older server's var) still works


def test_scale_by_a_relative_amount_as_on_heroku(env: tuple[Paas, SSHServer], app: str) -> None:
    paas, _ = env

    def web() -> int:
        formation = json.loads(paas.cli("ps", "-a", app, "--json").stdout)["formation"]
        return int(formation.get("web", 0))

    start = web()
    assert "web=" in paas.cli("ps:scale", "web+2", "-a", app).stdout
    assert web() == start + 2
    paas.cli("ps:scale", "web-1", "-a", app)
    assert web() == start + 1
    below = paas.cli("ps:scale", f"web-{start + 2}", "-a", app, check=False)
    assert below.returncode == 1, below
    assert f"Cannot scale 'web' by -{start + 2}: it has {start + 1} dynos." in below.stderr
    assert web() == start + 1
    paas.cli("ps:scale", f"web={start}", "-a", app)


def test_config_set_says_what_it_did(env: tuple[Paas, SSHServer], app: str) -> None:
    """It said "and restarted its dynos" also when nothing changed, or there were no dynos."""
    paas, _ = env
    first = paas.cli("config:set", "SHADE=teal", "-a", app).stdout.strip()
    version = releases(paas, app)[0]["version"]
    assert first == f"Set SHADE on {app} (v{version}) and restarted its dynos."
    again = paas.cli("config:set", "SHADE=teal", "-a", app).stdout.strip()
    assert again == f"Nothing to change: SHADE on {app} already as asked."
    assert releases(paas, app)[0]["version"] == version  # no new release either
    paas.cli("config:unset", "SHADE", "-a", app)
    paas.cli("apps:create", "quiet")
    try:
        bare = paas.cli("config:set", "A=1", "-a", "quiet").stdout.strip()
        assert bare == "Set A on quiet (v1)."
    finally:
        paas.cli("apps:destroy", "-a", "quiet", "--confirm", "quiet")


def test_config_shell_prints_lines_a_shell_reads_back(env: tuple[Paas, SSHServer]) -> None:
    """`config --shell` (Heroku's): KEY=VALUE lines, quoted so that `eval` or a .env loader
    gets the values back exactly, spaces, quotes, `$` and newlines included."""
    paas, _ = env
    app = "qaops-shell"
    paas.cli("apps:create", app)
    values = {"PLAIN": "x", "TRICKY": "it's a $HOME `x` \"q\"\nline 2", "EMPTY": ""}
    paas.cli("config:set", *(f"{k}={v}" for k, v in values.items()), "-a", app)
    out = paas.cli("config", "--shell", "-a", app).stdout
    assert out.splitlines()[0] == "EMPTY=''"
    back = subprocess.run(
        ["sh", "-c", 'eval "$1"; printf "%s\\0" "$EMPTY" "$PLAIN" "$TRICKY"', "sh", out],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout
    assert back.split("\0")[:3] == [values["EMPTY"], values["PLAIN"], values["TRICKY"]]
    paas.cli("apps:destroy", "-a", app, "--confirm", app)
