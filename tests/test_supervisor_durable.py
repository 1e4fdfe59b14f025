"""Durable dynos with real bubblewrap processes (needs root): output to files, adopt after a
restart (even after kill -9 of the supervisor's process), health checks, drain, events, and
attached one-off dynos on a real pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from minipaas.errors import DeployError
from minipaas.logs import LogStore
from minipaas.supervisor import (
    BackoffPolicy,
    DynoEvent,
    DynoRecord,
    DynoSpec,
    HealthCheck,
    Supervisor,
)
from minipaas.supervisor._proc import group_alive, start_ticks
from tests.support.dirs import app_readable_tmp
from tests.support.ports import async_wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dynos run as another uid: needs root")

UID = 20079
APP = "durable"
ROOT = Path(__file__).resolve().parents[1]

APP_PY = r"""
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

mode = sys.argv[1]
state = {"tick": -1}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        code = 200
        body = f"tick {state['tick']} pid {os.getpid()} {sys.argv[2]}"
        if self.path == "/health":
            code = int(os.environ.get("HEALTH_STATUS", "200"))
            body = os.environ.get("HEALTH_BODY", "ok")
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def tick():
    i = 0
    while True:
        state["tick"] = i
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.02)


if mode in ("web", "ticker"):
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
    if mode == "ticker":
        threading.Thread(target=tick, daemon=True).start()
    server.serve_forever()
elif mode == "worker":
    tick()
elif mode == "flood":
    out = sys.stdout
    for i in range(int(os.environ["LINES"])):
        out.write(f"flood line {i}\n")
    out.flush()
    time.sleep(3600)
elif mode == "crash":
    print("boom", flush=True)
    sys.exit(3)
"""

# A supervisor in its own process, to be killed with SIGKILL: it persists its records (what the
# server does with `on_records`) atomically to records.json.
SUPERVISOR_PY = r"""
import asyncio, dataclasses, json, os, sys
from pathlib import Path
from minipaas.logs import LogStore
from minipaas.supervisor import DynoSpec, Supervisor

base = Path(sys.argv[1])
fields = json.loads(sys.argv[2])
fields["slug"] = Path(fields["slug"])
spec = DynoSpec(**fields)


def save(app, records):
    tmp = base / "records.json.tmp"
    tmp.write_text(json.dumps([dataclasses.asdict(r) for r in records]))
    os.replace(tmp, base / "records.json")


async def main():
    sup = Supervisor(run_dir=base / "run", logs=LogStore(base / "logs"), on_records=save,
                     ready_timeout=10)
    await sup.apply(spec.app, {spec.process_type: (spec, 1)})
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def base() -> Iterator[Path]:
    with app_readable_tmp() as tmp_path:
        yield make_slug(tmp_path)


def make_slug(tmp_path: Path) -> Path:
    slug = tmp_path / "slug"
    slug.mkdir()
    (slug / "app.py").write_text(APP_PY)
    for path in (slug, slug / "app.py"):
        os.chown(path, UID, UID)
    os.chmod(slug, 0o755)
    return tmp_path


class Recorder:
    def __init__(self) -> None:
        self.events: list[DynoEvent] = []
        self.records: dict[str, list[DynoRecord]] = {}

    def event(self, event: DynoEvent) -> None:
        self.events.append(event)

    def save(self, app: str, records: list[DynoRecord]) -> None:
        self.records[app] = records

    def kinds(self, dyno: str) -> list[str]:
        return [e.kind for e in self.events if e.dyno == dyno]


@pytest.fixture
async def make_sup(base: Path) -> AsyncIterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []
    logs = LogStore(base / "logs")

    def make(**kwargs: object) -> Supervisor:
        options: dict[str, object] = {
            "run_dir": base / "run", "logs": logs, "stop_grace": 2.0, "ready_timeout": 3.0,
            "backoff": BackoffPolicy(base=0.05, cap=0.5, reset_after=3.0, crash_after=3),
        }
        options.update(kwargs)
        sup = Supervisor(**options)  # type: ignore[arg-type]
        made.append(sup)
        return sup

    try:
        yield make
    finally:
        for sup in made:
            await sup.stop_all()
        logs.close()
        # Dynos a test detached from and never adopted again: kill them by their recorded pid.
        for meta in (base / "run").glob("*/*/dyno.json"):
            record = json.loads(meta.read_text())
            if start_ticks(record["pid"]) == record["start_ticks"]:
                os.killpg(record["pid"], signal.SIGKILL)


def spec(
    base: Path, process_type: str, mode: str, release: int = 1, *,
    check: HealthCheck | None = None, **env: str,
) -> DynoSpec:
    return DynoSpec(
        app=APP, process_type=process_type, release=release, slug=base / "slug",
        command=f"/usr/bin/python3 app.py {mode} v{release}", env=env, uid=UID, check=check,
    )


async def get(upstream: str, path: str = "/") -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(f"http://{upstream}{path}")
        response.raise_for_status()
        return response.text


def app_lines(logs: LogStore, dyno: str) -> list[str]:
    return [line.text for line in logs.tail(APP, n=100_000, source="app", dyno=dyno)]


def assert_ticks_exactly_once(lines: list[str]) -> int:
    """The ticks logged are 0..N in order, each once; returns N."""
    ticks = [line for line in lines if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(len(ticks))], "a tick was lost or repeated"
    return len(ticks) - 1


async def test_output_goes_to_a_file_and_freed_as_read(
    make_sup: Callable[..., Supervisor], base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sup = make_sup()
    count = 100_000
    flood = spec(base, "worker", "flood", LINES=str(count))
    started = time.monotonic()
    await sup.apply(APP, {"worker": (flood, 1)})
    [home] = [p for p in (base / "run" / APP).iterdir() if (p / "dyno.json").exists()]
    expected = sum(len(f"flood line {i}\n") for i in range(count))

    def consumed() -> bool:
        return int((home / "offset").read_text() or 0) == expected

    await async_wait_for(consumed, timeout=20, interval=0.005, message="all lines pumped")
    took = time.monotonic() - started
    logged = app_lines(sup.logs, "worker.1")
    assert logged == [f"flood line {i}" for i in range(count)]
    # The dyno's stdout is the file itself, not a pipe to the server.
    [status] = sup.status(APP)
    assert status.pid is not None
    out_fd = os.readlink(f"/proc/{status.pid}/fd/1")
    assert out_fd == str(home / "out")
    stat = (home / "out").stat()
    assert stat.st_size == expected and stat.st_blocks * 512 < expected / 2  # holes punched
    with capsys.disabled():
        print(
            f"\n{count} lines from a running dyno into the LogStore in {took:.2f} s "
            f"(incl. sandbox start): {count / took:,.0f} lines/s"
        )
    await sup.stop_app(APP)
    assert not home.exists()


async def test_detach_leaves_dynos_running_and_adopt_takes_them_back(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    first = Recorder()
    sup = make_sup(on_records=first.save, on_event=first.event)
    web, worker = spec(base, "web", "ticker"), spec(base, "worker", "worker")
    await sup.apply(APP, {"web": (web, 1), "worker": (worker, 1)})
    records = first.records[APP]
    assert {r.name for r in records} == {"web.1", "worker.1"}
    for record in records:
        assert record.start_ticks == start_ticks(record.pid)
    pids = {r.name: r.pid for r in records}
    [upstream] = sup.web_upstreams(APP)
    await async_wait_for(
        lambda: min(len(app_lines(sup.logs, dyno)) for dyno in ("web.1", "worker.1")) >= 3,
        message="ticks",
    )

    await sup.detach()
    assert sup.status(APP) == []
    assert all(group_alive(pid) for pid in pids.values())
    before = int((await get(upstream)).split()[1])
    # The worker dies while nobody watches; its last lines must still reach the logs.
    os.killpg(pids["worker.1"], signal.SIGKILL)
    await async_wait_for(lambda: not group_alive(pids["worker.1"]), message="worker gone")

    async def ticked() -> bool:
        return int((await get(upstream)).split()[1]) >= before + 10

    await async_wait_for(ticked, message="ticks while detached")

    second = Recorder()
    again = make_sup(on_records=second.save, on_event=second.event)
    groups = {"web": (web, 2), "worker": (worker, 1)}
    adopted = await again.adopt(APP, records, groups)
    assert adopted == ["web.1"]
    assert [s.name for s in again.status(APP)] == ["web.1"]  # adopting starts nothing
    await again.apply(APP, groups)
    status = {s.name: s for s in again.status(APP)}
    assert sorted(status) == ["web.1", "web.2", "worker.1"]
    assert status["web.1"].pid == pids["web.1"] and status["web.1"].state == "up"
    assert status["worker.1"].pid != pids["worker.1"]
    assert len(again.web_upstreams(APP)) == 2 and upstream in again.web_upstreams(APP)
    assert "up" in second.kinds("web.1") and "started" not in second.kinds("web.1")
    assert any(
        "exited while minipaas was not watching" in line.text
        for line in again.logs.tail(APP, source="minipaas", dyno="worker.1")
    )
    now = int((await get(upstream)).split()[1])
    await async_wait_for(
        lambda: assert_ticks_exactly_once(app_lines(again.logs, "web.1")) > now + 5,
        message="ticks after adoption",
    )
    try:
        await async_wait_for(
            lambda: app_lines(again.logs, "worker.1").count("tick 1") == 2,
            message="new worker",
        )
    except TimeoutError:
        raise AssertionError(app_lines(again.logs, "worker.1")) from None
    worker_lines = app_lines(again.logs, "worker.1")
    # The killed worker's ticks, then the new worker's from 0 again: each run's ticks once.
    restart = worker_lines.index("tick 0", 1)
    assert_ticks_exactly_once(worker_lines[:restart])
    assert_ticks_exactly_once(worker_lines[restart:])
    assert {r.pid for r in second.records[APP]} >= {pids["web.1"]}

    # The adopted dyno is watched: when it crashes it is restarted with its port.
    os.killpg(pids["web.1"], signal.SIGKILL)
    await async_wait_for(
        lambda: any(e.kind == "exited" for e in second.events if e.dyno == "web.1"),
        message="exit seen through the pidfd",
    )
    exited = next(e for e in second.events if e.dyno == "web.1" and e.kind == "exited")
    assert exited.detail in ("unknown (adopted)", "signal 9")
    await async_wait_for(
        lambda: any(s.name == "web.1" and s.state == "up" for s in again.status(APP)),
        message="web.1 back up",
    )
    assert "tick" in await get(upstream)


async def test_kill_9_of_the_supervisor_process_keeps_dynos_serving(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    web = spec(base, "web", "ticker")
    fields = {f.name: getattr(web, f.name) for f in dataclasses.fields(web)}
    fields.update(slug=str(web.slug), env=dict(web.env))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUPERVISOR_PY, str(base), json.dumps(fields),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    dyno_pid = None
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        records = [DynoRecord(**r) for r in json.loads((base / "records.json").read_text())]
        [record] = records
        dyno_pid = record.pid
        upstream = f"127.0.0.1:{record.port}"
        failures: list[str] = []
        served = 0

        async def load() -> None:
            nonlocal served
            async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                while True:
                    try:
                        (await client.get(f"http://{upstream}/")).raise_for_status()
                        served += 1
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    await asyncio.sleep(0.005)

        loader = asyncio.create_task(load())
        logs = LogStore(base / "logs")
        try:
            await async_wait_for(lambda: len(app_lines(logs, "web.1")) >= 5, message="ticks")
            proc.kill()
            await proc.wait()
            served_at_kill = served
            at_kill = int((await get(upstream)).split()[1])

            async def ticked() -> bool:
                return int((await get(upstream)).split()[1]) >= at_kill + 15

            await async_wait_for(ticked, message="ticks while the supervisor is dead")
            assert start_ticks(record.pid) == record.start_ticks  # the same process
            assert served > served_at_kill  # served while nothing supervised it
            sup = make_sup()
            assert await sup.adopt(APP, records, {"web": (web, 1)}) == ["web.1"]
            await sup.apply(APP, {"web": (web, 1)})  # nothing to do: it is the one wanted
            [status] = sup.status(APP)
            assert (status.pid, status.port, status.state) == (record.pid, record.port, "up")
            assert sup.web_upstreams(APP) == [upstream]
            now = int((await get(upstream)).split()[1])
            await async_wait_for(
                lambda: assert_ticks_exactly_once(app_lines(sup.logs, "web.1")) > now + 5,
                message="ticks after adoption",
            )
        finally:
            loader.cancel()
            logs.close()
        assert failures == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if dyno_pid is not None and group_alive(dyno_pid):
            os.killpg(dyno_pid, signal.SIGKILL)


async def test_adopt_refuses_a_recycled_pid_and_retires_old_releases(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    recorder = Recorder()
    sup = make_sup(on_records=recorder.save)
    v1 = spec(base, "web", "web", 1)
    await sup.apply(APP, {"web": (v1, 1)})
    [record] = recorder.records[APP]
    [upstream] = sup.web_upstreams(APP)
    await sup.detach()

    # A record whose start time does not match is another process that got the same pid.
    again = make_sup()
    bogus = dataclasses.replace(record, start_ticks=record.start_ticks + 1)
    v2 = spec(base, "web", "web", 2)
    switched: list[list[str]] = []
    drained: list[list[str]] = []

    async def switch() -> None:
        switched.append(again.web_upstreams(APP))
        assert "v1" in await get(upstream)  # the old release serves until traffic moved

    async def drain(upstreams: object) -> None:
        drained.append(list(upstreams))  # type: ignore[call-overload]

    # The dyno.json found in its home still identifies the real process: it is adopted as a
    # stale dyno (v1 while v2 is wanted) and retired once v2 is ready.
    adopted = await again.adopt(APP, [bogus], {"web": (v2, 1)})
    assert adopted == []
    await again.apply(APP, {"web": (v2, 1)}, switch=switch, drain=drain)
    assert switched and upstream not in switched[0]
    assert drained == [[upstream]]
    await again.retired()
    [status] = again.status(APP)
    assert status.release == 2 and status.pid != record.pid
    assert not group_alive(record.pid)
    assert "v2" in await get(again.web_upstreams(APP)[0])


async def test_health_check_gates_the_switch(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    sup = make_sup()
    await sup.apply(APP, {"web": (spec(base, "web", "web", 1), 1)})
    [upstream] = sup.web_upstreams(APP)
    old_pid = sup.status(APP)[0].pid

    failing = spec(
        base, "web", "web", 2, check=HealthCheck(path="/health", timeout=1.0), HEALTH_STATUS="500"
    )
    with pytest.raises(DeployError) as info:
        await sup.apply(APP, {"web": (failing, 1)})
    message = str(info.value)
    assert "web.1 of durable (v2) failed to start: it did not pass its health check GET " in message
    assert "/health within 1 s: last answer 500." in message
    assert "The previous dynos keep running." in message
    assert [(s.release, s.state, s.pid) for s in sup.status(APP)] == [(1, "up", old_pid)]
    assert sup.web_upstreams(APP) == [upstream] and "v1" in await get(upstream)

    wrong_body = spec(
        base, "web", "web", 3, check=HealthCheck(path="/health", expect="ok", timeout=1.0),
        HEALTH_BODY="starting",
    )
    with pytest.raises(DeployError, match=r"last answer 200 without 'ok' in its body"):
        await sup.apply(APP, {"web": (wrong_body, 1)})

    good = spec(
        base, "web", "web", 4,
        check=HealthCheck(path="/health", expect="ok", min_uptime=0.6, timeout=5.0),
    )
    started = time.monotonic()
    await sup.apply(APP, {"web": (good, 1)})
    assert time.monotonic() - started >= 0.6
    await sup.retired()
    [status] = sup.status(APP)
    assert (status.release, status.state, status.reason) == (4, "up", None)


async def test_drain_runs_after_the_switch_and_before_sigterm(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    sup = make_sup()
    await sup.apply(APP, {"web": (spec(base, "web", "web", 1), 2)})
    old = set(sup.web_upstreams(APP))
    old_pids = [s.pid for s in sup.status(APP)]
    steps: list[str] = []

    async def switch() -> None:
        steps.append("switch")

    async def drain(upstreams: object) -> None:
        steps.append("drain")
        assert set(upstreams) == old  # type: ignore[call-overload]
        assert set(sup.web_upstreams(APP)).isdisjoint(old)
        for upstream in old:  # still alive: no SIGTERM before the drain returns
            assert "v1" in await get(upstream)

    await sup.apply(APP, {"web": (spec(base, "web", "web", 2), 2)}, switch=switch, drain=drain)
    assert steps == ["switch", "drain"]
    await sup.retired()
    assert all(pid is not None and not group_alive(pid) for pid in old_pids)

    steps.clear()
    await sup.restart(APP, "web", switch=switch, drain=drain)  # rolling restarts drain too
    assert steps == ["switch", "drain"]
    steps.clear()

    async def drain_one(upstreams: object) -> None:
        steps.append(f"drain {len(upstreams)}")  # type: ignore[arg-type]

    await sup.apply(APP, {"web": (spec(base, "web", "web", 2), 1)}, switch=switch, drain=drain_one)
    assert steps == ["switch", "drain 1"]  # scaling down drains the dyno it stops


async def test_events_states_and_reasons_of_a_crash_loop(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    recorder = Recorder()
    sup = make_sup(on_event=recorder.event, on_records=recorder.save)
    await sup.apply(APP, {"worker": (spec(base, "worker", "crash"), 1)})
    await async_wait_for(lambda: sup.status(APP)[0].state == "crashed", message="crashed")
    [status] = sup.status(APP)
    assert status.pid is None
    assert status.reason is not None
    assert status.reason.startswith("exited with status 3, 3 times in a row within 3 s")
    kinds = recorder.kinds("worker.1")
    assert kinds[:7] == [
        "started", "up", "exited", "restarting", "started", "up", "exited",
    ]
    assert kinds[-2:] == ["crashed", "restarting"]
    exited = [e for e in recorder.events if e.kind == "exited"]
    assert {e.detail for e in exited} == {"status 3"}
    assert all(e.app == APP and e.process_type == "worker" and e.release == 1 for e in exited)
    assert recorder.records.get(APP, []) == []  # no running process: no record
    # Crashed means no process is running, so no CPU is burnt until the next try.
    await sup.stop_app(APP)
    assert recorder.kinds("worker.1")[-1] == "stopped"


async def test_run_attached_on_a_real_pty(
    make_sup: Callable[..., Supervisor], base: Path
) -> None:
    sup = make_sup()
    master, slave = os.openpty()
    script = 'tty; echo "dyno=$DYNO"; read line; echo "got:$line"; exit 5'
    try:
        task = asyncio.create_task(
            sup.run_attached(
                DynoSpec(APP, "run", 1, base / "slug", script, {}, UID), slave, slave, slave
            )
        )
        seen = b""

        def read_some() -> bytes:
            nonlocal seen
            with contextlib.suppress(BlockingIOError):
                seen += os.read(master, 4096)
            return seen

        os.set_blocking(master, False)
        await async_wait_for(lambda: b"dyno=run.1" in read_some(), message="prompt")
        os.write(master, b"hello\n")
        assert await asyncio.wait_for(task, 10) == 5
        read_some()
        text = seen.decode()
        assert "/dev/console" in text  # `tty` names a terminal (bwrap shows it as the console)
        assert "not a tty" not in text and "got:hello" in text
    finally:
        os.close(master)
        os.close(slave)

    # Pipes work too; a signal death is 128+N; a timeout kills the whole group.
    read_end, write_end = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        kill = DynoSpec(APP, "run", 1, base / "slug", "echo $DYNO; kill -9 $$", {}, UID)
        status = await sup.run_attached(kill, null, write_end, write_end, name="console")
        assert status == 137
        assert os.read(read_end, 100) == b"console.1\n"
    finally:
        for fd in (read_end, write_end, null):
            os.close(fd)
    sleeper = DynoSpec(APP, "run", 1, base / "slug", "sleep 30", {}, UID)
    null = os.open(os.devnull, os.O_RDWR)
    started = time.monotonic()
    try:
        with pytest.raises(DeployError, match=r"did not finish within 0\.5 s"):
            await sup.run_attached(sleeper, null, null, null, timeout=0.5)
    finally:
        os.close(null)
    assert time.monotonic() - started < 3
