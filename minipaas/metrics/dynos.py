"""The dyno sampler: CPU % and RSS of each dyno's whole process tree, from /proc.

A dyno is given as (app, dyno name, pid of its process-group leader). One sampling round reads
every /proc/<pid>/stat once (a few hundred small reads), builds the process tree, and compares
each dyno's CPU ticks with the previous round. Blocking file reads: call `sample` from a worker
thread. It knows nothing about the supervisor; it only sees pids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from minipaas.metrics.procfs import ProcessIndex, ProcStat, cpu_percent, parse_stat, sum_rss

DynoRef = tuple[str, str, int]  # (app, dyno name, leader pid)


@dataclass(frozen=True)
class DynoSample:
    app: str
    dyno: str
    pid: int
    cpu: float | None  # % of one core (top-style); None on the first round of a process
    rss: int  # bytes, the whole tree
    processes: int


def read_processes(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's stat; processes that vanish while we read are skipped.

    Plain fds and one read each: this runs for every process on the host every round, and
    `open()` with its buffered file object costs several times more."""
    found: dict[int, ProcStat] = {}
    root = str(proc)
    for name in os.listdir(root):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"{root}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        try:
            stat = parse_stat(data.decode("utf-8", "replace"))
        except ValueError:
            continue
        found[stat.pid] = stat
    return found


class DynoSampler:
    """Remembers last round's CPU ticks per dyno to turn them into percentages."""

    def __init__(
        self,
        *,
        proc: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._clock = clock
        self._hz = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        # (app, dyno) -> (leader pid, leader start time, tree ticks, when)
        self._last: dict[tuple[str, str], tuple[int, int, int, float]] = {}

    def sample(self, dynos: Sequence[DynoRef]) -> list[DynoSample]:
        if not dynos:
            self._last.clear()
            return []
        procs = read_processes(self._proc)
        index = ProcessIndex(procs)
        now = self._clock()
        out: list[DynoSample] = []
        seen: set[tuple[str, str]] = set()
        for app, dyno, pid in dynos:
            members = index.tree(pid)
            if not members:
                continue  # exited since the supervisor last looked
            leader = procs[pid]
            ticks = sum(s.ticks for s in members)
            key = (app, dyno)
            seen.add(key)
            last = self._last.get(key)
            cpu = None
            if last is not None and last[:2] == (pid, leader.starttime):
                cpu = cpu_percent(last[2], ticks, now - last[3], self._hz)
            self._last[key] = (pid, leader.starttime, ticks, now)
            out.append(DynoSample(app, dyno, pid, cpu, sum_rss(members, self._page), len(members)))
        for key in set(self._last) - seen:
            del self._last[key]
        return out
