"""Tests for minipaas.git: repos, export, and pushes/clones with the real git client.

HTTP runs a real uvicorn (in a thread) serving Starlette with the git app mounted at /git;
SSH runs the stdio server as a forced command the way sshd would, through GIT_SSH_COMMAND.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minipaas.errors import Conflict, NotFound, UserError
from minipaas.git.http import basic_credentials, make_git_app
from minipaas.git.receive import Progress
from minipaas.git.repos import Repos
from minipaas.git.stdio import serve_stdio
from tests.support.ports import wait_for
from tests.support.procs import run_group

TOKEN = "s3cret-token"
ROOT = Path(__file__).resolve().parent.parent


def git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


@dataclass
class Work:
    """A client-side working copy driven by the real git binary."""

    path: Path
    env: dict[str, str]

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_group(["git", *args], cwd=self.path, env=self.env, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr}")
        return result

    def commit(self, message: str, files: dict[str, str | bytes] | None = None) -> str:
        for name, content in (files or {"file.txt": message}).items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()


@pytest.fixture
def work(tmp_path: Path) -> Work:
    home = tmp_path / "home"
    home.mkdir()
    path = tmp_path / "work"
    path.mkdir()
    w = Work(path, git_env(home))
    w.git("init", "-q", "-b", "main")
    return w


# --- a fake deploy gate ------------------------------------------------------------------------


@dataclass
class FakeGate:
    """Accepts unless the commit message says [fail] or [crash]; reads the pushed commit."""

    repos: Repos
    calls: list[tuple[str, str]] = field(default_factory=list)
    wait: threading.Event | None = None

    def __call__(
        self, app: str, sha: str, progress: Progress, *, ref: str, old: str | None
    ) -> str | None:
        with Repo(str(self.repos.path(app))) as repo:
            message = repo[sha.encode()].message.decode()  # the pack is stored before the gate
        self.calls.append((app, sha))
        progress(f"-----> Building {app} {sha[:7]}")
        if self.wait is not None:
            # The test sets this only after it has seen the line above: proves it is live.
            if not self.wait.wait(20):
                return "progress was not live"
            progress("-----> after the wait")
        progress("-----> Python app detected")
        if "[fail]" in message:
            progress(" !     build failed: no buildpack")
            return "build failed"
        if "[crash]" in message:
            raise RuntimeError("the gate blew up")
        if "[user]" in message:
            raise UserError("Your Procfile is broken.")
        progress(f"-----> Deployed {app}")
        return None


# --- the HTTP server -----------------------------------------------------------------------


@dataclass
class Recorder:
    """ASGI middleware noting, per request, when its body was read to the end and when the
    response started: what Caddy (and, behind it, git's curl) sees of the framing."""

    app: ASGIApp
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = (scope.get("method", ""), scope.get("path", ""))

        async def recorded_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.events.append((*where, "body read"))
            return message

        async def recorded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.events.append((*where, "response started"))
            await send(message)

        await self.app(scope, recorded_receive, recorded_send)


@dataclass
class GitServer:
    url: str
    repos: Repos
    gate: FakeGate
    recorder: Recorder

    def remote(self, app: str, token: str = TOKEN, mount: str = "git") -> str:
        host = self.url.removeprefix("http://")
        return f"http://x:{token}@{host}/{mount}/{app}.git"


class ThreadServer(uvicorn.Server):
    pass


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    repos = Repos(tmp_path_factory.mktemp("http") / "repos")
    assert repos.git_bin is not None, "these tests need the git binary"
    pure = Repos(repos.root, git_bin=None)
    gate = FakeGate(repos)

    def authorize(user: str | None, password: str | None) -> bool:
        return password == TOKEN

    recorder = Recorder(make_git_app(repos, gate, authorize))
    app = Starlette(
        routes=[
            Mount("/git", app=make_git_app(repos, gate, authorize)),
            Mount("/recorded", app=recorder),
            Mount("/small", app=make_git_app(repos, gate, authorize, max_push_bytes=200_000)),
            # The same repositories without the C git binary: Dulwich indexes pushed packs.
            Mount("/py", app=make_git_app(pure, gate, authorize)),
            Mount("/small-py", app=make_git_app(pure, gate, authorize, max_push_bytes=200_000)),
        ]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = ThreadServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, message="uvicorn to start")
        yield GitServer(f"http://127.0.0.1:{port}", repos, gate, recorder)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_http_push_deploys_and_streams_progress(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("pushy")
    sha = work.commit("first")
    result = work.git("push", git_server.remote("pushy"), "main")
    assert "remote: -----> Building pushy" in result.stderr
    assert "remote: -----> Deployed pushy" in result.stderr
    assert git_server.repos.head_sha("pushy") == sha
    assert ("pushy", sha) in git_server.gate.calls

    sha2 = work.commit("second")
    result = work.git("push", git_server.remote("pushy"), "main")
    assert git_server.repos.head_sha("pushy") == sha2


def test_http_rejected_gate_keeps_the_ref(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("rejecty")
    good = work.commit("good")
    work.git("push", git_server.remote("rejecty"), "main")
    work.commit("bad [fail]")
    result = work.git("push", git_server.remote("rejecty"), "main", check=False)
    assert result.returncode != 0
    assert "remote:  !     build failed: no buildpack" in result.stderr
    assert "[remote rejected] main -> main (build failed)" in result.stderr
    assert git_server.repos.head_sha("rejecty") == good


def test_http_gate_errors_become_reasons(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("crashy")
    work.commit("boom [crash]")
    result = work.git("push", git_server.remote("crashy"), "main", check=False)
    assert result.returncode != 0
    assert "(internal error in minipaas; see the server log)" in result.stderr
    assert "Traceback" not in result.stderr
    work.commit("bad [user]")
    result = work.git("push", git_server.remote("crashy"), "main", check=False)
    assert "(Your Procfile is broken.)" in result.stderr
    assert git_server.repos.head_sha("crashy") is None


def test_http_progress_is_live(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("livey")
    work.commit("live")
    event = threading.Event()
    git_server.gate.wait = event
    try:
        proc = subprocess.Popen(
            ["git", "push", git_server.remote("livey"), "main"],
            cwd=work.path,
            env=work.env,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        seen = read_until(proc, b"remote: -----> Building livey")
        event.set()
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0, (seen + rest).decode()
        assert b"remote: -----> after the wait" in rest
    finally:
        git_server.gate.wait = None
        event.set()
        proc.kill()
        proc.wait()


def read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """Read the process's stderr until `marker` shows up (git's progress has no fixed framing)."""
    assert proc.stderr is not None
    seen = b""
    while marker not in seen:
        chunk = proc.stderr.read1(4096)
        assert chunk, f"git ended before {marker!r}: {seen!r}"
        seen += chunk
    return seen


def test_http_concurrent_pushes_are_serialised(
    git_server: GitServer, work: Work, tmp_path: Path
) -> None:
    git_server.repos.create("racy")
    work.commit("first")
    other = Work(tmp_path / "other", work.env)
    other.path.mkdir()
    other.git("init", "-q", "-b", "main")
    other.commit("rival")
    event = threading.Event()
    git_server.gate.wait = event
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for w in (work, other):
            procs.append(
                subprocess.Popen(
                    ["git", "push", git_server.remote("racy"), "main"],
                    cwd=w.path,
                    env=w.env,
                    stderr=subprocess.PIPE,
                )
            )
            marker = b"Building racy" if w is work else b"is in progress; waiting"
            read_until(procs[-1], marker)
        event.set()
        assert procs[0].wait(timeout=30) == 0
        assert procs[1].wait(timeout=30) != 0
        assert procs[1].stderr is not None
        assert b"(the branch moved while you pushed" in procs[1].stderr.read()
        assert git_server.repos.head_sha("racy") == work.git("rev-parse", "HEAD").stdout.strip()
    finally:
        git_server.gate.wait = None
        event.set()
        for proc in procs:
            proc.kill()
            proc.wait()


def test_http_wrong_or_missing_token(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("authy")
    work.commit("x")
    result = work.git("push", git_server.remote("authy", token="wrong"), "main", check=False)
    assert result.returncode != 0
    assert "Authentication failed" in result.stderr
    no_creds = git_server.url + "/git/authy.git"
    result = work.git("push", no_creds, "main", check=False)
    assert result.returncode != 0
    assert git_server.repos.head_sha("authy") is None


def test_http_unknown_app(git_server: GitServer, work: Work) -> None:
    work.commit("x")
    result = work.git("push", git_server.remote("nope"), "main", check=False)
    assert result.returncode != 0
    assert "remote error: No app named 'nope'" in result.stderr
    assert "minipaas apps:create nope" in result.stderr
    assert not git_server.repos.exists("nope")  # never auto-created


def test_http_only_main_or_master(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("branchy")
    sha = work.commit("x")
    result = work.git("push", git_server.remote("branchy"), "main:feature", check=False)
    assert result.returncode != 0
    assert "[remote rejected] main -> feature (minipaas deploys only the main or master" in (
        result.stderr
    )
    assert "git push minipaas HEAD:main" in result.stderr
    work.git("tag", "v1")
    result = work.git("push", git_server.remote("branchy"), "v1", check=False)
    assert result.returncode != 0
    with Repo(str(git_server.repos.path("branchy"))) as repo:
        assert repo.get_refs() == {}

    result = work.git("push", git_server.remote("branchy"), "main:master")
    assert git_server.repos.head_sha("branchy") == sha
    work.git("push", git_server.remote("branchy"), "main")
    result = work.git("push", git_server.remote("branchy"), ":main", check=False)
    assert result.returncode != 0
    assert "never deletes the deployed branch" in result.stderr
    assert git_server.repos.head_sha("branchy") == sha


@pytest.mark.parametrize("path", ["%2E%2E.git", "%2E%2E%2Fetc.git", "Bad_Name.git", "minipaas"])
def test_http_bad_paths_refused(git_server: GitServer, work: Work, path: str) -> None:
    host = git_server.url.removeprefix("http://")
    result = work.git("ls-remote", f"http://x:{TOKEN}@{host}/git/{path}", check=False)
    assert result.returncode != 0
    assert "remote error:" in result.stderr
    assert any(word in result.stderr for word in ("Invalid", "reserved"))


def test_http_big_push_clone_and_fetch(git_server: GitServer, work: Work, tmp_path: Path) -> None:
    git_server.repos.create("biggy")
    big = os.urandom(3 * 1024 * 1024)
    sha = work.commit("big", {"big.bin": big, "sub/run.sh": "#!/bin/sh\necho hi\n"})
    os.chmod(work.path / "sub/run.sh", 0o755)
    work.git("add", "-A")
    work.git("commit", "-q", "-m", "exec bit")
    sha = work.git("rev-parse", "HEAD").stdout.strip()
    work.git("push", git_server.remote("biggy"), "main")  # chunked: > http.postBuffer
    assert git_server.repos.head_sha("biggy") == sha

    clone = tmp_path / "clone"
    work.git("clone", "-q", git_server.remote("biggy"), str(clone))
    assert (clone / "big.bin").read_bytes() == big
    assert os.access(clone / "sub/run.sh", os.X_OK)

    sha2 = work.commit("more", {"more.txt": "more"})
    work.git("push", git_server.remote("biggy"), "main")
    cloned = Work(clone, work.env)
    cloned.git("pull", "-q", "--ff-only")
    assert cloned.git("rev-parse", "HEAD").stdout.strip() == sha2


def test_http_push_answers_only_after_reading_the_whole_pack(
    git_server: GitServer, work: Work
) -> None:
    # Response headers that arrive while git is still uploading stall curl's HTTP/2 upload
    # (curl/curl#10433, Debian 12's curl 7.88): through Caddy about one 50 MB push in 30 hung.
    git_server.repos.create("framing")
    work.commit("big", {"big.bin": os.urandom(3 * 1024 * 1024)})  # > http.postBuffer
    result = work.git("push", git_server.remote("framing", mount="recorded"), "main")
    assert "remote: -----> Deployed framing" in result.stderr
    posts = [
        e
        for e in git_server.recorder.events
        if e[:2] == ("POST", "/recorded/framing.git/git-receive-pack")
    ]
    # git probes with a 4-byte request first, then sends the pack: each is read, then answered
    assert [event for _m, _p, event in posts] == ["body read", "response started"] * 2, posts


def test_http_push_without_the_git_binary(git_server: GitServer, work: Work) -> None:
    git_server.repos.create("pure")
    work.commit("first", {"a/b.txt": "b", "big.bin": os.urandom(300_000)})
    work.git("push", git_server.remote("pure", mount="py"), "main")
    sha = work.commit("second", {"a/c.txt": "c"})  # a thin pack against the first push
    result = work.git("push", git_server.remote("pure", mount="py"), "main")
    assert "remote: -----> Deployed pure" in result.stderr
    assert git_server.repos.head_sha("pure") == sha


@pytest.mark.parametrize("mount", ["small", "small-py"])
def test_http_push_size_limit(git_server: GitServer, work: Work, mount: str) -> None:
    app = f"limity-{mount}"
    git_server.repos.create(app)
    work.commit("too big", {"big.bin": os.urandom(1024 * 1024)})
    remote = git_server.remote(app, mount=mount)
    result = work.git("push", remote, "main", check=False)
    assert result.returncode != 0
    assert "larger than the 195.3 KiB limit" in result.stderr, result.stderr
    assert "[remote rejected] main -> main (push too large)" in result.stderr
    assert git_server.repos.head_sha(app) is None


# --- SSH (stdio) ---------------------------------------------------------------------------

SERVE_PY = """\
import os, sys
from pathlib import Path
from dulwich.repo import Repo
from minipaas.git.repos import Repos
from minipaas.git.stdio import serve_stdio

repos = Repos(Path({root!r}))

def gate(app, sha, progress, *, ref, old):
    with Repo(str(repos.path(app))) as repo:
        message = repo[sha.encode()].message.decode()
    progress(f"-----> Building {{app}} {{sha[:7]}} over ssh")
    if "[fail]" in message:
        return "build failed"
    if "[crash]" in message:
        raise RuntimeError("the gate blew up")
    progress("-----> Deployed")
    return None

sys.exit(serve_stdio(repos, os.environ.get("SSH_ORIGINAL_COMMAND", ""), gate,
                     sys.stdin.buffer, sys.stdout.buffer, sys.stderr,
                     max_push_bytes=int(os.environ.get("MAX_PUSH", 1 << 30))))
"""

FAKE_SSH = """\
#!/bin/sh
# What sshd does with a forced command: the client's command goes in SSH_ORIGINAL_COMMAND.
for last; do :; done
SSH_ORIGINAL_COMMAND="$last" PYTHONPATH={pythonpath} exec {python} {serve}
"""


@pytest.fixture
def ssh(tmp_path: Path, work: Work) -> Repos:
    repos = Repos(tmp_path / "repos")
    serve = tmp_path / "serve.py"
    serve.write_text(SERVE_PY.format(root=str(repos.root)))
    fake = tmp_path / "fakessh.sh"
    fake.write_text(FAKE_SSH.format(pythonpath=str(ROOT), python=sys.executable, serve=str(serve)))
    fake.chmod(0o755)
    work.env["GIT_SSH_COMMAND"] = str(fake)
    work.env["GIT_SSH_VARIANT"] = "simple"
    return repos


def test_ssh_push_reject_and_clone(ssh: Repos, work: Work, tmp_path: Path) -> None:
    ssh.create("sshy")
    sha = work.commit("ok")
    result = work.git("push", "ssh://git@minipaas.invalid/sshy.git", "main")
    assert "remote: -----> Building sshy" in result.stderr
    assert ssh.head_sha("sshy") == sha

    work.commit("no [fail]")
    result = work.git("push", "git@minipaas.invalid:sshy", "main", check=False)
    assert result.returncode != 0
    assert "[remote rejected] main -> main (build failed)" in result.stderr
    assert ssh.head_sha("sshy") == sha

    work.commit("boom [crash]")
    result = work.git("push", "ssh://git@minipaas.invalid/sshy.git", "main", check=False)
    assert "[remote rejected] main -> main (internal error in minipaas" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr

    result = work.git("push", "ssh://git@minipaas.invalid/sshy.git", "main:dev", check=False)
    assert "minipaas deploys only the main or master branch" in result.stderr

    clone = tmp_path / "clone"
    work.git("clone", "-q", "ssh://git@minipaas.invalid/sshy.git", str(clone))
    assert Work(clone, work.env).git("rev-parse", "HEAD").stdout.strip() == sha


def test_ssh_push_size_limit(ssh: Repos, work: Work) -> None:
    ssh.create("limit")
    work.commit("too big", {"big.bin": os.urandom(3 * 1024 * 1024)})
    work.env["MAX_PUSH"] = "200000"
    result = work.git("push", "ssh://git@minipaas.invalid/limit.git", "main", check=False)
    assert result.returncode != 0
    assert "larger than the 195.3 KiB limit" in result.stderr, result.stderr
    assert "[remote rejected] main -> main (push too large)" in result.stderr, result.stderr
    assert ssh.head_sha("limit") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://git@minipaas.invalid/ghost.git", "minipaas apps:create ghost"),
        ("ssh://git@minipaas.invalid/../etc.git", "Invalid repository path '/../etc.git'"),
        ("ssh://git@minipaas.invalid/a/b.git", "Invalid repository path '/a/b.git'"),
    ],
)
def test_ssh_bad_paths(ssh: Repos, work: Work, url: str, expected: str) -> None:
    work.commit("x")
    result = work.git("push", url, "main", check=False)
    assert result.returncode != 0
    assert "remote error: " in result.stderr
    assert expected in result.stderr
    assert not ssh.root.exists() or not any(ssh.root.iterdir())


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("rm -rf /", "minipaas: unknown command 'rm -rf /'; over SSH"),
        ("", "minipaas: unknown command ''; over SSH"),
        ("git-receive-pack 'unclosed", 'minipaas: unknown command "git-receive-pack \'unclosed"'),
        ("tui x", "minipaas: unknown command 'tui x'; over SSH"),
        ("x" * 100_000, "minipaas: unknown command 'xxxxxxxxxx"),
        ("git-receive-pack", "minipaas: git-receive-pack takes one repository path such as"),
        ("git-upload-pack a.git b.git", "minipaas: git-upload-pack takes one repository path"),
    ],
)
def test_stdio_unknown_commands(tmp_path: Path, command: str, message: str) -> None:
    stdout, stderr = io.BytesIO(), io.StringIO()
    code = serve_stdio(
        Repos(tmp_path), command, FakeGate(Repos(tmp_path)), io.BytesIO(), stdout, stderr
    )
    assert code == 1
    assert stderr.getvalue().startswith(message)
    assert stderr.getvalue().count("\n") == 1
    assert len(stderr.getvalue()) < 300
    assert stdout.getvalue() == b""


def test_stdio_client_hangup_is_one_sentence(tmp_path: Path) -> None:
    repos = Repos(tmp_path)
    repos.create("hang")
    stdout, stderr = io.BytesIO(), io.StringIO()
    code = serve_stdio(
        repos, "git-receive-pack 'hang.git'", FakeGate(repos), io.BytesIO(b"00"), stdout, stderr
    )
    assert code == 1
    assert stderr.getvalue().startswith("minipaas: ")
    assert "Traceback" not in stderr.getvalue()


# --- Repos ---------------------------------------------------------------------------------


def test_repos_lifecycle(tmp_path: Path) -> None:
    repos = Repos(tmp_path / "repos")
    assert not repos.exists("app")
    path = repos.create("app")
    assert path == tmp_path / "repos" / "app.git"
    assert (path / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert repos.exists("app")
    assert repos.head_sha("app") is None
    with pytest.raises(Conflict, match="'app'"):
        repos.create("app")
    repos.delete("app")
    assert not repos.exists("app")
    repos.delete("app")  # idempotent
    with pytest.raises(NotFound, match="minipaas apps:create app"):
        repos.head_sha("app")


@pytest.mark.parametrize(
    ("path", "name"), [("/web.git", "web"), ("web.git", "web"), ("web", "web"), ("/a-1", "a-1")]
)
def test_parse_path_accepts(path: str, name: str) -> None:
    assert Repos(Path("/nonexistent")).parse_path(path) == name


@pytest.mark.parametrize(
    "path",
    ["", "/", ".git", "/../etc.git", "..", "a/b.git", "/web.git/", "Web", "1app", "www", "a\\b"],
)
def test_parse_path_refuses(path: str) -> None:
    with pytest.raises(UserError, match=repr(path).replace("\\", "\\\\") if path else "''"):
        Repos(Path("/nonexistent")).parse_path(path)


@pytest.mark.parametrize("name", ["../x", "a/b", "", "Upper", "minipaas"])
def test_path_refuses_bad_names(name: str) -> None:
    with pytest.raises(UserError):
        Repos(Path("/nonexistent")).path(name)


def test_basic_credentials() -> None:
    assert basic_credentials("Basic eDp0b2s6ZW4=") == ("x", "tok:en")
    assert basic_credentials(None) == (None, None)
    assert basic_credentials("Bearer abc") == (None, None)
    assert basic_credentials("Basic !!!") == (None, None)


# --- export --------------------------------------------------------------------------------


def push_local(work: Work, repos: Repos, app: str) -> str:
    """Fill an app's repository with the C git client (no gate), for export tests."""
    work.git("push", "-q", str(repos.path(app)), "main")
    return work.git("rev-parse", "HEAD").stdout.strip()


@pytest.mark.parametrize("git_bin", ["auto", None], ids=["cat-file", "dulwich"])
def test_export_files_exec_bits_symlinks(tmp_path: Path, work: Work, git_bin: str | None) -> None:
    repos = Repos(tmp_path / "repos", git_bin=git_bin)
    repos.create("exp")
    work.commit(
        "tree", {"Procfile": "web: ./bin/run\n", "bin/run": "#!/bin/sh\n", "a/b/c.txt": "c"}
    )
    os.chmod(work.path / "bin/run", 0o755)
    os.symlink("a/b/c.txt", work.path / "link")
    os.symlink("/etc/passwd", work.path / "abs-link")
    work.git("add", "-A")
    work.git("commit", "-q", "-m", "modes")
    sha = push_local(work, repos, "exp")

    dest = tmp_path / "out"
    repos.export("exp", sha, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["Procfile", "a", "abs-link", "bin", "link"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700  # other users: not even for a moment
    assert (dest / "Procfile").read_text() == "web: ./bin/run\n"
    assert stat.S_IMODE((dest / "bin/run").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "Procfile").stat().st_mode) == 0o644
    assert os.readlink(dest / "link") == "a/b/c.txt"
    assert os.readlink(dest / "abs-link") == "/etc/passwd"
    assert (dest / "link").read_text() == "c"

    with pytest.raises(UserError, match="not empty"):
        repos.export("exp", sha, dest)
    with pytest.raises(NotFound, match=r"0{40}"):
        repos.export("exp", "0" * 40, tmp_path / "none")
    with pytest.raises(UserError, match="'HEAD'"):
        repos.export("exp", "HEAD", tmp_path / "none")


@pytest.mark.parametrize("git_bin", ["auto", None], ids=["cat-file", "dulwich"])
@pytest.mark.parametrize("bad", [b"..", b".git", b".GIT"])
def test_export_refuses_unsafe_trees(tmp_path: Path, bad: bytes, git_bin: str | None) -> None:
    repos = Repos(tmp_path / "repos", git_bin=git_bin)
    repos.create("evil")
    with Repo(str(repos.path("evil"))) as repo:
        blob = Blob.from_string(b"pwned")
        inner = Tree()
        inner.add(b"passwd", 0o100644, blob.id)
        tree = Tree()
        tree.add(bad, 0o040000, inner.id)
        commit = Commit()
        commit.tree = tree.id
        commit.author = commit.committer = b"x <x@x>"
        commit.commit_time = commit.author_time = int(time.time())
        commit.commit_timezone = commit.author_timezone = 0
        commit.message = b"evil"
        for obj in (blob, inner, tree, commit):
            repo.object_store.add_object(obj)
    with pytest.raises(UserError, match="unsafe file name"):
        repos.export("evil", commit.id.decode(), tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "passwd").exists()


@pytest.mark.parametrize("git_bin", ["auto", None], ids=["cat-file", "dulwich"])
def test_export_a_name_listed_twice_escapes_nothing(tmp_path: Path, git_bin: str | None) -> None:
    """A symlink `a` → outside beside a directory `a` holding a file: nothing lands outside."""
    repos = Repos(tmp_path / "repos", git_bin=git_bin)
    repos.create("twice")
    with Repo(str(repos.path("twice"))) as repo:
        link = Blob.from_string(str(tmp_path / "victim").encode())
        blob = Blob.from_string(b"pwned")
        inner = Tree()
        inner.add(b"passwd", 0o100644, blob.id)
        # Tree.add keeps one entry per name: write the duplicate by hand, as an attacker would.
        raw = b"".join(
            [
                b"120000 a\0" + bytes.fromhex(link.id.decode()),
                b"40000 a\0" + bytes.fromhex(inner.id.decode()),
            ]
        )
        evil = Tree.from_raw_string(Tree.type_num, raw)
        commit = Commit()
        commit.tree = evil.id
        commit.author = commit.committer = b"x <x@x>"
        commit.commit_time = commit.author_time = int(time.time())
        commit.commit_timezone = commit.author_timezone = 0
        commit.message = b"twice"
        for obj in (link, blob, inner, evil, commit):
            repo.object_store.add_object(obj)
    (tmp_path / "victim").mkdir()
    try:
        repos.export("twice", commit.id.decode(), tmp_path / "out")
    except UserError as exc:
        assert "twice" in str(exc)
    else:  # Dulwich's tree parser keeps one entry per name: the directory
        assert not (tmp_path / "out" / "a").is_symlink()
    assert not (tmp_path / "victim" / "passwd").exists()


def test_export_5000_files_is_fast(tmp_path: Path, work: Work) -> None:
    repos = Repos(tmp_path / "repos")
    repos.create("many")
    # git fast-import writes one packed commit of 5,000 files without touching a work tree.
    stream = [b"commit refs/heads/main\ncommitter T <t@t> 0 +0000\ndata 5\nmany\n"]
    for d in range(50):
        for f in range(100):
            body = f"# {d}/{f}\n".encode() + b"x = 1\n" * 40
            stream.append(
                b"M 100644 inline dir%d/file%d.py\ndata %d\n%s\n" % (d, f, len(body), body)
            )
    subprocess.run(
        ["git", "--git-dir", str(repos.path("many")), "fast-import", "--quiet"],
        input=b"".join(stream),
        env=work.env,
        check=True,
        timeout=60,
    )
    sha = repos.head_sha("many")
    assert sha is not None
    start = time.monotonic()
    repos.export("many", sha, tmp_path / "out")
    elapsed = time.monotonic() - start
    assert sum(len(files) for _, _, files in os.walk(tmp_path / "out")) == 5000
    print(f"export of 5,000 files took {elapsed:.2f}s")
    assert elapsed < 15


def test_serve_py_template_is_valid_python() -> None:
    compile(textwrap.dedent(SERVE_PY.format(root="/x")), "serve.py", "exec")
