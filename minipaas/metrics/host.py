"""The host sampler: CPU (all cores, 0-100 %), memory, and the disk holding the data dir.

Three tiny blocking reads (/proc/stat, /proc/meminfo, statvfs): call `sample` from a worker
thread. It remembers only last round's CPU counters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from minipaas.metrics.procfs import CpuTimes, host_cpu_percent, parse_meminfo, parse_proc_stat


@dataclass(frozen=True)
class HostSample:
    cpu: float | None  # % of all cores; None on the first round
    mem_used: int  # bytes
    mem_total: int
    disk_used: int  # bytes on the data dir's file system
    disk_total: int
    cpus: int


def disk_usage(path: Path) -> tuple[int, int]:
    """(used, total) bytes of the file system holding `path`, as `df` counts them."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return used, total


class HostSampler:
    def __init__(self, data_dir: Path, *, proc: Path = Path("/proc")) -> None:
        self._data_dir = data_dir
        self._proc = proc
        self._last: CpuTimes | None = None

    def sample(self) -> HostSample:
        times = parse_proc_stat((self._proc / "stat").read_text())
        cpu = host_cpu_percent(self._last, times) if self._last is not None else None
        self._last = times
        memory = parse_meminfo((self._proc / "meminfo").read_text())
        used, total = disk_usage(self._data_dir)
        return HostSample(cpu, memory.used, memory.total, used, total, os.cpu_count() or 1)
