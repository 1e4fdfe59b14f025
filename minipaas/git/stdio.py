"""Git over stdin/stdout: what the SSH forced command runs for `git push`/`git clone` over SSH.

sshd puts what the client asked for in SSH_ORIGINAL_COMMAND (`git-receive-pack '/NAME.git'`);
`serve_stdio` checks it, then runs the same handlers the HTTP side uses on the process's stdin
and stdout. Dulwich's own `serve_command` swallows nothing and reports nothing, so failures are
turned into one sentence here. This module must not read the environment or exit the process:
the caller passes the command and streams in and turns the return value into the exit status.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
from collections.abc import Callable, Iterator
from typing import BinaryIO, TextIO

from dulwich.errors import HangupException
from dulwich.protocol import ReceivableProtocol, pkt_line
from dulwich.server import Handler, UploadPackHandler

from minipaas.errors import UserError
from minipaas.git.receive import DEFAULT_MAX_PUSH_BYTES, Gate, receive_pack_factory
from minipaas.git.repos import AppsBackend, Repos
from minipaas.names import shown

SERVICES = ("git-receive-pack", "git-upload-pack")
MAX_ERR = 1000
"""The most characters of an ERR packet: a pkt-line holds at most 65,516 bytes (its length is
four hex digits), and a longer one is garbage to the git client."""
_log = logging.getLogger(__name__)


def serve_stdio(
    repos: Repos,
    command: str,
    gate: Gate,
    stdin: BinaryIO,
    stdout: BinaryIO,
    stderr: TextIO,
    *,
    max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
) -> int:
    """Serve one git command over the streams; return the exit status (0 ok, 1 refused/failed).

    stderr is the pusher's terminal, so tracebacks never go there: configure logging (to a file)
    before calling to keep them; with no logging configured they are dropped.
    """
    with _no_tracebacks_on_stderr():
        return _serve(repos, command, gate, stdin, stdout, stderr, max_push_bytes)


@contextlib.contextmanager
def _no_tracebacks_on_stderr() -> Iterator[None]:
    # With no handler anywhere, logging's "last resort" prints records (and tracebacks) to
    # stderr, which over SSH is the user's terminal.
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    null = logging.NullHandler()
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)


def _serve(
    repos: Repos,
    command: str,
    gate: Gate,
    stdin: BinaryIO,
    stdout: BinaryIO,
    stderr: TextIO,
    max_push_bytes: int,
) -> int:
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    if len(argv) != 2 or argv[0] not in SERVICES:
        if argv[:1] and argv[0] in SERVICES:
            message = (
                f"{argv[0]} takes one repository path such as '/APP.git', not {shown(command)}"
            )
        else:
            message = (
                f"unknown command {shown(command)}; over SSH this key may only run git push, "
                "git fetch and git clone"
            )
        stderr.write(f"minipaas: {message}.\n")
        stderr.flush()
        return 1
    service, path = argv

    def send(data: bytes) -> None:
        stdout.write(data)
        stdout.flush()  # every write, so sideband progress reaches the pusher at once

    try:
        app = repos.parse_path(path)
        repos.require(app)
    except UserError as error:
        # git prints an ERR packet as "fatal: remote error: <message>".
        send(pkt_line(f"ERR {error}"[:MAX_ERR].encode()))
        return 1

    backend = AppsBackend(repos)
    handler: Handler
    proto = ReceivableProtocol(_receiver(stdin), send)
    try:
        if service == "git-receive-pack":
            handler = receive_pack_factory(repos, app, gate, max_push_bytes)(backend, [path], proto)
        else:
            handler = UploadPackHandler(backend, [path], proto)
        handler.handle()
    except HangupException:
        stderr.write("minipaas: the git client hung up before finishing.\n")
        return 1
    except Exception as error:
        _log.exception("git %s over SSH failed for app %s", service, app)
        reason = " ".join(str(error).split()) or type(error).__name__
        stderr.write(f"minipaas: {service} for app {app!r} failed: {reason}.\n")
        return 1
    finally:
        stderr.flush()
        backend.close()
    return 0


def _receiver(stdin: BinaryIO) -> Callable[[int], bytes]:
    """A read that returns what has arrived (like a socket's recv), as a pushed pack needs.

    A real stdin is read at the file descriptor: the thread that feeds `git index-pack` may
    still wait there when the process ends, and a buffered reader's lock held by such a thread
    aborts the interpreter at exit. Nothing may have been read from `stdin` before.
    """
    try:
        fd = stdin.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory stream (tests)
        read1: Callable[[int], bytes] | None = getattr(stdin, "read1", None)
        return read1 if read1 is not None else stdin.read
    return lambda size: os.read(fd, size)
