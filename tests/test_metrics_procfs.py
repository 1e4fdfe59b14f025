"""The /proc parsers (tables) and the dyno and host samplers against real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minipaas.metrics.dynos import DynoSampler, read_processes
from minipaas.metrics.host import HostSampler, disk_usage
from minipaas.metrics.procfs import (
    CpuTimes,
    ProcStat,
    cpu_percent,
    host_cpu_percent,
    parse_meminfo,
    parse_proc_stat,
    parse_stat,
    parse_status,
    sum_rss,
    tree,
)

# --- /proc/<pid>/stat -----------------------------------------------------------------------

STAT_TAIL = (
    "4194304 98 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 {start} 3133440 {rss} "
    "18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


def stat_line(
    pid: int,
    comm: str,
    *,
    state: str = "S",
    ppid: int = 1,
    pgrp: int = 0,
    sid: int = 0,
    utime: int = 0,
    stime: int = 0,
    cutime: int = 0,
    cstime: int = 0,
    start: int = 100,
    rss: int = 10,
) -> str:
    tail = STAT_TAIL.format(
        utime=utime, stime=stime, cutime=cutime, cstime=cstime, start=start, rss=rss
    )
    return f"{pid} ({comm}) {state} {ppid} {pgrp or pid} {sid or pid} 0 -1 {tail}\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "11086 (cat) R 11080 11080 6809 0 -1 4194304 98 0 0 0 7 3 2 1 20 0 1 0 187984 "
            "3133440 406 18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
            ProcStat(11086, "cat", "R", 11080, 11080, 6809, 7, 3, 2, 1, 187984, 406),
        ),
        # A command name with spaces and parentheses: split after the LAST ")".
        (
            stat_line(42, "we ird) (name", ppid=7, pgrp=40, sid=30, utime=5, rss=3),
            ProcStat(42, "we ird) (name", "S", 7, 40, 30, 5, 0, 0, 0, 100, 3),
        ),
        (
            stat_line(9, "gunicorn: worker [app]", state="Z", cutime=4, cstime=6, start=5),
            ProcStat(9, "gunicorn: worker [app]", "Z", 1, 9, 9, 0, 0, 4, 6, 5, 10),
        ),
    ],
)
def test_parse_stat(line: str, expected: ProcStat) -> None:
    assert parse_stat(line) == expected


@pytest.mark.parametrize("bad", ["", "12 cat R", "x (a) R 1 1 1", "5 (a) R 1 2"])
def test_parse_stat_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="stat"):
        parse_stat(bad)


def test_ticks_include_reaped_children() -> None:
    stat = parse_stat(stat_line(1, "a", utime=1, stime=2, cutime=3, cstime=4))
    assert stat.ticks == 10


# --- /proc/<pid>/status ---------------------------------------------------------------------

STATUS = """Name:\tpython3
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
Pid:\t4242
PPid:\t4200
VmPeak:\t   30000 kB
VmRSS:\t   12288 kB
Threads:\t3
"""
KTHREAD = "Name:\tkworker/0:1\nPid:\t12\nPPid:\t2\nThreads:\t1\n"


@pytest.mark.parametrize(
    ("text", "name", "pid", "ppid", "rss", "threads"),
    [
        (STATUS, "python3", 4242, 4200, 12288 * 1024, 3),
        (KTHREAD, "kworker/0:1", 12, 2, None, 1),
    ],
)
def test_parse_status(
    text: str, name: str, pid: int, ppid: int, rss: int | None, threads: int
) -> None:
    status = parse_status(text)
    assert (status.name, status.pid, status.ppid, status.vm_rss, status.threads) == (
        name,
        pid,
        ppid,
        rss,
        threads,
    )


def test_parse_status_of_this_process_agrees_with_stat() -> None:
    status = parse_status(Path(f"/proc/{os.getpid()}/status").read_text())
    stat = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert status.pid == stat.pid == os.getpid()
    assert status.ppid == stat.ppid
    assert status.vm_rss is not None
    # Same counter, read a moment apart: within 10 %.
    assert abs(status.vm_rss - stat.rss_pages * os.sysconf("SC_PAGE_SIZE")) < status.vm_rss / 10


def test_parse_status_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="status"):
        parse_status("Name:\tx\n")


# --- trees and percentages --------------------------------------------------------------------


def procs(*lines: str) -> dict[int, ProcStat]:
    return {s.pid: s for s in map(parse_stat, lines)}


TABLE = procs(
    stat_line(1, "init", ppid=0),
    stat_line(100, "unshare", ppid=1, utime=1, rss=100),  # the dyno's leader (setsid)
    stat_line(101, "bwrap", ppid=100, pgrp=100, sid=100, rss=200),
    stat_line(102, "bwrap", ppid=101, pgrp=102, sid=102, rss=300),  # --new-session inside
    stat_line(103, "gunicorn", ppid=102, pgrp=102, sid=102, utime=50, stime=10, rss=4000),
    stat_line(104, "worker", ppid=103, pgrp=102, sid=102, utime=30, rss=5000),
    stat_line(105, "daemon", ppid=1, pgrp=100, sid=100, utime=2, rss=50),  # reparented away
    stat_line(200, "other", ppid=1, utime=999, rss=9999),
    stat_line(201, "child", ppid=200, pgrp=200, sid=200, rss=1),
)


@pytest.mark.parametrize(
    ("leader", "members"),
    [
        (100, [100, 101, 102, 103, 104, 105]),
        (200, [200, 201]),
        (103, [103, 104]),
        (999, []),  # gone
    ],
)
def test_tree(leader: int, members: list[int]) -> None:
    assert [s.pid for s in tree(leader, TABLE)] == members


def test_tree_rss_and_ticks() -> None:
    members = tree(100, TABLE)
    assert sum_rss(members, 4096) == (100 + 200 + 300 + 4000 + 5000 + 50) * 4096
    assert sum(s.ticks for s in members) == 1 + 60 + 30 + 2


@pytest.mark.parametrize(
    ("before", "after", "seconds", "hz", "expected"),
    [
        (0, 100, 1.0, 100, 100.0),  # one core busy
        (0, 1000, 5.0, 100, 200.0),  # two cores busy
        (50, 75, 5.0, 100, 5.0),
        (100, 40, 5.0, 100, 0.0),  # a child vanished unreaped: never negative
        (0, 100, 0.0, 100, 0.0),
    ],
)
def test_cpu_percent(before: int, after: int, seconds: float, hz: int, expected: float) -> None:
    assert cpu_percent(before, after, seconds, hz) == pytest.approx(expected)


# --- host files --------------------------------------------------------------------------------

PROC_STAT = """cpu  100 10 50 800 40 0 0 0 0 0
cpu0 50 5 25 400 20 0 0 0 0 0
intr 12345
"""


@pytest.mark.parametrize(
    ("text", "busy", "total"),
    [
        (PROC_STAT, 160, 1000),
        ("cpu  1 2 3 4\n", 6, 10),  # old kernels: four columns
        ("cpu  1 0 1 8 0 0 0 2 9 9\n", 4, 12),  # guest time is already in user: not added
    ],
)
def test_parse_proc_stat(text: str, busy: int, total: int) -> None:
    assert parse_proc_stat(text) == CpuTimes(busy, total)


def test_parse_proc_stat_needs_the_cpu_line() -> None:
    with pytest.raises(ValueError, match="cpu"):
        parse_proc_stat("cpu0 1 2 3 4\n")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (CpuTimes(0, 0), CpuTimes(50, 100), 50.0),
        (CpuTimes(10, 100), CpuTimes(10, 200), 0.0),
        (CpuTimes(10, 100), CpuTimes(10, 100), 0.0),
        (CpuTimes(0, 0), CpuTimes(300, 200), 100.0),  # clamped
    ],
)
def test_host_cpu_percent(before: CpuTimes, after: CpuTimes, expected: float) -> None:
    assert host_cpu_percent(before, after) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "used", "total"),
    [
        ("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\n", 400 * 1024, 1000 * 1024),
        (
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n",
            600 * 1024,
            1000 * 1024,
        ),
    ],
)
def test_parse_meminfo(text: str, used: int, total: int) -> None:
    memory = parse_meminfo(text)
    assert (memory.used, memory.total) == (used, total)


def test_parse_meminfo_needs_total() -> None:
    with pytest.raises(ValueError, match="MemTotal"):
        parse_meminfo("MemFree: 1 kB\n")


# --- real processes ----------------------------------------------------------------------------

# A dyno-like tree: a session leader (sh) with a busy child and a sleeping child that holds
# 64 MB of touched memory.
TREE_SCRIPT = """
import subprocess, sys
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
fat = subprocess.Popen([sys.executable, "-c",
    "import sys, time; b = bytearray(64 << 20); b[::4096] = b'x' * (len(b) // 4096);"
    " print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
fat.stdout.readline()
print("ready", flush=True)
busy.wait()
"""


@pytest.fixture
def dyno_tree() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", TREE_SCRIPT],
        start_new_session=True,
        stdout=subprocess.PIPE,
        env={"PATH": os.environ["PATH"]},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def poll(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_dyno_sampler_sees_the_whole_tree(dyno_tree: int) -> None:
    sampler = DynoSampler()
    first = sampler.sample([("web", "web.1", dyno_tree)])
    assert len(first) == 1
    assert first[0].cpu is None  # nothing to compare with yet
    assert first[0].processes == 3
    assert first[0].rss > 64 << 20

    samples = []

    def busy_enough() -> bool:
        time.sleep(0.3)  # the sampling interval, not a wait for a condition
        samples.append(sampler.sample([("web", "web.1", dyno_tree)])[0])
        return samples[-1].cpu is not None and samples[-1].cpu > 50

    poll(busy_enough)
    last = samples[-1]
    assert last.cpu is not None and last.cpu < 130  # one busy core (+ noise)
    assert last.rss > 64 << 20
    assert (last.app, last.dyno, last.pid) == ("web", "web.1", dyno_tree)


def test_dyno_sampler_forgets_gone_and_restarted_dynos(dyno_tree: int) -> None:
    sampler = DynoSampler()
    assert sampler.sample([("web", "web.1", dyno_tree)])[0].cpu is None
    # Same dyno name, another pid (a restart): no CPU figure from the old process's ticks.
    assert sampler.sample([("web", "web.1", os.getpid())])[0].cpu is None
    assert sampler.sample([("web", "web.2", 2**22 + 7)]) == []  # no such process


def test_read_processes_includes_this_process() -> None:
    found = read_processes()
    assert found[os.getpid()].ppid == os.getppid()


def test_host_sampler(tmp_path: Path) -> None:
    sampler = HostSampler(tmp_path)
    first = sampler.sample()
    assert first.cpu is None
    assert 0 < first.mem_used < first.mem_total
    assert 0 < first.disk_used <= first.disk_total
    assert first.cpus >= 1
    time.sleep(0.05)  # let the CPU counters move between two rounds
    second = sampler.sample()
    assert second.cpu is not None and 0 <= second.cpu <= 100
    used, total = disk_usage(tmp_path)
    st = os.statvfs(tmp_path)
    assert total == st.f_blocks * st.f_frsize
    assert 0 < used <= total
