"""Pure parsers for the /proc files the samplers read: `<pid>/stat`, `<pid>/status`, `stat`,
`meminfo`, plus the small arithmetic on them (process trees, CPU percentages).

Every function takes text (or parsed values) and returns data: nothing here opens a file, so
each one is tested by tables. Reading the files is the samplers' job (`dynos.py`, `host.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple


class ProcStat(NamedTuple):
    """The fields of /proc/<pid>/stat the dyno sampler uses (times in clock ticks).
    A NamedTuple: one round builds hundreds of them, and it is the cheapest record."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int
    stime: int
    cutime: int  # CPU of children already waited for: keeps a tree's total monotonic
    cstime: int
    starttime: int
    rss_pages: int

    @property
    def ticks(self) -> int:
        """CPU this process and its reaped children ever used."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat. The command name may hold spaces and parentheses, so the
    fields are split after the LAST ")" (see proc(5))."""
    try:
        open_paren = text.index("(")
        close_paren = text.rindex(")")
        pid = int(text[:open_paren])
        fields = text[close_paren + 2 :].split()
        # fields[0] is field 3 (state) of proc(5).
        return ProcStat(
            pid=pid,
            comm=text[open_paren + 1 : close_paren],
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            utime=int(fields[11]),
            stime=int(fields[12]),
            cutime=int(fields[13]),
            cstime=int(fields[14]),
            starttime=int(fields[19]),
            rss_pages=int(fields[21]),
        )
    except (ValueError, IndexError) as exc:
        raise ValueError(f"Not a /proc/<pid>/stat line: {text[:80]!r}.") from exc


@dataclass(frozen=True)
class ProcStatus:
    """The fields of /proc/<pid>/status worth having (sizes in bytes, None when absent:
    kernel threads and zombies have no VmRSS)."""

    name: str
    pid: int
    ppid: int
    vm_rss: int | None
    threads: int


def _kib(value: str) -> int:
    number, _, unit = value.strip().partition(" ")
    if unit.strip() not in ("kB", ""):
        raise ValueError(f"Unexpected unit {unit!r} in /proc: expected kB.")
    return int(number) * 1024


def parse_status(text: str) -> ProcStatus:
    """Parse /proc/<pid>/status (`Key:\\tvalue` lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    try:
        return ProcStatus(
            name=fields["Name"],
            pid=int(fields["Pid"]),
            ppid=int(fields["PPid"]),
            vm_rss=_kib(fields["VmRSS"]) if "VmRSS" in fields else None,
            threads=int(fields.get("Threads", "1")),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"Not a /proc/<pid>/status file: {text[:80]!r}.") from exc


class ProcessIndex:
    """One round's processes, indexed once so that each dyno's tree costs only its own size
    (a round looks up every dyno in the same table of every process on the host)."""

    def __init__(self, procs: Mapping[int, ProcStat]) -> None:
        self.procs = procs
        self._children: dict[int, list[int]] = {}
        self._grouped: dict[int, list[int]] = {}  # session or process group id -> pids
        for stat in procs.values():
            self._children.setdefault(stat.ppid, []).append(stat.pid)
            self._grouped.setdefault(stat.session, []).append(stat.pid)
            if stat.pgrp != stat.session:
                self._grouped.setdefault(stat.pgrp, []).append(stat.pid)

    def tree(self, leader: int) -> list[ProcStat]:
        """The process `leader` and everything under it: its descendants (some live in a child
        PID namespace, but /proc shows them with host pids and ppids) plus any process left in
        its session or process group (a double-forked daemon reparented away still counts)."""
        if leader not in self.procs:
            return []
        seen = {leader}
        todo = [leader]
        while todo:
            for child in self._children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        seen.update(self._grouped.get(leader, ()))
        return [self.procs[pid] for pid in sorted(seen)]


def tree(leader: int, procs: Mapping[int, ProcStat]) -> list[ProcStat]:
    """`ProcessIndex(procs).tree(leader)`, for one lookup."""
    return ProcessIndex(procs).tree(leader)


def cpu_percent(ticks_before: int, ticks_after: int, seconds: float, hz: int) -> float:
    """CPU use over `seconds` as `top` shows it: 100 per busy core; never negative (a child
    that exits without being waited for takes its ticks away)."""
    if seconds <= 0:
        return 0.0
    return max(0, ticks_after - ticks_before) / hz / seconds * 100.0


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate `cpu` line of /proc/stat, in ticks."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> CpuTimes:
    """The first (all CPUs) line of /proc/stat: user nice system idle iowait irq softirq
    steal guest guest_nice; guest time is already inside user/nice, so it is not added."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:9]]
            except ValueError as exc:
                raise ValueError(f"Not a /proc/stat cpu line: {line!r}.") from exc
            values += [0] * (8 - len(values))
            idle = values[3] + values[4]
            total = sum(values)
            return CpuTimes(busy=total - idle, total=total)
    raise ValueError("No aggregate 'cpu' line in /proc/stat.")


def host_cpu_percent(before: CpuTimes, after: CpuTimes) -> float:
    """Share of all cores busy between two /proc/stat readings, 0-100."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    return min(100.0, max(0.0, (after.busy - before.busy) / total * 100.0))


@dataclass(frozen=True)
class Memory:
    used: int  # bytes: MemTotal - MemAvailable (what `free` calls used + what can't be freed)
    total: int


def parse_meminfo(text: str) -> Memory:
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached"):
            fields[key] = _kib(value)
    if "MemTotal" not in fields:
        raise ValueError("No MemTotal in /proc/meminfo.")
    total = fields["MemTotal"]
    available = fields.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = sum(fields.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return Memory(used=max(0, total - available), total=total)


def sum_rss(stats: Iterable[ProcStat], page_size: int) -> int:
    """Resident memory of a tree in bytes (shared pages count once per process, like `top`)."""
    return sum(s.rss_pages for s in stats) * page_size
