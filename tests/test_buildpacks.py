"""An app's own buildpacks (`buildpacks`, `buildpacks:set/add/remove/clear`, Heroku style).

First the pure rules (which URLs name a buildpack, how the list is edited), then one real
server: an app that both the python and the node buildpacks would take (requirements.txt and
package.json) is pushed with the buildpack it was set to, against what detection and
BUILDPACK_URL would pick; clearing goes back to detection; a rollback, a restart of the server
and apps:destroy do to the setting what they do on Heroku.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from minipaas.build import buildpack
from minipaas.build.buildpack import added, check_url, removed, replaced, set_at
from minipaas.errors import Conflict, NotFound, UserError
from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support.sshd import SSHServer

# -- pure --------------------------------------------------------------------------------------

KNOWN = "heroku/python, heroku/nodejs, heroku/static, minipaas/procfile"


@pytest.mark.parametrize(
    "url",
    [
        "heroku/python",
        "heroku/nodejs",
        "heroku/static",
        "python",
        "minipaas/procfile",
        "https://github.com/heroku/heroku-buildpack-python.git",
        "https://github.com/heroku/heroku-buildpack-python.git#v250",
        "git://example.com/bp.git",
        "file:///srv/bp.git#main",
        "/srv/buildpacks/my bp",
    ],
)
def test_urls_that_name_a_buildpack(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", f"No buildpack given: name a built-in one ({KNOWN}), a git URL or a directory path."),
        ("heroku/ruby", f"Unknown buildpack 'heroku/ruby': the built-in ones are {KNOWN}; any"),
        ("minipaas/go", "Unknown buildpack 'minipaas/go': the built-in ones are"),
        ("heroku-community/apt", "'heroku-community/apt' is neither a directory path nor a git"),
        ("bp.git", "Buildpack 'bp.git' is neither a directory path nor a git URL such as"),
        ("--upload-pack=x", "'--upload-pack=x' is neither a directory path nor a git URL"),
        ("ssh://git@host/bp.git", "uses ssh://, which minipaas does not fetch from: use https://"),
        ("ext::sh -c x", "'ext::sh -c x' is neither a directory path nor a git URL"),
        ("https://h/bp.git#--upload-pack=/x", "names the ref '--upload-pack=/x', which is not a"),
        ("https://h/bp.git#a b", "names the ref 'a b', which is not a branch, tag or commit"),
        ("https://h/bp\n.git", r"Buildpack 'https://h/bp\n.git' holds a control character."),
        ("/srv/\x00", r"Buildpack '/srv/\x00' holds a control character."),
        ("https://h/" + "b" * 3000, "is longer than 2048 characters."),
    ],
)
def test_urls_refused_in_one_sentence(url: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        check_url(url)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_add_set_remove_and_replace() -> None:
    urls = added([], "heroku/python", None, "web")
    assert urls == ["heroku/python"]
    urls = added(urls, "heroku/nodejs", 1, "web")  # -i 1: before the first
    assert urls == ["heroku/nodejs", "heroku/python"]
    urls = added(urls, "/srv/bp", 3, "web")  # one past the last: appended
    assert urls == ["heroku/nodejs", "heroku/python", "/srv/bp"]
    assert set_at(urls, "heroku/static", None, "web") == ["heroku/static", *urls[1:]]
    assert set_at(urls, "/srv/other", 3, "web") == [*urls[:2], "/srv/other"]
    assert set_at(urls, "/srv/more", 4, "web") == [*urls, "/srv/more"]
    # A buildpack may be set in its own place (by another of its names).
    assert set_at(urls, "python", 2, "web") == ["heroku/nodejs", "python", "/srv/bp"]
    assert set_at([], "heroku/python", None, "web") == ["heroku/python"]
    assert removed(urls, "heroku/python", None, "web") == ["heroku/nodejs", "/srv/bp"]
    assert removed(urls, None, 1, "web") == ["heroku/python", "/srv/bp"]
    assert replaced(urls, [], "web") == []
    assert replaced([], ["/a", "heroku/static"], "web") == ["/a", "heroku/static"]


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda: added(["heroku/python"], "heroku/python", None, "web"), Conflict,
         "The buildpack 'heroku/python' is already set on 'web' (number 1)."),
        (lambda: added(["heroku/python"], "python", None, "web"), Conflict, "(number 1)"),
        (lambda: set_at(["/a", "/b"], "/a", 2, "web"), Conflict, "'/a' is already set"),
        (lambda: added([f"/bp{n}" for n in range(10)], "/x", None, "web"), Conflict,
         "'web' has 10 buildpacks, the most an app may have; remove one first."),
        (lambda: replaced([], ["/a"] * 11, "web"), UserError, "an app may have at most 10"),
        (lambda: replaced([], ["/a", "/a"], "web"), Conflict, "'/a' is already set"),
        (lambda: replaced([], ["/a", "heroku/x"], "web"), UserError, "'heroku/x'"),
        (lambda: added(["/a"], "/b", 3, "web"), UserError,
         "Invalid index 3: 'web' has 1 buildpack; use 1 to 2."),
        (lambda: added([], "/b", 0, "web"), UserError, "Invalid index 0: 'web' has 0 buildpacks;"),
        (lambda: set_at(["/a", "/b"], "/c", 4, "web"), UserError, "use 1 to 3."),
        (lambda: set_at([], "heroku/ruby", None, "web"), UserError, "'heroku/ruby'"),
        (lambda: removed([], None, 1, "web"), UserError,
         "Invalid index 1: 'web' has no buildpacks."),
        (lambda: removed(["/a"], None, 2, "web"), UserError, "'web' has 1 buildpack; use 1."),
        (lambda: removed(["/a"], "/b", None, "web"), NotFound,
         "'web' has no buildpack '/b'; nothing was removed"),
        (lambda: removed(["/a"], None, None, "web"), UserError, "No buildpack given"),
        (lambda: removed(["/a"], "/a", 1, "web"), UserError, "not both"),
    ],
)
def test_edits_refused_in_one_sentence(edit: object, error: type[Exception], message: str) -> None:
    assert callable(edit)
    with pytest.raises(error) as caught:
        edit()
    assert message in str(caught.value)
    assert type(caught.value) is error


def test_the_known_names_are_the_builtins() -> None:
    """Every name the refusals list is one that `builtin_name` takes."""
    names = buildpack.short_names()
    assert ", ".join(names) == KNOWN
    assert [buildpack.builtin_name(n) for n in names] == list(buildpack.BUILTINS)


# -- a real server -----------------------------------------------------------------------------

APP = "both"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python-stdlib with a package.json too: detection picks python (the first built-in)."""
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path_factory.mktemp("src") / APP)
    (repo / "package.json").write_text('{"name": "both", "version": "1.0.0"}\n')
    (repo / "Procfile").write_text("web: python3 app.py\n")  # no `python` without the venv
    commit(repo, "python and node")
    return repo


def push(env: tuple[Paas, SSHServer], repo: Path, message: str) -> str:
    _, sshd = env
    commit(repo, message)  # `git commit --allow-empty`: the same code, built again
    return deployed(ssh_push(sshd, repo, APP))


def buildpacks(paas: Paas) -> list[str]:
    return [b["url"] for b in json.loads(paas.cli("buildpacks", "-a", APP, "--json").stdout)]


def test_set_buildpack_is_used_before_detection_and_buildpack_url(
    env: tuple[Paas, SSHServer], source: Path
) -> None:
    paas, _ = env
    paas.cli("apps:create", APP)
    out = paas.cli("buildpacks", "-a", APP).stdout
    assert out.startswith(f"{APP} has no buildpacks set: each build detects one"), out

    out = paas.cli("buildpacks:set", "heroku/nodejs", "-a", APP).stdout
    assert out.startswith(f"Buildpack set. Next release on {APP} will use heroku/nodejs: push"), out
    assert out.count("\n") == 1, out
    listed = paas.cli("buildpacks", "-a", APP).stdout
    assert listed == f"=== {APP} Buildpack URL\n1. heroku/nodejs\n", listed
    info = json.loads(paas.cli("apps:info", "-a", APP, "--json").stdout)
    assert info["buildpacks"] == ["heroku/nodejs"]
    assert info["release"] is None  # no release is made, as on Heroku
    assert "Buildpacks: heroku/nodejs\n" in paas.cli("apps:info", "-a", APP).stdout

    # The app's setting wins over BUILDPACK_URL (and over detection, which would pick python).
    paas.cli("config:set", "BUILDPACK_URL=heroku/python", "-a", APP)
    out = push(env, source, "node, set")
    assert "remote: -----> Using the app's buildpacks (buildpacks:set): heroku/nodejs" in out
    assert "BUILDPACK_URL is set too but not used" in out
    assert "remote: -----> Node.js app detected" in out
    assert "Python app detected" not in out
    assert paas.wait_body(f"{APP}.localhost", "production", "/env/NODE_ENV") == "production"
    assert paas.curl(f"{APP}.localhost", "/env/VIRTUAL_ENV") == (200, "")

    # Cleared: BUILDPACK_URL counts again; unset too: detection.
    out = paas.cli("buildpacks:clear", "-a", APP).stdout
    assert out.startswith(f"Buildpacks cleared. Next release on {APP} will detect its buildpack")
    assert buildpacks(paas) == []
    paas.cli("config:unset", "BUILDPACK_URL", "-a", APP)
    out = push(env, source, "detected")
    assert "Using the app's buildpacks" not in out and "BUILDPACK_URL" not in out
    assert "remote: -----> Python app detected" in out
    paas.wait_body(f"{APP}.localhost", "/app/.venv", "/env/VIRTUAL_ENV")


def test_list_edits_through_the_cli(env: tuple[Paas, SSHServer]) -> None:
    paas, _ = env
    paas.cli("buildpacks:add", "heroku/python", "-a", APP)
    out = paas.cli("buildpacks:add", "-i", "1", "heroku/nodejs", "-a", APP).stdout
    assert out.startswith(
        f"Buildpack added. Next release on {APP} will use 1. heroku/nodejs, 2. heroku/python:"
    ), out
    assert paas.cli("buildpacks", "-a", APP).stdout == (
        f"=== {APP} Buildpack URLs\n1. heroku/nodejs\n2. heroku/python\n"
    )
    paas.cli("buildpacks:set", "-i", "2", "heroku/static", "-a", APP)
    assert buildpacks(paas) == ["heroku/nodejs", "heroku/static"]
    out = paas.cli("buildpacks:remove", "heroku/nodejs", "-a", APP).stdout
    assert out.startswith(f"Buildpack removed. Next release on {APP} will use heroku/static:"), out
    paas.cli("buildpacks:remove", "-i", "1", "-a", APP)
    assert buildpacks(paas) == []

    # Refusals: one sentence, exit 1, nothing changed.
    paas.cli("buildpacks:set", "heroku/nodejs", "-a", APP)
    for args, expected in [
        (("buildpacks:add", "heroku/nodejs"), "is already set on 'both' (number 1)"),
        (("buildpacks:add", "node"), "is already set on 'both' (number 1)"),
        (("buildpacks:add", "heroku/ruby"), "Unknown buildpack 'heroku/ruby': the built-in"),
        (("buildpacks:set", "-i", "3", "heroku/python"), "Invalid index 3: 'both' has 1"),
        (("buildpacks:set", "-i", "0", "heroku/python"), "Invalid buildpack index '0'"),
        (("buildpacks:add", "-i", "-2", "heroku/python"), "Invalid buildpack index '-2'"),
        (("buildpacks:remove", "heroku/python"), "'both' has no buildpack 'heroku/python'"),
        (("buildpacks:remove", "-i", "2"), "Invalid index 2: 'both' has 1 buildpack; use 1."),
        (("buildpacks:set", "https://h/bp.git#--upload-pack=/tmp/x"), "which is not a branch"),
        (("buildpacks", "-a", "ghost"), "No app named 'ghost'"),
    ]:
        app = () if "-a" in args else ("-a", APP)
        result = paas.cli(*args, *app, check=False)
        assert result.returncode == 1, (args, result)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert result.stdout == ""
    result = paas.cli("buildpacks:remove", "-a", APP, check=False)
    assert result.returncode == 2 and "buildpacks:remove URL, or -i N" in result.stderr
    assert buildpacks(paas) == ["heroku/nodejs"]


def test_rollback_and_restart_keep_the_setting_and_destroy_removes_it(
    env: tuple[Paas, SSHServer],
) -> None:
    paas, _ = env
    assert buildpacks(paas) == ["heroku/nodejs"]  # the test before left it set
    # Not part of a release (Heroku neither): a rollback to the node-built v1 keeps it.
    paas.cli("rollback", "-a", APP)
    assert buildpacks(paas) == ["heroku/nodejs"]
    paas.cli("buildpacks:clear", "-a", APP)
    paas.cli("rollback", "-a", APP)
    assert buildpacks(paas) == []

    paas.cli("buildpacks:add", "/srv/buildpacks/mine", "-a", APP)
    paas.cli("buildpacks:add", "heroku/python", "-a", APP)
    assert paas.proc is not None
    paas.proc.send_signal(signal.SIGTERM)
    paas.proc.wait(timeout=60)
    paas.restart()
    assert buildpacks(paas) == ["/srv/buildpacks/mine", "heroku/python"]

    paas.cli("apps:destroy", "-a", APP, "--confirm", APP)
    paas.cli("apps:create", APP)
    assert buildpacks(paas) == []
