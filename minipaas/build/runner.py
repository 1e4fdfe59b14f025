"""The buildpack runner: turns an exported source tree into a slug, in place, with classic
Heroku buildpacks (`bin/detect`, `bin/compile`, `bin/release`).

Every buildpack step runs in the sandbox (`minipaas.sandbox`) as the app's uid, with the tree at
/app, the buildpack at /buildpack, the app's cache at /cache and its config vars as files in
/env (never in the environment, as on Heroku). Buildpacks come from the app's own list
(`buildpacks:set`), `BUILDPACK_URL`, a `.buildpacks` file, app.json `buildpacks`, in that order,
or else the first built-in whose detect says yes.
This module starts no long-lived process and touches no database, git repository of an app or
router; files inside the tree are read without following symbolic links, because the tree is
the pusher's and the runner is root.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from minipaas.build._process import StepOutput, StepTimeout, run_step
from minipaas.build.appjson import parse_app_json
from minipaas.build.buildpack import (
    BUILTIN_DIR,
    BUILTINS,
    LOOKED_FOR,
    builtin_name,
    display_name,
    fetch,
    parse_release,
)
from minipaas.build.procfile import parse_procfile
from minipaas.errors import BuildError, UserError
from minipaas.names import app_name, config_key
from minipaas.sandbox import Bind, SandboxJob, base_env, make_tmp_dirs, sandbox_argv

#: What buildpacks see as $STACK. Heroku buildpacks check it; Debian 12 is closest to heroku-22.
STACK = "heroku-22"
#: Where the host's uv binary appears in the sandbox (the python buildpack reads $MINIPAAS_UV).
SANDBOX_UV = "/minipaas/bin/uv"
#: Sources every earlier buildpack's `export` file, then runs the compile step (multi-buildpack).
COMPILE_SCRIPT = (
    'for f in /exports/*/export; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; exec "$@"'
)
MAX_APP_FILE = 1 << 20

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    """One build. `build_dir` is built in place and becomes the slug."""

    app: str
    build_dir: Path  # the exported source tree
    cache_dir: Path  # per-app cache, persists between builds
    env: Mapping[str, str]  # the app's config vars, handed to buildpacks as ENV_DIR files
    uid: int | None  # the app's uid (as root); None = the current user
    scratch: Path  # an empty work dir for the runner; the caller removes it
    buildpacks: Sequence[str] = ()  # the app's own list (`buildpacks:set`); first if not empty


@dataclass(frozen=True)
class BuildResult:
    buildpacks: list[str]  # built-in names or URLs, in the order they ran
    process_types: dict[str, str]  # the Procfile wins over bin/release default_process_types
    static_root: str | None  # for static sites: the directory inside the slug to serve


@dataclass(frozen=True)
class _Pack:
    url: str  # as requested ("python" for an auto-detected built-in)
    name: str  # for messages
    workdir: Path  # a writable copy of the buildpack, bound at /buildpack


def find_uv() -> Path | None:
    """The host's uv binary: next to a frozen minipaas binary, the `uv` package's, else PATH."""
    if getattr(sys, "frozen", False):
        beside = Path(sys.executable).resolve().parent / "uv"
        if beside.is_file():
            return beside
    try:
        import uv

        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return Path(found) if found else None


def _readable_by_all(path: Path) -> bool:
    """Can any uid reach and run `path` (every parent searchable, the file r-x for others)?"""
    try:
        if path.stat().st_mode & 0o005 != 0o005:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in path.resolve().parents)
    except OSError:
        return False


def _chown_tree(root: Path, uid: int) -> None:
    """chown -R without following symbolic links (the tree may hold links to /etc/shadow)."""
    os.chown(root, uid, uid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def _copy_builtin(source: Path, workdir: Path, uid: int | None) -> None:
    shutil.copytree(source, workdir, symlinks=True)
    for script in ("detect", "compile", "release"):  # whatever modes the install kept
        (workdir / "bin" / script).chmod(0o755)
    if uid is not None:
        _chown_tree(workdir, uid)


def read_app_file(root: Path, relpath: str) -> str | None:
    """The text of `relpath` inside the app tree, or None when absent. Symbolic links are
    refused at every step, so a tree cannot make root read a file outside it."""
    parts = PurePosixPath(relpath).parts
    fds: list[int] = []
    try:
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        for part in parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            raise BuildError(f"{relpath} is not a regular file.")
        data = os.read(fds[-1], MAX_APP_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BuildError(
                f"{relpath} is a symbolic link; minipaas reads it only as a regular file."
            ) from None
        raise
    finally:
        for fd in fds:
            os.close(fd)
    if len(data) > MAX_APP_FILE:
        raise BuildError(f"{relpath} is larger than {MAX_APP_FILE // 1024} KiB.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BuildError(f"{relpath} is not UTF-8 text.") from None


def _procfile(build_dir: Path) -> dict[str, str]:
    text = read_app_file(build_dir, "Procfile")
    if text is None:
        return {}
    try:
        return parse_procfile(text)
    except UserError as exc:
        raise BuildError(str(exc)) from None


def _static_root(build_dir: Path) -> str | None:
    text = read_app_file(build_dir, ".minipaas/static_root")
    if text is None:
        return None
    root = text.strip() or "."
    path = PurePosixPath(root)
    ok = not path.is_absolute() and ".." not in path.parts
    if ok:
        # Every component must be a real directory: the router serves what it points at.
        current = build_dir
        for part in path.parts:
            current = current / part
            if not stat.S_ISDIR(current.lstat().st_mode):
                ok = False
                break
    if not ok:
        raise BuildError(f"The static root {root!r} is not a directory inside the app.")
    return str(path)


def _drop_unservable(top: Path) -> list[tuple[str, str]]:
    """Delete what Caddy must not serve under `top`; return (relative path, why) for each.

    Caddy serves static slugs as root: a committed link to /etc/shadow must not be followed.
    Nor may it open a named pipe (or a socket, a device) that a build left there: opening a
    pipe blocks until a writer comes, and each such request held one of Caddy's threads for
    ever (at 10,000 Caddy dies, with every app's routes).
    """
    dropped = []
    real_top = os.path.realpath(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            why = None
            if stat.S_ISLNK(mode):
                target = os.path.realpath(full)
                if os.path.commonpath([real_top, target]) != real_top:
                    why = "it is a symlink to outside the site"
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                why = "it is not a regular file or a directory"
            if why is not None:
                os.unlink(full)
                dropped.append((os.path.relpath(full, top), why))
    return dropped


class Builder:
    """Runs builds; holds only its settings, so one instance serves every app."""

    def __init__(
        self,
        *,
        builtin_dir: Path | None = None,
        external_dir: Path,
        timeout: float = 900.0,
        uv_bin: Path | Literal["auto"] | None = "auto",
    ) -> None:
        self.builtin_dir = builtin_dir or BUILTIN_DIR
        self.external_dir = external_dir  # clones of git buildpacks, per app
        self.timeout = timeout  # per step (detect, compile, release, git fetch)
        self.uv_bin = find_uv() if uv_bin == "auto" else uv_bin

    async def build(self, req: BuildRequest, log: Log) -> BuildResult:
        """Build `req.build_dir` in place; `log` gets each output line as it comes.
        Raises `BuildError` with one sentence saying why the build failed."""
        app_name(req.app)
        await asyncio.to_thread(self._prepare, req)
        _procfile(req.build_dir)  # a broken Procfile fails before minutes of compiling

        urls = self._requested_buildpacks(req, log)
        if urls is None:
            packs = [await self._detect_builtin(req, log)]
        else:
            packs = []
            for index, url in enumerate(urls):
                pack = await self._pack(req, index, url, log)
                label = await self._detect(req, pack, log)
                if label is None:
                    raise BuildError(
                        f"Build failed: the buildpack {pack.name!r} does not support this app "
                        "(its detect step said no)."
                    )
                log(f"-----> {label} app detected")
                packs.append(pack)

        for index, pack in enumerate(packs):
            await self._compile(req, pack, packs[:index], log)

        defaults: dict[str, str] = {}
        for pack in packs:
            defaults.update(await self._release(req, pack, log))
        procfile = _procfile(req.build_dir)
        log("-----> Discovering process types")
        if procfile:
            log(f"       Procfile declares types     -> {', '.join(procfile)}")
        if defaults:
            log(f"       Default types for buildpack -> {', '.join(defaults)}")
        if not procfile and not defaults:
            log("       No process types (no Procfile, no defaults from the buildpack)")
        static_root = _static_root(req.build_dir)
        if static_root is not None:
            for path, why in _drop_unservable(req.build_dir / static_root):
                log(f" !     Not serving {path}: {why}.")
        return BuildResult(
            buildpacks=[pack.url for pack in packs],
            process_types={**defaults, **procfile},
            static_root=static_root,
        )

    # --- preparation -------------------------------------------------------------------------

    def _prepare(self, req: BuildRequest) -> None:
        """Ownership and modes: the app's uid owns its tree and cache, no other uid reads them."""
        req.cache_dir.mkdir(parents=True, exist_ok=True)
        # The sandbox (running as the uid) must traverse scratch to reach the dirs bound from it.
        req.scratch.chmod(0o711)
        env_dir = req.scratch / "env"
        env_dir.mkdir(mode=0o700)  # config values go in: owner-only before the first is written
        for key, value in req.env.items():
            (env_dir / config_key(key)).write_text(value)
        (req.scratch / "buildpacks").mkdir()
        # /tmp, /var/tmp and /dev/shm on disk: wheels and downloads can be big, and RAM (a tmpfs)
        # would hold whatever a build leaves there until it ends.
        make_tmp_dirs(req.scratch / "tmp", req.uid)
        if req.uid is not None:
            _chown_tree(req.build_dir, req.uid)
            if req.cache_dir.stat().st_uid != req.uid:  # normally it is: the uid filled it
                _chown_tree(req.cache_dir, req.uid)
            _chown_tree(env_dir, req.uid)
            os.chown(req.scratch / "buildpacks", req.uid, req.uid)
        for path in (req.build_dir, req.cache_dir, env_dir, req.scratch / "buildpacks"):
            path.chmod(0o700)

    def _requested_buildpacks(self, req: BuildRequest, log: Log) -> list[str] | None:
        """The buildpacks the app asks for, first found of: its own list, BUILDPACK_URL, a
        `.buildpacks` file, app.json; None: detect. The log says which one it was."""
        url = req.env.get("BUILDPACK_URL", "").strip()
        if req.buildpacks:
            log(f"-----> Using the app's buildpacks (buildpacks:set): {', '.join(req.buildpacks)}")
            if url:
                log(" !     BUILDPACK_URL is set too but not used: the app's buildpacks come first")
            return list(req.buildpacks)
        if url:
            log(f"-----> Using the buildpack set in BUILDPACK_URL: {url}")
            return [url]
        text = read_app_file(req.build_dir, ".buildpacks")
        if text is not None:
            urls = [line.strip() for line in text.splitlines()]
            urls = [u for u in urls if u and not u.startswith("#")]
            if urls:
                log(f"-----> Using the buildpacks listed in .buildpacks: {', '.join(urls)}")
                return urls
        text = read_app_file(req.build_dir, "app.json")
        if text is not None:
            try:
                urls = parse_app_json(text).buildpacks
            except UserError as exc:
                raise BuildError(str(exc)) from None
            if urls:
                log(f"-----> Using the buildpacks listed in app.json: {', '.join(urls)}")
                return urls
        return None

    async def _pack(self, req: BuildRequest, index: int, url: str, log: Log) -> _Pack:
        """A writable copy of buildpack `url` for this build, owned by the app's uid."""
        name = builtin_name(url)
        workdir = req.scratch / "buildpacks" / f"{index:02d}"
        if name is not None:
            await asyncio.to_thread(_copy_builtin, self.builtin_dir / name, workdir, req.uid)
            return _Pack(url, display_name(url), workdir)
        source = await fetch(
            url, self.external_dir / req.app, uid=req.uid, log=log, time_limit=self.timeout
        )
        workdir.mkdir()
        if req.uid is not None:
            os.chown(workdir, req.uid, req.uid)
        # The copy is made inside the sandbox, as the uid: a path names only what it may read.
        pack = _Pack(url, url, workdir)
        status = await self._step(
            req, pack, "copy", ["/bin/cp", "-a", "/buildpack-src/.", "/buildpack/"], log,
            binds=[Bind(source, "/buildpack-src")],
        )
        if status.returncode != 0:
            raise BuildError(
                f"Build failed: could not read the buildpack {url!r} "
                f"(copying it exited with status {status.returncode})."
            )
        return pack

    # --- the three steps ---------------------------------------------------------------------

    async def _step(
        self,
        req: BuildRequest,
        pack: _Pack,
        step: str,
        command: Sequence[str],
        log: Log,
        *,
        binds: Sequence[Bind] = (),
        extra_env: Mapping[str, str] | None = None,
        capture_stdout: bool = False,
    ) -> StepOutput:
        """Run one step of `pack` in the sandbox: the tree at /app, the buildpack at /buildpack."""
        job = SandboxJob(
            app_dir=req.build_dir,
            command=command,
            uid=req.uid,
            layer=False,
            tmp_dir=req.scratch / "tmp",
            binds=[Bind(pack.workdir, "/buildpack", writable=True), *binds],
            die_with_parent=True,  # a killed server's build must not run on unseen
        )
        env = base_env({"STACK": STACK, **(extra_env or {})})
        try:
            return await run_step(
                sandbox_argv(job), env=env, on_line=log, time_limit=self.timeout,
                capture_stdout=capture_stdout,
            )
        except StepTimeout:
            raise BuildError(
                f"Build failed: the {pack.name} buildpack's {step} step took longer than "
                f"{self.timeout:g} seconds and was stopped."
            ) from None

    async def _detect(self, req: BuildRequest, pack: _Pack, log: Log) -> str | None:
        """What the buildpack calls the app ("Python"), or None when it does not apply."""
        out = await self._step(
            req, pack, "detect", ["/buildpack/bin/detect", "/app"], log, capture_stdout=True
        )
        if out.returncode != 0:
            return None
        lines = out.stdout.strip().splitlines()
        return lines[0].strip() if lines else pack.name

    async def _detect_builtin(self, req: BuildRequest, log: Log) -> _Pack:
        for index, name in enumerate(BUILTINS):
            pack = await self._pack(req, index, name, log)
            label = await self._detect(req, pack, log)
            if label is not None:
                log(f"-----> {label} app detected")
                return pack
        raise BuildError(f"No buildpack detected: looked for {LOOKED_FOR}.")

    async def _compile(
        self, req: BuildRequest, pack: _Pack, earlier: Sequence[_Pack], log: Log
    ) -> None:
        binds = [
            Bind(req.cache_dir, "/cache", writable=True),
            Bind(req.scratch / "env", "/env"),
            # Earlier buildpacks' dirs, for their `export` files (multi-buildpack).
            *(Bind(p.workdir, f"/exports/{i:02d}") for i, p in enumerate(earlier)),
        ]
        extra_env = {}
        if self.uv_bin is not None and _readable_by_all(self.uv_bin):
            binds.append(Bind(self.uv_bin, SANDBOX_UV))
            extra_env["MINIPAAS_UV"] = SANDBOX_UV
        command = [
            "/bin/bash", "-c", COMPILE_SCRIPT, "compile",
            "/buildpack/bin/compile", "/app", "/cache", "/env",
        ]
        out = await self._step(req, pack, "compile", command, log, binds=binds, extra_env=extra_env)
        if out.returncode != 0:
            raise BuildError(
                f"Build failed: the {pack.name} buildpack's compile step exited with status "
                f"{out.returncode} (see the build log above)."
            )

    async def _release(self, req: BuildRequest, pack: _Pack, log: Log) -> dict[str, str]:
        command = ["/buildpack/bin/release", "/app"]
        out = await self._step(req, pack, "release", command, log, capture_stdout=True)
        if out.returncode != 0:
            raise BuildError(
                f"Build failed: the {pack.name} buildpack's release step exited with status "
                f"{out.returncode} (see the build log above)."
            )
        return parse_release(out.stdout, pack.name)
