"""What a buildpack is to minipaas: the built-in ones, which URLs name a buildpack at all
(`check_url`, the one rule for `buildpacks:set` and for builds), an app's list of buildpacks as
`buildpacks:add/set/remove` edit it (pure functions), turning a buildpack URL into a local
directory (a path as is, a git URL cloned with `git clone --depth 1`), and reading the YAML that
`bin/release` prints.

Runs no buildpack code itself (the runner does that, in the sandbox). Cloning runs as the app's
uid, so a `file://` URL reaches only what that uid may read, never another app's repository.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from minipaas.build._process import StepTimeout, run_step
from minipaas.errors import BuildError, Conflict, NotFound, UserError
from minipaas.names import process_type, shown
from minipaas.sandbox import DEFAULT_PATH

#: The built-in buildpacks, in the order they are tried when the app names none.
BUILTINS = ("python", "node", "static", "procfile")
BUILTIN_DIR = Path(__file__).with_name("buildpacks")
#: Buildpack URLs that mean a built-in one (apps written for Heroku name these).
ALIASES = {"heroku/python": "python", "heroku/nodejs": "node", "heroku/static": "static"}
#: What the built-ins' detect scripts look for, for the "no buildpack detected" message.
LOOKED_FOR = (
    "requirements.txt, pyproject.toml, uv.lock (python), package.json (node), "
    "index.html or .static (static), Procfile (procfile-only)"
)
#: Transports a buildpack URL may use (git's `ext::` and friends stay off).
GIT_PROTOCOLS = "file:git:http:https"
#: The most buildpacks one app may list with `buildpacks:add` (Heroku allows a few too).
MAX_BUILDPACKS = 10
#: The longest buildpack URL or path taken.
MAX_URL = 2048
#: Seconds a buildpack fetch over HTTP(S) may go without receiving a byte before git gives up.
#: Without it an unreachable or stalled host held the push for the whole step timeout.
FETCH_STALL_SECONDS = 30
#: The longest one git command of a buildpack fetch may take, whatever the build's step timeout:
#: a shallow clone takes seconds, and `git://` has no stall detection of its own.
FETCH_TIME_LIMIT = 120.0


def builtin_name(url: str) -> str | None:
    """The built-in buildpack a URL names (`python`, `minipaas/python`, `heroku/python`)."""
    name = ALIASES.get(url, url.removeprefix("minipaas/"))
    return name if name in BUILTINS else None


def display_name(url: str) -> str:
    """How a buildpack is named in messages: built-ins by name, others by URL."""
    name = builtin_name(url)
    if name == "procfile":
        return "procfile-only"
    return name or url


def short_names() -> list[str]:
    """The names that mean a built-in buildpack, as messages list them: Heroku's names where
    they exist (`heroku/python`), else minipaas's own (`minipaas/procfile`)."""
    heroku = {builtin: alias for alias, builtin in ALIASES.items()}
    return [heroku.get(name, f"minipaas/{name}") for name in BUILTINS]


def check_url(url: str) -> str:
    """`url` if it can name a buildpack: a built-in name, an absolute directory path or a git
    URL (https, http, git or file) whose `#ref` git cannot take for an option; else `UserError`
    with one sentence naming it. Whether the path or repository is there (and readable by the
    app) is only known when a build fetches it."""
    known = ", ".join(short_names())
    if not url:
        raise UserError(
            f"No buildpack given: name a built-in one ({known}), a git URL or a directory path."
        )
    if len(url) > MAX_URL:
        raise UserError(f"Buildpack {shown(url)} is longer than {MAX_URL} characters.")
    if not url.isprintable():
        raise UserError(f"Buildpack {shown(url)} holds a control character.")
    if builtin_name(url) is not None or is_local(url):
        return url
    if "://" not in url and url.partition("/")[0] in ("heroku", "minipaas"):
        raise UserError(
            f"Unknown buildpack {shown(url)}: the built-in ones are {known}; any other is "
            "named by its git URL or a directory path."
        )
    base, ref = split_ref(url)
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://", base)
    if not base or scheme is None:
        raise UserError(
            f"Buildpack {shown(url)} is neither a directory path nor a git URL such as "
            f"'https://github.com/org/buildpack.git#v1' (nor a built-in one: {known})."
        )
    if scheme.group(1) not in GIT_PROTOCOLS.split(":"):
        raise UserError(
            f"Buildpack {shown(url)} uses {scheme.group(1)}://, which minipaas does not fetch "
            "from: use https://, http://, git:// or file://."
        )
    if ref is not None and (ref.startswith("-") or " " in ref):
        # `git fetch origin REF` would read "--upload-pack=/path/to/script" as an option and
        # run that script on the host, outside the sandbox.
        raise UserError(
            f"Buildpack {shown(url)} names the ref {shown(ref)}, which is not a branch, tag or "
            "commit: a ref cannot start with '-' or hold spaces or control characters."
        )
    return url


def _same(a: str, b: str) -> bool:
    """Do two URLs name the same buildpack (`heroku/python` and `python` do)?"""
    return a == b or (builtin_name(a) is not None and builtin_name(a) == builtin_name(b))


def _index(urls: Sequence[str], index: int, app: str, *, past_end: bool) -> int:
    """The 0-based position of 1-based `index` in `urls` (or just past them, when `past_end`)."""
    last = len(urls) + (1 if past_end else 0)
    if not 1 <= index <= last:
        if last == 0:
            raise UserError(f"Invalid index {index}: {app!r} has no buildpacks.")
        has = f"{len(urls)} buildpack{'s' if len(urls) != 1 else ''}"
        raise UserError(
            f"Invalid index {index}: {app!r} has {has}; use "
            + ("1." if last == 1 else f"1 to {last}.")
        )
    return index - 1


def _not_listed(urls: Sequence[str], url: str, app: str, *, but: int | None = None) -> None:
    for n, other in enumerate(urls):
        if n != but and _same(other, url):
            raise Conflict(
                f"The buildpack {shown(url)} is already set on {app!r} (number {n + 1})."
            )


def added(urls: Sequence[str], url: str, index: int | None, app: str) -> list[str]:
    """`buildpacks:add URL [-i N]`: `url` inserted at 1-based `index`, or appended."""
    check_url(url)
    _not_listed(urls, url, app)
    if len(urls) >= MAX_BUILDPACKS:
        raise Conflict(
            f"{app!r} has {len(urls)} buildpacks, the most an app may have; remove one first."
        )
    at = len(urls) if index is None else _index(urls, index, app, past_end=True)
    return [*urls[:at], url, *urls[at:]]


def set_at(urls: Sequence[str], url: str, index: int | None, app: str) -> list[str]:
    """`buildpacks:set URL [-i N]`: `url` in place of buildpack N (the first by default), or
    appended when N is one past the last."""
    at = _index(urls, 1 if index is None else index, app, past_end=True)
    check_url(url)
    _not_listed(urls, url, app, but=at)
    return [*urls[:at], url, *urls[at + 1 :]]


def removed(urls: Sequence[str], url: str | None, index: int | None, app: str) -> list[str]:
    """`buildpacks:remove URL` or `buildpacks:remove -i N`: the list without that one."""
    if url is None and index is None:
        raise UserError(
            "No buildpack given: name the one to remove by its URL or its index (-i N)."
        )
    if url is not None and index is not None:
        raise UserError("Name the buildpack to remove by its URL or by its index, not both.")
    if index is not None:
        at = _index(urls, index, app, past_end=False)
    else:
        assert url is not None
        found = [n for n, other in enumerate(urls) if other == url]
        if not found:
            raise NotFound(
                f"{app!r} has no buildpack {shown(url)}; nothing was removed "
                f"(`minipaas buildpacks -a {app}` lists them)."
            )
        at = found[0]
    return [*urls[:at], *urls[at + 1 :]]


def replaced(urls: Sequence[str], new: Sequence[str], app: str) -> list[str]:
    """The whole list at once (an empty one: `buildpacks:clear`)."""
    if len(new) > MAX_BUILDPACKS:
        raise UserError(
            f"{len(new)} buildpacks are too many: an app may have at most {MAX_BUILDPACKS}."
        )
    result: list[str] = []
    for url in new:
        check_url(url)
        _not_listed(result, url, app)
        result.append(url)
    return result


def split_ref(url: str) -> tuple[str, str | None]:
    """`https://host/bp.git#v2` → (`https://host/bp.git`, `v2`)."""
    base, hash_sign, ref = url.partition("#")
    return base, (ref or None) if hash_sign else None


def is_local(url: str) -> bool:
    """A buildpack given as a directory on this server rather than a git URL."""
    return url.startswith("/")


def clone_dir(root: Path, url: str) -> Path:
    """Where the clone of `url` (with its ref) lives under `root`."""
    return root / hashlib.sha256(url.encode()).hexdigest()[:16]


def _git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": DEFAULT_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        "GIT_CONFIG_NOSYSTEM": "1",
        # Written by _clone_root: safe.directory=* (clones run as the app's uid and the source
        # repository may belong to someone else; git 2.39 reads it only from global config).
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        # Less than 1 byte/s for that long: git (curl) gives up and says so.
        "GIT_HTTP_LOW_SPEED_LIMIT": "1",
        "GIT_HTTP_LOW_SPEED_TIME": str(FETCH_STALL_SECONDS),
    }


def _as_uid(uid: int | None, argv: list[str]) -> list[str]:
    if uid is None:
        return argv
    return [
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
        "--", *argv,
    ]


def _clone_root(root: Path, uid: int | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(root, uid, uid)
    root.chmod(0o700)
    # O_NOFOLLOW: the directory belongs to the app's uid, which could plant a symbolic link.
    fd = os.open(root / ".gitconfig", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as config:
        config.write("[safe]\n\tdirectory = *\n")


def _readable_dir(path: Path, uid: int | None) -> bool:
    """Can `uid` (no groups; None: this process) list `path` and reach it from `/`?

    Asked as root, `os.path.isdir` alone answered whether paths inside root-only directories
    exist (a different message than for an unreadable one); now both get the same answer.
    """
    if uid is None:
        return os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK)

    def allows(st: os.stat_result, bits: int) -> bool:
        shift = 6 if st.st_uid == uid else 0
        return (st.st_mode >> shift) & bits == bits

    try:
        current = Path("/")
        parts = path.parts[1:]
        for index, part in enumerate(parts):
            if not allows(current.stat(), 0o1):  # search
                return False
            current = current / part
            if current.is_symlink():  # checked where it leads (realpath leaves no links)
                target = Path(os.path.realpath(current), *parts[index + 1 :])
                return _readable_dir(Path(os.path.realpath(target)), uid)
        st = current.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and allows(st, 0o5)


async def fetch(
    url: str,
    root: Path,
    *,
    uid: int | None,
    log: Callable[[str], None],
    time_limit: float,
) -> Path:
    """A local directory holding the buildpack `url`: the path itself, or an up-to-date clone
    under `root` (created for `uid`). Raises `BuildError` when it cannot be had."""
    try:
        check_url(url)  # the rule `buildpacks:set` applies; BUILDPACK_URL and files meet it here
    except UserError as exc:
        raise BuildError(str(exc)) from None
    if is_local(url):
        path = Path(url)
        if not await asyncio.to_thread(_readable_dir, path, uid):
            raise BuildError(
                f"Buildpack {url!r} is not a directory that the app may read on this server."
            )
        return path
    base, ref = split_ref(url)
    time_limit = min(time_limit, FETCH_TIME_LIMIT)
    await asyncio.to_thread(_clone_root, root, uid)
    dest = clone_dir(root, url)
    env = _git_env(root)

    def indent(line: str) -> None:
        log("       " + line)

    async def git(*args: str) -> int:
        try:
            out = await run_step(
                _as_uid(uid, ["git", *args]), env=env, on_line=indent, time_limit=time_limit,
                cwd=str(root),
            )
        except StepTimeout:
            raise BuildError(
                f"Fetching the buildpack {url!r} took longer than {time_limit:g} seconds."
            ) from None
        return out.returncode

    log(f"-----> Fetching buildpack {url}")
    if await asyncio.to_thread(os.path.isdir, dest / ".git"):
        # Reuse the clone; bring it up to date when the remote answers.
        target = ref or "HEAD"
        fetch = ["fetch", "--quiet", "--depth", "1", "--end-of-options", "origin", target]
        if await git("-C", str(dest), *fetch) == 0:
            await git("-C", str(dest), "checkout", "--quiet", "--force", "--detach", "FETCH_HEAD")
        else:
            log(" !     Could not update the buildpack; using the copy fetched before")
        return dest
    partial = dest.with_name(dest.name + ".partial")
    await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
    branch = ["--branch", ref] if ref else []
    status = await git("clone", "--quiet", "--depth", "1", *branch, "--", base, str(partial))
    if status != 0:
        await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
        raise BuildError(
            f"Could not fetch the buildpack {url!r}: git clone exited with status {status}."
        )
    os.rename(partial, dest)
    return dest


def _scalar(text: str) -> str:
    """A YAML plain, single- or double-quoted scalar (the forms bin/release scripts print)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        value = json.loads(text)
        if not isinstance(value, str):
            raise ValueError(text)
        return value
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    return text


def parse_release(text: str, buildpack: str) -> dict[str, str]:
    """The `default_process_types` of what `bin/release` printed (a small YAML subset:
    top-level keys, and one level of `key: value` under them). Raises `BuildError`."""
    types: dict[str, str] = {}
    section: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        top_level = not raw[0].isspace()
        if not top_level and section != "default_process_types":
            continue  # config_vars, addons, ...: not used by minipaas
        try:
            key, colon, rest = stripped.partition(":")
            if not colon:
                raise ValueError(stripped)
            if top_level:
                section = key.strip()
                value = rest.strip()
                if section == "default_process_types" and value not in ("", "{}", "~", "null"):
                    raise ValueError(value)
                continue
            if section == "default_process_types":
                name, command = _scalar(key), _scalar(rest)
                process_type(name)
                if command:
                    types[name] = command
        except (ValueError, UserError):
            raise BuildError(
                f"The {buildpack} buildpack's release step printed line {number} that minipaas "
                f"cannot read: {stripped!r}."
            ) from None
    return types
