"""The TUI benchmarks of issue 4: first render over SSH, and the logs screen under a flood.

Owns: driving the real TUI in tmux (a private tmux server on a socket in the bench's work dir)
and reading its screen with `capture-pane`, over a private sshd whose authorized_keys is the
one the bench server's `keys:add` writes (so the forced command is the real `minipaas ssh`).
Numbers are reported, never asserted. Must not touch: the server other than through its CLI,
git over HTTPS and ssh; tmux servers or sessions it did not start.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import Goal, Row, measured, median
from bench.scenarios import Context, ScenarioError
from bench.server import init_repo
from bench.sshd import SSHServer, start_sshd

APPS = Path(__file__).resolve().parent / "apps"
RENDER_APP = "tui-render"
# First in the apps list (sorted by name), ahead of the fleet ("fl-…"): `l` opens the first row.
LOGS_APP = "bench-tui-logs"
LOGS_RATE = 2000
#: What the apps list shows once the first API answer is drawn (see tui/screens/apps.py).
APPS_READY = "Enter opens"
LINE = re.compile(r"seq (\d{7}) t=(\d+\.\d+)")
SHOWN = re.compile(r"([\d,]+) shown")
PER_SECOND = re.compile(r"([\d,]+) lines/s")


class Unmeasurable(Exception):
    """The TUI never showed what the scenario waited for."""


@dataclass
class Tmux:
    """A private tmux server (its own socket); every session runs one command."""

    socket: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip

    def start(self, session: str, argv: list[str], width: int = 100, height: int = 30) -> None:
        # remain-on-exit keeps a crashed TUI's last words readable by capture-pane.
        result = self.run(
            "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
            shlex.join(argv), ";", "set-option", "-t", session, "remain-on-exit", "on",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"tmux new-session failed: {result.stderr.strip()}")

    def screen(self, session: str) -> str:
        return self.run("capture-pane", "-p", "-t", session).stdout

    def dead(self, session: str) -> bool:
        out = self.run("display-message", "-p", "-t", session, "#{pane_dead}").stdout.strip()
        return out != "0"

    def poll(self, session: str) -> tuple[str, bool]:
        """(the screen, whether the pane is dead) from one tmux client: the bench spawns one
        process per poll, not two, so it takes less CPU from the TUI it is timing."""
        out = self.run(
            "capture-pane", "-p", "-t", session, ";",
            "display-message", "-p", "-t", session, "#{pane_dead}",
        ).stdout  # fmt: skip
        text, _, flag = out.rstrip("\n").rpartition("\n")
        return text + "\n", flag.strip() != "0"

    def keys(self, session: str, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", session, key)

    def wait(
        self, session: str, ready: Callable[[str], bool], timeout: float, interval: float = 0.02
    ) -> tuple[float, str]:
        """Poll the screen until `ready(screen)`; (monotonic time it was seen, the screen)."""
        deadline = time.monotonic() + timeout
        while True:
            text, dead = self.poll(session)
            seen = time.monotonic()
            if ready(text):
                return seen, text
            if dead:
                raise Unmeasurable(f"the TUI exited before it was ready:\n{text}")
            if seen >= deadline:
                raise Unmeasurable(f"the TUI was not ready after {timeout:g} s:\n{text}")
            time.sleep(interval)

    def close(self, session: str) -> None:
        """Quit the TUI with `q` (it exits cleanly), then kill the session in any case."""
        self.keys(session, "q")
        with contextlib.suppress(Unmeasurable):
            deadline = time.monotonic() + 5
            while not self.dead(session) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.run("kill-session", "-t", session)

    def kill(self) -> None:
        self.run("kill-server")


@contextlib.contextmanager
def _terminal(ctx: Context) -> Iterator[tuple[Tmux, SSHServer]]:
    """A private sshd (key added with `keys:add`) and a private tmux server; both stopped after."""
    if shutil.which("tmux") is None:
        raise Unmeasurable("tmux is not installed.")
    server = ctx.server
    work = ctx.work / "tui-terminal"
    shutil.rmtree(work, ignore_errors=True)
    sshd = start_sshd(work / "sshd", server.root / "authorized_keys")
    mux = Tmux(work / "tmux.sock")
    try:
        pub = work / "client.pub"
        pub.write_text(sshd.client_key_pub)
        server.run_cli("keys:remove", "bench-tui")
        server.cli("keys:add", "bench-tui", "--file", str(pub))
        yield mux, sshd
    finally:
        mux.kill()
        sshd.stop()
        server.run_cli("keys:remove", "bench-tui")


def _local_argv(ctx: Context) -> list[str]:
    s = ctx.server
    return ["env", f"MINIPAAS_DATA_DIR={s.data_dir}", str(s.bin), "tui"]


def _apps_shown(app: str) -> Callable[[str], bool]:
    return lambda text: app in text and APPS_READY in text


# -- first render --------------------------------------------------------------------------------


def _render_times(mux: Tmux, argv: list[str], runs: int, label: str, ctx: Context) -> list[float]:
    times = []
    for n in range(runs):
        session = f"render{n}"
        start = time.monotonic()
        mux.start(session, argv)
        try:
            seen, _ = mux.wait(session, _apps_shown(RENDER_APP), timeout=30)
        finally:
            mux.close(session)
        times.append(round(seen - start, 3))
        ctx.log(f"  {label}: {times[-1]:.2f} s")
    return times


def tui_render(ctx: Context) -> list[Row]:
    """Start → apps list drawn with the first API answer (tmux `capture-pane`, every 20 ms)."""
    runs = ctx.runs(5, 2)
    ctx.server.run_cli("apps:create", RENDER_APP)
    how = (
        "tmux new-session running the command → the apps list shows the app and "
        f"'{APPS_READY}' (drawn after the first API answer); screen polled every 20 ms"
    )
    try:
        with _terminal(ctx) as (mux, sshd):
            over_ssh = _render_times(mux, sshd.ssh_argv(tty=True), runs, "ssh -t", ctx)
            local = _render_times(mux, _local_argv(ctx), runs, "minipaas tui", ctx)
            round_trips = []
            for _ in range(runs):
                t0 = time.monotonic()
                result = subprocess.run(
                    [*sshd.ssh_argv(), "status"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                round_trips.append(round(time.monotonic() - t0, 3))
                if result.returncode != 0:
                    raise Unmeasurable(f"ssh … status failed: {result.stderr.strip()}")
    except Unmeasurable as exc:
        raise ScenarioError(str(exc)) from None
    finally:
        ctx.server.run_cli("apps:destroy", "-a", RENDER_APP, "--confirm", RENDER_APP)
    return [
        measured(
            "tui-render",
            "TUI first render over `ssh -t minipaas@host`",
            median(over_ssh),
            Goal("<=", 1, "s"),
            runs_s=over_ssh,
            measured=how,
        ),
        measured(
            "tui-render",
            "TUI first render locally (`minipaas tui`)",
            median(local),
            Goal("<=", 1, "s"),
            runs_s=local,
            measured=how,
        ),
        measured(
            "tui-render",
            "bare ssh round trip (`ssh minipaas@host status`)",
            median(round_trips),
            Goal("<=", 1, "s"),
            runs_s=round_trips,
            measured="ssh start → exit of the forced command running `status`",
        ),
    ]


# -- the logs screen under a flood -----------------------------------------------------------------


@dataclass
class Sample:
    at: float  # wall clock, right after the screen was read
    newest: int  # the highest line number on screen
    lag_ms: float  # `at` minus the time that line was written
    shown: int | None  # the TUI's own "N shown" counter
    per_second: int | None  # the TUI's own "N lines/s"


def _sample(text: str, at: float) -> Sample | None:
    lines = [(int(m.group(1)), float(m.group(2))) for m in LINE.finditer(text)]
    if not lines:
        return None
    newest, written = max(lines)
    shown = SHOWN.search(text)
    rate = PER_SECOND.search(text)
    return Sample(
        at, newest, (at - written) * 1000,
        int(shown.group(1).replace(",", "")) if shown else None,
        int(rate.group(1).replace(",", "")) if rate else None,
    )  # fmt: skip


def _follow(mux: Tmux, session: str, seconds: float) -> list[Sample]:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        text = mux.screen(session)
        if (sample := _sample(text, time.time())) is not None:
            samples.append(sample)
        time.sleep(0.1)
    return samples


def _key_latency(mux: Tmux, session: str, key: str, shows: str) -> float:
    """Seconds from `send-keys` to `shows` on screen (screen polled every 10 ms)."""
    t0 = time.monotonic()
    mux.keys(session, key)
    seen, _ = mux.wait(session, lambda text: shows in text, timeout=10, interval=0.01)
    return seen - t0


def _deploy_spam(ctx: Context) -> None:
    server = ctx.server
    server.cli("apps:create", LOGS_APP)
    repo = ctx.work / LOGS_APP
    shutil.rmtree(repo, ignore_errors=True)
    init_repo(APPS / "tuispam", repo)
    pushed = server.push(repo, LOGS_APP)
    if not pushed.ok:
        raise Unmeasurable(f"git push to {LOGS_APP} failed:\n{pushed.output[-2000:]}")
    server.cli("ps:scale", "worker=1", "-a", LOGS_APP)
    deadline = time.monotonic() + 60
    while "seq " not in server.run_cli("logs", "-a", LOGS_APP, "-n", "3").stdout:
        if time.monotonic() > deadline:
            raise Unmeasurable(f"{LOGS_APP}'s worker never logged a line.")
        time.sleep(0.2)


def tui_logs(ctx: Context) -> list[Row]:
    """`ssh -t`, `l` on the app: follow a 2,000 lines/s worker, then time pause/resume keys."""
    seconds = 4.0 if ctx.quick else 10.0
    probes = ctx.runs(5, 2)
    session = "logs"
    try:
        _deploy_spam(ctx)
        with _terminal(ctx) as (mux, sshd):
            mux.start(session, sshd.ssh_argv(tty=True), width=100, height=30)
            try:
                mux.wait(session, _apps_shown(LOGS_APP), timeout=30)
                mux.keys(session, "l")
                mux.wait(session, lambda text: "following" in text and "seq " in text, timeout=30)
                ctx.log(f"  following {LOGS_APP} for {seconds:g} s")
                samples = _follow(mux, session, seconds)
                keys = []
                for _ in range(probes):
                    keys.append(_key_latency(mux, session, "space", "PAUSED"))
                    keys.append(_key_latency(mux, session, "space", "following"))
            finally:
                mux.close(session)
    except Unmeasurable as exc:
        raise ScenarioError(str(exc)) from None
    finally:
        ctx.server.run_cli("apps:destroy", "-a", LOGS_APP, "--confirm", LOGS_APP)
    if len(samples) < 5:
        raise ScenarioError(f"the logs screen showed numbered lines only {len(samples)} times.")
    first, last = samples[0], samples[-1]
    rate = (last.newest - first.newest) / (last.at - first.at)
    shown_rate = None
    if first.shown is not None and last.shown is not None:
        shown_rate = round((last.shown - first.shown) / (last.at - first.at))
    lags = sorted(s.lag_ms for s in samples)
    p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))]
    half = len(samples) // 2
    drift = statistics.median(s.lag_ms for s in samples[half:]) - statistics.median(
        s.lag_ms for s in samples[:half]
    )
    keys_ms = [round(k * 1000, 1) for k in keys]
    how = (
        f"a worker writes {LOGS_RATE:,} numbered, time-stamped lines/s; `ssh -t` → `l` opens its "
        f"logs; tmux capture-pane every 100 ms for {seconds:g} s"
    )
    return [
        measured(
            "tui-logs",
            f"TUI logs: newest line number advance ({LOGS_RATE:,} lines/s app)",
            float(round(rate)),
            Goal(">=", LOGS_RATE * 0.95, "lines/s"),
            samples=len(samples),
            tui_shown_per_s=shown_rate,
            tui_status_per_s=last.per_second,
            measured=how,
        ),
        measured(
            "tui-logs",
            "TUI logs: lag of the newest shown line, p95",
            round(p95, 1),
            Goal("<=", 1000, "ms"),
            median_ms=round(statistics.median(lags), 1),
            max_ms=round(lags[-1], 1),
            drift_second_half_minus_first_ms=round(drift, 1),
            measured=how + "; lag = read time minus the line's own write time",
        ),
        measured(
            "tui-logs",
            "TUI logs under the flood: key press → screen change, max",
            max(keys_ms),
            Goal("<=", 250, "ms"),
            median_ms=statistics.median(keys_ms),
            runs_ms=keys_ms,
            measured="tmux send-keys space → 'PAUSED' (and again → 'following') on screen, "
            "polled every 10 ms, while the flood goes on",
        ),
    ]


SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "tui-render": tui_render,
    "tui-logs": tui_logs,
}
