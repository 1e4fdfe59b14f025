"""`apps:rename` on disk: the journal of a rename under way and the moves of an app's trees.

An app's row in the store is the commit point of a rename: its trees (repository, slugs, build
cache, buildpack clones, backups, logs, Redis dir) move to the new name while a journal in the
data dir names both names, then one transaction renames the row, then the journal goes. A
server killed in between finds the journal at its next start (`Deployer.end_interrupted`): the
row says which name won, and `move_trees` brings every tree to it (finishing the rename, or
undoing it). Moving is idempotent, so a second kill during that is fine too.

Blocking functions (run them in a thread); they touch only paths under the data dir, never the
store, processes or Caddy. Every name given must be a valid app name (`minipaas.names`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from minipaas import names
from minipaas.errors import UserError
from minipaas.logs.logstore import move_app_logs
from minipaas.paths import Paths


@dataclass(frozen=True)
class Journal:
    """A rename under way: from `old` to `new`."""

    old: str
    new: str


def write_journal(paths: Paths, journal: Journal) -> None:
    """Record the rename on disk (synced) before any tree moves."""
    path = paths.rename_journal
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"old": journal.old, "new": journal.new}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)


def read_journal(paths: Paths) -> Journal | None:
    """The rename a stopped server left under way, or None. A journal that does not name two
    valid app names (never written by minipaas) raises `UserError` naming the file."""
    try:
        data = json.loads(paths.rename_journal.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"The rename journal {paths.rename_journal} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("old", "new")):
        raise UserError(f"The rename journal {paths.rename_journal} names no old and new app.")
    return Journal(names.app_name(data["old"]), names.app_name(data["new"]))


def clear_journal(paths: Paths) -> None:
    paths.rename_journal.unlink(missing_ok=True)
    _sync_dir(paths.root)


def occupied(paths: Paths, app: str) -> list[Path]:
    """The trees named after `app` that exist (for a name no app has: leftovers)."""
    return [p for p in paths.app_trees(app) if p.exists() or p.is_symlink()]


def move_trees(paths: Paths, src: str, dst: str, trash: Path) -> list[str]:
    """Move every tree of app `src` to the name `dst`; the moved trees (relative to the data
    dir). Idempotent: a tree already moved is skipped. A tree found under both names (only
    possible for one under `dst` written after `src`'s was moved, or left by a crash) keeps
    `src`'s content: logs are merged (see `move_app_logs`), anything else under `dst` goes to
    `trash` first (no app owns it: `dst` had no trees when the rename began)."""
    moved = []
    for source, target in zip(paths.app_trees(src), paths.app_trees(dst), strict=True):
        if not source.exists():
            continue
        if source.parent == paths.logs:
            move_app_logs(source, target)
        else:
            if target.exists() or target.is_symlink():
                trash.mkdir(mode=0o700, exist_ok=True)
                os.rename(target, trash / _trash_name("rename", target))
            os.rename(source, target)
        moved.append(str(target.relative_to(paths.root)))
    for parent in {p.parent for p in paths.app_trees(dst)}:
        if parent.is_dir():
            _sync_dir(parent)
    return moved


def discard_leftovers(paths: Paths, app: str, trash: Path) -> None:
    """Move the trees named `app` out of the way (the name has no app: a destroy that was
    killed half-way, or stray router log lines), so a rename to `app` starts clean."""
    for tree in occupied(paths, app):
        trash.mkdir(mode=0o700, exist_ok=True)
        target = trash / _trash_name("leftover", tree)
        try:
            os.rename(tree, target)
        except OSError:
            shutil.rmtree(tree, ignore_errors=True)


def _trash_name(why: str, tree: Path) -> str:
    return f"{why}-{tree.parent.name}-{tree.name}-{secrets.token_hex(4)}"


def _sync_dir(path: Path) -> None:
    """fsync a directory, so that a rename in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
