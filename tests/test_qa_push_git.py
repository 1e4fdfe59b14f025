"""Pushes that real git clients make and that receive-pack used to mishandle: from a shallow
clone, and a pusher that hangs up (Ctrl-C) while the deploy runs.

HTTP goes through the in-process git server of tests/test_git.py; SSH runs the stdio server as
a forced command the way sshd would (GIT_SSH_COMMAND), with a gate that records what it saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from minipaas.errors import UserError
from minipaas.git.export import MAX_DEPTH
from minipaas.git.receive import BOTH, SHALLOW
from minipaas.git.repos import DEPLOY_REFS, Repos
from tests import test_git
from tests.support.ports import wait_for
from tests.support.procs import kill_group
from tests.test_git import ROOT, GitServer, Work

# The fixtures of tests/test_git.py: its in-process HTTP git server and a client work tree.
git_server = test_git.git_server
work = test_git.work

# A forced command whose gate can be told to wait: it reports "Building", then waits until
# the file GATE_GO exists before it reports more and accepts.
SERVE_PY = """\
import os, sys, time
from pathlib import Path
from minipaas.git.repos import DEPLOY_REFS, Repos
from minipaas.git.stdio import serve_stdio

repos = Repos(Path({root!r}))
go = Path({go!r})

def gate(app, sha, progress, *, ref, old):
    Path({seen!r}).write_text(sha)
    progress(f"-----> Building {{app}} {{sha[:7]}}")
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for n in range(50):  # the pusher is gone: every one of these hits a broken pipe
        progress(f"       step {{n}}")
    progress("-----> Deployed")
    return None

sys.exit(serve_stdio(repos, os.environ.get("SSH_ORIGINAL_COMMAND", ""), gate,
                     sys.stdin.buffer, sys.stdout.buffer, sys.stderr))
"""

# Like sshd, the forced command runs in a session of its own: the pusher's Ctrl-C (here, the
# test killing the pusher's process group) does not reach it.
FAKE_SSH = """\
#!/bin/sh
for last; do :; done
SSH_ORIGINAL_COMMAND="$last" PYTHONPATH={pythonpath} exec setsid {python} {serve}
"""


class Ssh:
    """The fake sshd of one test: its repositories and the gate's signal files."""

    def __init__(self, tmp_path: Path, work: Work) -> None:
        self.repos = Repos(tmp_path / "repos")
        self.go = tmp_path / "go"
        self.seen = tmp_path / "seen"
        serve = tmp_path / "serve.py"
        serve.write_text(
            SERVE_PY.format(
                root=str(self.repos.root),
                go=str(self.go),
                seen=str(self.seen),
            )
        )
        fake = tmp_path / "fakessh.sh"
        fake.write_text(
            FAKE_SSH.format(pythonpath=str(ROOT), python=sys.executable, serve=str(serve))
        )
        fake.chmod(0o755)
        work.env["GIT_SSH_COMMAND"] = str(fake)
        work.env["GIT_SSH_VARIANT"] = "simple"


@pytest.fixture
def ssh(tmp_path: Path, work: Work) -> Ssh:
    return Ssh(tmp_path, work)


def shallow_clone(source: Work, dest: Path) -> Work:
    """A `--depth 1` clone of `source` (what CI checkouts are by default)."""
    clone = Work(dest, source.env)
    source.git("clone", "-q", "--depth", "1", f"file://{source.path}", str(dest))
    return clone


def test_ssh_push_from_a_shallow_clone_is_refused_in_one_sentence(
    ssh: Ssh, work: Work, tmp_path: Path
) -> None:
    ssh.repos.create("shallow")
    ssh.go.touch()
    for n in range(3):
        work.commit(f"c{n}")
    clone = shallow_clone(work, tmp_path / "clone")
    result = clone.git("push", "ssh://git@minipaas.invalid/shallow.git", "HEAD:main", check=False)
    assert result.returncode != 0
    assert f"[remote rejected] HEAD -> main ({SHALLOW})" in result.stderr, result.stderr
    assert "hung up" not in result.stderr
    assert "Invalid ref update line" not in result.stderr
    assert not ssh.seen.exists()  # refused before any build
    assert ssh.repos.head_sha("shallow") is None


def test_http_push_from_a_shallow_clone_is_refused_in_one_sentence(
    git_server: GitServer, work: Work, tmp_path: Path
) -> None:
    git_server.repos.create("shallow-http")
    for n in range(3):
        work.commit(f"c{n}")
    clone = shallow_clone(work, tmp_path / "clone")
    calls = len(git_server.gate.calls)
    result = clone.git("push", git_server.remote("shallow-http"), "HEAD:main", check=False)
    assert result.returncode != 0
    assert f"[remote rejected] HEAD -> main ({SHALLOW})" in result.stderr, result.stderr
    assert "hung up" not in result.stderr
    assert len(git_server.gate.calls) == calls
    assert git_server.repos.head_sha("shallow-http") is None


def test_shallow_clone_push_on_top_of_the_deployed_history_deploys(
    ssh: Ssh, work: Work, tmp_path: Path
) -> None:
    """Once the server has the history below the clone's cut, the push is complete: git's
    receive-pack takes it, and so does minipaas (a CI job's depth-1 checkout)."""
    ssh.repos.create("ci")
    ssh.go.touch()
    for n in range(3):
        work.commit(f"c{n}")
    work.git("push", "-q", "ssh://git@minipaas.invalid/ci.git", "main")
    clone = shallow_clone(work, tmp_path / "clone")
    sha = clone.commit("from ci")
    result = clone.git("push", "ssh://git@minipaas.invalid/ci.git", "HEAD:main", check=False)
    assert result.returncode == 0, result.stderr
    assert "remote: -----> Deployed" in result.stderr
    assert ssh.repos.head_sha("ci") == sha


def test_ssh_pusher_hanging_up_mid_deploy_still_moves_the_branch(
    ssh: Ssh, work: Work
) -> None:
    """Ctrl-C during `git push` over SSH: the deploy goes on (the server finishes it), so the
    branch must follow it; the release and the ref must not disagree."""
    ssh.repos.create("hangup")
    old = work.commit("first")
    ssh.go.touch()
    work.git("push", "-q", "ssh://git@minipaas.invalid/hangup.git", "main")
    assert ssh.repos.head_sha("hangup") == old
    ssh.go.unlink()

    new = work.commit("second")
    push = subprocess.Popen(
        ["git", "push", "ssh://git@minipaas.invalid/hangup.git", "main"],
        cwd=work.path,
        env=work.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert push.stderr is not None
        wait_for(lambda: ssh.seen.exists(), timeout=30, message="the gate to start")
        # The pusher sees the gate's first line, then goes away (the server stays: sshd
        # does not kill a forced command whose client disconnected).
        line = push.stderr.readline()
        assert b"Building hangup" in line, line
        os.kill(push.pid, 9)
        push.wait(timeout=10)
    finally:
        kill_group(push.pid)
        push.wait(timeout=10)
        if push.stderr is not None:
            push.stderr.close()
    ssh.go.touch()
    wait_for(
        lambda: ssh.repos.head_sha("hangup") == new,
        timeout=30,
        message="the branch to follow the deploy",
    )



def _commit(tree: Tree, message: bytes) -> Commit:
    """A root commit of `tree` (not yet stored)."""
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"x <x@x>"
    commit.commit_time = commit.author_time = int(time.time())
    commit.commit_timezone = commit.author_timezone = 0
    commit.message = message
    return commit


def nested_commit(repos: Repos, app: str, depth: int) -> str:
    """A commit whose tree nests `depth` directories `d` with a file at the bottom."""
    with Repo(str(repos.path(app))) as repo:
        blob = Blob.from_string(b"deep")
        tree = Tree()
        tree.add(b"f", 0o100644, blob.id)
        objects: list[Blob | Tree | Commit] = [blob, tree]
        for _ in range(depth):
            parent = Tree()
            parent.add(b"d", 0o040000, tree.id)
            objects.append(parent)
            tree = parent
        commit = _commit(tree, b"deep")
        objects.append(commit)
        for obj in objects:
            repo.object_store.add_object(obj)
    return commit.id.decode()


@pytest.mark.parametrize("git_bin", ["auto", None], ids=["cat-file", "dulwich"])
def test_export_refuses_a_tree_nested_too_deep_in_one_sentence(
    tmp_path: Path, git_bin: str | None
) -> None:
    """1,100 nested directories (git takes them) used to fail the push with an internal
    RecursionError, leaving the build pending."""
    repos = Repos(tmp_path / "repos", git_bin=git_bin)
    repos.create("deep")
    with pytest.raises(UserError, match=f"more than {MAX_DEPTH} levels deep"):
        repos.export("deep", nested_commit(repos, "deep", 1100), tmp_path / "too-deep")
    fine = tmp_path / "fine"
    repos.export("deep", nested_commit(repos, "deep", MAX_DEPTH), fine)
    assert (fine / Path(*["d"] * MAX_DEPTH) / "f").read_text() == "deep"


def commit_with(repos: Repos, app: str, name: bytes, mode: int, content: bytes) -> str:
    """A commit whose tree holds one entry `name` (a file or, with mode 0o120000, a link)."""
    with Repo(str(repos.path(app))) as repo:
        blob = Blob.from_string(content)
        tree = Tree()
        tree.add(name, mode, blob.id)
        commit = _commit(tree, b"odd")
        for obj in (blob, tree, commit):
            repo.object_store.add_object(obj)
    return commit.id.decode()


@pytest.mark.parametrize("git_bin", ["auto", None], ids=["cat-file", "dulwich"])
@pytest.mark.parametrize(
    ("name", "mode", "content", "message"),
    [
        (b"a" * 256, 0o100644, b"x", "a file name of 256 bytes, longer than the 255"),
        (b"link", 0o120000, b"t" * 5000, "symbolic link 'link' whose target no file system"),
        (b"link", 0o120000, b"a\0b", "symbolic link 'link' whose target no file system"),
    ],
    ids=["long-name", "long-link", "nul-link"],
)
def test_export_refuses_what_no_file_system_takes_in_one_sentence(
    tmp_path: Path, git_bin: str | None, name: bytes, mode: int, content: bytes, message: str
) -> None:
    """git stores such entries (its plumbing makes them); the export used to fail with an
    OSError, which the push showed as an internal error."""
    repos = Repos(tmp_path / "repos", git_bin=git_bin)
    repos.create("odd")
    with pytest.raises(UserError, match=message):
        repos.export("odd", commit_with(repos, "odd", name, mode, content), tmp_path / "out")
    fine = tmp_path / "fine"
    repos.export("odd", commit_with(repos, "odd", b"a" * 255, 0o100644, b"ok"), fine)
    assert (fine / ("a" * 255)).read_text() == "ok"


def test_main_and_master_to_different_commits_at_once_are_refused(
    git_server: GitServer, work: Work
) -> None:
    """`git push minipaas main master` deployed both in turn, and the last (master's older
    commit) served while main pointed at the newer one."""
    git_server.repos.create("both")
    older = work.commit("older")
    work.git("branch", "master")
    work.commit("newer")
    calls = len(git_server.gate.calls)
    result = work.git("push", git_server.remote("both"), "main", "master", check=False)
    assert result.returncode != 0
    assert f"[remote rejected] main -> main ({BOTH})" in result.stderr, result.stderr
    assert f"[remote rejected] master -> master ({BOTH})" in result.stderr, result.stderr
    assert len(git_server.gate.calls) == calls  # nothing was built
    assert git_server.repos.head_sha("both") is None

    # One at a time works, and main and master at one commit deploy it once.
    work.git("push", "-q", git_server.remote("both"), "master")
    assert git_server.repos.head_sha("both") == older
    work.git("branch", "-f", "master", "main")
    sha = work.git("rev-parse", "main").stdout.strip()
    calls = len(git_server.gate.calls)
    work.git("push", "-q", git_server.remote("both"), "main", "master")
    assert git_server.gate.calls[calls:] == [("both", sha)]
    with Repo(str(git_server.repos.path("both"))) as repo:
        main, master = (repo.refs[ref] for ref in DEPLOY_REFS)
        assert main == master == sha.encode()
