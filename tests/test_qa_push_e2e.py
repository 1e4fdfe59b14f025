"""Pushes that fail, end to end: a real server, real git over HTTPS through Caddy and over the
real sshd. A failed push says why in one sentence, once, keeps the previous release serving
and leaves no half-finished build behind.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.paas import Paas, commit, deployed, git_env, https_push, ssh_push
from tests.support.sshd import SSHServer

NO_BUILDPACK = "No buildpack detected: looked for"


def procfile_app(path: Path, text: str = "hello v1") -> Path:
    """A Procfile-only app answering `text` on $PORT, committed on main."""
    path.mkdir()
    (path / "index.txt").write_text(text)
    (path / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=git_env())
    commit(path, "v1")
    return path


def token(paas: Paas) -> str:
    return paas.cli("auth:token").stdout.strip().splitlines()[-1]


def builds(paas: Paas, app: str) -> list[tuple[int, str]]:
    """(id, status) of the app's builds, straight from the state file."""
    db = sqlite3.connect(f"file:{paas.data_dir / 'minipaas.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT b.id, b.status FROM builds b JOIN apps a ON a.id = b.app_id "
            "WHERE a.name = ? ORDER BY b.id",
            (app,),
        ).fetchall()
    finally:
        db.close()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_a_failed_build_says_why_once(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """The reason used to be printed twice in a row (by the build log, then by the gate)."""
    paas, sshd = env
    paas.cli("apps:create", "saysonce")
    repo = tmp_path / "saysonce"
    repo.mkdir()
    (repo / "README").write_text("no Procfile, no language\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=git_env())
    commit(repo, "nothing to run")
    pushes = (https_push(paas, repo, "saysonce", token(paas)), ssh_push(sshd, repo, "saysonce"))
    for result in pushes:
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert out.count(NO_BUILDPACK) == 1, out
        assert "[remote rejected] main -> main (deploy failed)" in out
    # The build's log keeps the reason (once per failed build).
    logs = paas.cli("logs", "-a", "saysonce", "--source", "build", "-n", "200").stdout
    assert logs.count(NO_BUILDPACK) == 2, logs
    assert [status for _id, status in builds(paas, "saysonce")] == ["failed", "failed"]


def test_an_unsafe_tree_fails_its_build_and_keeps_the_release(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A commit git's porcelain cannot make but a pusher can (a `.GIT` entry, built with
    plumbing) is refused at export: the build used to stay 'pending' for ever, its half-written
    slug left on disk, and the reason missing from the build log."""
    paas, _sshd = env
    paas.cli("apps:create", "unsafe")
    repo = procfile_app(tmp_path / "unsafe")
    deployed(https_push(paas, repo, "unsafe", token(paas)))
    paas.wait_body("unsafe.localhost", "hello v1", path="/index.txt")

    env_ = git_env()

    def git(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env_,
            check=True,
        )
        return done.stdout.strip()

    blob = git("hash-object", "-w", "--stdin", stdin="planted\n")
    listing = git("ls-tree", "HEAD") + f"\n100644 blob {blob}\t.GIT\n"
    tree = git("mktree", stdin=listing)
    bad = git("commit-tree", tree, "-p", "HEAD", "-m", "a .GIT entry")
    git("update-ref", "refs/heads/main", bad)

    result = https_push(paas, repo, "unsafe", token(paas))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert out.count(f"Commit {bad} contains an unsafe file name '.GIT'.") == 1, out
    assert paas.curl("unsafe.localhost", "/index.txt") == (200, "hello v1")

    (first, first_status), (_second, second_status) = builds(paas, "unsafe")
    assert (first_status, second_status) == ("succeeded", "failed")
    slugs = paas.data_dir / "slugs" / "unsafe"
    assert sorted(p.name for p in slugs.iterdir()) == [f"b{first}"]
    logs = paas.cli("logs", "-a", "unsafe", "--source", "build", "-n", "200").stdout
    assert "contains an unsafe file name '.GIT'" in logs, logs


def test_a_submodule_is_named_in_the_build_log(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """A submodule used to become an empty directory without a word; the app then failed
    later for lack of its files."""
    paas, _sshd = env
    paas.cli("apps:create", "submod")
    lib = procfile_app(tmp_path / "lib", "library")
    repo = procfile_app(tmp_path / "submod")
    subprocess.run(
        ["git", "-C", str(repo), "-c", "protocol.file.allow=always", "submodule", "add", "-q",
         f"file://{lib}", "vendor/lib"],
        check=True, capture_output=True, env=git_env(),
    )  # fmt: skip
    commit(repo, "with a submodule")
    out = deployed(https_push(paas, repo, "submod", token(paas)))
    assert out.count("The submodule 'vendor/lib' is not fetched") == 1, out
    assert paas.cli("run", "-a", "submod", "--", "ls -A vendor/lib").stdout.strip() == ""


def test_a_buildpack_url_cannot_reach_another_apps_repository(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """Buildpacks are fetched on the host as the app's uid: the repositories were readable by
    every uid, so `BUILDPACK_URL=file:///<data-dir>/repos/OTHER.git` (or that directory) copied
    another app's source into this app's build."""
    paas, _sshd = env
    paas.cli("apps:create", "victim")
    victim = procfile_app(tmp_path / "victim", "victim's secret")
    deployed(https_push(paas, victim, "victim", token(paas)))
    repo_dir = paas.data_dir / "repos" / "victim.git"
    assert (paas.data_dir / "repos").stat().st_mode & 0o007 == 0
    assert repo_dir.stat().st_mode & 0o007 == 0

    paas.cli("apps:create", "thief")
    thief = procfile_app(tmp_path / "thief", "thief")
    for url, reason in (
        (f"file://{repo_dir}", "Could not fetch the buildpack"),
        (str(repo_dir), "is not a directory that the app may read"),
    ):
        paas.cli("config:set", f"BUILDPACK_URL={url}", "-a", "thief")
        result = https_push(paas, thief, "thief", token(paas))
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert reason in out, out
