"""The buildpack runner and the built-in buildpacks, with real builds in bubblewrap.

As root, builds run as a test uid (20077) exactly as minipaas runs them; the built slug is
then started like a dyno (throwaway layer, `dyno_command`) and asked over HTTP. Tests whose
name contains `network` reach PyPI or npm (CI runs them; `-k "not network"` skips them).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from minipaas.build import Builder, BuildRequest, BuildResult
from minipaas.build.buildpack import parse_release
from minipaas.build.runner import find_uv
from minipaas.errors import BuildError
from minipaas.sandbox import (
    SandboxJob,
    base_env,
    dyno_command,
    make_tmp_dirs,
    sandbox_argv,
    scratch_bytes_for,
)
from tests.support.dirs import app_readable_tmp
from tests.support.forkbomb import FORK_BOMB
from tests.support.ports import free_port

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "sample-apps"
TEST_UID = 20077
UID = TEST_UID if os.geteuid() == 0 else None

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


class Env:
    """One test's dirs: a source tree to build, the app's cache, and scratch dirs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.external = root / "external"
        self.logs: list[str] = []
        self._n = 0

    def app(self, sample: str | None = None, files: dict[str, str] | None = None) -> Path:
        """A fresh build dir, as git exports it (0644 files, 0755 dirs, owned by root)."""
        self._n += 1
        path = self.root / f"build{self._n}"
        if sample:
            shutil.copytree(SAMPLES / sample, path)
        else:
            path.mkdir()
        for name, text in (files or {}).items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        for p in [path, *path.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        return path

    def request(
        self, build_dir: Path, env: dict[str, str] | None = None, buildpacks: Sequence[str] = ()
    ) -> BuildRequest:
        self._n += 1
        scratch = self.root / f"scratch{self._n}"
        scratch.mkdir()
        return BuildRequest("demo", build_dir, self.cache, env or {}, UID, scratch, buildpacks)

    async def build(
        self,
        build_dir: Path,
        env: dict[str, str] | None = None,
        *,
        buildpacks: Sequence[str] = (),
        **builder: object,
    ) -> BuildResult:
        """Build `build_dir` with config `env` and the app's own `buildpacks` (buildpacks:set)."""
        self.logs = []
        b = Builder(external_dir=self.external, **builder)  # type: ignore[arg-type]
        try:
            return await b.build(self.request(build_dir, env, buildpacks), self.logs.append)
        finally:
            print("\n".join(self.logs))  # shown by pytest when the test fails

    @property
    def log(self) -> str:
        return "\n".join(self.logs)


@pytest.fixture
def env() -> Iterator[Env]:
    with app_readable_tmp("minipaas-test-build-") as root:
        yield Env(root)


def run_web(env: Env, slug: Path, command: str, path: str = "/", timeout: float = 20.0) -> str:
    """Start `command` from the slug like a dyno and return the body of GET `path`."""
    port = free_port()
    scratch = env.root / f"dyno{port}"
    scratch.mkdir()
    job = SandboxJob(slug, dyno_command(command), uid=UID, layer=True, scratch=scratch)
    proc = subprocess.Popen(
        sandbox_argv(job), env=base_env({"PORT": str(port), "DYNO": "web.1", "GREETING": "hi"}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2.0)
                if response.status_code == 200:
                    return response.text
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"the dyno exited with {proc.returncode}:\n{output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answered on port {port}")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def owner_only(path: Path) -> bool:
    info = path.stat()
    return stat.S_IMODE(info.st_mode) == 0o700 and (UID is None or info.st_uid == UID)


# --- python ------------------------------------------------------------------------------


async def test_python_stdlib_builds_runs_and_reuses_the_venv(env: Env) -> None:
    started = time.monotonic()
    result = await env.build(env.app("python-stdlib"), {"GREETING": "secret-not-in-env"})
    cold = time.monotonic() - started
    assert result == BuildResult(["python"], {"web": "python app.py"}, None)
    assert env.logs[0] == "-----> Python app detected"
    assert "-----> requirements.txt lists no packages: nothing to install" in env.logs
    slug = env.root / "build1"
    assert (slug / ".venv/bin/python").exists()
    assert "/app/.venv/bin" in (slug / ".profile.d/python.sh").read_text()
    assert owner_only(slug) and owner_only(env.cache)
    assert run_web(env, slug, "python app.py") == "hello from python-stdlib hi"
    # The dyno runs the venv's python, found through .profile.d.
    assert run_web(env, slug, "python app.py", "/env/VIRTUAL_ENV") == "/app/.venv"

    started = time.monotonic()
    again = await env.build(env.app("python-stdlib"))
    warm = time.monotonic() - started
    assert again == result
    assert "-----> Requirements unchanged: reusing the cached virtualenv" in env.logs
    print(f"python-stdlib build: cold {cold:.2f}s, warm {warm:.2f}s")
    assert warm < 1.5


async def test_config_values_are_written_into_an_owner_only_dir(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENV_DIR was 0755 while the values went in (0700 only afterwards): a local user who
    guessed run/build-N/env/KEY could open a secret then and keep reading it."""
    modes: list[int] = []
    write_text = Path.write_text

    def watched(path: Path, *args: Any, **kwargs: Any) -> int:
        if path.parent.name == "env":
            modes.append(stat.S_IMODE(path.parent.stat().st_mode))
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", watched)
    await env.build(env.app(files={"index.html": "hi"}), {"SECRET": "s3cret", "OTHER": "x"})
    assert modes == [0o700, 0o700]


async def test_network_python_flask_with_uv(env: Env) -> None:
    started = time.monotonic()
    result = await env.build(env.app("python-flask"))
    cold = time.monotonic() - started
    assert result.process_types == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT --workers 2",
        "release": "python migrate.py",
    }
    assert "-----> Installing requirements with uv" in env.logs
    assert any("+ flask==" in line for line in env.logs)
    slug = env.root / "build1"
    assert run_web(env, slug, result.process_types["web"]) == "hello from python-flask hi"

    started = time.monotonic()
    await env.build(env.app("python-flask"))
    warm = time.monotonic() - started
    assert "-----> Requirements unchanged: reusing the cached virtualenv" in env.logs
    assert run_web(env, env.root / "build3", result.process_types["web"], "/health") == "ok"
    print(f"python-flask build: cold {cold:.2f}s, warm {warm:.2f}s")
    assert warm < 1.5


async def test_network_unknown_requirement_fails_with_the_installers_error(env: Env) -> None:
    app = env.app(files={"requirements.txt": "minipaas-no-such-package-4711\n", "app.py": ""})
    with pytest.raises(BuildError) as info:
        await env.build(app)
    assert str(info.value) == (
        "Build failed: the python buildpack's compile step exited with status 1 "
        "(see the build log above)."
    )
    assert "minipaas-no-such-package-4711" in env.log
    assert "not found in the package registry" in env.log or "No solution found" in env.log
    # A failed build leaves no cached venv behind to be reused.
    assert not (env.cache / "venv.key").exists()


async def test_python_without_uv_uses_pip_and_a_pyproject(env: Env) -> None:
    app = env.app(files={
        "pyproject.toml": '[project]\nname = "x"\nversion = "1"\ndependencies = []\n',
        ".python-version": "3.99\n",
    })
    result = await env.build(app, uv_bin=None)
    assert result.buildpacks == ["python"]
    assert any(
        line.startswith(" !     .python-version asks for Python 3.99, which this server does not")
        for line in env.logs
    ), env.log
    assert "-----> pyproject.toml lists no dependencies: nothing to install" in env.logs
    assert (app / ".venv/bin/python").exists()


async def test_python_uv_lock_and_requirements_that_include_other_files(env: Env) -> None:
    pyproject = '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.11"\n'
    pyproject += "dependencies = []\n"
    app = env.app(files={"pyproject.toml": pyproject})
    uv = find_uv()
    assert uv is not None
    subprocess.run([str(uv), "lock", "--offline", "--quiet"], cwd=app, check=True)
    await env.build(app)
    assert "-----> Installing dependencies from uv.lock with uv" in env.logs

    shutil.rmtree(env.cache)
    for _ in range(2):
        app = env.app(files={"requirements.txt": "-r base.txt\n", "base.txt": ""})
        await env.build(app)
        assert "-----> Installing requirements with uv" in env.logs
        assert not (env.cache / "venv.key").exists()


async def test_python_runs_collectstatic_with_the_config_vars(env: Env) -> None:
    manage = (
        "import os, sys\n"
        "open('collected.txt', 'w').write(' '.join(sys.argv[1:]) + ' ' + os.environ['SECRET'])\n"
    )
    app = env.app(files={"requirements.txt": "", "manage.py": manage})
    await env.build(app, {"SECRET": "s3"})
    assert (app / "collected.txt").read_text() == "collectstatic --noinput s3"
    assert "-----> Running: python manage.py collectstatic --noinput" in env.logs

    app = env.app(files={"requirements.txt": "", "manage.py": manage})
    await env.build(app, {"DISABLE_COLLECTSTATIC": "1"})
    assert not (app / "collected.txt").exists()

    app = env.app(files={"requirements.txt": "", "manage.py": "raise SystemExit(3)\n"})
    with pytest.raises(BuildError, match="python buildpack's compile step exited with status 1"):
        await env.build(app)
    assert " !     collectstatic failed; fix it, or set DISABLE_COLLECTSTATIC=1 to skip it." in (
        env.logs
    )


# --- node, static, procfile-only ----------------------------------------------------------


async def test_network_node_express(env: Env) -> None:
    started = time.monotonic()
    result = await env.build(env.app("node-express"))
    cold = time.monotonic() - started
    assert result.buildpacks == ["node"]
    assert result.process_types == {"web": "node server.js"}  # the Procfile wins over npm start
    assert "       Default types for buildpack -> web" in env.logs
    slug = env.root / "build1"
    assert (slug / "node_modules/express").is_dir()
    assert not (slug / ".npm").exists()
    assert run_web(env, slug, "npm start") == "hello from node-express hi"
    started = time.monotonic()
    await env.build(env.app("node-express"))
    warm = time.monotonic() - started
    assert "-----> Dependencies unchanged: reusing the cached node_modules" in env.logs
    print(f"node-express build: cold {cold:.2f}s, warm {warm:.2f}s")


async def test_node_warns_about_another_engine_and_defaults_to_npm_start(env: Env) -> None:
    package = '{"name": "x", "version": "1.0.0", "engines": {"node": "14.x"},'
    package += ' "scripts": {"start": "node -e 0"}}'
    result = await env.build(env.app(files={"package.json": package}))
    assert result.process_types == {"web": "npm start"}
    assert any("package.json asks for node '14.x'" in line for line in env.logs), env.log


async def test_static_site(env: Env) -> None:
    result = await env.build(env.app("static-site"))
    assert result == BuildResult(["static"], {}, ".")
    assert env.logs[0] == "-----> Static app detected"

    app = env.app(files={".static": "public/\n", "public/index.html": "hi"})
    assert (await env.build(app)).static_root == "public"

    app = env.app(files={".static": "../etc\n"})
    with pytest.raises(BuildError, match="static buildpack's compile step exited"):
        await env.build(app)


async def test_procfile_only_app(env: Env) -> None:
    app = env.app(files={
        "Procfile": "web: python3 -m http.server $PORT --bind 127.0.0.1\n",
        "hello.txt": "hello from procfile-only",
    })
    result = await env.build(app)
    assert result.buildpacks == ["procfile"]
    assert env.logs[0] == "-----> Procfile app detected"
    body = run_web(env, app, result.process_types["web"], "/hello.txt")
    assert body == "hello from procfile-only"


# --- failures -------------------------------------------------------------------------------


async def test_no_buildpack_detected(env: Env) -> None:
    with pytest.raises(BuildError) as info:
        await env.build(env.app(files={"README": "nothing to run"}))
    assert str(info.value) == (
        "No buildpack detected: looked for requirements.txt, pyproject.toml, uv.lock (python), "
        "package.json (node), index.html or .static (static), Procfile (procfile-only)."
    )


async def test_bad_procfile_fails_before_compiling(env: Env) -> None:
    with pytest.raises(BuildError, match=r"Procfile line 2 is not 'type: command': 'oops'\."):
        await env.build(env.app(files={"Procfile": "web: x\noops\n", "requirements.txt": ""}))
    assert env.logs == []


async def test_files_are_not_read_through_symlinks(env: Env) -> None:
    app = env.app(files={"requirements.txt": ""})
    (app / "Procfile").symlink_to("/etc/shadow")
    with pytest.raises(BuildError, match="Procfile is a symbolic link"):
        await env.build(app)
    assert not any("root:" in line for line in env.logs)
    # chown -R must not follow links either.
    assert Path("/etc/shadow").stat().st_uid == 0


def write_buildpack(root: Path, name: str, compile_sh: str, release: str = "---") -> Path:
    bp = root / name
    (bp / "bin").mkdir(parents=True)
    scripts = {
        "detect": f"#!/bin/sh\necho {name}\n",
        "compile": "#!/bin/bash\nset -eu\n" + compile_sh,
        "release": f"#!/bin/sh\nprintf '%s\\n' '{release}'\n" if "\n" not in release
        else "#!/bin/sh\ncat <<'EOF'\n" + release + "\nEOF\n",
    }
    for script, text in scripts.items():
        (bp / "bin" / script).write_text(text)
        (bp / "bin" / script).chmod(0o755)
    return bp


async def test_multi_buildpack_from_local_dirs_with_export(env: Env) -> None:
    first = write_buildpack(
        env.root, "first",
        'echo "-----> first compiling"\n'
        'echo "export FROM_FIRST=hello-from-first" > "$(dirname "$0")/../export"\n'
        'echo cached > "$2/note"\n',
    )
    second = write_buildpack(
        env.root, "second",
        'echo "$FROM_FIRST $(id -u) $(cat "$3/COLOR") ${COLOR:-unset} $(cat "$2/note")"'
        ' > "$1/out.txt"\n',
        "---\naddons: []\nconfig_vars:\n  A: b\ndefault_process_types:\n  web: 'python3 -V'\n"
        "  worker: \"sh -c 'sleep 1'\"",
    )
    app = env.app(files={".buildpacks": f"# first, then second\n{first}\n\n{second}\n",
                         "Procfile": "worker: override\n"})
    result = await env.build(app, {"COLOR": "blue"})
    assert result.buildpacks == [str(first), str(second)]
    assert result.process_types == {"web": "python3 -V", "worker": "override"}
    uid = UID if UID is not None else os.geteuid()
    # Exports reach the next buildpack; config vars come as ENV_DIR files, not environment.
    assert (app / "out.txt").read_text() == f"hello-from-first {uid} blue unset cached\n"
    assert "-----> first app detected" in env.logs
    assert "-----> first compiling" in env.logs


async def test_app_json_buildpacks_and_detect_refusal(env: Env) -> None:
    bp = write_buildpack(env.root, "picky", "true\n")
    (bp / "bin/detect").write_text("#!/bin/sh\nexit 1\n")
    app = env.app(files={"app.json": f'{{"buildpacks": [{{"url": "{bp}"}}]}}'})
    with pytest.raises(BuildError, match=f"the buildpack '{bp}' does not support this app"):
        await env.build(app)
    app = env.app(files={"app.json": '{"buildpacks": "x"}'})
    with pytest.raises(BuildError, match=r"app\.json buildpacks must be a list"):
        await env.build(app)
    # Built-ins may be named too, Heroku style.
    app = env.app(files={"app.json": '{"buildpacks": ["heroku/python"]}', "requirements.txt": ""})
    assert (await env.build(app)).buildpacks == ["heroku/python"]


async def test_the_apps_own_buildpacks_come_before_every_other_choice(env: Env) -> None:
    """buildpacks:set, then BUILDPACK_URL, then .buildpacks, then app.json, then detection;
    the log says which one was used."""
    mine = write_buildpack(env.root, "mine", "true\n")
    theirs = write_buildpack(env.root, "theirs", "true\n")
    files = {
        ".buildpacks": f"{theirs}\n",
        "app.json": f'{{"buildpacks": ["{theirs}"]}}',
        "requirements.txt": "",
    }
    result = await env.build(env.app(files=files), {"BUILDPACK_URL": str(theirs)},
                             buildpacks=[str(mine)])
    assert result.buildpacks == [str(mine)]
    assert env.logs[:3] == [
        f"-----> Using the app's buildpacks (buildpacks:set): {mine}",
        " !     BUILDPACK_URL is set too but not used: the app's buildpacks come first",
        "-----> mine app detected",
    ]
    result = await env.build(env.app(files=files), {"BUILDPACK_URL": str(mine)})
    assert result.buildpacks == [str(mine)]
    assert f"-----> Using the buildpack set in BUILDPACK_URL: {mine}" in env.logs
    # Built-ins by any of their names, two at once (multi-buildpack), none detected.
    result = await env.build(env.app(files={"index.html": "hi", "Procfile": "web: x"}),
                             buildpacks=["minipaas/procfile", "heroku/static"])
    assert result.buildpacks == ["minipaas/procfile", "heroku/static"]
    assert "-----> Procfile app detected" in env.logs and "-----> Static app detected" in env.logs
    # The rule buildpacks:set applies holds for BUILDPACK_URL at build time too.
    for url, message in [
        ("heroku/ruby", "Unknown buildpack 'heroku/ruby': the built-in ones are heroku/python"),
        ("ssh://h/bp.git", "uses ssh://, which minipaas does not fetch from"),
    ]:
        with pytest.raises(BuildError, match=re.escape(message)):
            await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": url})


def git(*args: str, cwd: Path | None = None) -> None:
    genv = {"PATH": os.environ["PATH"], "HOME": str(cwd or "/"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=cwd, env=genv, check=True, capture_output=True)


async def test_buildpack_from_a_git_repo(env: Env) -> None:
    work = write_buildpack(
        env.root, "gitbp", 'echo "-----> v1 compiling"\n', "---\ndefault_process_types:\n  web: v1"
    )
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "v1", cwd=work)
    git("tag", "v1", cwd=work)
    release = "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: v2\\n'\n"
    (work / "bin/release").write_text(release)
    git("commit", "-q", "-am", "v2", cwd=work)
    bare = env.root / "bp.git"
    git("clone", "-q", "--bare", str(work), str(bare))

    url = f"file://{bare}"
    result = await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": url})
    assert result == BuildResult([url], {"web": "v2"}, None)
    assert f"-----> Fetching buildpack {url}" in env.logs
    result = await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": url + "#v1"})
    assert result.process_types == {"web": "v1"}
    # The second build with the same URL reuses (and refreshes) the clone.
    clones = sorted(p.name for p in (env.external / "demo").iterdir())
    await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": url})
    assert sorted(p.name for p in (env.external / "demo").iterdir()) == clones

    with pytest.raises(BuildError, match="Could not fetch the buildpack"):
        await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": f"file://{env.root}/nope.git"})
    with pytest.raises(BuildError, match="is neither a directory path nor a git URL"):
        await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": "--upload-pack=touch /x"})


async def test_a_step_past_its_deadline_is_killed(env: Env) -> None:
    bp = write_buildpack(env.root, "sleepy", "echo started\nsleep 60 &\nsleep 60\n")
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        await env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": str(bp)}, timeout=1.5)
    assert str(info.value) == (
        f"Build failed: the {bp} buildpack's compile step took longer than 1.5 seconds and was "
        "stopped."
    )
    assert time.monotonic() - started < 10
    assert "started" in env.logs
    # Nothing of the step survives.
    if UID is not None:
        ps = subprocess.run(["pgrep", "-u", str(UID), "-f", "sleep 60"],
                            capture_output=True, text=True, check=False)
        assert ps.stdout.strip() == ""


async def test_cancelled_build_kills_its_step(env: Env) -> None:
    bp = write_buildpack(env.root, "slow", "echo go\nsleep 60\n")
    task = asyncio.create_task(env.build(env.app(files={"x": ""}), {"BUILDPACK_URL": str(bp)}))
    deadline = time.monotonic() + 10
    while "go" not in env.logs:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if UID is not None:
        ps = subprocess.run(["pgrep", "-u", str(UID), "-f", "sleep 60"],
                            capture_output=True, text=True, check=False)
        assert ps.stdout.strip() == ""


# --- release output ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("---\n", {}),
        ("---\ndefault_process_types: {}\n", {}),
        ("---\ndefault_process_types:\n  web: npm start\n", {"web": "npm start"}),
        (
            "---\naddons:\n  - heroku-postgresql\nconfig_vars:\n  PATH: /app/bin\n"
            "default_process_types:\n  web: \"gunicorn app:app\"\n  worker: 'it''s'\n"
            "  # a comment\n  clock: bin/clock # trailing\n",
            {"web": "gunicorn app:app", "worker": "it's", "clock": "bin/clock"},
        ),
    ],
)
def test_parse_release(text: str, expected: dict[str, str]) -> None:
    assert parse_release(text, "x") == expected


@pytest.mark.parametrize(
    "text",
    ["default_process_types: web", "default_process_types:\n  no colon here",
     "default_process_types:\n  we b: x", "not yaml at all"],
)
def test_parse_release_rejects(text: str) -> None:
    with pytest.raises(BuildError, match="The x buildpack's release step printed line"):
        parse_release(text, "x")


# --- limits ----------------------------------------------------------------------------------


@pytest.mark.skipif(UID is None, reason="process limits apply to app uids, which need root")
def test_a_fork_bomb_stops_at_the_app_uids_process_limit(env: Env) -> None:
    slug = env.root / "slug"
    slug.mkdir()
    (slug / "bomb.py").write_text(FORK_BOMB)
    scratch = env.root / "scratch"
    scratch.mkdir()
    job = SandboxJob(slug, dyno_command("python3 bomb.py"), uid=UID, layer=True,
                     scratch=scratch, max_processes=64)
    assert SandboxJob(slug, ["true"], uid=UID).max_processes == 1024  # the default
    proc = subprocess.run(sandbox_argv(job), env=base_env(), capture_output=True, text=True,
                          timeout=60, start_new_session=True, check=False)
    words = proc.stdout.split()
    assert words[:3] == ["fork", "failed", "after"], proc.stdout + proc.stderr
    assert 40 < int(words[3]) < 64  # less what the sandbox's own processes take
    assert "Resource temporarily unavailable" in proc.stdout


FILL_SCRATCH = """
import os
def write(path, mib):
    try:
        with open(path, "wb") as f:
            for _ in range(mib):
                f.write(b"x" * 1048576)
                f.flush()
        print("wrote", path)
    except OSError as exc:
        print("full", path, exc.strerror)
for path, mib in [("/tmp/a", 20), ("/var/tmp/b", 20), ("/dev/shm/c", 20), ("/app/d", 20)]:
    write(path, mib)
try:
    open("/dev/e", "wb").close()
    print("wrote /dev/e")
except OSError as exc:
    print("refused /dev/e", exc.strerror)
"""


def test_a_dynos_layer_and_temporary_dirs_share_one_bounded_tmpfs(env: Env) -> None:
    """tmpfs pages belong to no process, so the OOM killer cannot free what a dyno leaves in
    /tmp: before, /tmp, /var/tmp, /dev/shm and the /app layer were tmpfs mounts of half the
    host's RAM each, and /dev itself was writable (another one). Now they share one tmpfs of
    `scratch_bytes`: the fourth 20 MiB write into a 64 MiB scratch finds it full."""
    slug = env.root / "slug"
    slug.mkdir()
    (slug / "fill.py").write_text(FILL_SCRATCH)
    scratch = env.root / "scratch"
    scratch.mkdir()
    job = SandboxJob(slug, dyno_command("python3 fill.py"), uid=UID, layer=True,
                     scratch=scratch, scratch_bytes=64 * 1024 * 1024)
    proc = subprocess.run(sandbox_argv(job), env=base_env(), capture_output=True, text=True,
                          timeout=60, start_new_session=True, check=False)
    assert proc.stdout.splitlines() == [
        "wrote /tmp/a", "wrote /var/tmp/b", "wrote /dev/shm/c",
        "full /app/d No space left on device", "refused /dev/e Read-only file system",
    ], proc.stdout + proc.stderr
    assert list(scratch.iterdir()) == []  # the tmpfs went with the dyno's mount namespace
    assert sorted(p.name for p in slug.iterdir()) == ["fill.py"]


def test_a_builds_temporary_dirs_are_on_disk(env: Env) -> None:
    """A build's /tmp, /var/tmp and /dev/shm are the `tmp_dir` on disk (big wheels and
    downloads need room, and RAM would hold them until the build ends); /dev is read-only."""
    build = env.root / "build"
    build.mkdir()
    (build / "fill.py").write_text(FILL_SCRATCH.replace('("/app/d", 20)', '("/app/d", 1)'))
    tmp_dir = env.root / "tmp"
    make_tmp_dirs(tmp_dir, UID)
    if UID is not None:
        os.chown(build, UID, UID)
    job = SandboxJob(build, ["python3", "fill.py"], uid=UID, layer=False, tmp_dir=tmp_dir)
    proc = subprocess.run(sandbox_argv(job), env=base_env(), capture_output=True, text=True,
                          timeout=60, start_new_session=True, check=False)
    assert proc.stdout.splitlines() == [
        "wrote /tmp/a", "wrote /var/tmp/b", "wrote /dev/shm/c", "wrote /app/d",
        "refused /dev/e Read-only file system",
    ], proc.stdout + proc.stderr
    sizes = {p.relative_to(tmp_dir).as_posix(): p.stat().st_size
             for p in tmp_dir.rglob("*") if p.is_file()}
    assert sizes == {"tmp/a": 20 << 20, "vartmp/b": 20 << 20, "shm/c": 20 << 20}
    assert stat.S_IMODE(tmp_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("memory", "expected"),
    [(512 << 20, 64 << 20), (1 << 30, 128 << 20), (2 << 30, 256 << 20), (24 << 30, 1 << 30),
     ((1 << 30) + 12345, 128 << 20)],
)
def test_scratch_bytes_for(memory: int, expected: int) -> None:
    assert scratch_bytes_for(memory) == expected
