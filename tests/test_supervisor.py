"""The supervisor with real bubblewrap dynos (needs root, bwrap, unshare, setpriv).

Every dyno runs `tests/`-written `app.py` from a tiny slug with /usr/bin/python3 as uid 20078.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from minipaas.errors import DeployError, NotFound
from minipaas.logs import LogStore
from minipaas.supervisor import BackoffPolicy, DynoSpec, Supervisor
from minipaas.supervisor._inotify import Inotify
from minipaas.supervisor._output import RawOutput
from tests.support.dirs import app_readable_tmp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dynos run as another uid: needs root")

UID = 20078
GRACE = 2.0
APP = "shop"

APP_PY = r"""
import json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

mode = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/crash":
            print("crash requested", flush=True)
            threading.Timer(0.1, lambda: os._exit(3)).start()
        body = json.dumps({
            "dyno": os.environ.get("DYNO"), "port": os.environ.get("PORT"),
            "greeting": os.environ.get("GREETING"), "home": os.environ.get("HOME"),
            "release": sys.argv[2] if len(sys.argv) > 2 else None,
            "uid": os.getuid(), "pid": os.getpid(),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if mode == "web":
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
    print(f"listening on {os.environ['PORT']}", flush=True)
    server.serve_forever()
elif mode == "worker":
    for i in range(10**9):
        print(f"worker tick {i}", flush=True)
        time.sleep(0.1)
elif mode == "clock":
    for i in range(10**9):
        print(f"clock {time.time()!r}", flush=True)
        time.sleep(0.3)
elif mode == "never-listen":
    print("booting forever", flush=True)
    time.sleep(3600)
elif mode == "exit-early":
    print("missing DATABASE_URL", flush=True)
    sys.exit(1)
elif mode == "crash":
    print("boom", flush=True)
    sys.exit(3)
elif mode == "ignore-term":
    signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM, ignoring it", flush=True))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
elif mode == "web-ignore-term":
    signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM, ignoring it", flush=True))
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
    server.serve_forever()
elif mode == "flood":
    out = sys.stdout
    for i in range(int(sys.argv[2])):
        out.write(f"flood line {i}\n")
    out.flush()
elif mode == "odd":
    out = sys.stdout.buffer
    out.write(b"caf\xe9 \xff\n" + b"x" * 100_000 + b"\nno newline at the end")
    out.flush()
"""


async def wait_for(
    cond: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """A process of the group still runs (zombies awaiting the host's init do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


async def get(upstream: str, path: str = "/") -> dict[str, object]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(f"http://{upstream}{path}")
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data


@pytest.fixture
def base() -> Iterator[Path]:
    # The app's uid must reach the run dir (bwrap binds the layer from there) and read the slug.
    with app_readable_tmp() as tmp_path:
        yield make_slug(tmp_path)


def make_slug(tmp_path: Path) -> Path:
    slug = tmp_path / "slug"
    slug.mkdir()
    (slug / "app.py").write_text(APP_PY)
    os.chmod(slug, 0o755)
    os.chmod(slug / "app.py", 0o644)
    # Slugs are built as the app's uid, so their files belong to it.
    os.chown(slug, UID, UID)
    os.chown(slug / "app.py", UID, UID)
    return tmp_path


@pytest.fixture
async def sup(base: Path) -> AsyncIterator[Supervisor]:
    logs = LogStore(base / "logs")
    changes: list[str] = []
    supervisor = Supervisor(
        run_dir=base / "run",
        logs=logs,
        on_change=changes.append,
        stop_grace=GRACE,
        ready_timeout=3.0,
        backoff=BackoffPolicy(base=0.05, cap=0.5, reset_after=3.0, crash_after=3),
    )
    supervisor.changes = changes  # type: ignore[attr-defined]
    try:
        yield supervisor
    finally:
        await supervisor.stop_all()
        logs.close()
        leftovers = [p for p in (base / "run").rglob("*")] if (base / "run").exists() else []
        assert [p for p in leftovers if p.parent != base / "run"] == [], "scratch dirs left behind"


def spec(base: Path, process_type: str, mode: str, release: int = 1, **env: str) -> DynoSpec:
    return DynoSpec(
        app=APP,
        process_type=process_type,
        release=release,
        slug=base / "slug",
        command=f"/usr/bin/python3 app.py {mode} v{release}",
        env={"GREETING": "hi", **env},
        uid=UID,
    )


def states(sup: Supervisor) -> list[tuple[str, str, int]]:
    return [(s.name, s.state, s.release) for s in sup.status(APP)]


def minipaas_lines(sup: Supervisor, dyno: str | None = None) -> list[str]:
    return [line.text for line in sup.logs.tail(APP, n=1000, source="minipaas", dyno=dyno)]


async def test_web_dyno_serves_scales_up_and_down(sup: Supervisor, base: Path) -> None:
    web = spec(base, "web", "web")
    await sup.apply(APP, {"web": (web, 1)})
    assert states(sup) == [("web.1", "up", 1)]
    [upstream] = sup.web_upstreams(APP)
    answer = await get(upstream)
    assert answer["dyno"] == "web.1" and answer["greeting"] == "hi" and answer["home"] == "/app"
    assert answer["port"] == upstream.rsplit(":", 1)[1]
    assert answer["uid"] == UID
    first_pid = sup.status(APP)[0].pid
    assert first_pid is not None
    assert APP in sup.changes  # type: ignore[attr-defined]

    await sup.apply(APP, {"web": (web, 3)})
    upstreams = sup.web_upstreams(APP)
    assert len(set(upstreams)) == 3
    answers = [await get(u) for u in upstreams]
    assert sorted(str(a["dyno"]) for a in answers) == ["web.1", "web.2", "web.3"]
    assert sup.status(APP)[0].pid == first_pid  # scaling up leaves web.1 alone
    pids = {s.name: s.pid for s in sup.status(APP)}

    started = time.monotonic()
    await sup.apply(APP, {"web": (web, 1)})
    assert states(sup) == [("web.1", "up", 1), ("web.2", "stopping", 1), ("web.3", "stopping", 1)]
    assert len(sup.web_upstreams(APP)) == 1
    await sup.retired()
    assert time.monotonic() - started < GRACE  # a well-behaved dyno stops on SIGTERM at once
    assert states(sup) == [("web.1", "up", 1)]
    assert sup.status(APP)[0].pid == first_pid
    for name in ("web.2", "web.3"):
        pid = pids[name]
        assert pid is not None and not group_alive(pid)
    assert "State changed from up to stopping" in minipaas_lines(sup, "web.3")

    await sup.apply(APP, {"web": (web, 2)})  # freed numbers are reused
    assert [s.name for s in sup.status(APP)] == ["web.1", "web.2"]
    await sup.apply(APP, {})
    assert sup.web_upstreams(APP) == []
    await sup.retired()
    assert sup.status(APP) == []
    assert not group_alive(first_pid)


async def test_worker_output_reaches_the_log_store(sup: Supervisor, base: Path) -> None:
    await sup.apply(APP, {"worker": (spec(base, "worker", "worker"), 1)})
    assert states(sup) == [("worker.1", "up", 1)]
    assert sup.web_upstreams(APP) == []

    def ticks() -> list[str]:
        return [line.text for line in sup.logs.tail(APP, source="app", dyno="worker.1")]

    await wait_for(lambda: len(ticks()) >= 3, what="worker lines")
    assert ticks()[:3] == ["worker tick 0", "worker tick 1", "worker tick 2"]
    texts = minipaas_lines(sup, "worker.1")
    assert texts[0].startswith("Starting process with command `/usr/bin/python3 app.py worker")
    assert "State changed from starting to up" in texts


async def test_a_write_wakes_the_idle_pump_at_once(
    sup: Supervisor, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No safety poll within the test: a line can only arrive because inotify woke the pump.
    sup._inotify.safety = 3600.0
    await sup.apply(APP, {"worker": (spec(base, "worker", "clock"), 1)})
    assert sup._inotify.active
    latencies: list[float] = []

    def on_append(app: str, source: str, dyno: str, texts: list[str]) -> None:
        now = time.time()
        latencies.extend(now - float(t.split()[1]) for t in texts if t.startswith("clock "))

    append_many = sup.logs.append_many

    def spy(app: str, source: str, dyno: str, texts: list[str], *rest: Any) -> None:
        on_append(app, source, dyno, texts)
        append_many(app, source, dyno, texts, *rest)

    monkeypatch.setattr(sup.logs, "append_many", spy)
    await wait_for(lambda: len(latencies) >= 4, what="clock lines")
    # Printed 0.3 s apart into an idle pump: each one is read as soon as it is written.
    assert sorted(latencies)[len(latencies) // 2] < 0.1, latencies
    await sup.apply(APP, {})
    await sup.retired()
    assert not sup._inotify.active  # the last watch gone, the fd is closed


async def test_an_idle_dyno_costs_no_reads(
    sup: Supervisor, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sup.apply(APP, {"web": (spec(base, "web", "web"), 1)})
    await wait_for(lambda: any("listening" in t for t in app_lines(sup, "web.1")), what="output")
    reads = 0
    read_batch = RawOutput.read_batch

    def counting(self: RawOutput, *args: object, **kwargs: object) -> int:
        nonlocal reads
        reads += 1
        return read_batch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RawOutput, "read_batch", counting)
    await asyncio.sleep(1.5)  # the measurement window itself: nothing happens in it
    assert reads <= 1  # polling read it 3 to 150 times; the safety check every 5 s at most


async def test_output_is_polled_without_inotify(
    sup: Supervisor, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Inotify, "watch", lambda self, path, on_write: None)
    await sup.apply(APP, {"worker": (spec(base, "worker", "worker"), 1)})
    assert not sup._inotify.active
    await wait_for(lambda: len(app_lines(sup, "worker.1")) >= 3, what="worker lines")
    assert app_lines(sup, "worker.1")[:3] == ["worker tick 0", "worker tick 1", "worker tick 2"]


def app_lines(sup: Supervisor, dyno: str) -> list[str]:
    return [line.text for line in sup.logs.tail(APP, n=1000, source="app", dyno=dyno)]


async def test_new_release_switches_after_ready_and_before_old_stop(
    sup: Supervisor, base: Path
) -> None:
    await sup.apply(
        APP,
        {"web": (spec(base, "web", "web", 1), 2), "worker": (spec(base, "worker", "worker", 1), 1)},
    )
    old = {s.name: s.pid for s in sup.status(APP)}
    old_upstreams = sup.web_upstreams(APP)
    events: list[str] = []

    async def switch() -> None:
        events.append("switch")
        upstreams = sup.web_upstreams(APP)
        assert len(upstreams) == 2 and not set(upstreams) & set(old_upstreams)
        for upstream in upstreams:
            assert (await get(upstream))["release"] == "v2"
        for upstream in old_upstreams:  # the old ones still serve while traffic moves
            assert (await get(upstream))["release"] == "v1"
        assert all(pid is not None and alive(pid) for pid in old.values())

    await sup.apply(
        APP,
        {"web": (spec(base, "web", "web", 2), 2), "worker": (spec(base, "worker", "worker", 2), 1)},
        switch=switch,
    )
    assert events == ["switch"]
    # apply() returns once the new dynos serve: the old ones got SIGTERM and are on their way
    new = [("web.1", "up", 2), ("web.2", "up", 2), ("worker.1", "up", 2)]
    assert [st for st in states(sup) if st[2] == 2] == new
    assert {st for st in states(sup) if st[2] == 1} <= {
        ("web.1", "stopping", 1),
        ("web.2", "stopping", 1),
        ("worker.1", "stopping", 1),
    }
    assert sup.web_upstreams(APP) == [u for u in sup.web_upstreams(APP) if u not in old_upstreams]
    await sup.retired()
    assert states(sup) == new
    for pid in old.values():
        assert pid is not None and not group_alive(pid)
    assert {s.pid for s in sup.status(APP)}.isdisjoint(old.values())

    # A config change is a new spec too; the same spec again changes nothing.
    async def count() -> None:
        events.append("switch")

    await sup.apply(APP, {"web": (spec(base, "web", "web", 2, GREETING="hello"), 1)}, switch=count)
    [upstream] = sup.web_upstreams(APP)
    assert (await get(upstream))["greeting"] == "hello"
    await sup.retired()
    assert [s.name for s in sup.status(APP)] == ["web.1"]
    await sup.apply(APP, {"web": (spec(base, "web", "web", 2, GREETING="hello"), 1)}, switch=count)
    assert events == ["switch", "switch"]


@pytest.mark.parametrize(
    ("mode", "why", "output"),
    [
        ("never-listen", "did not accept connections on port", "booting forever"),
        ("exit-early", "exited with status 1 before accepting connections", "missing DATABASE_URL"),
    ],
)
async def test_failed_new_web_dyno_keeps_the_old_one(
    sup: Supervisor, base: Path, mode: str, why: str, output: str
) -> None:
    await sup.apply(APP, {"web": (spec(base, "web", "web", 1), 1)})
    [upstream] = sup.web_upstreams(APP)
    old_pid = sup.status(APP)[0].pid
    switched: list[bool] = []

    async def switch() -> None:
        switched.append(True)

    with pytest.raises(DeployError) as info:
        await sup.apply(APP, {"web": (spec(base, "web", mode, 2), 1)}, switch=switch)
    message = str(info.value)
    assert message.startswith("New dyno web.1 of shop (v2) failed to start: ")
    assert why in message and output in message and "previous dynos keep running" in message
    assert switched == []
    assert states(sup) == [("web.1", "up", 1)]
    assert sup.status(APP)[0].pid == old_pid
    assert sup.web_upstreams(APP) == [upstream]
    assert (await get(upstream))["release"] == "v1"


async def test_exited_dyno_is_restarted(sup: Supervisor, base: Path) -> None:
    await sup.apply(APP, {"web": (spec(base, "web", "web"), 1)})
    [upstream] = sup.web_upstreams(APP)
    first = sup.status(APP)[0]
    await get(upstream, "/crash")
    await wait_for(
        lambda: sup.status(APP)[0].state == "up" and sup.status(APP)[0].pid != first.pid,
        what="restart",
    )
    now = sup.status(APP)[0]
    assert now.restarts == 1 and now.exit_code == 3 and now.port == first.port
    assert first.pid is not None and not group_alive(first.pid)
    assert (await get(upstream))["pid"] != first.pid
    assert "Process exited with status 3" in minipaas_lines(sup, "web.1")


async def test_crash_loop_ends_in_crashed_state(sup: Supervisor, base: Path) -> None:
    await sup.apply(APP, {"worker": (spec(base, "worker", "crash"), 1)})
    await wait_for(lambda: sup.status(APP)[0].state == "crashed", what="crashed state")
    status = sup.status(APP)[0]
    assert status.exit_code == 3 and status.restarts == 2 and status.pid is None
    assert any(
        text.startswith("Crashed: exited with status 3, 3 times in a row")
        for text in minipaas_lines(sup, "worker.1")
    )
    started = time.monotonic()
    await sup.stop_app(APP)  # a dyno waiting to restart stops at once
    assert time.monotonic() - started < 0.5
    assert sup.status(APP) == []


async def test_sigterm_ignoring_dyno_gets_sigkill_after_grace(sup: Supervisor, base: Path) -> None:
    await sup.apply(APP, {"worker": (spec(base, "worker", "ignore-term"), 1)})
    await wait_for(lambda: sup.logs.tail(APP, source="app"), what="handler installed")
    pid = sup.status(APP)[0].pid
    assert pid is not None
    started = time.monotonic()
    await sup.stop_app(APP)
    took = time.monotonic() - started
    assert GRACE <= took < GRACE + 2
    assert not group_alive(pid)
    assert [line.text for line in sup.logs.tail(APP, source="app")] == [
        "ready",
        "got SIGTERM, ignoring it",
    ]
    assert any(text.startswith("Error R12 (Exit timeout)") for text in minipaas_lines(sup))


async def test_a_deploy_does_not_wait_for_the_old_dynos_to_stop(
    sup: Supervisor, base: Path
) -> None:
    """apply() is done once the new dynos serve: an old one that ignores SIGTERM is stopped
    (SIGKILL after the grace) meanwhile, listed as stopping, never counted, its port kept."""
    await sup.apply(APP, {"web": (spec(base, "web", "web-ignore-term", 1), 1)})
    [old] = sup.status(APP)
    switched: list[bool] = []

    async def switch() -> None:
        switched.append(True)

    await sup.apply(APP, {"web": (spec(base, "web", "web", 2), 1)}, switch=switch)
    assert switched == [True]
    assert old.pid is not None and group_alive(old.pid)  # GRACE s before its SIGKILL
    assert states(sup) == [("web.1", "stopping", 1), ("web.1", "up", 2)]
    [upstream] = sup.web_upstreams(APP)
    assert (await get(upstream))["release"] == "v2"
    await sup.apply(APP, {"web": (spec(base, "web", "web", 2), 2)})  # scaling meanwhile
    assert [st for st in states(sup) if st[1] == "up"] == [("web.1", "up", 2), ("web.2", "up", 2)]
    assert old.port not in {s.port for s in sup.status(APP) if s.release == 2}
    await wait_for(lambda: not group_alive(old.pid), GRACE + 5, "the SIGKILL after the grace")
    await sup.retired()
    assert all(st[2] == 2 for st in states(sup))
    assert any(text.startswith("Error R12 (Exit timeout)") for text in minipaas_lines(sup))


async def test_restart_is_rolling_for_web_and_simple_for_others(
    sup: Supervisor, base: Path
) -> None:
    await sup.apply(
        APP, {"web": (spec(base, "web", "web"), 1), "worker": (spec(base, "worker", "worker"), 1)}
    )
    before = {s.name: s.pid for s in sup.status(APP)}
    switched: list[list[str]] = []

    async def switch() -> None:
        switched.append(sup.web_upstreams(APP))

    def serving() -> dict[str, int | None]:
        # A restart returns once the new dynos serve; the old ones may still be `stopping`.
        return {s.name: s.pid for s in sup.status(APP) if s.state != "stopping"}

    await sup.restart(APP, "worker")
    after = serving()
    assert after["web.1"] == before["web.1"] and after["worker.1"] != before["worker.1"]
    await sup.restart(APP, switch=switch)
    after = serving()
    assert after["web.1"] != before["web.1"] and len(switched) == 1
    assert switched[0] == sup.web_upstreams(APP)
    await sup.retired()
    assert states(sup) == [("web.1", "up", 1), ("worker.1", "up", 1)]


async def test_restart_one_dyno_by_number(sup: Supervisor, base: Path) -> None:
    await sup.apply(
        APP, {"web": (spec(base, "web", "web"), 2), "worker": (spec(base, "worker", "worker"), 1)}
    )
    before = {s.name: s.pid for s in sup.status(APP)}
    await sup.restart(APP, "web", number=2)
    await sup.retired()
    after = {s.name: s.pid for s in sup.status(APP)}
    assert after.keys() == before.keys()
    assert after["web.2"] != before["web.2"]
    assert after["web.1"] == before["web.1"] and after["worker.1"] == before["worker.1"]
    await sup.restart(APP, "worker", number=1)
    assert {s.name: s.pid for s in sup.status(APP)}["worker.1"] != before["worker.1"]
    with pytest.raises(NotFound, match=r"The app '.*' has no dyno web\.3 to restart\."):
        await sup.restart(APP, "web", number=3)


async def test_run_once_streams_output_and_returns_status(sup: Supervisor, base: Path) -> None:
    lines: list[str] = []
    release = DynoSpec(
        APP, "release", 3, base / "slug", "echo migrating; echo $DYNO; exit 7", {}, UID
    )
    assert await sup.run_once(release, lines.append) == 7
    assert lines == ["migrating", "release.1"]
    assert [line.text for line in sup.logs.tail(APP, source="release", dyno="release.1")] == lines

    run = DynoSpec(APP, "run", 3, base / "slug", "/usr/bin/python3 app.py odd", {}, UID)
    lines.clear()
    assert await sup.run_once(run, lines.append) == 0
    assert lines[0] == "caf\ufffd \ufffd"
    assert "".join(lines[1:-1]) == "x" * 100_000 and all(len(x) <= 16384 for x in lines)
    assert lines[-1] == "no newline at the end"

    sleeper = DynoSpec(APP, "run", 3, base / "slug", "echo before; sleep 30", {}, UID)
    started = time.monotonic()
    lines.clear()
    with pytest.raises(DeployError, match=r"did not finish within 0\.5 s"):
        await sup.run_once(sleeper, lines.append, timeout=0.5)
    assert time.monotonic() - started < 3 and lines == ["before"]


async def test_sandbox_facts(sup: Supervisor, base: Path) -> None:
    script = (
        "id -u; ls /proc | grep -c '^[0-9]'; "
        "for p in /usr/x /etc/x /opt/x /var/lib/dpkg/x /x /dev/x /var/tmp/x /dev/shm/x; do "
        "touch $p 2>/dev/null && echo wrote $p; done; "
        "echo data > /tmp/t && echo tmp ok; "
        "echo new > /app/new.txt && echo extra >> /app/app.py && echo app ok; cat /app/new.txt"
    )
    lines: list[str] = []
    assert (
        await sup.run_once(DynoSpec(APP, "run", 1, base / "slug", script, {}, UID), lines.append)
        == 0
    )
    assert lines[0] == str(UID)
    assert int(lines[1]) <= 5  # bwrap's init, sh, ls, grep: no host processes
    # The host's dirs, the sandbox's own root and /dev are read-only; /tmp, /var/tmp and
    # /dev/shm are private (in the dyno's scratch tmpfs, gone with it), so their writes never
    # reach the host.
    assert [x for x in lines if x.startswith("wrote")] == ["wrote /var/tmp/x", "wrote /dev/shm/x"]
    assert not Path("/x").exists() and not Path("/var/tmp/x").exists()
    assert not Path("/dev/x").exists() and not Path("/dev/shm/x").exists()
    assert lines[4:] == ["tmp ok", "app ok", "new"]
    assert sorted(p.name for p in (base / "slug").iterdir()) == ["app.py"]  # the slug is untouched
    assert "extra" not in (base / "slug" / "app.py").read_text()


async def test_output_throughput(
    sup: Supervisor, base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 100_000
    flood = DynoSpec(
        APP, "run", 1, base / "slug", f"/usr/bin/python3 app.py flood {count}", {}, UID
    )
    seen = 0

    def on_line(_: str) -> None:
        nonlocal seen
        seen += 1

    started = time.monotonic()
    assert await sup.run_once(flood, on_line) == 0
    took = time.monotonic() - started
    assert seen == count
    logged = sup.logs.tail(APP, n=count + 10, source="app", dyno="run.1")
    assert len(logged) == count and logged[-1].text == f"flood line {count - 1}"
    with capsys.disabled():
        print(
            f"\n{count} lines through a dyno into the LogStore in {took:.2f} s: "
            f"{count / took:,.0f} lines/s"
        )


async def test_apply_is_serialized_per_app(sup: Supervisor, base: Path) -> None:
    web = spec(base, "web", "web")
    await asyncio.gather(
        sup.apply(APP, {"web": (web, 3)}),
        sup.apply(APP, {"web": (web, 1)}),
    )
    await sup.retired()
    assert states(sup) == [("web.1", "up", 1)]
    assert len(sup.web_upstreams(APP)) == 1


async def test_stop_one_off_stops_a_job_that_traps_sigterm(sup: Supervisor, base: Path) -> None:
    """`ps:stop run.1` ends a job whose shell traps SIGTERM, within the grace; never hangs."""
    stubborn = DynoSpec(
        APP, "run", 1, base / "slug", "trap '' TERM; echo armed; sleep 30 & wait; sleep 30", {}, UID
    )
    lines: list[str] = []
    task = asyncio.ensure_future(sup.run_once(stubborn, lines.append))
    while lines != ["armed"]:
        await asyncio.sleep(0.05)
    assert [o.name for o in sup.one_offs(APP)] == ["run.1"]
    started = time.monotonic()
    await sup.stop_one_off(APP, "run.1", grace=0.5)
    assert time.monotonic() - started < 5
    assert await asyncio.wait_for(task, 5) in (-15, -9)  # the sandbox's init took TERM, or KILL
    assert sup.one_offs(APP) == []
    with pytest.raises(NotFound, match=r"runs no one-off dyno 'run\.1'"):
        await sup.stop_one_off(APP, "run.1")


async def test_memory_quota_r14_then_r15_kills_and_restarts(sup: Supervisor, base: Path) -> None:
    """`check_memory` with a round's numbers (the metrics sampler's job, measured for real in
    tests/test_quotas.py): over the quota an R14 line, at most every R14_EVERY s; over twice
    the quota R15, SIGKILL, and a restart through the usual path, `last_error` saying why."""
    quota = 64 * 2**20
    sized = replace(spec(base, "web", "web"), memory=quota)
    await sup.apply(APP, {"web": (sized, 1)})
    first = sup.status(APP)[0]
    assert first.memory == quota and first.last_error is None
    assert first.pid is not None

    sup.check_memory([(APP, first.pid, quota - 1), ("other", first.pid, 10 * quota)])
    assert not [t for t in minipaas_lines(sup, "web.1") if "Error R1" in t]
    for _ in range(3):  # one line per R14_EVERY seconds, not one per round
        sup.check_memory([(APP, first.pid, quota + 16 * 2**20)])
    lines = minipaas_lines(sup, "web.1")
    assert lines.count("Error R14 (Memory quota exceeded)") == 1
    assert "Process running mem=80M(125.0%)" in lines
    assert sup.status(APP)[0].pid == first.pid  # R14 only warns

    sup.check_memory([(APP, first.pid, 2 * quota + 2**20)])
    await wait_for(
        lambda: sup.status(APP)[0].state == "up" and sup.status(APP)[0].pid != first.pid,
        what="restart after R15",
    )
    now = sup.status(APP)[0]
    assert not group_alive(first.pid)
    assert now.restarts == 1 and now.exit_code == -9
    assert now.last_error is not None
    assert now.last_error.startswith("Error R15 (Memory quota vastly exceeded): mem=129M(")
    lines = minipaas_lines(sup, "web.1")
    assert "Error R15 (Memory quota vastly exceeded)" in lines
    assert any(t.startswith("Process exited with signal 9 (Error R15") for t in lines), lines


async def test_a_new_memory_quota_replaces_the_dynos(sup: Supervisor, base: Path) -> None:
    await sup.apply(APP, {"worker": (spec(base, "worker", "worker"), 1)})
    before = sup.status(APP)[0]
    assert before.pid is not None
    sup.check_memory([(APP, before.pid, 2**40)])  # no quota: never touched, whatever it uses
    assert not [t for t in minipaas_lines(sup) if "Error R1" in t]
    sized = replace(spec(base, "worker", "worker"), memory=2**30)
    await sup.apply(APP, {"worker": (sized, 1)})
    await wait_for(lambda: [s.state for s in sup.status(APP)] == ["up"], what="old one gone")
    after = sup.status(APP)[0]
    assert after.pid != before.pid and after.memory == 2**30 and before.memory is None
    assert after.restarts == 0 and after.last_error is None
