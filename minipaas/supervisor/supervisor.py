"""Dynos: spawn them in the sandbox, watch them, restart them with backoff, stop them gracefully.

Vocabulary from circus/honcho: the supervisor holds, per app, process groups (one per process
type, with a desired count) made of dynos (`web.1`, `web.2`, `worker.1`). `apply()` reconciles
an app to the groups it is given; it never scripts starts and stops itself.

Owns: the dyno processes (each one the leader of its own session and process group), their
ports, their home dirs under `run_dir`, and the pumping of their output into the `LogStore`.
Must not read the store, render routes or know about Caddy: the caller passes `switch()` to
re-point traffic and `drain()` to wait for in-flight requests, and hears about changes through
`on_change(app)`, `on_records(app, records)` and `on_event(event)`.

Dynos outlive the server. Each dyno has a home `run_dir/<app>/<name>.<random>/` holding:
`out` (its stdout+stderr, O_APPEND: it never depends on a reader), `offset` (how much of `out`
reached the logs), `dyno.json` (pid, start ticks, port... so a later supervisor can find it)
and `layer/` (the mount point of its throwaway overlay, empty as seen from the host). The
server persists `DynoRecord`s (`on_records`); after a restart `adopt()` re-attaches to the dynos
still alive (same pid AND same start time), resumes their output where it stopped, watches them
with a pidfd, and reconciles the rest. `detach()` lets go of everything without stopping it.

A dyno runs `minipaas.sandbox`'s argv: `unshare` (exec) → init script (exec) → `bwrap`, which
forks the dyno's PID namespace. SIGTERM goes to the whole process group; bwrap's own process dies
at once while the app may take its grace period, so a dyno counts as gone only when no process
of its group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minipaas import names
from minipaas.errors import DeployError, NotFound, UserError
from minipaas.logs import LogStore
from minipaas.sandbox import (
    DEFAULT_PATH,
    SandboxJob,
    base_env,
    dyno_command,
    exec_argv,
    host_tool,
    inner_pid,
    on_terminal,
    sandbox_argv,
)
from minipaas.supervisor._health import Probe
from minipaas.supervisor._inotify import Inotify
from minipaas.supervisor._output import RawOutput, decode, split_output
from minipaas.supervisor._proc import (
    group_alive,
    hang_up_sandboxed,
    is_running,
    kill_group,
    kill_marked,
    kill_session,
    port_is_free,
    spawn_detached,
    start_ticks,
    wait_exit,
)
from minipaas.supervisor.backoff import BackoffPolicy, Run, decide, describe_status
from minipaas.supervisor.dyno import DynoEvent, DynoRecord, DynoSpec, DynoStatus

_log = logging.getLogger(__name__)

Switch = Callable[[], Awaitable[None]]
Drain = Callable[[Sequence[str]], Awaitable[None]]

#: Bytes read from a one-off dyno's pipe at a time.
READ_CHUNK = 64 * 1024
#: Set, to a random token, for a `ps:exec` command: marks the processes of its session.
EXEC_SESSION_VAR = "MINIPAAS_EXEC_SESSION"
#: Lines kept in memory per dyno for error messages.
RECENT_LINES = 20
#: How long leftovers of a dyno's process group may linger after its main process exited.
LINGER = 2.0
#: Readiness poll intervals (seconds): waiting for the port (every READY_POLL_FIRST during
#: the first READY_FIRST s of a life, when most apps start listening: a deploy should not
#: wait 50 ms longer than its dyno took), then for the health check.
READY_POLL_FIRST = 0.01
READY_FIRST = 1.0
READY_POLL = 0.05
CHECK_POLL = 0.2
#: Without inotify the output pump polls its file every PUMP_MIN s while output flows, backing
#: off to PUMP_MAX when idle. With inotify a write wakes it at once, and an idle dyno's file is
#: only checked every PUMP_SAFETY s, in case a wake-up was missed.
PUMP_MIN = 0.01
PUMP_MAX = 0.5
PUMP_SAFETY = 5.0
META = "dyno.json"
#: Above this many times its memory quota a dyno is killed (R15); Heroku's factor for Eco,
#: Basic and Standard dynos.
MEMORY_KILL_FACTOR = 2
#: Seconds between two R14 lines of one dyno while it stays above its quota.
R14_EVERY = 20.0


class _AdoptedSpec(DynoSpec):
    """The spec of an adopted dyno that matches no group: never equal to a real spec."""


@dataclass(frozen=True)
class OneOffStatus:
    """A running one-off dyno (`run.N`, `cron.N`) as `ps` lists it."""

    app: str
    name: str
    command: str
    release: int
    pid: int
    started_at: float  # wall clock


@dataclass(eq=False)
class _Slot:
    """A one-off dyno being run (`Supervisor._one_off`)."""

    name: str
    job: SandboxJob
    port: int | None = None
    proc: asyncio.subprocess.Process | None = None


@dataclass(eq=False)
class _OneOff:
    status: OneOffStatus
    reaped: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Dyno:
    """A dyno the supervisor owns, across its restarts."""

    spec: DynoSpec
    number: int
    port: int | None
    home: Path
    out: RawOutput
    probation: bool = False  # new web dyno: must get ready before traffic switches to it
    state: str = "starting"
    reason: str | None = None
    pid: int | None = None
    start_ticks: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    last_error: str | None = None  # why the supervisor last killed it (R15), for `ps`
    kill_reason: str | None = None  # set while this life is being killed for that reason
    r14_at: float | None = None  # when its last R14 line was written
    retiring: bool = False
    stopping: bool = False
    detached: bool = False
    adopted: bool = False  # the first life is a running process found after a restart
    runs: list[Run] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_LINES))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: asyncio.Future[str | None] | None = None  # None = ready, str = why it failed
    task: asyncio.Task[None] | None = None
    pump: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.spec.process_type}.{self.number}"

    @property
    def app(self) -> str:
        return self.spec.app

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"


def _exit_detail(status: int | None) -> str:
    return "unknown (adopted)" if status is None else describe_status(status)


async def _read_to_end(out: RawOutput, emit: Callable[[list[str]], None]) -> None:
    """Everything left in `out`, the unfinished last line too (its writers are gone)."""
    while True:
        if not out.read_batch(emit, final=True):
            return
        await asyncio.sleep(0)  # a big backlog must not hold the loop


@contextlib.asynccontextmanager
async def _hangup(hung_up: asyncio.Event | None, pgid: int | None) -> AsyncIterator[None]:
    """While inside: once `hung_up` is set, SIGHUP to group `pgid`'s sandboxed processes (an
    attached command on pipes whose client went away; None: a terminal, whose hangup the
    kernel signals)."""
    if hung_up is None or pgid is None:
        yield
        return

    async def watch() -> None:
        await hung_up.wait()
        hang_up_sandboxed(pgid)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _remove_home(home: Path) -> None:
    # Only rmdir for the layer: the overlay lived in the dyno's mount namespace, so it is empty;
    # if it is not, something is wrong and deleting through it would be worse than leaving it.
    try:
        (home / "layer").rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return
    for name in ("out", "offset", META, META + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            (home / name).unlink()
    with contextlib.suppress(OSError):
        home.rmdir()


def _moved_spec(spec: DynoSpec, app: str, slugs: tuple[Path, Path]) -> DynoSpec:
    """`spec` for the app renamed to `app`, its slug moved from under `slugs[0]` to `slugs[1]`."""
    slug = spec.slug
    with contextlib.suppress(ValueError):
        slug = slugs[1] / spec.slug.relative_to(slugs[0])
    return dataclasses.replace(spec, app=app, slug=slug)


def move_homes(run_dir: Path, old: str, new: str, slugs: tuple[Path, Path]) -> None:
    """`apps:rename` (also finished by a restarted server): the dyno homes of app `old` move
    to `run_dir/new` and their dyno.json name `new` and the slug's new path (`slugs`: the app's
    slug dir under the old name, then the new). Blocking; idempotent."""
    src, dst = run_dir / old, run_dir / new
    if src.is_dir():
        if not dst.exists():
            os.rename(src, dst)
        else:  # homes have random suffixes: they never clash
            for home in src.iterdir():
                os.rename(home, dst / home.name)
            with contextlib.suppress(OSError):
                src.rmdir()
    for home in dst.iterdir() if dst.is_dir() else []:
        meta = _read_meta(home)
        if meta is None or meta.get("app") != old:
            continue
        meta["app"] = new
        with contextlib.suppress(ValueError, TypeError):
            meta["slug"] = str(slugs[1] / Path(meta["slug"]).relative_to(slugs[0]))
        tmp = home / (META + ".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, home / META)


def _read_meta(home: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((home / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _record_from_meta(meta: Mapping[str, Any]) -> DynoRecord | None:
    try:
        return DynoRecord(
            app=str(meta["app"]),
            name=str(meta["name"]),
            process_type=str(meta["process_type"]),
            release=int(meta["release"]),
            pid=int(meta["pid"]),
            start_ticks=int(meta["start_ticks"]),
            port=None if meta.get("port") is None else int(meta["port"]),
            started_at=float(meta["started_at"]),
            restarts=int(meta.get("restarts", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


class Supervisor:
    """Runs every app's dynos on this machine."""

    def __init__(
        self,
        *,
        run_dir: Path,
        logs: LogStore,
        on_change: Callable[[str], None] | None = None,
        on_records: Callable[[str, list[DynoRecord]], None] | None = None,
        on_event: Callable[[DynoEvent], None] | None = None,
        stop_grace: float = 30.0,
        ready_timeout: float = 60.0,
        port_range: tuple[int, int] = (20000, 29999),
        clock: Callable[[], float] = time.monotonic,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.logs = logs
        self.on_change = on_change
        self.on_records = on_records
        self.on_event = on_event
        self.stop_grace = stop_grace
        self.ready_timeout = ready_timeout
        self.port_range = port_range
        self.clock = clock
        self.backoff = backoff or BackoffPolicy()
        self._dynos: dict[str, list[_Dyno]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ports: set[int] = set()
        # A random start keeps two servers on one host (tests, benchmarks) from racing for the
        # same ports while a dyno boots (the probe cannot reserve a port for it).
        self._port_cursor = secrets.randbelow(port_range[1] - port_range[0] + 1)
        self._one_offs: dict[str, set[int]] = {}  # "app/type" -> numbers of running one-offs
        #: Process group of each running one-off dyno -> its app, and set once it is reaped.
        self._one_off_groups: dict[int, _OneOff] = {}
        self._records: dict[str, tuple[DynoRecord, ...]] = {}
        self._retirements: set[asyncio.Task[None]] = set()  # old dynos stopping after a switch
        # Wakes the output pumps on writes, and all of them every PUMP_SAFETY s (one timer).
        self._inotify = Inotify(safety=PUMP_SAFETY)

    # -- public API --------------------------------------------------------------------------

    async def apply(
        self,
        app: str,
        groups: Mapping[str, tuple[DynoSpec, int]],
        switch: Switch | None = None,
        drain: Drain | None = None,
    ) -> None:
        """Reconcile the app's dynos to `{process_type: (spec, count)}`.

        Missing types scale to 0. Dynos with another spec are replaced: new web dynos start
        beside the old ones and must pass their checks, then `switch()` re-points traffic, then
        `drain(old upstreams)` waits for their in-flight requests, then the old ones stop
        (SIGTERM, grace, SIGKILL). Other types are replaced after that. If a new web dyno
        fails, the new ones stop, the old ones keep running and `DeployError` says why.
        """
        self._check_groups(app, groups)
        async with self._lock(app):
            to_start, to_retire = self._plan(app, groups)
            await self._rollout(app, to_start, to_retire, switch, drain)

    async def adopt(
        self,
        app: str,
        records: Sequence[DynoRecord],
        groups: Mapping[str, tuple[DynoSpec, int]],
    ) -> list[str]:
        """After a restart: re-attach to the app's dynos still alive; start nothing.

        A record is adopted when its pid still runs with the same start ticks (never a recycled
        pid), its home is found under `run_dir` and its release and type match `groups`; web
        dynos that accept connections are `up` at once (they may be serving already). Alive
        dynos that match no group (an older release, a surplus) are adopted too, and the next
        `apply(app, groups)` retires them after their replacements are ready and starts what is
        missing. Dynos found in `run_dir` but missing from `records` (the server died before it
        persisted them) count as records. Output written while nobody read it reaches the
        logs, once. Quick: a restarted server takes every app's dynos back before it says it is
        ready. Returns the names adopted.
        """
        self._check_groups(app, groups)
        async with self._lock(app):
            return await self._adopt(app, records, groups)

    async def detach(self) -> None:
        """Let go of every dyno WITHOUT stopping it (server shutdown): pumps and watchers stop.

        The processes keep running and writing to their files; a later `adopt()` takes them
        back. One-off dynos die with their callers, so they are killed.
        """
        for pgid in list(self._one_off_groups):
            kill_group(pgid, signal.SIGKILL)
        dynos = [d for app in list(self._dynos) for d in self._dynos[app]]
        for d in dynos:
            d.detached = True
        tasks = [t for d in dynos for t in (d.task, d.pump) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.retired()  # they end with the dynos' tasks; the processes finish on their own
        for d in dynos:
            with contextlib.suppress(OSError):  # catch up, so the next reader starts later
                self._catch_up(d)
            d.out.close()
        self._dynos.clear()
        self._ports.clear()
        self._records.clear()
        self._inotify.close()

    async def retired(self) -> None:
        """Wait until the old dynos that switches and scale-downs left stopping are gone."""
        while self._retirements:
            await asyncio.gather(*list(self._retirements), return_exceptions=True)

    def web_upstreams(self, app: str) -> list[str]:
        """`127.0.0.1:PORT` of the app's web dynos that are up and current (not retiring)."""
        return [
            d.upstream
            for d in self._dynos.get(app, [])
            if d.spec.process_type == "web"
            and d.state == "up"
            and not d.retiring
            and not d.probation
            and not d.stopping
        ]

    async def stop_one_off(self, app: str, name: str, grace: float = 10.0) -> None:
        """`ps:stop run.1`: SIGTERM to the one-off dyno's processes, SIGKILL after `grace` s;
        returns once it is reaped. `NotFound` if the app runs no one-off of that name."""
        found = [
            (pgid, o)
            for pgid, o in self._one_off_groups.items()
            if (o.status.app, o.status.name) == (app, name)
        ]
        if not found:
            raise NotFound(
                f"The app {app!r} runs no one-off dyno {name!r} (see `minipaas ps`); to stop a "
                f"process type, use `ps:stop {name.partition('.')[0]}`."
            )
        pgid, one_off = found[0]
        kill_group(pgid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await one_off.reaped.wait()
        except TimeoutError:
            kill_group(pgid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await one_off.reaped.wait()

    def one_offs(self, app: str) -> list[OneOffStatus]:
        """The app's running one-off dynos (`run`, cron jobs, the release phase), by name."""
        found = [o.status for o in self._one_off_groups.values() if o.status.app == app]
        return sorted(found, key=lambda o: (o.name.partition(".")[0], o.started_at))

    def status(self, app: str | None = None) -> list[DynoStatus]:
        """Every dyno of `app` (or of all apps), by app, type and number."""
        apps = [app] if app is not None else sorted(self._dynos)
        out = []
        for name in apps:
            for d in sorted(
                self._dynos.get(name, []),
                key=lambda d: (d.spec.process_type, d.number, d.spec.release),
            ):
                out.append(
                    DynoStatus(
                        app=d.app,
                        name=d.name,
                        process_type=d.spec.process_type,
                        release=d.spec.release,
                        state=d.state,
                        pid=d.pid,
                        port=d.port,
                        started_at=d.started_at,
                        restarts=d.restarts,
                        command=d.spec.command,
                        exit_code=d.exit_code,
                        reason=d.reason,
                        memory=d.spec.memory,
                        last_error=d.last_error,
                    )
                )
        return out

    def check_memory(self, usage: Iterable[tuple[str, int, int]]) -> None:
        """Enforce memory quotas (`DynoSpec.memory`) with one sampling round's numbers: (app,
        leader pid, RSS of the dyno's whole process tree) per dyno.

        Heroku's rules: above its quota a dyno's log gets `Error R14 (Memory quota exceeded)`
        (at most every R14_EVERY s while that lasts); above MEMORY_KILL_FACTOR times its quota
        `Error R15 (Memory quota vastly exceeded)`, then SIGKILL, and the dyno restarts like
        any dyno that exited (backoff), `ps` saying why. The numbers come from a sampler (the
        metrics loop): a spike between two rounds is left to the kernel's OOM killer.
        """
        by_pid = {
            (d.app, d.pid): d
            for dynos in self._dynos.values()
            for d in dynos
            if d.pid is not None and d.spec.memory is not None
        }
        for app, pid, rss in usage:
            d = by_pid.get((app, pid))
            if d is None or d.spec.memory is None or d.kill_reason is not None:
                continue
            quota = d.spec.memory
            if rss <= quota:
                continue
            mem = f"mem={rss // 2**20}M({100 * rss / quota:.1f}%)"
            if rss > MEMORY_KILL_FACTOR * quota:
                self._log(d.app, d.name, f"Process running {mem}")
                self._log(d.app, d.name, "Error R15 (Memory quota vastly exceeded)")
                self._log(d.app, d.name, "Stopping process with SIGKILL")
                d.kill_reason = (
                    f"Error R15 (Memory quota vastly exceeded): {mem} of its "
                    f"{quota // 2**20}M quota"
                )
                kill_group(pid, signal.SIGKILL)
                continue
            now = self.clock()
            if d.r14_at is None or now - d.r14_at >= R14_EVERY:
                d.r14_at = now
                self._log(d.app, d.name, f"Process running {mem}")
                self._log(d.app, d.name, "Error R14 (Memory quota exceeded)")

    def records(self, app: str) -> list[DynoRecord]:
        """What `on_records` last said (or would say) about the app's running dynos."""
        out = []
        for d in self._dynos.get(app, []):
            if d.pid is None or d.start_ticks is None:
                continue
            out.append(
                DynoRecord(
                    app=d.app,
                    name=d.name,
                    process_type=d.spec.process_type,
                    release=d.spec.release,
                    pid=d.pid,
                    start_ticks=d.start_ticks,
                    port=d.port,
                    started_at=d.started_at or 0.0,
                    restarts=d.restarts,
                )
            )
        return out

    async def run_once(
        self,
        spec: DynoSpec,
        on_line: Callable[[str], None],
        timeout: float = 3600,  # noqa: ASYNC109 - part of the contract; applied with asyncio.timeout
        started: Callable[[str], None] = lambda _dyno: None,
    ) -> int:
        """Run a one-off dyno (`release.1`, `run.N`), stream its output, return its exit status.

        The output also goes to the app's logs (source `release` for the release phase, `app`
        otherwise). Past `timeout` seconds the dyno is killed and `DeployError` raised. One-off
        dynos read a pipe: they die with their caller anyway. `started` gets the dyno's name
        once its process runs and `stop_app` would find it.
        """
        source = "release" if spec.process_type == "release" else "app"
        async with self._one_off(spec, spec.process_type, "") as slot:
            name = slot.name
            proc = await asyncio.create_subprocess_exec(
                *sandbox_argv(slot.job),
                env=self._env(spec, name, slot.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # the dyno leads its own process group
            )
            self._track(spec, slot, proc)
            started(name)
            assert proc.stdout is not None

            def emit(texts: list[str]) -> None:
                self.logs.append_many(spec.app, source, name, texts)
                for text in texts:
                    on_line(text)

            try:
                async with asyncio.timeout(timeout):
                    await self._pump_pipe(proc.stdout, emit)
                    status = await proc.wait()
            except TimeoutError:
                kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                self._log(spec.app, name, f"Process timed out after {timeout:g} s; killed")
                raise DeployError(
                    f"The command `{spec.command}` ({name}) did not finish within {timeout:g} s."
                ) from None
            self._log(spec.app, name, f"Process exited with {describe_status(status)}")
            return status

    async def run_attached(
        self,
        spec: DynoSpec,
        stdin: int,
        stdout: int,
        stderr: int,
        timeout: float | None = None,  # noqa: ASYNC109 - part of the contract
        name: str = "run",
        started: Callable[[str], None] = lambda _dyno: None,
        hung_up: asyncio.Event | None = None,
    ) -> int:
        """Run a one-off dyno (`run.N`) on the given descriptors; return its exit status.

        The descriptors may be a PTY (received from `minipaas run` over ssh -t) or pipes; they
        are not closed here. With a terminal on stdin the dyno gets it as its controlling
        terminal (Ctrl-C, job control; inside, `tty` answers /dev/console). A signal death
        returns 128+signal. On timeout (`DeployError`) or cancellation its process group is
        killed. Nothing reaches the logs but a start and an exit line (an interactive session
        is the user's, not the app's log). `started` as for `run_once`. `hung_up`, set when
        the caller's client went away: on pipes the command then gets the SIGHUP a terminal's
        hangup would have sent it (`hang_up_sandboxed`); the caller kills it after a grace.
        """
        names.process_type(name)
        async with self._one_off(spec, name, " (attached)") as slot:
            dyno = slot.name
            tty = os.isatty(stdin)
            job = slot.job
            if tty:
                command = dyno_command(spec.command, job_control=True)
                job = dataclasses.replace(job, command=on_terminal(command))
            argv = sandbox_argv(job)
            if tty:
                # `setsid --ctty`: a new session whose controlling terminal is stdin, so the
                # terminal's ^C reaches the command and shells get job control; inside, the
                # command's own process group takes the terminal (`sandbox.on_terminal`).
                argv = [host_tool("setsid"), "--ctty", *argv]
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=self._env(spec, dyno, slot.port),
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=not tty,
            )
            self._track(spec, slot, proc)
            started(dyno)
            try:
                async with asyncio.timeout(timeout), _hangup(hung_up, None if tty else proc.pid):
                    status = await proc.wait()
            except TimeoutError:
                self._log(spec.app, dyno, f"Process timed out after {timeout:g} s; killed")
                raise DeployError(
                    f"The command `{spec.command}` ({dyno}) did not finish within {timeout:g} s."
                ) from None
            self._log(spec.app, dyno, f"Process exited with {describe_status(status)}")
            return 128 - status if status < 0 else status

    async def exec_attached(
        self,
        app: str,
        dyno: str,
        command: str,
        stdin: int,
        stdout: int,
        stderr: int,
        timeout: float | None = None,  # noqa: ASYNC109 - as for run_attached
        started: Callable[[str], None] = lambda _dyno: None,
        hung_up: asyncio.Event | None = None,
    ) -> int:
        """`ps:exec`: run `command` inside the running dyno `dyno` (`web.1`) of `app`, on the
        given descriptors (a terminal or pipes, as for `run_attached`); its exit status.

        The command sees what the dyno's own command sees: its files (/app's layer, /tmp), its
        processes (PID namespace), its hostname, IPC and network, and its environment as the
        dyno started with it (config vars, PORT, DYNO). It runs as the app's uid without
        capabilities, under the dyno's seccomp filter and process limit (`sandbox.exec_argv`).
        It ends with the dyno (the kernel kills a PID namespace's processes with its init) and
        is killed, all of its session, when this call ends: timeout, cancellation (the client
        left), or the command's exit (nothing it started in the background is left behind).
        An empty `command` is an interactive shell: bash (the host's /usr is the dyno's), else
        sh. `UserError` for a dyno that does not exist, is not up, or is a one-off; `started`
        gets the dyno's name (`web` means `web.1`) once it is found; `hung_up` as for
        `run_attached`.
        """
        if "\0" in command:
            raise UserError(f"Invalid command {command[:100]!r}: it holds a NUL character.")
        d = self._exec_target(app, dyno)
        target = inner_pid(d.pid) if d.pid is not None else None
        try:
            pid_ns = os.readlink(f"/proc/{target}/ns/pid") if target is not None else None
        except OSError:
            pid_ns = None
        if target is None or pid_ns is None:
            raise UserError(f"The dyno {d.name} of {app!r} is not running; see `minipaas ps`.")
        if d.spec.uid is None or os.geteuid() != 0:
            raise UserError(
                "ps:exec needs a minipaas server that runs as root (dynos with their own uid)."
            )
        if not command.strip():
            command = "bash" if shutil.which("bash", path=DEFAULT_PATH) else "sh"
        started(d.name)
        tty = os.isatty(stdin)
        inner = dyno_command(command, job_control=tty)
        if tty:
            inner = on_terminal(inner)
        argv = exec_argv(target, d.spec.uid, inner)
        if tty:
            # as in run_attached: the terminal is the command's
            argv = [host_tool("setsid"), "--ctty", *argv]
        dyno = d.name
        self._log(app, dyno, f"Running `{command}` in {dyno} (ps:exec)")
        # Every process of the session inherits this mark, also one that leaves the session
        # with setsid(2): the session's end kills those too (`kill_marked`).
        mark = f"{EXEC_SESSION_VAR}={secrets.token_hex(16)}"
        env = self._env(d.spec, d.name, d.port)
        env[EXEC_SESSION_VAR] = mark.partition("=")[2]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=not tty,  # either way the session's id is proc.pid
        )
        try:
            async with asyncio.timeout(timeout), _hangup(hung_up, None if tty else proc.pid):
                status = await proc.wait()
        except TimeoutError:
            self._log(app, dyno, f"ps:exec timed out after {timeout:g} s; killed")
            raise DeployError(
                f"The command `{command}` in {dyno} did not finish within {timeout:g} s."
            ) from None
        finally:
            kill_session(proc.pid, pid_ns)  # what is left runs in the dyno's PID namespace
            kill_marked(pid_ns, mark.encode())  # and what left it (setsid)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        self._log(app, dyno, f"ps:exec exited with {describe_status(status)}")
        return 128 - status if status < 0 else status

    def _exec_target(self, app: str, dyno: str) -> _Dyno:
        """The dyno `ps:exec` enters: `UserError` naming `dyno` unless it is one of the app's
        formation dynos and up. One-off dynos are refused: each is somebody's session (or a
        release phase, a cron job) that ends with its command, and `run` starts a fresh one."""
        ptype, number = names.process_type_or_dyno(dyno)
        name = f"{ptype}.{number or 1}"
        if any((o.status.app, o.status.name) == (app, name) for o in self._one_off_groups.values()):
            raise UserError(
                f"The dyno {name} of {app!r} is a one-off dyno; ps:exec enters web and worker "
                "dynos only (use `minipaas run` for a new one-off)."
            )
        dynos = [d for d in self._dynos.get(app, []) if not d.retiring]
        if not dynos:
            raise UserError(f"The app {app!r} has no dynos running; scale it up with `ps:scale`.")
        found = [d for d in dynos if d.name == name]
        if not found:
            listed = ", ".join(sorted({d.name for d in dynos}))
            raise NotFound(f"The app {app!r} has no dyno {name}; its dynos are: {listed}.")
        # During a rolling restart or a deploy the new web.1 starts beside the old one, which
        # serves until the new one is up: enter the one that is up (the newest, if both are).
        up = [d for d in found if d.state == "up" and d.pid is not None]
        d = up[-1] if up else found[-1]
        if d.state != "up" or d.pid is None:
            raise UserError(f"The dyno {name} of {app!r} is not up (it is {d.state}).")
        return d

    @contextlib.asynccontextmanager
    async def _one_off(self, spec: DynoSpec, ptype: str, how: str) -> AsyncIterator[_Slot]:
        """What a one-off dyno runs with: its name (`ptype`.N, the lowest N free), scratch dir,
        $PORT (every dyno has one, as on Heroku) and sandbox job. Afterwards its process (if
        `_track`ed) is killed unless gone, and reaped, and the rest is given back."""
        used = self._one_offs.setdefault(f"{spec.app}/{ptype}", set())
        number = next(n for n in range(1, len(used) + 2) if n not in used)
        used.add(number)
        name = f"{ptype}.{number}"
        self._log(spec.app, name, f"Starting process with command `{spec.command}`{how}")
        scratch = self._scratch(spec.app, name)
        job = SandboxJob(
            app_dir=spec.slug,
            command=dyno_command(spec.command),
            uid=spec.uid,
            layer=True,
            scratch=scratch,
            die_with_parent=True,  # one-offs die with their caller, also when it is killed
        )
        slot = _Slot(name, job)
        try:
            slot.port = self._allocate_port()
            yield slot
        finally:
            proc = slot.proc
            if proc is not None:
                if proc.returncode is None or group_alive(proc.pid):
                    kill_group(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)  # an attached run before its setsid
                    with contextlib.suppress(ProcessLookupError):
                        await asyncio.shield(proc.wait())
                self._one_off_reaped(proc.pid)
            if slot.port is not None:
                self._ports.discard(slot.port)
            used.discard(number)
            self._remove_scratch(scratch)

    def _track(self, spec: DynoSpec, slot: _Slot, proc: asyncio.subprocess.Process) -> None:
        """The one-off's process started: `ps` lists it, `stop_app` and `stop_one_off` find it."""
        slot.proc = proc
        self._one_off_groups[proc.pid] = _OneOff(
            OneOffStatus(spec.app, slot.name, spec.command, spec.release, proc.pid, time.time())
        )

    async def stop_app(self, app: str) -> None:
        """Stop every dyno of the app (graceful, in parallel) and forget them. Its one-off
        dynos (`run`, cron jobs) are killed, and reaped before this returns: a destroyed app
        must leave nothing running, nor anything that writes to its logs afterwards."""
        one_offs = self._kill_one_offs(app)
        async with self._lock(app):
            dynos = list(self._dynos.get(app, []))
            await asyncio.gather(*(self._stop(d) for d in dynos))
            self._forget(app, dynos)
        await self._reaped(one_offs)
        with contextlib.suppress(OSError):  # its dir under run_dir, once empty
            self._app_dir_path(app).rmdir()

    async def stop_one_offs(self, app: str) -> None:
        """Kill the app's one-off dynos (`run`, cron jobs) and wait until they are reaped."""
        await self._reaped(self._kill_one_offs(app))

    def _kill_one_offs(self, app: str) -> list[asyncio.Event]:
        one_offs = [o.reaped for o in self._one_off_groups.values() if o.status.app == app]
        for pgid in [p for p, o in self._one_off_groups.items() if o.status.app == app]:
            kill_group(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pgid, signal.SIGKILL)  # an attached run before its setsid has no group
        return one_offs

    @staticmethod
    async def _reaped(one_offs: list[asyncio.Event]) -> None:
        if one_offs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.gather(*(done.wait() for done in one_offs))

    def rename_app(self, old: str, new: str, slugs: tuple[Path, Path]) -> None:
        """`apps:rename`, right at its commit point: the app's dynos carry on, not restarted,
        as dynos of `new`. Nothing inside a dyno names its app (its env is the config, PORT,
        DYNO, HOME) and its slug was mounted when it started, so only minipaas's side moves:
        their specs name `new` and the slug under its new dir (`slugs`: the app's slug dir
        under the old name, then the new), their homes move to `run_dir/new` with dyno.json
        saying so (a restarted server adopts them under the new name). Synchronous, so no
        other change interleaves; the caller stopped the one-off dynos (`stop_one_offs`)."""
        try:
            move_homes(self.run_dir, old, new, slugs)
        except OSError as exc:  # they keep their homes (a restart would not adopt them)
            _log.error("moving the dyno homes of %s to %s failed: %s", old, new, exc)
        dynos = self._dynos.pop(old, [])
        for d in dynos:
            d.spec = _moved_spec(d.spec, new, slugs)
            home = self._app_dir_path(new) / d.home.name
            if home.is_dir():
                d.home = home
                d.out.path, d.out.offset_path = home / "out", home / "offset"
            with contextlib.suppress(OSError):
                self._write_meta(d)
        if dynos:
            self._dynos.setdefault(new, []).extend(dynos)
        self._records.pop(old, None)
        self._changed(new)
        self._records_changed(new)

    def _one_off_reaped(self, pgid: int) -> None:
        entry = self._one_off_groups.pop(pgid, None)
        if entry is not None:
            entry.reaped.set()

    async def stop_all(self) -> None:
        """Stop every dyno of every app (`minipaas down`); one-off dynos are killed."""
        for pgid in list(self._one_off_groups):
            kill_group(pgid, signal.SIGKILL)
        await asyncio.gather(*(self.stop_app(app) for app in list(self._dynos)))
        await self.retired()

    async def restart(
        self,
        app: str,
        process_type: str | None = None,
        switch: Switch | None = None,
        drain: Drain | None = None,
        *,
        number: int | None = None,
        specs: Mapping[str, DynoSpec] | None = None,
    ) -> None:
        """Restart the app's dynos (of one type, or the one dyno `process_type`.`number`): web
        ones rolling, the others stop-then-start. `specs` (by process type) replace the specs
        the dynos were started with when of the same release: a health check set since then
        (`checks:set`) applies to the restart."""

        def spec_of(d: _Dyno) -> DynoSpec:
            fresh = (specs or {}).get(d.spec.process_type)
            same = fresh is not None and (fresh.app, fresh.release) == (d.spec.app, d.spec.release)
            return fresh if fresh is not None and same else d.spec

        async with self._lock(app):
            current = [d for d in self._dynos.get(app, []) if not d.retiring]
            targets = [
                d
                for d in current
                if (process_type is None or d.spec.process_type == process_type)
                and (number is None or d.number == number)
            ]
            if not targets:
                if number is not None:
                    what = f"dyno {process_type}.{number}"
                else:
                    what = f"{process_type} dynos" if process_type else "dynos"
                raise NotFound(f"The app {app!r} has no {what} to restart.")
            web = [d for d in targets if d.spec.process_type == "web"]
            others = [d for d in targets if d.spec.process_type != "web"]
            await self._rollout(app, [(spec_of(d), d.number) for d in web], web, switch, drain)
            await asyncio.gather(*(self._stop(d) for d in others))
            self._forget(app, others)
            fresh = [self._launch(spec_of(d), d.number) for d in others]
            self._changed(app)
            await asyncio.gather(*(self._wait_ready(d) for d in fresh))

    # -- reconciling -------------------------------------------------------------------------

    def _check_groups(self, app: str, groups: Mapping[str, tuple[DynoSpec, int]]) -> None:
        for process_type, (spec, count) in groups.items():
            names.process_type(process_type)
            if spec.process_type != process_type or spec.app != app:
                raise ValueError(f"spec {spec.app}/{spec.process_type} under {app}/{process_type}")
            if count < 0:
                raise UserError(f"Invalid dyno count {count} for {process_type}: use 0 or more.")

    def _lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def _plan(
        self, app: str, groups: Mapping[str, tuple[DynoSpec, int]]
    ) -> tuple[list[tuple[DynoSpec, int]], list[_Dyno]]:
        """Which (spec, number) to start and which dynos to retire to reach `groups`."""
        current = [d for d in self._dynos.get(app, []) if not d.retiring]
        to_start: list[tuple[DynoSpec, int]] = []
        to_retire: list[_Dyno] = []
        for process_type in sorted({d.spec.process_type for d in current} | set(groups)):
            spec, count = groups.get(process_type, (None, 0))
            mine = sorted(
                (d for d in current if d.spec.process_type == process_type),
                key=lambda d: d.number,
            )
            same = [d for d in mine if d.spec == spec]
            to_retire += [d for d in mine if d.spec != spec]
            to_retire += same[count:]  # scaling down stops the highest numbers
            if spec is None:
                continue
            used = {d.number for d in same[:count]}
            number = 1
            for _ in range(count - len(same)):
                while number in used:
                    number += 1
                used.add(number)
                to_start.append((spec, number))
        return to_start, to_retire

    async def _rollout(
        self,
        app: str,
        to_start: list[tuple[DynoSpec, int]],
        to_retire: list[_Dyno],
        switch: Switch | None,
        drain: Drain | None,
    ) -> None:
        """Web first: start, check, switch, drain, stop the old; then the other types."""
        if not to_start and not to_retire:
            return
        web_start = [(s, n) for s, n in to_start if s.process_type == "web"]
        web_retire = [d for d in to_retire if d.spec.process_type == "web"]
        other_start = [(s, n) for s, n in to_start if s.process_type != "web"]
        other_retire = [d for d in to_retire if d.spec.process_type != "web"]
        switched = False
        if web_start or web_retire:
            new = [self._launch(spec, number, probation=True) for spec, number in web_start]
            self._changed(app)
            outcomes = await asyncio.gather(*(self._wait_ready(d) for d in new))
            failures = [
                (d, why or "it exited right after it became ready")
                for d, why in zip(new, outcomes, strict=True)
                if why or (d.task is not None and d.task.done())
            ]
            if failures:
                await self._abandon(app, new)
                d, why = failures[0]
                raise DeployError(self._failure_message(d, why, keeps=bool(to_retire)))
            await self._switch_over(app, new, web_retire, switch, drain)
            switched = True
        if other_start or other_retire:
            new = [self._launch(spec, number) for spec, number in other_start]
            self._changed(app)
            await asyncio.gather(*(self._wait_ready(d) for d in new))
            if not switched:
                await self._switch_over(app, new, other_retire, switch, None)
            else:
                self._retire_later(app, other_retire)

    async def _switch_over(
        self,
        app: str,
        new: list[_Dyno],
        old: list[_Dyno],
        switch: Switch | None,
        drain: Drain | None,
    ) -> None:
        """Traffic to `new` (ready), away from `old`; then drain and stop `old`."""
        for d in old:
            d.retiring = True
        for d in new:
            d.probation = False
        self._changed(app)
        if switch is not None:
            try:
                await switch()
            except BaseException:
                for d in old:
                    d.retiring = False
                await self._abandon(app, new)
                raise
        upstreams = [d.upstream for d in old if d.port is not None]
        if drain is not None and upstreams:
            try:
                await drain(upstreams)
            except Exception as exc:  # the switch is done: stop them anyway, say so
                self._log(app, "minipaas", f"Draining {', '.join(upstreams)} failed: {exc!r}")
        self._retire_later(app, old)

    def _retire_later(self, app: str, dynos: list[_Dyno]) -> None:
        """Stop `dynos`, which serve nothing any more, without making the caller wait.

        A deploy, scale or restart is done once its new dynos serve; an old one's graceful
        shutdown (gunicorn finishing its workers, or the whole `stop_grace` for one that
        ignores SIGTERM) is not the pusher's business. Until they are gone they stay listed
        as "stopping", keep their ports and are in the records (a server killed meanwhile
        adopts and retires them again); `_plan` ignores them, as they are `retiring`.
        """
        if not dynos:
            return
        for d in dynos:
            d.retiring = True
            self._terminate(d)
        task = asyncio.get_running_loop().create_task(self._retire(app, dynos))
        self._retirements.add(task)
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retirements.discard(task)
        if not task.cancelled() and task.exception() is not None:  # detach() cancels them
            _log.error("stopping old dynos failed", exc_info=task.exception())

    async def _retire(self, app: str, dynos: list[_Dyno]) -> None:
        await asyncio.gather(*(self._stop(d) for d in dynos))
        app = dynos[0].app if dynos else app  # its name now: `rename_app` may have run meanwhile
        self._forget(app, dynos)
        self._changed(app)

    async def _abandon(self, app: str, dynos: list[_Dyno]) -> None:
        await self._retire(app, dynos)

    def _failure_message(self, d: _Dyno, why: str, *, keeps: bool) -> str:
        kept = " The previous dynos keep running." if keeps else ""
        sentence = f"New dyno {d.name} of {d.app} (v{d.spec.release}) failed to start: {why}.{kept}"
        lines = list(d.recent)
        if not lines:
            return sentence + " It printed nothing."
        return sentence + " Its last output:\n" + "\n".join(f"  {line}" for line in lines)

    def _forget(self, app: str, dynos: list[_Dyno]) -> None:
        gone = set(dynos)
        for d in dynos:
            if d.port is not None:
                self._ports.discard(d.port)
        remaining = [d for d in self._dynos.get(app, []) if d not in gone]
        if remaining:
            self._dynos[app] = remaining
        else:
            self._dynos.pop(app, None)
        self._records_changed(app)

    # -- adopting ----------------------------------------------------------------------------

    def _homes(self, app: str) -> list[tuple[Path, dict[str, Any]]]:
        """Dyno homes under `run_dir/<app>` not owned by this supervisor, with their dyno.json."""
        owned = {d.home for d in self._dynos.get(app, [])}
        parent = self._app_dir_path(app)
        if not parent.is_dir():
            return []
        found = []
        for home in sorted(parent.iterdir()):
            if home in owned or not home.is_dir():
                continue
            meta = _read_meta(home)
            if meta is not None:
                found.append((home, meta))
        return found

    async def _adopt(
        self,
        app: str,
        records: Sequence[DynoRecord],
        groups: Mapping[str, tuple[DynoSpec, int]],
    ) -> list[str]:
        homes = self._homes(app)
        by_key: dict[tuple[int, int], tuple[Path, dict[str, Any]]] = {}
        candidates: dict[tuple[int, int], DynoRecord] = {}
        for home, meta in homes:
            record = _record_from_meta(meta)
            if record is not None and record.app == app:
                by_key[(record.pid, record.start_ticks)] = (home, meta)
                candidates.setdefault((record.pid, record.start_ticks), record)
        for record in records:  # the store's word wins over dyno.json
            if record.app == app:
                candidates[(record.pid, record.start_ticks)] = record
        taken: set[str] = set()
        used_homes: set[Path] = set()
        adopted: list[_Dyno] = []
        for key, record in sorted(candidates.items(), key=lambda kv: kv[1].started_at):
            if not is_running(record.pid, record.start_ticks):
                continue
            if key not in by_key:
                # Alive, but its output file is gone: it cannot be supervised; stop it.
                self._log(
                    app,
                    record.name,
                    f"Stopping process {record.pid}: its home under {self.run_dir} is gone",
                )
                kill_group(record.pid, signal.SIGTERM)
                continue
            home, meta = by_key[key]
            used_homes.add(home)
            group = groups.get(record.process_type)
            digits = record.name.rpartition(".")[2]
            number = int(digits) if digits.isdigit() else 0
            matches = (
                group is not None
                and group[0].release == record.release
                and record.name not in taken
                and record.name == f"{record.process_type}.{number}"
            )
            if matches:
                assert group is not None
                spec = group[0]
                taken.add(record.name)
            else:
                spec = _AdoptedSpec(
                    app=app,
                    process_type=record.process_type,
                    release=record.release,
                    slug=Path(str(meta.get("slug", ""))),
                    command=str(meta.get("command", "")),
                    env={},
                )
            d = _Dyno(
                spec=spec,
                number=number,
                port=record.port,
                home=home,
                out=RawOutput(home),
                pid=record.pid,
                start_ticks=record.start_ticks,
                started_at=record.started_at,
                restarts=record.restarts,
                adopted=True,
            )
            adopted.append(d)
        # Web dynos that accept connections are up right away: they may be serving now, and
        # a route sync must not drop them while they are being checked.
        ready = await asyncio.gather(*(self._probe_adopted(d) for d in adopted))
        for d, up in zip(adopted, ready, strict=True):
            d.state = "up" if up else "starting"
            if d.port is not None:
                self._ports.add(d.port)
            d.outcome = asyncio.get_running_loop().create_future()
            if up:
                d.outcome.set_result(None)
            self._dynos.setdefault(app, []).append(d)
            self._log(app, d.name, f"Adopted running process {d.pid} (v{d.spec.release})")
            if up:
                self._event(d, "up", f"adopted pid {d.pid}")
            self._start_tasks(d)
        for home, meta in homes:
            if home not in used_homes:
                await self._collect(app, home, meta)
        self._changed(app)
        self._records_changed(app)
        return [d.name for d in adopted if not isinstance(d.spec, _AdoptedSpec)]

    async def _probe_adopted(self, d: _Dyno) -> bool:
        if d.port is None:
            return True
        return await Probe(d.port, None, owner=d.pid).missing(0.0) is None

    async def _collect(self, app: str, home: Path, meta: Mapping[str, Any]) -> None:
        """A dyno that ended while nobody watched: its last output to the logs, its home away."""
        name = str(meta.get("name", "unknown"))
        pid, ticks = meta.get("pid"), meta.get("start_ticks")
        if isinstance(pid, int) and isinstance(ticks, int) and is_running(pid, ticks):
            return  # alive but of another app's name clash: leave it to its owner
        out = RawOutput(home)
        try:
            await _read_to_end(out, lambda texts: self.logs.append_many(app, "app", name, texts))
        finally:
            out.close()
        self._log(app, name, f"Process {pid} exited while minipaas was not watching")
        _remove_home(home)

    # -- one dyno ----------------------------------------------------------------------------

    def _launch(self, spec: DynoSpec, number: int, *, probation: bool = False) -> _Dyno:
        port = self._allocate_port() if spec.process_type == "web" else None
        name = f"{spec.process_type}.{number}"
        home = self._new_home(spec.app, name)
        d = _Dyno(
            spec=spec,
            number=number,
            port=port,
            probation=probation,
            home=home,
            out=RawOutput(home),
        )
        d.outcome = asyncio.get_running_loop().create_future()
        self._dynos.setdefault(spec.app, []).append(d)
        self._start_tasks(d)
        return d

    def _start_tasks(self, d: _Dyno) -> None:
        d.pump = asyncio.create_task(self._pump(d), name=f"dyno output {d.app} {d.name}")
        d.task = asyncio.create_task(self._supervise(d), name=f"dyno {d.app} {d.name}")

    async def _wait_ready(self, d: _Dyno) -> str | None:
        assert d.outcome is not None
        return await asyncio.shield(d.outcome)

    def _settle(self, d: _Dyno, why: str | None) -> None:
        if d.outcome is not None and not d.outcome.done():
            d.outcome.set_result(why)

    async def _supervise(self, d: _Dyno) -> None:
        """Run the dyno, restarting it per the backoff policy, until it is stopped."""
        try:
            while not d.stopping:
                started = self.clock()
                status = await self._live(d)
                d.exit_code = status
                killed, d.kill_reason = d.kill_reason, None
                if killed is not None:
                    d.last_error = killed
                if d.stopping:
                    break
                now = self.clock()
                d.runs = [*d.runs[-19:], Run(started, now, status)]
                exited = f"exited with {describe_status(status)}"
                if killed is not None:
                    exited += f" ({killed})"
                self._log(d.app, d.name, f"Process {exited}")
                self._event(d, "exited", _exit_detail(status))
                if d.probation:
                    # A new dyno on trial is not restarted: the rollout gives up on it.
                    self._settle(d, f"it {exited} before accepting connections on port {d.port}")
                    d.reason = f"it {exited} before it was ready"
                    self._set_state(d, "crashed")
                    return
                self._settle(d, f"it {exited}")
                decision = decide(d.runs, now, self.backoff)
                wait = decision.restart_after or 0.0
                if decision.crashed:
                    last = f", the last after {killed}" if killed is not None else ""
                    d.reason = f"{decision.reason}{last}; next start in {wait:g} s"
                    self._set_state(d, "crashed")
                    self._log(d.app, d.name, f"Crashed: {d.reason}")
                    self._event(d, "crashed", decision.reason)
                else:
                    d.reason = f"{exited}; restarting in {wait:g} s"
                    self._set_state(d, "down")
                    if wait:
                        self._log(d.app, d.name, f"Restarting in {wait:g} s")
                self._event(d, "restarting", f"in {wait:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(d.wake.wait(), wait)
                if d.stopping:
                    break
                d.restarts += 1
        finally:
            self._settle(d, "it was stopped before it was ready")
            if not d.detached:
                await self._finish(d)

    async def _finish(self, d: _Dyno) -> None:
        """The dyno is gone for good: the rest of its output to the logs, its home removed."""
        if d.pump is not None:
            d.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await d.pump
        try:
            await _read_to_end(d.out, lambda texts: self._emit(d, texts))
        except OSError as exc:
            self._log(d.app, d.name, f"Could not read the last output: {exc}")
        d.out.close()
        _remove_home(d.home)
        d.reason = None
        self._set_state(d, "down")
        self._event(d, "stopped", "")

    async def _live(self, d: _Dyno) -> int | None:
        """One life of the dyno: spawn (or adopt), watch readiness; returns the exit status."""
        proc: subprocess.Popen[bytes] | None = None
        ready: asyncio.Task[None] | None = None
        if d.adopted:
            d.adopted = False
            pid = d.pid
            assert pid is not None
            life_started = self.clock() - max(0.0, time.time() - (d.started_at or time.time()))
        else:
            self._set_state(d, "starting")
            self._log(d.app, d.name, f"Starting process with command `{d.spec.command}`")
            job = SandboxJob(
                app_dir=d.spec.slug,
                command=dyno_command(d.spec.command),
                uid=d.spec.uid,
                layer=True,
                scratch=d.home / "layer",
            )
            try:
                writer = d.out.open_for_writer()
                try:
                    proc = spawn_detached(
                        sandbox_argv(job), self._env(d.spec, d.name, d.port), writer
                    )
                finally:
                    os.close(writer)
            except OSError as exc:
                return self._not_started(d, exc)
            pid = proc.pid
            life_started = self.clock()
            d.pid, d.start_ticks, d.started_at = pid, start_ticks(pid) or 0, time.time()
            try:
                self._write_meta(d)
            except OSError as exc:  # a full disk: a dyno no restart could re-adopt is not run
                kill_group(pid, signal.SIGKILL)
                await wait_exit(pid, proc)
                d.pid = d.start_ticks = None
                return self._not_started(d, exc)
            self._event(d, "started", f"pid {pid}")
            self._records_changed(d.app)
            if d.stopping:
                kill_group(pid, signal.SIGTERM)
        try:
            if d.state != "up":
                if d.port is not None:
                    ready = asyncio.create_task(self._watch_ready(d, pid, life_started))
                else:
                    self._mark_up(d)
            status = await wait_exit(pid, proc)
            await self._linger(pid, d)
            return status
        finally:
            if ready is not None:
                ready.cancel()
            if not d.detached:
                if group_alive(pid):
                    kill_group(pid, signal.SIGKILL)
                d.pid = d.start_ticks = None
                self._records_changed(d.app)

    def _not_started(self, d: _Dyno, exc: OSError) -> int:
        """The dyno's process could not be started (or recorded): said in its log and to a
        rollout waiting for it; the exit status its supervision goes on with."""
        self._log(d.app, d.name, f"Could not start the process: {exc}")
        self._settle(d, f"it could not be started ({exc.strerror or exc})")
        return 127

    def _mark_up(self, d: _Dyno) -> None:
        if not d.stopping:
            d.reason = None
            self._set_state(d, "up")
            self._event(d, "up", "" if d.port is None else f"port {d.port}")
        self._settle(d, None)

    async def _watch_ready(self, d: _Dyno, pgid: int, life_started: float) -> None:
        """Mark a web dyno up once it passes its checks; kill it if it does not in time."""
        assert d.port is not None
        check = d.spec.check
        timeout = check.timeout if check is not None and check.timeout else self.ready_timeout
        deadline = life_started + timeout
        probe = Probe(d.port, check, owner=pgid)
        try:
            while (missing := await probe.missing(self.clock() - life_started)) is not None:
                if self.clock() >= deadline:
                    what, detail = missing
                    why = f"it did not {what} within {timeout:g} s" + (
                        f": {detail}" if detail else ""
                    )
                    code = "R10 (Boot timeout)" if what.startswith("accept") else "H20 (Checks)"
                    self._log(d.app, d.name, f"Error {code}: {why}; killing it")
                    self._settle(d, why)
                    kill_group(pgid, signal.SIGKILL)
                    return
                if not missing[0].startswith("accept"):
                    await asyncio.sleep(CHECK_POLL)
                elif self.clock() - life_started < READY_FIRST:
                    await asyncio.sleep(READY_POLL_FIRST)
                else:
                    await asyncio.sleep(READY_POLL)
        finally:
            await probe.close()
        self._mark_up(d)

    async def _linger(self, pgid: int, d: _Dyno) -> None:
        """Wait for the rest of the process group to go (bwrap's init tearing the sandbox down)."""
        deadline = self.clock() + LINGER
        while group_alive(pgid):
            if not d.stopping and self.clock() >= deadline:
                kill_group(pgid, signal.SIGKILL)
                deadline = self.clock() + LINGER
            await asyncio.sleep(0.02)

    async def _stop(self, d: _Dyno) -> None:
        """SIGTERM the dyno's process group, wait `stop_grace`, then SIGKILL it."""
        self._terminate(d)
        if d.task is None or d.task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(d.task), self.stop_grace)
        except TimeoutError:
            self._log(
                d.app,
                d.name,
                f"Error R12 (Exit timeout): processes still running {self.stop_grace:g} s "
                "after SIGTERM; stopping them with SIGKILL",
            )
            kill_group(d.pid, signal.SIGKILL)
            await d.task

    def _terminate(self, d: _Dyno) -> None:
        """The first half of `_stop`, at once: "stopping", SIGTERM (once)."""
        if d.task is None or d.task.done() or d.stopping:
            return
        d.stopping = True
        d.wake.set()
        self._set_state(d, "stopping")
        pgid = d.pid
        if pgid is not None:
            self._log(d.app, d.name, "Stopping all processes with SIGTERM")
            kill_group(pgid, signal.SIGTERM)

    async def _pump(self, d: _Dyno) -> None:
        """Tail the dyno's output file into the logs for as long as the supervisor owns it.

        With inotify a write wakes the pump at once and an idle dyno costs nothing but a check
        every PUMP_SAFETY s (one timer for all pumps, in case a wake-up was missed); without it
        the file is polled, every PUMP_MIN s while output flows, backing off to PUMP_MAX.
        """
        written = asyncio.Event()
        watch = self._inotify.watch(d.out.path, written.set)
        wait = PUMP_MIN
        try:
            while True:
                written.clear()  # before the read: a write after it sets it again
                try:
                    got = d.out.read_batch(lambda texts: self._emit(d, texts))
                except OSError as exc:  # e.g. the log disk is full: the output waits in its file
                    self._log(d.app, d.name, f"Could not pump the output: {exc}")
                    await asyncio.sleep(PUMP_MAX)
                    continue
                if got:
                    wait = PUMP_MIN
                    await asyncio.sleep(0)
                    continue
                if watch is None or watch.closed:
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, PUMP_MAX)
                    continue
                await written.wait()  # a write, the safety sweep, or the watch's end
        finally:
            if watch is not None:
                watch.close()

    def _catch_up(self, d: _Dyno) -> None:
        for _ in range(1000):  # bounded: a dyno flooding its file must not hold shutdown up
            if not d.out.read_batch(lambda texts: self._emit(d, texts)):
                return

    def _emit(self, d: _Dyno, texts: list[str]) -> None:
        self.logs.append_many(d.app, "app", d.name, texts)
        d.recent.extend(texts[-RECENT_LINES:])

    # -- plumbing ----------------------------------------------------------------------------

    def _env(self, spec: DynoSpec, name: str, port: int | None) -> dict[str, str]:
        env = base_env(spec.env)
        env.update({"DYNO": name, "HOME": "/app"})
        if port is not None:
            env["PORT"] = str(port)
        return env

    async def _pump_pipe(
        self, stream: asyncio.StreamReader, emit: Callable[[list[str]], None]
    ) -> None:
        """Read `stream` to its end, handing complete lines to `emit` one chunk at a time."""
        rest = b""
        while chunk := await stream.read(READ_CHUNK):
            lines, rest = split_output(rest + chunk)
            if lines:
                emit(decode(lines))
        if rest:
            emit(decode([rest]))

    def _app_dir_path(self, app: str) -> Path:
        return self.run_dir / app

    def _app_dir(self, app: str) -> Path:
        # The app's uid must traverse to the layer's mount point, so the dirs are 0755.
        parent = self._app_dir_path(app)
        parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)  # noqa: S103 - traversable by app uids, holds no secrets
        os.chmod(parent, 0o755)  # noqa: S103
        return parent

    def _new_home(self, app: str, name: str) -> Path:
        home = self._app_dir(app) / f"{name}.{secrets.token_hex(4)}"
        home.mkdir(mode=0o755)
        (home / "layer").mkdir(mode=0o755)
        return home

    def _write_meta(self, d: _Dyno) -> None:
        meta = {
            "app": d.app,
            "name": d.name,
            "process_type": d.spec.process_type,
            "release": d.spec.release,
            "pid": d.pid,
            "start_ticks": d.start_ticks,
            "port": d.port,
            "started_at": d.started_at,
            "restarts": d.restarts,
            "command": d.spec.command,
            "slug": str(d.spec.slug),
        }
        tmp = d.home / (META + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, d.home / META)

    def _scratch(self, app: str, name: str) -> Path:
        scratch = self._app_dir(app) / f"{name}.{secrets.token_hex(4)}"
        scratch.mkdir(mode=0o755)
        return scratch

    def _remove_scratch(self, scratch: Path) -> None:
        # Only rmdir: the overlay lived in the dyno's mount namespace, so the dir is empty.
        with contextlib.suppress(OSError):
            scratch.rmdir()

    def _allocate_port(self) -> int:
        low, high = self.port_range
        size = high - low + 1
        for i in range(size):
            port = low + (self._port_cursor + i) % size
            if port in self._ports or not port_is_free(port):
                continue
            self._port_cursor = port - low + 1  # rotate: a just-freed port is not reused first
            self._ports.add(port)
            return port
        raise DeployError(f"No free port is left in the range {low}-{high}.")

    def _set_state(self, d: _Dyno, state: str) -> None:
        if d.state == state:
            return
        self._log(d.app, d.name, f"State changed from {d.state} to {state}")
        d.state = state
        self._changed(d.app)

    def _log(self, app: str, dyno: str, text: str) -> None:
        self.logs.append(app, "minipaas", dyno, text)

    def _event(self, d: _Dyno, kind: str, detail: str) -> None:
        if self.on_event is None:
            return
        event = DynoEvent(
            app=d.app,
            dyno=d.name,
            process_type=d.spec.process_type,
            release=d.spec.release,
            kind=kind,
            detail=detail,
            at=time.time(),
        )
        try:
            self.on_event(event)
        except Exception as exc:  # a listener's bug must not stop the dyno's supervision
            self._log(d.app, "minipaas", f"on_event listener failed: {exc!r}")

    def _records_changed(self, app: str) -> None:
        records = tuple(self.records(app))
        if self._records.get(app, ()) == records:
            return
        if records:
            self._records[app] = records
        else:
            self._records.pop(app, None)
        if self.on_records is None:
            return
        try:
            self.on_records(app, list(records))
        except Exception as exc:
            self._log(app, "minipaas", f"on_records listener failed: {exc!r}")

    def _changed(self, app: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(app)
        except Exception as exc:  # a listener's bug must not stop the dyno's supervision
            self._log(app, "minipaas", f"on_change listener failed: {exc!r}")


def stop_orphans(run_dir: Path, grace: float = 10.0) -> list[str]:
    """Stop every dyno recorded under `run_dir` that is still running, with no supervisor.

    For `minipaas down` when the server itself is gone (killed, crashed): dynos outlive it by
    design, so something must be able to stop them. Only pids whose start time matches their
    dyno.json are touched, never a recycled pid. Returns "app/dyno" names stopped.
    """
    victims: list[tuple[str, int, int]] = []
    if run_dir.is_dir():
        for meta_file in sorted(run_dir.glob(f"*/*/{META}")):
            record = _record_from_meta(_read_meta(meta_file.parent) or {})
            if record is not None and is_running(record.pid, record.start_ticks):
                victims.append((f"{record.app}/{record.name}", record.pid, record.start_ticks))
    for _, pid, _ in victims:
        kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_running(p, t) for _, p, t in victims):
        time.sleep(0.05)
    for _, pid, ticks in victims:
        if is_running(pid, ticks):
            kill_group(pid, signal.SIGKILL)
    return [name for name, _, _ in victims]
