"""Writing one commit's tree into a directory for a build: the files, their exec bits, symlinks.

The tree is the pusher's and the writer is root, so the layout is checked and created here, in
Python, relative to directory descriptors: every name is checked (no `..`, `.git`, slashes or
duplicates), everything is created exclusively and without following symbolic links, so a
hostile tree can neither escape the destination nor overwrite what it already wrote.

File contents are the heavy part (inflating every blob). With the `git` binary they stream from
one `git cat-file --batch` process, which inflates on the other core while this thread creates
files; without it they come from Dulwich one by one. Either way the bytes are the raw blobs: no
filters, attributes or line-ending conversions. Nothing here moves a ref or speaks a protocol.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dulwich.object_store import BaseObjectStore
from dulwich.objects import ObjectID, Tree

from minipaas.errors import NotFound, UserError
from minipaas.git.packs import git_env
from minipaas.names import shown

_GITLINK = 0o160000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
NAME_MAX = 255
"""The longest file name (in bytes) Linux file systems take; git itself has no limit."""
_PATH_MAX = 4096  # a symbolic link's target, with its terminating NUL
MAX_DEPTH = 256
"""The deepest a tree's directories may nest. Deeper ones are refused in one sentence: they
broke the export (and the build's own tree walks) with a RecursionError, an internal error."""


@dataclass
class _Dir:
    """One directory of the tree: where it is (relative to the root) and what it holds."""

    path: bytes  # b"" for the root
    where: str  # for messages: "" or "sub/dir/"
    blobs: list[tuple[bytes, int, bytes]] = field(default_factory=list)  # (name, mode, sha)


def write_tree(
    store: BaseObjectStore,
    tree_id: ObjectID,
    root_fd: int,
    sha: str,
    *,
    git_bin: str | None = None,
    git_dir: Path | None = None,
) -> list[str]:
    """Write tree `tree_id` (of commit `sha`, named in errors) into the empty directory
    `root_fd`: first every directory (checking every name), then every file and symlink.
    Returns the paths of the submodules, each left an empty directory."""
    dirs: list[_Dir] = []
    submodules: list[str] = []
    _make_dirs(store, tree_id, root_fd, _Dir(b"", ""), dirs, sha, submodules)
    wanted = [blob_sha for d in dirs for _name, _mode, blob_sha in d.blobs]
    if not wanted:
        return submodules
    if git_bin is not None and git_dir is not None:
        with _cat_file(git_bin, git_dir, wanted, sha) as contents:
            _write_blobs(dirs, root_fd, contents, sha)
    else:
        _write_blobs(dirs, root_fd, _from_store(store, wanted), sha)
    return submodules


def _make_dirs(
    store: BaseObjectStore,
    tree_id: ObjectID,
    dir_fd: int,
    here: _Dir,
    dirs: list[_Dir],
    sha: str,
    submodules: list[str],
) -> None:
    """Create the subdirectories of one tree (recursively) and list its blobs in `here`."""
    tree = store[tree_id]
    if not isinstance(tree, Tree):
        raise UserError(f"Commit {sha} has a broken tree {tree_id.decode()!r}.")
    if here.where.count("/") > MAX_DEPTH:
        raise UserError(
            f"Commit {sha} nests directories more than {MAX_DEPTH} levels deep; minipaas "
            "does not build such a tree."
        )
    dirs.append(here)
    seen: set[bytes] = set()
    for entry in tree.iteritems():
        name, mode, child = entry.path, entry.mode, entry.sha
        if name in (b"", b".", b"..") or b"/" in name or b"\0" in name or name.lower() == b".git":
            raise UserError(f"Commit {sha} contains an unsafe file name {os.fsdecode(name)!r}.")
        if len(name) > NAME_MAX:
            raise UserError(
                f"Commit {sha} has a file name of {len(name)} bytes, longer than the {NAME_MAX} "
                f"a file system allows: {here.where}{shown(os.fsdecode(name))}."
            )
        if name in seen:
            raise UserError(
                f"Commit {sha} lists {here.where}{os.fsdecode(name)!r} twice; "
                "refusing to export it."
            )
        seen.add(name)
        if stat.S_ISDIR(mode) or mode == _GITLINK:  # a submodule stays an empty directory
            try:
                os.mkdir(name, 0o755, dir_fd=dir_fd)
            except FileExistsError:
                raise UserError(
                    f"Commit {sha} lists {here.where}{os.fsdecode(name)!r} twice; "
                    "refusing to export it."
                ) from None
            if mode == _GITLINK:
                submodules.append(f"{here.where}{os.fsdecode(name)}")
                continue
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                path = f"{here.where}{os.fsdecode(name)}/"
                sub = _Dir(here.path + b"/" + name if here.path else name, path)
                _make_dirs(store, child, fd, sub, dirs, sha, submodules)
            finally:
                os.close(fd)
        else:
            here.blobs.append((name, mode, child))


def _write_blobs(
    dirs: list[_Dir], root_fd: int, contents: Iterator[Iterator[bytes]], sha: str
) -> None:
    """Create every file and symlink; `contents` yields each blob's bytes (in chunks) in order."""
    for d in dirs:
        if not d.blobs:
            continue
        # Every directory on the way was created by `_make_dirs` a moment ago and a name can
        # exist only once, so none of them can have become a symlink.
        fd = os.open(d.path, _DIR_FLAGS, dir_fd=root_fd) if d.path else root_fd
        try:
            for name, mode, _blob in d.blobs:
                chunks = next(contents)
                try:
                    if stat.S_ISLNK(mode):
                        target = b"".join(chunks)
                        if len(target) >= _PATH_MAX or b"\0" in target:
                            raise UserError(
                                f"Commit {sha} has a symbolic link {d.where}"
                                f"{shown(os.fsdecode(name))} whose target no file system "
                                f"takes (over {_PATH_MAX - 1} bytes, or a NUL byte)."
                            )
                        os.symlink(target, name, dir_fd=fd)
                    else:
                        _write_file(fd, name, mode, chunks)
                except FileExistsError:
                    raise UserError(
                        f"Commit {sha} lists {d.where}{os.fsdecode(name)!r} twice; "
                        "refusing to export it."
                    ) from None
        finally:
            if fd != root_fd:
                os.close(fd)


def _write_file(dir_fd: int, name: bytes, mode: int, chunks: Iterator[bytes]) -> None:
    executable = bool(mode & 0o111)
    fd = os.open(name, _FILE_FLAGS, 0o755 if executable else 0o644, dir_fd=dir_fd)
    try:
        if executable:
            os.fchmod(fd, 0o755)  # whatever the umask says
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _from_store(store: BaseObjectStore, wanted: list[bytes]) -> Iterator[Iterator[bytes]]:
    for blob_sha in wanted:
        _type, data = store.get_raw(ObjectID(blob_sha))
        yield iter((data,))


@contextlib.contextmanager
def _cat_file(
    git_bin: str, git_dir: Path, wanted: list[bytes], sha: str
) -> Iterator[Iterator[Iterator[bytes]]]:
    """The blobs `wanted`, in order, read from one `git cat-file --batch`."""
    proc = subprocess.Popen(
        [git_bin, "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=git_dir,
        env=git_env(git_dir),
    )
    assert proc.stdin is not None and proc.stdout is not None
    # Its own thread writes the requests: cat-file answers as it reads, so writing them all
    # first would fill both pipes and deadlock on a big tree.
    feeder = threading.Thread(target=_feed, args=(proc.stdin, wanted), daemon=True)
    feeder.start()
    try:
        yield _answers(proc.stdout, wanted, sha)
    finally:
        proc.stdout.close()  # an early exit (an error) ends cat-file with SIGPIPE
        proc.wait()
        feeder.join()


def _feed(sink: IO[bytes], wanted: list[bytes]) -> None:
    with contextlib.suppress(OSError):  # cat-file went away: the reader reports why
        for start in range(0, len(wanted), 512):
            sink.write(b"".join(s + b"\n" for s in wanted[start : start + 512]))
        sink.flush()
    with contextlib.suppress(OSError):
        sink.close()


def _answers(source: IO[bytes], wanted: list[bytes], sha: str) -> Iterator[Iterator[bytes]]:
    for blob_sha in wanted:
        header = source.readline()
        parts = header.split()
        if len(parts) != 3 or parts[0] != blob_sha or parts[1] != b"blob":
            if parts[1:] == [b"missing"]:
                raise NotFound(f"Commit {sha} refers to {blob_sha.decode()}, which is missing.")
            raise UserError(f"Commit {sha} has a broken entry {blob_sha.decode()!r}.")
        size = int(parts[2])
        chunks = _read_exactly(source, size)
        yield chunks
        for _rest in chunks:  # whatever the writer did not consume
            pass
        if source.read(1) != b"\n":
            raise UserError(f"git cat-file gave a truncated answer for {blob_sha.decode()}.")


def _read_exactly(source: IO[bytes], size: int) -> Iterator[bytes]:
    while size > 0:
        chunk = source.read(min(size, _CHUNK))
        if not chunk:
            raise UserError("git cat-file stopped before the end of the tree.")
        size -= len(chunk)
        yield chunk
