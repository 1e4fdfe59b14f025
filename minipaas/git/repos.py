"""The bare git repositories, one per app, under `<data-dir>/repos/NAME.git`.

Owns the repository lifecycle (create, delete, look up the deployed commit), the per-app push
lock, the Dulwich `Backend` that maps a path a git client sends to an app's repository, and
`export`, which writes one commit's tree into a directory for a build. Every path that comes
from outside goes through `parse_path`/`path`, which accept only valid app names, so nothing here
ever reaches outside `root`. It must not build, deploy or speak any wire protocol.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.server import Backend

from minipaas import names
from minipaas.errors import Conflict, NotFound, UserError
from minipaas.git.export import write_tree

DEPLOY_REFS = (Ref(b"refs/heads/main"), Ref(b"refs/heads/master"))
_SHA = re.compile(r"[0-9a-f]{40}")
_LOCK_FILE = "minipaas-push.lock"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Repos:
    """The directory of bare repositories, `root/NAME.git` for each app.

    `git_bin` is the C git used to index pushed packs (see `packs`): "auto" looks on PATH,
    None means Dulwich alone.
    """

    def __init__(self, root: Path, git_bin: str | Literal["auto"] | None = "auto") -> None:
        self.root = root
        self.git_bin = shutil.which("git") if git_bin == "auto" else git_bin

    def path(self, app: str) -> Path:
        """The repository directory of `app`; refuses anything that is not a valid app name."""
        return self.root / f"{names.app_name(app)}.git"

    def parse_path(self, path: str) -> str:
        """Turn what a git client sends ("/NAME.git", "NAME.git", "NAME") into an app name."""
        name = path.removeprefix("/")
        name = name.removesuffix(".git")
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise UserError(
                f"Invalid repository path {names.shown(path)}: use /NAME.git, where NAME is an "
                "app name."
            )
        return names.app_name(name)

    def exists(self, app: str) -> bool:
        return self.path(app).is_dir()

    def require(self, app: str) -> Path:
        """The repository of `app`, or `NotFound` telling the user how to create the app."""
        path = self.path(app)
        if not path.is_dir():
            raise NotFound(
                f"No app named {app!r}; create it first with `minipaas apps:create {app}`."
            )
        return path

    def create(self, app: str) -> Path:
        """Initialise an empty bare repository whose HEAD is `refs/heads/main`."""
        path = self.path(app)
        self.root.mkdir(parents=True, exist_ok=True)
        # No access for others, here and on the root: an app's uid fetches buildpacks with git
        # on the host, and `BUILDPACK_URL=file:///<data-dir>/repos/OTHER.git` (or that path)
        # cloned another app's source into its build. (Roots made before keep their group.)
        root_mode = stat.S_IMODE(self.root.stat().st_mode)
        if root_mode & 0o007:
            self.root.chmod(root_mode & ~0o007)
        try:
            path.mkdir()
            path.chmod(0o2770)  # the SSH user's group creates the push lock here
        except FileExistsError:
            raise Conflict(f"A repository for app {app!r} already exists.") from None
        with Repo.init_bare(str(path), shared_repository="group") as repo:
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), DEPLOY_REFS[0])
        return path

    def delete(self, app: str) -> None:
        """Remove the repository of `app`; a missing one is not an error (destroy is idempotent)."""
        path = self.path(app)
        if path.is_dir():
            shutil.rmtree(path)

    def head_sha(self, app: str) -> str | None:
        """The commit `refs/heads/main` (else `refs/heads/master`) points at, None if empty."""
        with Repo(str(self.require(app))) as repo:
            for ref in DEPLOY_REFS:
                try:
                    return repo.refs[ref].decode("ascii")
                except KeyError:
                    continue
        return None

    def ref_sha(self, app: str, ref: str) -> str | None:
        """The commit deploy branch `ref` ("refs/heads/main" or ".../master") points at."""
        with Repo(str(self.require(app))) as repo:
            try:
                return repo.refs[_deploy_ref(ref)].decode("ascii")
            except KeyError:
                return None

    def move_ref(self, app: str, ref: str, old: str | None, new: str) -> bool:
        """Point deploy branch `ref` at `new` if it still points at `old` (None: if it does not
        exist), atomically under git's ref lock; False if it had moved."""
        if not _SHA.fullmatch(new) or (old is not None and not _SHA.fullmatch(old)):
            raise UserError(f"Invalid commit id {new!r} or {old!r}: expected 40 hex digits.")
        with Repo(str(self.require(app))) as repo:
            expected = ObjectID((old or "0" * 40).encode("ascii"))
            moved: bool = repo.refs.set_if_equals(
                _deploy_ref(ref), expected, ObjectID(new.encode("ascii"))
            )
            return moved

    @contextlib.contextmanager
    def push_lock(self, app: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the app's push lock (an flock, so it also serialises the SSH processes).

        Two pushes to one app must not build and deploy at the same time, and the second one
        must see the ref the first one wrote. `on_wait` is called once if we have to wait.
        """
        try:
            fd = os.open(
                self.require(app) / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660
            )
        except FileNotFoundError:  # the app was destroyed just now
            self.require(app)
            raise
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, 0o660)  # past the umask: root and the SSH user's group share it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def export(self, app: str, sha: str, dest: Path) -> list[str]:
        """Write the tree of commit `sha` into `dest`: files with their exec bit, symlinks, no .git;
        return the paths of its submodules (never fetched: each is an empty directory).

        `dest` must not exist or be empty. A tree entry that could escape `dest` (a name such as
        `..`, `.git` or one holding a slash, or a duplicate) is refused with `UserError`.
        """
        if not _SHA.fullmatch(sha):
            raise UserError(f"Invalid commit id {sha!r}: expected 40 hexadecimal digits.")
        # Owner-only from the start: the pushed source (secrets committed by mistake included)
        # must not be readable by other users of the host, even before the build's chown, nor
        # opened then and kept open.
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest.chmod(0o700)
        if any(dest.iterdir()):
            raise UserError(f"Cannot export into {str(dest)!r}: the directory is not empty.")
        with Repo(str(self.require(app))) as repo:
            store = repo.object_store
            try:
                commit = store[ObjectID(sha.encode("ascii"))]
            except KeyError:
                raise NotFound(f"Commit {sha} is not in the repository of app {app!r}.") from None
            if not isinstance(commit, Commit):
                raise UserError(f"Object {sha} in app {app!r} is not a commit.")
            fd = os.open(dest, _DIR_FLAGS)
            try:
                return write_tree(
                    store, commit.tree, fd, sha, git_bin=self.git_bin, git_dir=self.path(app)
                )
            finally:
                os.close(fd)


def _deploy_ref(ref: str) -> Ref:
    name = Ref(ref.encode("utf-8", "replace"))
    if name not in DEPLOY_REFS:
        raise UserError(
            f"Invalid branch {names.shown(ref)}: use refs/heads/main or refs/heads/master."
        )
    return name


class AppsBackend(Backend):
    """Dulwich's storage seam: maps a path from a client to an app's repository, nothing else.

    Dulwich never closes the repositories it opens, so this backend remembers them and `close`
    (called once per request or SSH session) closes them all.
    """

    def __init__(self, repos: Repos) -> None:
        self.repos = repos
        self._opened: list[Repo] = []

    def open_repository(self, path: str | bytes) -> Repo:
        text = os.fsdecode(path)
        try:
            app = self.repos.parse_path(text)
            repo = Repo(str(self.repos.require(app)))
        except UserError as error:
            raise NotGitRepository(str(error)) from None
        self._opened.append(repo)
        return repo

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()
