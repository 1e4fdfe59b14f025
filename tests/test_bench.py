"""Smoke test of the benchmark harness (`python -m bench`): two cheap scenarios in --quick mode
against the harness's own real server, and the shape of the JSON it writes. No timing asserts:
goals are reported by the harness, never checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import filesystem

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "version", "redeploy",
         "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| scenario" in result.stdout and "Machine:" in result.stdout

    doc = json.loads(out.read_text())
    assert doc["quick"] is True and doc["errors"] == {}
    assert set(doc["scenario_seconds"]) == {"version", "redeploy"}
    machine = doc["machine"]
    assert machine["nproc"] >= 1 and machine["cpu"] and machine["memory_gb"] > 0
    rows = doc["results"]
    assert {r["scenario"] for r in rows} == {"version", "redeploy"}
    for row in rows:
        assert set(row) == {
            "scenario", "name", "value", "unit", "goal", "passed", "display", "details"
        }
        assert row["name"] in result.stdout and row["goal"]
        assert row["passed"] in (True, False, None)
        if row["passed"] is not None:
            assert isinstance(row["value"], float) and row["value"] > 0
    redeploy = next(r for r in rows if r["scenario"] == "redeploy")
    assert redeploy["unit"] == "s" and len(redeploy["details"]["runs_s"]) >= 1
    venv = next(r for r in rows if "venv entry point" in r["name"])
    assert venv["details"]["output"].startswith("minipaas ")
    assert machine["filesystem"].startswith(("ext", "xfs", "btrfs", "tmpfs", "overlay"))
    assert f"data dir on {machine['filesystem']}" in result.stdout


def test_dir_must_be_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--dir", str(missing), "--only", "version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"--dir '{missing}' is not a directory." in result.stderr


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
25 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
40 22 7:0 / /mnt/with\\040space rw,noatime shared:20 - ext4 /dev/loop0 rw
41 22 0:30 / /tmp/ram rw shared:21 - tmpfs tmpfs rw,size=1g
"""


def test_filesystem_names_the_mount_and_its_journal(tmp_path: Path) -> None:
    jbd2 = tmp_path / "jbd2"
    (jbd2 / "loop0-8").mkdir(parents=True)  # what the kernel lists for a journaled ext4
    assert filesystem(Path("/tmp/x"), MOUNTINFO, jbd2) == "ext4 (/dev/vda, no journal, discard)"
    spaced = filesystem(Path("/mnt/with space/a"), MOUNTINFO, jbd2)
    assert spaced == "ext4 (/dev/loop0, journal, noatime)"
    assert filesystem(Path("/tmp/ram/x"), MOUNTINFO, jbd2) == "tmpfs (tmpfs)"
    assert filesystem(Path("/tmp/rammy"), MOUNTINFO, jbd2).startswith("ext4 (/dev/vda,")
