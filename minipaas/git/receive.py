"""The one receive-pack implementation both transports share, with the deploy *gate*.

A push stores the pack, then, for the deploy branch only, calls the gate (build + deploy) while
the ref still points at the old commit; the ref moves only if the gate says yes. The deploy moves
it itself the moment its release goes live (compare-and-swap from the commit the pusher saw), so
the branch follows what serves even when the pusher is gone by then (Ctrl-C, a dropped SSH
connection): the pusher's own write below then finds it moved already. The gate's
progress lines go to the pusher live on sideband channel 2, which git prints as `remote: ...`.
Dulwich's `_on_update` hook is the right place: it runs after the pack is in the object store
and before the ref is written (`_on_pre_receive` runs before the pack is even read).

This module knows nothing of HTTP or SSH, and it never builds or deploys by itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import typing
import zlib
from collections.abc import Callable, Iterator, Sequence

from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    GitProtocolError,
    ObjectFormatException,
)
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import Commit, ObjectID
from dulwich.protocol import (
    CAPABILITY_ATOMIC,
    CAPABILITY_SIDE_BAND_64K,
    SIDE_BAND_CHANNEL_PROGRESS,
    Protocol,
)
from dulwich.refs import Ref
from dulwich.server import Backend, ReceivePackHandler

from minipaas.errors import UserError
from minipaas.git.packs import store_pack
from minipaas.git.repos import DEPLOY_REFS, Repos

Progress = Callable[[str], None]
"""Writes one line to the pusher, shown as `remote: <line>`."""



class Gate(typing.Protocol):
    """`gate(app, sha, progress, ref=REF, old=OLD)` builds and deploys `sha` as the new value of
    branch `ref` (e.g. "refs/heads/main"), which the pusher saw at `old` (None: not there yet);
    None to accept, or a short reason. A deploy that goes live moves the ref from `old` to
    `sha` itself; one that finds the ref no longer at `old` is refused."""

    def __call__(
        self, app: str, sha: str, progress: Progress, *, ref: str, old: str | None
    ) -> str | None: ...


DEFAULT_MAX_PUSH_BYTES = 1024**3
"""The largest pack a push may send (1 GiB), like git's `receive.maxInputSize`."""

ONLY_MAIN = (
    "minipaas deploys only the main or master branch; push with `git push minipaas HEAD:main`"
)
NO_DELETE = "minipaas never deletes the deployed branch; use `minipaas apps:destroy` for that"
MOVED = "the branch moved while you pushed (another push landed first); fetch and push again"
BOTH = (
    "main and master were pushed to different commits at once; push the one to deploy, "
    "e.g. `git push minipaas main`"
)
SHALLOW = (
    "shallow update not allowed: this is a shallow clone; run `git fetch --unshallow` "
    "(in CI, check out the full history) and push again"
)

_ZERO = b"0" * 40
#: What storing a pack may raise for a bad pack or a vanished client (Dulwich's list).
_PACK_ERRORS = (
    OSError,
    ChecksumMismatch,
    ApplyDeltaError,
    AssertionError,
    zlib.error,
    ObjectFormatException,
)
_log = logging.getLogger(__name__)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def format_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


class GatedReceivePack(ReceivePackHandler):
    """receive-pack for one app: only main/master, never deleted, deployed by the gate."""

    def __init__(
        self,
        backend: Backend,
        args: Sequence[str],
        proto: Protocol,
        stateless_rpc: bool = False,
        advertise_refs: bool = False,
        *,
        repos: Repos,
        app: str,
        gate: Gate,
        max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
    ) -> None:
        super().__init__(backend, args, proto, stateless_rpc, advertise_refs)
        self.repos = repos
        self.app = app
        self.gate = gate
        self.max_push_bytes = max_push_bytes
        self._write_lock = threading.Lock()
        self._client_gone = False
        self._held = contextlib.ExitStack()  # the push lock, once taken, until the push ends
        self._locked = False
        self._shallow: list[bytes] = []  # the `shallow` lines of a push from a shallow clone
        self._deployed: set[bytes] = set()  # commits this push's gate accepted
        self._both = False  # main and master to different commits in this one push

    def capabilities(self) -> Iterator[bytes]:
        # No `atomic`: a ref that fails after the gate deployed another would undo nothing.
        return (cap for cap in super().capabilities() if cap != CAPABILITY_ATOMIC)

    def _receive_max_input_size(self) -> int | None:
        return self.max_push_bytes

    def progress(self, line: str) -> None:
        """Send `line` to the pusher now (sideband 2); silently dropped if it cannot hear."""
        if self._client_gone or not self.has_capability(CAPABILITY_SIDE_BAND_64K):
            return
        data = "".join(f"{part}\n" for part in line.splitlines() or [""]).encode()
        with self._write_lock:  # the gate may report from a thread of its own
            try:
                self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, data)
            except (OSError, GitProtocolError):
                # The pusher went away (Ctrl-C, network): the deploy carries on regardless, and
                # the ref must still follow it. Dulwich's protocol turns a broken pipe into a
                # GitProtocolError (HangupException): left to escape, it failed the gate over
                # SSH after the server had deployed, so the new release served while the
                # branch stayed at the old commit.
                self._client_gone = True

    def has_capability(self, cap: bytes) -> bool:
        return self._client_capabilities is not None and super().has_capability(cap)

    def handle(self) -> None:
        # A shallow clone sends `shallow <sha>` lines before its ref updates; Dulwich would take
        # them for ref updates and fail with a protocol error ("Invalid ref update line"), which
        # git shows as "the remote end hung up unexpectedly". They are noted and skipped here;
        # `_apply_pack` refuses the push in one sentence when this repository lacks the history
        # below them, as git-receive-pack does ("shallow update not allowed").
        read_pkt_line = self.proto.read_pkt_line

        def read_skipping_shallow() -> bytes | None:
            line = read_pkt_line()
            while line is not None and line.startswith(b"shallow "):
                self._shallow.append(line.split()[1])
                line = read_pkt_line()
            return line

        self.proto.read_pkt_line = read_skipping_shallow  # type: ignore[method-assign]
        with self._held:
            super().handle()

    def _apply_pack(
        self, refs: list[tuple[ObjectID, ObjectID, Ref]]
    ) -> Iterator[tuple[bytes, bytes]]:
        # Dulwich's own version, minus what we never allow (atomic pushes, deletions, other
        # refs: `_on_update` refuses those), with the pack stored by `packs.store_pack`.
        status = b"ok"
        if any(new != _ZERO for _old, new, _ref in refs):
            status = self._store_pack()  # read to the end even when refused: git sends it all
        yield b"unpack", status
        if status == b"ok" and self._cut_history():
            # Commits whose parents minipaas lacks: refused whole, before any gate runs.
            for _old, _new, ref in refs:
                yield ref, SHALLOW.encode()
            return
        if status != b"ok":
            # git would only say "remote failed to report status" without a line per ref.
            for _old, _new, ref in refs:
                yield ref, status
            return
        # Each deploy ref would be deployed in turn and the last one would serve, whichever
        # the pusher meant (`git push minipaas main master` served master's older commit).
        targets = {new for _old, new, ref in refs if ref in DEPLOY_REFS and new != _ZERO}
        self._both = len(targets) > 1
        for old, new, ref in refs:
            refused = self._on_update(ref, old, new)
            if refused:
                yield ref, refused
                continue
            try:
                # The deploy moved it already, unless the gate accepted without one (the
                # same commit to main and master: only the first ref was deployed).
                if self._ref(ref) != new and not self.repo.refs.set_if_equals(ref, old, new):
                    yield ref, MOVED.encode()
                    continue
            except (OSError, KeyError):
                yield ref, b"failed to write"
                continue
            yield ref, b"ok"

    def _ref(self, ref: bytes) -> bytes:
        """What `ref` points at now, read from disk (the zero id if it does not exist)."""
        try:
            return bytes(self.repo.refs[Ref(ref)])
        except KeyError:
            return _ZERO

    def _cut_history(self) -> bool:
        """Did a shallow client's push leave a commit here whose parents are missing? (When
        this repository already has the history below the client's shallow commits, as after
        an earlier full push, a push from a shallow clone is complete and welcome.)"""
        store = self.repo.object_store
        for sha in self._shallow:
            try:
                commit = store[ObjectID(sha)]
            except (KeyError, ValueError):
                continue  # not sent, not here: nothing pushed reaches it
            if isinstance(commit, Commit) and any(p not in store for p in commit.parents):
                return True
        return False

    def _store_pack(self) -> bytes:
        """Receive the pack into the repository; b"ok" or the reason git shows the pusher."""
        try:
            store_pack(
                self.repo.object_store,
                self.repos.path(self.app),
                self.proto.read,
                getattr(self.proto, "recv", None),
                max_bytes=self.max_push_bytes,
                git_bin=self.repos.git_bin,
                ends_with_pack=self.stateless_rpc,  # HTTP: the request body ends with the pack
            )
        except PackInputTooLarge:
            self.progress(
                f"The push is larger than the {format_size(self.max_push_bytes)} limit "
                "minipaas accepts; remove big files from the history and push again."
            )
            return b"push too large"
        except _PACK_ERRORS as exc:
            # The pack may be half in; its objects are unreferenced, as with `git receive-pack`.
            _log.warning("storing a pack pushed to %s failed: %s", self.app, exc)
            return _one_line(str(exc) or type(exc).__name__).encode("utf-8", "replace")
        return b"ok"

    def _waiting(self) -> None:
        self.progress(f"-----> Another push to {self.app} is in progress; waiting for it to finish")

    def _on_update(self, ref_name: Ref, old_sha: ObjectID, new_sha: ObjectID) -> bytes | None:
        reason = self._decide(bytes(ref_name), bytes(old_sha), bytes(new_sha))
        return None if reason is None else _one_line(reason).encode("utf-8", "replace")

    def _decide(self, ref: bytes, old: bytes, new: bytes) -> str | None:
        if ref not in DEPLOY_REFS:
            return ONLY_MAIN
        if new == _ZERO:
            return NO_DELETE
        if self._both:
            return BOTH
        try:
            if not self._locked:
                self._held.enter_context(self.repos.push_lock(self.app, on_wait=self._waiting))
                self._locked = True
            # Destroyed while this push waited for the lock: say so, not that the branch moved.
            self.repos.require(self.app)
        except UserError as error:
            return str(error)
        if self._ref(ref) != old:
            return MOVED
        if new in self._deployed:
            return None  # main and master to one commit: it is live already, deployed once
        try:
            reason = self.gate(
                self.app,
                new.decode("ascii"),
                self.progress,
                ref=ref.decode("ascii"),
                old=None if old == _ZERO else old.decode("ascii"),
            )
            if reason is None:
                self._deployed.add(new)
            return reason
        except UserError as error:
            return str(error)
        except Exception:
            _log.exception("the deploy gate of app %s failed on %s", self.app, new.decode())
            return "internal error in minipaas; see the server log"


def receive_pack_factory(
    repos: Repos, app: str, gate: Gate, max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES
) -> Callable[..., GatedReceivePack]:
    """The receive-pack constructor dulwich calls (`backend, args, proto, ...`) for `app`."""

    def factory(
        backend: Backend,
        args: Sequence[str],
        proto: Protocol,
        stateless_rpc: bool = False,
        advertise_refs: bool = False,
    ) -> GatedReceivePack:
        return GatedReceivePack(
            backend,
            args,
            proto,
            stateless_rpc,
            advertise_refs,
            repos=repos,
            app=app,
            gate=gate,
            max_push_bytes=max_push_bytes,
        )

    return factory
