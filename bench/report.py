"""Benchmark results: one row per measured number, its goal, the table and the JSON document.

Owns: the `Row` shape (what tests/test_bench.py checks), goal evaluation, the text table and a
description of the machine. Pure apart from `machine()`, which reads /proc and runs
`--version` commands. Must not touch: the server or the scenarios.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Op = Literal["<=", ">=", "=="]


@dataclass(frozen=True)
class Goal:
    op: Op
    target: float
    unit: str

    def met(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.target
        if self.op == ">=":
            return value >= self.target
        return value == self.target

    def __str__(self) -> str:
        sym = {"<=": "≤ ", ">=": "≥ ", "==": ""}[self.op]
        unit = "" if self.unit == "x" else f" {self.unit}".rstrip()
        return f"{sym}{self.target:g}{unit}"


@dataclass
class Row:
    """One measured number. `passed` is None when it was not measured (error, not built)."""

    scenario: str
    name: str
    value: float | None
    unit: str
    goal: str
    passed: bool | None
    display: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["value"] is not None and not math.isfinite(data["value"]):
            data["value"] = None
        return data


def measured(
    scenario: str, name: str, value: float, goal: Goal, **details: Any
) -> Row:
    ok = math.isfinite(value) and goal.met(value)
    return Row(scenario, name, value, goal.unit, str(goal), ok, fmt(value, goal.unit), details)


def unmeasured(scenario: str, name: str, goal: Goal | str, why: str, **details: Any) -> Row:
    unit = goal.unit if isinstance(goal, Goal) else ""
    return Row(scenario, name, None, unit, str(goal), None, why, details)


def fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "x":
        return f"{value:.2f}"
    if unit:
        return f"{value:g} {unit}"
    return f"{value:g}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: list[Row]) -> str:
    header = ("scenario", "result", "goal", "pass")
    cells = [header]
    for row in rows:
        verdict = {True: "pass", False: "FAIL", None: "-"}[row.passed]
        cells.append((row.name, row.display, row.goal, verdict))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, cell in enumerate(cells):
        lines.append(
            "| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) + " |"
        )
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine(repo: Path, caddy: Path, data: Path) -> dict[str, Any]:
    """What the numbers were measured on; `data` is where the server's data dir was."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    commit = _version(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "cpu": _first("/proc/cpuinfo", "model name"),
        "memory_gb": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else None,
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "git": _version(["git", "--version"]),
        "caddy": _version([str(caddy), "version"]).split(" ")[0],
        "minipaas_commit": commit + ("+dirty" if dirty else ""),
        "filesystem": filesystem(data, Path("/proc/self/mountinfo").read_text()),
    }


def filesystem(path: Path, mountinfo: str, jbd2: Path = Path("/proc/fs/jbd2")) -> str:
    """The filesystem holding `path`, as "ext4 (/dev/vda, journal, discard)": file creation
    speed, and so the big push, depends on it (ext4 without a journal scans past every inode
    deleted in the last minutes when it allocates one)."""
    best: tuple[str, str, str, str] = ("", "?", "?", "")
    target = str(path.resolve())
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]) and len(fields) > dash + 3:
            best = (point, fields[dash + 1], fields[dash + 2], f"{fields[5]},{fields[dash + 3]}")
    _point, fstype, source, options = best
    notes = [source]
    if fstype.startswith("ext"):
        device = os.path.basename(source)
        journal = any(jbd2.glob(f"{device}-*")) if jbd2.is_dir() else False
        notes.append("journal" if journal else "no journal")
    notes += [o for o in ("discard", "noatime") if o in options.split(",")]
    return f"{fstype} ({', '.join(notes)})"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def describe(m: dict[str, Any]) -> str:
    return (
        f"{m['nproc']} x {m['cpu']}, {m['memory_gb']} GB RAM, {m['os']} (kernel {m['kernel']}), "
        f"Python {m['python']}, {m['git']}, Caddy {m['caddy']}, minipaas {m['minipaas_commit']}; "
        f"data dir on {m['filesystem']}"
    )
