"""Dynos: spawn them in the sandbox, watch them, restart them with backoff, stop them gracefully.

Vocabulary from circus/honcho: the supervisor holds, per app, process groups (one per process
type, with a desired count) made of dynos (`web.1`, `web.2`, `worker.1`). `apply()` reconciles
an app to the groups it is given; it never scripts starts and stops itself.

Owns: the dyno processes (each one the leader of its own process group), their ports, their
scratch dirs under `run_dir`, and the pumping of their output into the `LogStore`. Must not read
the store, render routes or know about Caddy: the caller passes `switch()` to re-point traffic
and gets told about changes through `on_change(app)`.

A dyno runs `minipaas.sandbox`'s argv: `unshare` (exec) → init script (exec) → `bwrap`, which
forks the dyno's PID namespace. SIGTERM goes to the whole process group; bwrap's own process dies
at once while the app may take its grace period, so a dyno counts as gone only when its output
pipe is closed and no process of its group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from minipaas import names
from minipaas.errors import DeployError, NotFound, UserError
from minipaas.logs import LogStore
from minipaas.sandbox import SandboxJob, base_env, dyno_command, sandbox_argv
from minipaas.supervisor.backoff import BackoffPolicy, Run, decide, describe_status
from minipaas.supervisor.dyno import DynoSpec, DynoStatus

Switch = Callable[[], Awaitable[None]]

#: Longest log line; longer output is cut into several lines (nothing is dropped).
MAX_LINE = 16 * 1024
#: Bytes read from a dyno's pipe at a time.
READ_CHUNK = 64 * 1024
#: Lines kept in memory per dyno for error messages.
RECENT_LINES = 20
#: How long leftovers of a dyno's process group may linger after its main process exited.
LINGER = 2.0
#: Readiness poll interval (seconds).
READY_POLL = 0.05


@dataclass(eq=False)
class _Dyno:
    """A dyno the supervisor owns, across its restarts."""

    spec: DynoSpec
    number: int
    port: int | None
    probation: bool = False  # new web dyno: must get ready before traffic switches to it
    state: str = "starting"
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    retiring: bool = False
    stopping: bool = False
    runs: list[Run] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_LINES))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: asyncio.Future[str | None] | None = None  # None = ready, str = why it failed
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.spec.process_type}.{self.number}"

    @property
    def app(self) -> str:
        return self.spec.app


def _kill_group(pgid: int | None, sig: int) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for a reaper do not count).

    The dyno's bwrap init is orphaned when the outer bwrap dies, so it is reaped by the host's
    init, which may take its time; a zombie holds no resources and keeps the group id reserved.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _port_is_free(port: int) -> bool:
    # Apps bind 0.0.0.0 as often as 127.0.0.1; binding the wildcard clashes with either.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once
        except OSError:
            return False
    return True


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _split_output(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of `buf` (overlong ones cut at MAX_LINE) and the unfinished rest."""
    *lines, rest = buf.split(b"\n")
    out: list[bytes] = []
    for line in lines:
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        out.append(line)
    while len(rest) >= MAX_LINE:
        out.append(rest[:MAX_LINE])
        rest = rest[MAX_LINE:]
    return out, rest


def _decode(lines: Sequence[bytes]) -> list[str]:
    return [line.decode("utf-8", "replace").removesuffix("\r") for line in lines]


class Supervisor:
    """Runs every app's dynos on this machine."""

    def __init__(
        self,
        *,
        run_dir: Path,
        logs: LogStore,
        on_change: Callable[[str], None] | None = None,
        stop_grace: float = 30.0,
        ready_timeout: float = 60.0,
        port_range: tuple[int, int] = (20000, 29999),
        clock: Callable[[], float] = time.monotonic,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.logs = logs
        self.on_change = on_change
        self.stop_grace = stop_grace
        self.ready_timeout = ready_timeout
        self.port_range = port_range
        self.clock = clock
        self.backoff = backoff or BackoffPolicy()
        self._dynos: dict[str, list[_Dyno]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ports: set[int] = set()
        self._port_cursor = 0
        self._one_offs: dict[str, set[int]] = {}  # "app/type" -> numbers of running one-offs
        self._one_off_groups: set[int] = set()

    # -- public API --------------------------------------------------------------------------

    async def apply(
        self, app: str, groups: Mapping[str, tuple[DynoSpec, int]], switch: Switch | None = None
    ) -> None:
        """Reconcile the app's dynos to `{process_type: (spec, count)}`.

        Missing types scale to 0. Dynos with another spec are replaced: new ones start first,
        web ones must accept connections on their PORT, then `switch()` re-points traffic, then
        the old ones stop. If a new web dyno fails, the new ones stop, the old ones keep running
        and `DeployError` says why.
        """
        for process_type, (spec, count) in groups.items():
            names.process_type(process_type)
            if spec.process_type != process_type or spec.app != app:
                raise ValueError(f"spec {spec.app}/{spec.process_type} under {app}/{process_type}")
            if count < 0:
                raise UserError(f"Invalid dyno count {count} for {process_type}: use 0 or more.")
        async with self._lock(app):
            to_start, to_retire = self._plan(app, groups)
            await self._rollout(app, to_start, to_retire, switch)

    def web_upstreams(self, app: str) -> list[str]:
        """`127.0.0.1:PORT` of the app's web dynos that are up and current (not retiring)."""
        return [
            f"127.0.0.1:{d.port}"
            for d in self._dynos.get(app, [])
            if d.spec.process_type == "web"
            and d.state == "up"
            and not d.retiring
            and not d.probation
            and not d.stopping
        ]

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
                        app=d.app, name=d.name, process_type=d.spec.process_type,
                        release=d.spec.release, state=d.state, pid=d.pid, port=d.port,
                        started_at=d.started_at, restarts=d.restarts, command=d.spec.command,
                        exit_code=d.exit_code,
                    )
                )
        return out

    async def run_once(
        self,
        spec: DynoSpec,
        on_line: Callable[[str], None],
        timeout: float = 3600,  # noqa: ASYNC109 - part of the contract; applied with asyncio.timeout
    ) -> int:
        """Run a one-off dyno (`release.1`, `run.N`), stream its output, return its exit status.

        The output also goes to the app's logs (source `release` for the release phase, `app`
        otherwise). Past `timeout` seconds the dyno is killed and `DeployError` raised.
        """
        used = self._one_offs.setdefault(f"{spec.app}/{spec.process_type}", set())
        number = next(n for n in range(1, len(used) + 2) if n not in used)
        used.add(number)
        name = f"{spec.process_type}.{number}"
        source = "release" if spec.process_type == "release" else "app"
        self._log(spec.app, name, f"Starting process with command `{spec.command}`")
        scratch = self._scratch(spec.app, name)
        proc: asyncio.subprocess.Process | None = None
        try:
            env = self._env(spec, name, None)
            proc = await self._spawn(spec, scratch, env)
            self._one_off_groups.add(proc.pid)
            assert proc.stdout is not None

            def emit(texts: list[str]) -> None:
                self.logs.append_many(spec.app, source, name, texts)
                for text in texts:
                    on_line(text)

            try:
                async with asyncio.timeout(timeout):
                    await self._pump(proc.stdout, emit)
                    status = await proc.wait()
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                self._log(spec.app, name, f"Process timed out after {timeout:g} s; killed")
                raise DeployError(
                    f"The command `{spec.command}` ({name}) did not finish within {timeout:g} s."
                ) from None
            self._log(spec.app, name, f"Process exited with {describe_status(status)}")
            return status
        finally:
            if proc is not None:
                if proc.returncode is None or _group_alive(proc.pid):
                    _kill_group(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        await asyncio.shield(proc.wait())
                self._one_off_groups.discard(proc.pid)
            used.discard(number)
            self._remove_scratch(scratch)

    async def stop_app(self, app: str) -> None:
        """Stop every dyno of the app (graceful, in parallel) and forget them."""
        async with self._lock(app):
            dynos = list(self._dynos.get(app, []))
            await asyncio.gather(*(self._stop(d) for d in dynos))
            self._forget(app, dynos)

    async def stop_all(self) -> None:
        """Stop every dyno of every app (on shutdown); one-off dynos are killed."""
        for pgid in list(self._one_off_groups):
            _kill_group(pgid, signal.SIGKILL)
        await asyncio.gather(*(self.stop_app(app) for app in list(self._dynos)))

    async def restart(
        self, app: str, process_type: str | None = None, switch: Switch | None = None
    ) -> None:
        """Restart the app's dynos (of one type): web ones rolling, the others stop-then-start."""
        async with self._lock(app):
            current = [d for d in self._dynos.get(app, []) if not d.retiring]
            targets = [
                d for d in current if process_type is None or d.spec.process_type == process_type
            ]
            if not targets:
                what = f"{process_type} dynos" if process_type else "dynos"
                raise NotFound(f"The app {app!r} has no {what} to restart.")
            web = [d for d in targets if d.spec.process_type == "web"]
            others = [d for d in targets if d.spec.process_type != "web"]
            await asyncio.gather(*(self._stop(d) for d in others))
            self._forget(app, others)
            for d in others:
                self._launch(d.spec, d.number)
            self._changed(app)
            await self._rollout(app, [(d.spec, d.number) for d in web], web, switch)

    # -- reconciling -------------------------------------------------------------------------

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
    ) -> None:
        """Start `to_start`, wait for the web ones, switch, then stop `to_retire`."""
        if not to_start and not to_retire:
            return
        new = [
            self._launch(spec, number, probation=spec.process_type == "web")
            for spec, number in to_start
        ]
        self._changed(app)
        # Web dynos must accept connections; the others only have to be spawned.
        outcomes = await asyncio.gather(*(self._wait_ready(d) for d in new))
        failures = [
            (d, why or "it exited right after it became ready")
            for d, why in zip(new, outcomes, strict=True)
            if d.probation and (why or (d.task is not None and d.task.done()))
        ]
        if failures:
            await self._abandon(app, new)
            d, why = failures[0]
            raise DeployError(self._failure_message(d, why, keeps=bool(to_retire)))
        for d in to_retire:
            d.retiring = True
        for d in new:
            d.probation = False
        self._changed(app)
        if switch is not None:
            try:
                await switch()
            except BaseException:
                for d in to_retire:
                    d.retiring = False
                await self._abandon(app, new)
                raise
        await asyncio.gather(*(self._stop(d) for d in to_retire))
        self._forget(app, to_retire)
        self._changed(app)

    async def _abandon(self, app: str, dynos: list[_Dyno]) -> None:
        await asyncio.gather(*(self._stop(d) for d in dynos))
        self._forget(app, dynos)
        self._changed(app)

    def _failure_message(self, d: _Dyno, why: str, *, keeps: bool) -> str:
        kept = " the previous dynos keep running." if keeps else ""
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

    # -- one dyno ----------------------------------------------------------------------------

    def _launch(self, spec: DynoSpec, number: int, *, probation: bool = False) -> _Dyno:
        port = self._allocate_port() if spec.process_type == "web" else None
        d = _Dyno(spec=spec, number=number, port=port, probation=probation)
        d.outcome = asyncio.get_running_loop().create_future()
        self._dynos.setdefault(spec.app, []).append(d)
        d.task = asyncio.create_task(self._supervise(d), name=f"dyno {spec.app} {d.name}")
        return d

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
                if d.stopping:
                    break
                now = self.clock()
                d.runs = [*d.runs[-19:], Run(started, now, status)]
                self._log(d.app, d.name, f"Process exited with {describe_status(status)}")
                if d.probation:
                    # A new dyno on trial is not restarted: the rollout gives up on it.
                    self._settle(
                        d, f"it exited with {describe_status(status)} before accepting "
                        f"connections on port {d.port}",
                    )
                    self._set_state(d, "crashed")
                    return
                self._settle(d, f"it exited with {describe_status(status)}")
                decision = decide(d.runs, now, self.backoff)
                wait = decision.restart_after or 0.0
                self._set_state(d, "crashed" if decision.crashed else "down")
                if decision.crashed:
                    self._log(
                        d.app, d.name, f"Crashed: {decision.reason}; next start in {wait:g} s"
                    )
                elif wait:
                    self._log(d.app, d.name, f"Restarting in {wait:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(d.wake.wait(), wait)
                if d.stopping:
                    break
                d.restarts += 1
            self._set_state(d, "down")
        finally:
            self._settle(d, "it was stopped before it was ready")

    async def _live(self, d: _Dyno) -> int:
        """One life of the dyno: spawn, pump output, watch readiness; returns the exit status."""
        self._set_state(d, "starting")
        self._log(d.app, d.name, f"Starting process with command `{d.spec.command}`")
        scratch = self._scratch(d.app, d.name)
        proc: asyncio.subprocess.Process | None = None
        ready: asyncio.Task[None] | None = None
        try:
            try:
                proc = await self._spawn(d.spec, scratch, self._env(d.spec, d.name, d.port))
            except OSError as exc:
                self._log(d.app, d.name, f"Could not start the process: {exc}")
                return 127
            d.pid, d.started_at = proc.pid, time.time()
            if d.stopping:
                _kill_group(proc.pid, signal.SIGTERM)
            if d.port is not None:
                ready = asyncio.create_task(self._watch_ready(d, proc.pid))
            else:
                self._set_state(d, "up")
                self._settle(d, None)
            assert proc.stdout is not None

            def emit(texts: list[str]) -> None:
                self.logs.append_many(d.app, "app", d.name, texts)
                d.recent.extend(texts[-RECENT_LINES:])

            await self._pump(proc.stdout, emit)
            status = await proc.wait()
            await self._linger(proc.pid, d)
            return status
        finally:
            if ready is not None:
                ready.cancel()
            if proc is not None and (proc.returncode is None or _group_alive(proc.pid)):
                _kill_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await asyncio.shield(proc.wait())
            d.pid = None
            self._remove_scratch(scratch)

    async def _watch_ready(self, d: _Dyno, pgid: int) -> None:
        """Mark a web dyno up once its port accepts connections; kill it if it never does."""
        assert d.port is not None
        deadline = self.clock() + self.ready_timeout
        while not await _accepts(d.port):
            if self.clock() >= deadline:
                why = (
                    f"it did not accept connections on port {d.port} "
                    f"within {self.ready_timeout:g} s"
                )
                self._log(d.app, d.name, f"Error R10 (Boot timeout): {why}; killing it")
                self._settle(d, why)
                _kill_group(pgid, signal.SIGKILL)
                return
            await asyncio.sleep(READY_POLL)
        if not d.stopping:
            self._set_state(d, "up")
        self._settle(d, None)

    async def _linger(self, pgid: int, d: _Dyno) -> None:
        """Wait for the rest of the process group to go (bwrap's init tearing the sandbox down)."""
        deadline = self.clock() + LINGER
        while _group_alive(pgid):
            if not d.stopping and self.clock() >= deadline:
                _kill_group(pgid, signal.SIGKILL)
                deadline = self.clock() + LINGER
            await asyncio.sleep(0.02)

    async def _stop(self, d: _Dyno) -> None:
        """SIGTERM the dyno's process group, wait `stop_grace`, then SIGKILL it."""
        if d.task is None or d.task.done():
            return
        d.stopping = True
        d.wake.set()
        self._set_state(d, "stopping")
        pgid = d.pid
        if pgid is not None:
            self._log(d.app, d.name, "Stopping all processes with SIGTERM")
            _kill_group(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(d.task), self.stop_grace)
        except TimeoutError:
            self._log(
                d.app, d.name,
                f"Error R12 (Exit timeout): processes still running {self.stop_grace:g} s "
                "after SIGTERM; stopping them with SIGKILL",
            )
            _kill_group(d.pid, signal.SIGKILL)
            await d.task

    # -- plumbing ----------------------------------------------------------------------------

    def _env(self, spec: DynoSpec, name: str, port: int | None) -> dict[str, str]:
        env = base_env(spec.env)
        env.update({"DYNO": name, "HOME": "/app"})
        if port is not None:
            env["PORT"] = str(port)
        return env

    async def _spawn(
        self, spec: DynoSpec, scratch: Path, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        job = SandboxJob(
            app_dir=spec.slug, command=dyno_command(spec.command), uid=spec.uid,
            layer=True, scratch=scratch,
        )
        return await asyncio.create_subprocess_exec(
            *sandbox_argv(job), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # the dyno leads its own process group: killpg reaches all
        )

    async def _pump(self, stream: asyncio.StreamReader, emit: Callable[[list[str]], None]) -> None:
        """Read `stream` to its end, handing complete lines to `emit` one chunk at a time."""
        rest = b""
        while chunk := await stream.read(READ_CHUNK):
            lines, rest = _split_output(rest + chunk)
            if lines:
                emit(_decode(lines))
        if rest:
            emit(_decode([rest]))

    def _scratch(self, app: str, name: str) -> Path:
        # The app's uid must traverse to the layer's mount point, so the dirs are 0755.
        parent = self.run_dir / app
        parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)  # noqa: S103 - traversable by app uids, holds no secrets
        os.chmod(parent, 0o755)  # noqa: S103
        scratch = parent / f"{name}.{secrets.token_hex(4)}"
        scratch.mkdir(mode=0o755)
        return scratch

    def _remove_scratch(self, scratch: Path) -> None:
        # Only rmdir: the overlay lived in the dyno's mount namespace, so the dir is empty; if it
        # is not, something is wrong and deleting through it would be worse than leaving it.
        with contextlib.suppress(OSError):
            scratch.rmdir()

    def _allocate_port(self) -> int:
        low, high = self.port_range
        size = high - low + 1
        for i in range(size):
            port = low + (self._port_cursor + i) % size
            if port in self._ports or not _port_is_free(port):
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

    def _changed(self, app: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(app)
        except Exception as exc:  # a listener's bug must not stop the dyno's supervision
            self.logs.append(app, "minipaas", "minipaas", f"on_change listener failed: {exc!r}")
