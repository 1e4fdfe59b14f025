"""Storing a pushed pack in an app's repository: C git's `index-pack` when the `git` binary is
installed (install.sh installs it), Dulwich's pure-Python indexer otherwise.

Dulwich stays the protocol server; this is only the heavy part of a push, hashing and indexing
every object. `git index-pack --stdin` runs while the pack is still arriving (a pump thread
feeds it what the client sends), so indexing ends moments after the last byte instead of
seconds later. Both paths enforce the push size limit and verify every object's hash and the
pack's checksum; neither moves a ref. The subprocess gets an argv list, an explicit environment
(no system or global git config), and the repository path that `Repos.require` vouched for.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dulwich.object_store import PackBasedObjectStore, PackInputTooLarge

Read = Callable[[int], bytes]

CHUNK = 65536
#: What a refused push says, whichever indexer noticed (Dulwich's wording).
TOO_LARGE = "pack exceeds maximum input size"


class PackError(OSError):
    """The pushed pack could not be stored (corrupt, truncated, or the client went away)."""


def store_pack(
    store: PackBasedObjectStore,
    git_dir: Path,
    read_all: Read,
    read_some: Read | None,
    *,
    max_bytes: int | None,
    git_bin: str | None,
    ends_with_pack: bool = False,
) -> None:
    """Read one pack from the client into `store` (the object store of the repository at
    `git_dir`), completing a thin pack from the objects already there.

    Raises `PackInputTooLarge` past `max_bytes` and `PackError` (or Dulwich's own errors on the
    fallback path) for anything else that goes wrong. `ends_with_pack`: the input ends right
    after the pack (an HTTP request body), so it is read to its end before returning.
    """
    if git_bin is None:
        store.add_thin_pack(  # type: ignore[attr-defined]  # DiskObjectStore has it
            read_all, read_some, max_input_size=max_bytes
        )
        return
    index_pack(
        git_bin, git_dir, read_some or read_all, max_bytes=max_bytes, ends_with_pack=ends_with_pack
    )


def index_pack(
    git_bin: str, git_dir: Path, read: Read, *, max_bytes: int | None, ends_with_pack: bool = False
) -> None:
    """Stream a pack from `read` into `git index-pack --stdin --fix-thin` in `git_dir`.

    `read(n)` must return at most n bytes as soon as some are available (a socket's recv):
    over SSH the client sends nothing after the pack and waits for our answer, so a read that
    waits for a full chunk would never return. That is also why the pump thread may still be
    blocked in `read` after index-pack has finished; it is a daemon thread and ends when the
    client closes the connection. With `ends_with_pack` (HTTP) we wait for it instead: a
    request body left unread makes the server drop the connection under the response.
    """
    argv = [git_bin, "index-pack", "--stdin", "--fix-thin"]
    if max_bytes:
        argv.append(f"--max-input-size={max_bytes}")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=git_dir,
        env=git_env(git_dir),
    )
    assert proc.stdin is not None and proc.stdout is not None
    failure: list[BaseException] = []
    pump = threading.Thread(
        target=_pump, args=(read, proc.stdin, failure), name="index-pack-pump", daemon=True
    )
    pump.start()
    output = proc.stdout.read().decode("utf-8", "replace")
    proc.stdout.close()
    code = proc.wait()
    if code == 0:
        if ends_with_pack:
            pump.join()
        return
    pump.join(timeout=1.0)  # it stops at once: its next write finds the pipe closed
    message = " ".join(
        line.removeprefix("fatal: ").removeprefix("error: ").strip()
        for line in output.splitlines()
        if line.startswith(("fatal:", "error:"))
    )
    if "exceeds maximum allowed size" in output:
        raise PackInputTooLarge(TOO_LARGE)
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise PackError(f"reading the pack failed: {failure[0]}") from failure[0]
    raise PackError(message or f"git index-pack exited with status {code}")


def git_env(git_dir: Path) -> dict[str, str]:
    """The whole environment of a C git run on `git_dir`: no system or global config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_DIR": str(git_dir),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }


def _pump(read: Read, sink: IO[bytes], failure: list[BaseException]) -> None:
    """Copy the client's bytes into index-pack until the client or index-pack stops."""
    try:
        while chunk := read(CHUNK):
            sink.write(chunk)
            sink.flush()
    except BaseException as exc:  # handed to the waiting thread; index-pack sees EOF
        failure.append(exc)
    finally:
        # OSError: index-pack exited first (the pipe is gone), so there is nothing left to say.
        with contextlib.suppress(OSError):
            sink.close()
