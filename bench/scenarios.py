"""The benchmark scenarios of issue 6: each measures one promise and returns rows with goals.

Owns: what is measured and how (apps, pushes, load, /proc sampling), the goals, and how many
runs a full or a `--quick` run makes. Every wait has a deadline; nothing sleeps a fixed time
except the idle-sampling window, which is the measurement itself. Must not touch: the server's
code or state other than through its CLI, git over HTTPS, and HTTP through Caddy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.http import Target, load, wait_for_body
from bench.report import Goal, Row, measured, median, unmeasured
from bench.server import (
    REPO_ROOT,
    BenchServer,
    commit,
    git_env,
    init_repo,
    venv_bin,
)
from tests.support.ports import wait_for
from tests.support.procs import kill_group

APPS = Path(__file__).resolve().parent / "apps"
#: The most lines `minipaas logs -n` returns.
LOGS_N_MAX = 100_000
SEQ = re.compile(r"seq (\d{7}) x")


@dataclass
class Context:
    """What every scenario gets: the (lazily started) server, a scratch dir, the mode."""

    quick: bool
    work: Path
    base: Path  # where the server's temporary directory goes
    log: Callable[[str], None]
    _server: BenchServer | None = None
    fleet_created: set[str] = field(default_factory=set)
    fleet_deployed: set[str] = field(default_factory=set)

    @property
    def server(self) -> BenchServer:
        if self._server is None:
            self.log("starting minipaas server")
            server = BenchServer.create(self.base)
            try:
                server.start()
            except BaseException:
                server.stop()
                raise
            self._server = server
        return self._server

    def runs(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class ScenarioError(Exception):
    """A scenario could not measure (a failed push, an app that never came up)."""


# -- helpers -----------------------------------------------------------------------------------


def _repo(ctx: Context, app_dir: str, name: str) -> Path:
    dest = ctx.work / name
    if dest.exists():
        shutil.rmtree(dest)
    return init_repo(APPS / app_dir, dest)


def _create(ctx: Context, app: str) -> None:
    ctx.server.cli("apps:create", app)


def _destroy(ctx: Context, *apps: str) -> None:
    for app in apps:
        ctx.server.run_cli("apps:destroy", "-a", app, "--confirm", app)


def _https(ctx: Context, app: str) -> Target:
    s = ctx.server
    return Target.https(s.https_port, s.app_host(app), s.ca)


def _set_marker(repo: Path, file: str, old: str, new: str) -> None:
    """Rewrite `old` → `new` in `file` of the original app, and commit."""
    path = repo / file
    original = path.with_suffix(path.suffix + ".orig")
    if not original.exists():
        shutil.copy(path, original)
        (repo / ".git" / "info" / "exclude").write_text(f"{original.name}\n")
    path.write_text(original.read_text().replace(old, new))
    commit(repo, f"marker {new}")


@dataclass
class Deploy:
    seconds: float  # push start → first answer with the new body
    push_seconds: float
    output: str


async def _deploy_async(
    server: BenchServer, repo: Path, app: str, target: Target, expected: bytes, within: float
) -> Deploy:
    env = git_env({"GIT_SSL_CAINFO": str(server.ca)})
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(repo), "push", server.git_url(app), "main",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        start_new_session=True,  # git's helpers too are killed on the deadline
    )
    waiter = asyncio.create_task(wait_for_body(target, expected, within))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        kill_group(proc.pid)
        await proc.wait()
        waiter.cancel()
        raise ScenarioError(f"git push to {app} took more than {within:g} s.") from None
    push_seconds = time.perf_counter() - start
    output = out.decode(errors="replace")
    if proc.returncode != 0 or "-----> Deployed v" not in output:
        waiter.cancel()
        raise ScenarioError(f"git push to {app} failed:\n{output[-2000:]}")
    try:
        seen = await waiter
    except TimeoutError as exc:
        raise ScenarioError(str(exc)) from None
    return Deploy(seen - start, push_seconds, output)


def _deploy(
    ctx: Context, repo: Path, app: str, expected: bytes, timeout: float = 300
) -> Deploy:
    target = _https(ctx, app)
    return asyncio.run(_deploy_async(ctx.server, repo, app, target, expected, timeout))


# -- redeploys -----------------------------------------------------------------------------------


def _redeploy(
    ctx: Context, scenario: str, label: str, app_dir: str, file: str, text: str, goal: Goal
) -> list[Row]:
    app = scenario
    _create(ctx, app)
    repo = _repo(ctx, app_dir, app)
    try:
        _deploy(ctx, repo, app, text.encode())
        times, pushes, failed = [], [], []
        runs = ctx.runs(5, 2)
        for n in range(runs):
            marker = f"{text}r{n} "
            _set_marker(repo, file, text, marker)
            try:
                d = _deploy(ctx, repo, app, marker.encode(), timeout=120)
            except ScenarioError as exc:  # a failed deploy is a result too: count it, go on
                failed.append(str(exc)[-1500:])
                ctx.log(f"  {label}: deploy failed")
                continue
            times.append(d.seconds)
            pushes.append(d.push_seconds)
            ctx.log(f"  {label}: {d.seconds:.2f} s (push {d.push_seconds:.2f} s)")
        if not times:
            raise ScenarioError(f"every redeploy of {app} failed; the last: {failed[-1]}")
    finally:
        _destroy(ctx, app)
    row = measured(
            scenario,
            label,
            median(times),
            goal,
            runs_s=times,
            push_s=pushes,
            body_after_push_s=[round(t - p, 3) for t, p in zip(times, pushes, strict=True)],
            failed_deploys=len(failed),
            first_failure=failed[0] if failed else None,
            measured="git push start → first HTTPS answer through Caddy with the new body",
        )
    if failed:
        row.passed = False
        row.display += f" ({len(failed)} of {runs} deploys failed)"
    return [row]


def redeploy(ctx: Context) -> list[Row]:
    return _redeploy(
        ctx,
        "redeploy",
        "redeploy, dependency-free Python app",
        "stdlib",
        "app.py",
        "hello from python-stdlib ",
        Goal("<=", 1.5, "s"),
    )


def redeploy_flask(ctx: Context) -> list[Row]:
    return _redeploy(
        ctx,
        "redeploy-flask",
        "redeploy, Flask + gunicorn app",
        "flask",
        "app.py",
        "hello from python-flask ",
        Goal("<=", 2.5, "s"),
    )


def first_deploy(ctx: Context) -> list[Row]:
    """Cold: every cache under <data-dir>/cache emptied first. Warm: a new app right after the
    same requirements were built for another app on this server (per-app caches stay cold)."""
    cold: list[float] = []
    warm: list[float] = []
    caches = ctx.server.data_dir / "cache"
    for n in range(ctx.runs(3, 1)):
        if caches.exists():
            for entry in caches.iterdir():
                shutil.rmtree(entry, ignore_errors=True)
        apps = [f"fd-cold-{n}", f"fd-warm-{n}"]
        try:
            for app, into in zip(apps, (cold, warm), strict=True):
                _create(ctx, app)
                repo = _repo(ctx, "flask", app)
                d = _deploy(ctx, repo, app, b"hello from python-flask", timeout=300)
                into.append(d.seconds)
                ctx.log(f"  first deploy {app}: {d.seconds:.2f} s")
        finally:
            _destroy(ctx, *apps)
    how = "new app: git push start → first HTTPS answer with the body"
    return [
        measured(
            "first-deploy",
            "first deploy of the Flask app, empty caches",
            median(cold),
            Goal("<=", 5, "s"),
            runs_s=cold,
            measured=how + "; every build cache emptied first (packages come from PyPI)",
        ),
        measured(
            "first-deploy",
            "first deploy of the Flask app, warm caches",
            median(warm),
            Goal("<=", 3, "s"),
            runs_s=warm,
            measured=how + "; right after another app built the same requirements",
        ),
    ]


# -- zero downtime -------------------------------------------------------------------------------


def zero_downtime(ctx: Context) -> list[Row]:
    app = "zd"
    text = "hello from python-flask "
    _create(ctx, app)
    repo = _repo(ctx, "flask", app)
    redeploys = ctx.runs(5, 2)
    rate, connections = 200.0, 4
    try:
        _deploy(ctx, repo, app, text.encode())

        async def run() -> tuple[Any, list[float]]:
            stop = asyncio.Event()
            target = _https(ctx, app)
            loader = asyncio.create_task(
                load(target, connections=connections, stop=stop, rate=rate, keep_bodies=True)
            )
            times = []
            try:
                await asyncio.sleep(0.5)  # load is flowing before the first push
                for n in range(redeploys):
                    marker = f"{text}z{n} "
                    _set_marker(repo, "app.py", text, marker)
                    d = await _deploy_async(
                        ctx.server, repo, app, target, marker.encode(), within=120
                    )
                    times.append(d.seconds)
                    ctx.log(f"  redeploy {n + 1}/{redeploys} under load: {d.seconds:.2f} s")
                await asyncio.sleep(1.0)  # and after the last switch, old dynos retiring
            finally:
                stop.set()
            return await loader, times

        result, times = asyncio.run(run())
    finally:
        _destroy(ctx, app)
    bodies = {b.decode(errors="replace").strip(): n for b, n in result.bodies.items()}
    return [
        measured(
            "zero-downtime",
            f"failed requests during {redeploys} redeploys under load (gunicorn)",
            float(result.failed),
            Goal("==", 0, ""),
            requests=result.ok + result.failed,
            failed=result.failed,
            errors=dict(result.errors),
            failed_other_than_keepalive_race=sum(
                n for key, n in result.errors.items() if "reused keep-alive" not in key
            ),
            bodies=bodies,
            redeploy_s=times,
            load=f"{connections} keep-alive HTTPS connections through Caddy, {rate:g} req/s",
        )
    ]


# -- the router ----------------------------------------------------------------------------------


def _web_port(ctx: Context, app: str) -> int:
    """The port of the app's web dyno that is up (for requests straight to it)."""
    dynos = json.loads(ctx.server.cli("ps", "-a", app, "--json"))["dynos"]
    return int(next(d["port"] for d in dynos if d["type"] == "web" and d["state"] == "up"))


async def _warm_up(targets: dict[str, Target], connections: int) -> None:
    for target in targets.values():  # connections, TLS sessions, JIT caches
        await load(target, connections=connections, duration=0.5)


async def _rps(name: str, target: Target, connections: int, seconds: float) -> float:
    """Requests/s of one closed-loop run; ScenarioError if any request failed."""
    r = await load(target, connections=connections, duration=seconds)
    if r.failed:
        raise ScenarioError(f"{r.failed} failed requests to {name}: {r.errors}")
    return r.rps


def router(ctx: Context) -> list[Row]:
    app = "rt"
    _create(ctx, app)
    repo = _repo(ctx, "tiny", app)
    reps = ctx.runs(3, 1)
    seconds = 2.0 if ctx.quick else 3.0
    connections = 8
    try:
        _deploy(ctx, repo, app, b"tiny v0")
        s = ctx.server
        targets = {
            "direct": Target(_web_port(ctx, app), s.app_host(app)),
            "https": _https(ctx, app),
            "http": Target(s.http_port, s.app_host(app)),
        }

        async def run() -> dict[str, dict[str, list[float]]]:
            out: dict[str, dict[str, list[float]]] = {
                k: {"rps": [], "p50": [], "p99": []} for k in targets
            }
            await _warm_up(targets, connections)
            for _ in range(reps):
                for name, target in targets.items():
                    out[name]["rps"].append(await _rps(name, target, connections, seconds))
                for name, target in targets.items():
                    r = await load(target, connections=1, duration=seconds / 2)
                    out[name]["p50"].append(r.percentile(0.5) * 1000)
                    out[name]["p99"].append(r.percentile(0.99) * 1000)
            return out

        data = asyncio.run(run())
    finally:
        _destroy(ctx, app)

    def ratio(via: str) -> float:
        return median(
            [c / d for c, d in zip(data[via]["rps"], data["direct"]["rps"], strict=True)]
        )

    def added(via: str, q: str) -> float:
        return median([c - d for c, d in zip(data[via][q], data["direct"][q], strict=True)])

    rps = {k: [round(x) for x in v["rps"]] for k, v in data.items()}
    lat = {k: {q: [round(x, 3) for x in v[q]] for q in ("p50", "p99")} for k, v in data.items()}
    how = (
        f"same asyncio client, {connections} keep-alive connections, closed loop, "
        f"{seconds:g} s per run, runs interleaved"
    )
    return [
        measured(
            "router",
            "throughput via Caddy (HTTPS) ÷ direct to the dyno",
            ratio("https"),
            Goal(">=", 0.9, "x"),
            rps=rps,
            measured=how,
        ),
        measured(
            "router",
            "throughput via Caddy (HTTP) ÷ direct to the dyno",
            ratio("http"),
            Goal(">=", 0.9, "x"),
            rps=rps,
            measured=how,
        ),
        measured(
            "router",
            "added latency p50 via Caddy (HTTPS)",
            added("https", "p50"),
            Goal("<=", 0.5, "ms"),
            latency_ms=lat,
            added_http_p50_ms=round(added("http", "p50"), 3),
            measured="one keep-alive connection, sequential requests; p50(via) - p50(direct)",
        ),
        measured(
            "router",
            "added latency p99 via Caddy (HTTPS)",
            added("https", "p99"),
            Goal("<=", 2, "ms"),
            latency_ms=lat,
            added_http_p99_ms=round(added("http", "p99"), 3),
            measured="one keep-alive connection, sequential requests; p99(via) - p99(direct)",
        ),
    ]


def router_flask(ctx: Context) -> list[Row]:
    """Caddy's share of a real app's throughput: the Flask + gunicorn app (2 sync workers, which
    close every connection) straight to its dyno and through Caddy, same client, interleaved."""
    app = "rtf"
    _create(ctx, app)
    repo = _repo(ctx, "flask", app)
    reps = ctx.runs(3, 1)
    seconds = 2.0 if ctx.quick else 3.0
    connections = 8
    try:
        _deploy(ctx, repo, app, b"hello from python-flask")
        direct = Target(_web_port(ctx, app), ctx.server.app_host(app))
        targets = {"direct": direct, "https": _https(ctx, app)}

        async def run() -> dict[str, list[float]]:
            rps: dict[str, list[float]] = {name: [] for name in targets}
            await _warm_up(targets, connections)
            for _ in range(reps):
                for name, target in targets.items():
                    rps[name].append(await _rps(name, target, connections, seconds))
            return rps

        rps = asyncio.run(run())
    finally:
        _destroy(ctx, app)
    ratio = median([c / d for c, d in zip(rps["https"], rps["direct"], strict=True)])
    return [
        measured(
            "router-flask",
            "throughput via Caddy (HTTPS) ÷ direct, Flask + gunicorn app",
            ratio,
            Goal(">=", 0.9, "x"),
            rps={k: [round(x) for x in v] for k, v in rps.items()},
            measured=f"same asyncio client, {connections} connections (gunicorn closes each "
            f"after its answer; Caddy keeps the client's open), {seconds:g} s per run",
        )
    ]


# -- logs ----------------------------------------------------------------------------------------


def logs(ctx: Context) -> list[Row]:
    app = "logspam"
    rate = 100_000
    lines = rate * (1 if ctx.quick else 3)
    spam = APPS / "logspam" / "spam.py"
    baseline = []
    for _ in range(ctx.runs(2, 1)):
        out = subprocess.run(
            ["python3", str(spam), str(lines), str(rate), "exit"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
            check=True,
        )
        baseline.append(_spam_rate(out.stderr))
    _create(ctx, app)
    repo = ctx.work / app
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir()
    shutil.copy(spam, repo / "spam.py")
    (repo / "Procfile").write_text(f"worker: python3 spam.py {lines} {rate}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=git_env(),
                   capture_output=True, timeout=30)
    commit(repo, "spam")
    try:
        pushed = ctx.server.push(repo, app)
        if not pushed.ok:
            raise ScenarioError(f"git push to {app} failed:\n{pushed.output[-2000:]}")
        ctx.server.cli("ps:scale", "worker=1", "-a", app)

        def done() -> str:
            out = ctx.server.run_cli("logs", "-a", app, "-n", "5", "--dyno", "worker.1").stdout
            return next((ln for ln in out.splitlines() if "SPAM-DONE" in ln), "")

        try:
            line = wait_for(done, timeout=60 + lines / rate * 5, interval=0.5)
        except TimeoutError:
            raise ScenarioError("the log-spamming dyno never reported SPAM-DONE.") from None
        got = _spam_rate(line)
        # `logs -n` returns at most LOGS_N_MAX lines: check that window is complete, and count
        # every line in the app's files on disk (rotated ones included).
        window = min(lines, LOGS_N_MAX - 1)
        text = ctx.server.cli(
            "logs", "-a", app, "-n", str(LOGS_N_MAX), "--dyno", "worker.1", timeout=300
        )
        seen_window = {int(m.group(1)) for m in SEQ.finditer(text)}
        window_lost = sum(1 for n in range(lines - window, lines) if n not in seen_window)
        on_disk: set[int] = set()
        for path in (ctx.server.data_dir / "logs" / app).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if path.suffix == ".gz":
                    data = gzip.decompress(data)
                on_disk.update(int(m.group(1)) for m in SEQ.finditer(data.decode(errors="replace")))
        disk_lost = lines - len(on_disk)
    finally:
        _destroy(ctx, app)
    base = median(baseline)
    return [
        measured(
            "logs",
            "logs: app rate under minipaas ÷ stdout to /dev/null",
            got / base,
            Goal(">=", 0.95, "x"),
            target_lines_per_s=rate,
            devnull_lines_per_s=[round(b) for b in baseline],
            minipaas_lines_per_s=round(got),
            lines=lines,
            measured="the app paces itself at 100,000 lines/s and reports the rate it achieved",
        ),
        measured(
            "logs",
            f"logs: lines lost of {lines:,}",
            float(max(window_lost, disk_lost)),
            Goal("==", 0, ""),
            lines=lines,
            lost_in_logs_n_window=window_lost,
            logs_n_window=window,
            lost_on_disk=disk_lost,
            measured=f"`minipaas logs -n {LOGS_N_MAX}` (its maximum) must hold the last {window:,} "
            "lines; the app's log files on disk must hold all of them",
        ),
    ]


def _spam_rate(text: str) -> float:
    m = re.search(r"SPAM-DONE lines=(\d+) seconds=([\d.]+)", text)
    if not m:
        raise ScenarioError(f"no SPAM-DONE line in {text[-300:]!r}")
    return int(m.group(1)) / float(m.group(2))


# -- a big push ----------------------------------------------------------------------------------


def _big_repo(dest: Path, files: int, total_bytes: int) -> Path:
    """A repository with one commit: the tiny app plus `files` files, `total_bytes` in all (80 %
    source-like text, 20 % random bytes), written by `git fast-import` straight into one pack,
    as in a clone, so a push sends packed objects without recompressing.

    Nothing is written loose and then deleted: on a journal-less ext4 (this VM's) freshly freed
    inodes make every file created in the next minute or so several times slower to create,
    which would charge the bench's own set-up to the exports it measures.
    """
    rng = random.Random(6)  # noqa: S311 - test data, not secrets
    names = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(3, 12)))
             for _ in range(3000)]
    lines = [
        f"{' ' * 4 * rng.randint(0, 3)}{rng.choice(names)} = {rng.choice(names)}"
        f"({rng.choice(names)}, {rng.randint(0, 99999)})  # {' '.join(rng.choices(names, k=4))}\n"
        for _ in range(20000)
    ]
    contents: dict[str, bytes] = {
        path.relative_to(APPS / "tiny").as_posix(): path.read_bytes()
        for path in sorted((APPS / "tiny").rglob("*")) if path.is_file()
    }
    per_file = total_bytes // files
    for n in range(files):
        binary = n % 5 == 4
        size = rng.randint(per_file // 2, per_file * 3 // 2)
        name = f"d{n % 50:02d}/f{n:05d}.{'bin' if binary else 'py'}"
        if binary:
            contents[name] = rng.randbytes(size)
        else:
            contents[name] = "".join(rng.choices(lines, k=size // 60 + 1))[:size].encode()
    stream = bytearray()
    for mark, data in enumerate(contents.values(), start=1):
        stream += b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(data), data)
    message = b"big"
    stream += b"commit refs/heads/main\ncommitter Bench <bench@example.test> 1700000000 +0000\n"
    stream += b"data %d\n%s\n" % (len(message), message)
    for mark, name in enumerate(contents, start=1):
        stream += b"M 100644 :%d %s\n" % (mark, name.encode())
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True, env=git_env(),
                   capture_output=True, timeout=30)
    subprocess.run(["git", "-C", str(dest), "fast-import", "--quiet", "--depth=0"],
                   input=bytes(stream), check=True, env=git_env(), capture_output=True,
                   timeout=600)
    return dest


async def _timed_push(
    argv: list[str], env: dict[str, str], mark: str, within: float = 300
) -> tuple[float, float, str]:
    """(total seconds, seconds until a line containing `mark`, output) of one `git push`;
    ScenarioError if it fails or is still running after `within` seconds (it is killed)."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # git's helpers too are killed on the deadline
    )
    assert proc.stderr is not None
    stderr = proc.stderr
    marked = float("nan")
    chunks: list[bytes] = []

    async def read_all() -> None:
        nonlocal marked
        buf = b""
        while chunk := await stderr.read(65536):
            chunks.append(chunk)
            buf = (buf + chunk)[-4096:]
            if marked != marked and mark.encode() in buf:  # NaN: not seen yet
                marked = time.perf_counter() - start
        await proc.wait()

    try:
        await asyncio.wait_for(read_all(), within)
    except TimeoutError:
        kill_group(proc.pid)
        await proc.wait()
        output = b"".join(chunks).decode(errors="replace")
        raise ScenarioError(
            f"{' '.join(argv[:4])} was still running after {within:g} s:\n{output[-2000:]}"
        ) from None
    total = time.perf_counter() - start
    output = b"".join(chunks).decode(errors="replace")
    if proc.returncode != 0:
        raise ScenarioError(f"{' '.join(argv[:4])} failed:\n{output[-2000:]}")
    return total, marked, output


def big_push(ctx: Context) -> list[Row]:
    # Nothing is deleted between runs (the apps and bare repos go at the end): on ext4 without
    # a journal, files created just after 5,000 were deleted take several times longer.
    files, size = (500, 5_000_000) if ctx.quick else (5000, 50_000_000)
    repo = _big_repo(ctx.work / "bigrepo", files, size)
    c_times, mp_times, mp_received = [], [], []
    apps = []
    try:
        for n in range(ctx.runs(3, 1)):
            bare = ctx.work / f"bare-{n}.git"
            subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True,
                           env=git_env(), capture_output=True, timeout=30)
            c_total, _, _ = asyncio.run(
                _timed_push(["git", "-C", str(repo), "push", str(bare), "main"], git_env(), "")
            )
            app = f"big-{n}"
            _create(ctx, app)
            apps.append(app)
            env = git_env({"GIT_SSL_CAINFO": str(ctx.server.ca)})
            argv = ["git", "-C", str(repo), "push", "--progress", ctx.server.git_url(app), "main"]
            total, received, out = asyncio.run(_timed_push(argv, env, "remote: -----> Building"))
            if "-----> Deployed v" not in out:
                raise ScenarioError(f"the big push to {app} did not deploy:\n{out[-2000:]}")
            c_times.append(c_total)
            mp_times.append(total)
            mp_received.append(received)
            ctx.log(f"  big push: C git {c_total:.2f} s, minipaas {total:.2f} s "
                    f"(pack in after {received:.2f} s)")
    finally:
        _destroy(ctx, *apps)
    c = median(c_times)
    return [
        measured(
            "big-push",
            f"push of a {size // 1_000_000} MB / {files:,}-file repo ÷ C git to a local bare repo",
            median(mp_times) / c,
            Goal("<=", 1.5, "x"),
            c_git_s=c_times,
            minipaas_s=mp_times,
            minipaas_until_build_starts_s=mp_received,
            receive_only_ratio=round(median(mp_received) / c, 2),
            measured="whole `git push` over HTTPS (receive, build, deploy) vs `git push "
            "/path/bare.git`; receive_only_ratio stops at the first `-----> Building` line",
        )
    ]


# -- a fleet of tiny apps --------------------------------------------------------------------------


def _ensure_fleet(ctx: Context, count: int, deadline_s: float) -> dict[str, Any]:
    """`count` tiny apps created and pushed (4 pushes at a time); returns timing details."""
    s = ctx.server
    repo = ctx.work / "fleet"
    if not repo.exists():
        init_repo(APPS / "tiny", repo)
    wanted = [f"fl-{n:03d}" for n in range(count)]
    missing = [a for a in wanted if a not in ctx.fleet_deployed]
    start = time.perf_counter()
    deadline = start + deadline_s
    failures: list[str] = []

    def one(app: str) -> None:
        if time.perf_counter() > deadline:
            failures.append(f"{app}: not pushed (time budget)")
            return
        if app not in ctx.fleet_created:
            result = s.run_cli("apps:create", app)
            if result.returncode != 0:
                failures.append(f"{app}: {result.stderr.strip()}")
                return
            ctx.fleet_created.add(app)
        pushed = s.push(repo, app, timeout=max(10.0, deadline - time.perf_counter()))
        if pushed.ok:
            ctx.fleet_deployed.add(app)
        else:
            why = [ln for ln in pushed.output.splitlines() if "!" in ln or "rror" in ln]
            failures.append(f"{app}: {' / '.join(why[-3:]) or pushed.output[-300:]}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, missing))
    return {
        "pushed": len(missing),
        "push_failures": len(failures),
        "push_wall_s": round(time.perf_counter() - start, 2),
        "failures": failures[:5],
    }


def _apps_up(ctx: Context, wanted: set[str]) -> int:
    apps = json.loads(ctx.server.cli("apps", "--json"))
    return sum(1 for a in apps if a["name"] in wanted and a["dynos_up"] >= 1)


def _wait_all_up(ctx: Context, count: int, timeout: float) -> int:
    """How many of the first `count` fleet apps have a dyno up (waiting for the deployed ones)."""
    wanted = {f"fl-{n:03d}" for n in range(count)}
    deployed = len(wanted & ctx.fleet_deployed)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: _apps_up(ctx, wanted) >= deployed, timeout=timeout, interval=0.5)
    return _apps_up(ctx, wanted)


def _proc_cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _caddy_pid(ctx: Context) -> int | None:
    needle = str(ctx.server.data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"caddy" in cmd.split(b"\0")[0] and needle in cmd:
            return int(entry.name)
    return None


def idle(ctx: Context) -> list[Row]:
    count = 5 if ctx.quick else 20
    info = _ensure_fleet(ctx, count, deadline_s=120)
    up = _wait_all_up(ctx, count, timeout=60)
    if up == 0:
        raise ScenarioError(f"none of the {count} apps came up ({info}).")
    pid = ctx.server.pid
    caddy = _caddy_pid(ctx)
    hz = os.sysconf("SC_CLK_TCK")
    window = 3.0 if ctx.quick else 10.0
    _settle(1.0 if ctx.quick else 2.0)
    t0, c0 = time.perf_counter(), _proc_cpu_ticks(pid)
    k0 = _proc_cpu_ticks(caddy) if caddy else 0
    rss = [_proc_rss_mb(pid)]
    while time.perf_counter() - t0 < window:
        _settle(0.5)
        rss.append(_proc_rss_mb(pid))
    wall = time.perf_counter() - t0
    cpu = (_proc_cpu_ticks(pid) - c0) / hz / wall * 100
    caddy_info: dict[str, Any] = {}
    if caddy:
        caddy_info = {
            "caddy_rss_mb": round(_proc_rss_mb(caddy), 1),
            "caddy_cpu_percent": round((_proc_cpu_ticks(caddy) - k0) / hz / wall * 100, 2),
        }
    rows = [
        measured(
            "idle",
            f"server idle RSS with {up} apps running",
            max(rss),
            Goal("<=", 80, "MB"),
            samples_mb=[round(r, 1) for r in rss],
            fleet=info,
            **caddy_info,
            measured="VmRSS of the minipaas server process (pid file), max over the window",
        ),
        measured(
            "idle",
            f"server idle CPU with {up} apps running",
            cpu,
            Goal("<=", 0.5, "%"),
            window_s=round(wall, 1),
            **caddy_info,
            measured="utime+stime of the server process over the window ÷ wall time",
        ),
    ]
    for row in rows:
        row.details["apps_up"] = up
        if up < count:
            row.passed = False  # not the situation the goal is about: fewer apps than asked
    return rows


def _settle(seconds: float) -> None:
    # The idle window is the measurement itself: sampling needs wall time to pass.
    time.sleep(seconds)


def apps100(ctx: Context) -> list[Row]:
    count = 10 if ctx.quick else 100
    info = _ensure_fleet(ctx, count, deadline_s=60 if ctx.quick else 360)
    up = _wait_all_up(ctx, count, timeout=60)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ctx.server.cli("apps")
        times.append(time.perf_counter() - t0)
    return [
        measured(
            "apps100",
            f"{count} apps x 1 dyno: apps up",
            float(up),
            Goal(">=", count, "apps"),
            fleet=info,
        ),
        measured(
            "apps100",
            f"`minipaas apps` wall time with {count} apps",
            median(times),
            Goal("<=", 0.3, "s"),
            runs_s=[round(t, 3) for t in times],
        ),
    ]


# -- the binary ----------------------------------------------------------------------------------


def _built_binary() -> Path | None:
    dist = REPO_ROOT / "dist" / "minipaas"
    for candidate in (dist, dist / "minipaas"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _time_version(exe: Path, runs: int) -> tuple[float, list[float], str]:
    times, out = [], ""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_")}
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                env=env, timeout=60, check=False)
        times.append(time.perf_counter() - t0)
        if result.returncode != 0:
            raise ScenarioError(f"{exe} --version failed: {result.stderr.strip()}")
        out = result.stdout.strip()
    return median(times), [round(t, 3) for t in times], out


def version(ctx: Context) -> list[Row]:
    goal = Goal("<=", 0.5, "s")
    runs = ctx.runs(7, 3)
    rows = []
    binary = _built_binary()
    if binary is None:
        rows.append(
            unmeasured("version", "`minipaas --version`, built binary", goal, "not built",
                       looked_for=["dist/minipaas", "dist/minipaas/minipaas"])
        )
    else:
        value, times, out = _time_version(binary, runs)
        rows.append(measured("version", "`minipaas --version`, built binary", value, goal,
                             runs_s=times, binary=str(binary), output=out))
    value, times, out = _time_version(venv_bin() / "minipaas", runs)
    rows.append(measured("version", "`minipaas --version`, venv entry point", value, goal,
                         runs_s=times, output=out))
    return rows


# -- the registry --------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "version": version,
    "redeploy": redeploy,
    "redeploy-flask": redeploy_flask,
    "first-deploy": first_deploy,
    "zero-downtime": zero_downtime,
    "router": router,
    "router-flask": router_flask,
    "logs": logs,
    "big-push": big_push,
    "idle": idle,
    "apps100": apps100,
}
