"""`minipaas server` on a machine that lacks what it runs (bwrap, git, util-linux, Caddy) or
given an IP address as its domain: one sentence naming what to install or use, exit 1, before
anything starts; and the built binary (tests/test_binary.py) says the same, with no traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minipaas.cli import SERVER_TOOLS, missing_tools_message
from tests.paas import BIN
from tests.support.ports import free_port
from tests.support.server import server_argv
from tests.test_binary import SYSTEM_PATH, built_binary


def tools_dir(dest: Path, leave_out: set[str]) -> Path:
    """A PATH dir with links to the programs a server runs, except `leave_out`."""
    dest.mkdir()
    wanted = [*SERVER_TOOLS, "setpriv", "prlimit", "mount", "sh", "tar", "ssh-keygen", "caddy"]
    for tool in wanted:
        if tool in leave_out:
            continue
        found = BIN / tool if (BIN / tool).exists() else None
        for d in SYSTEM_PATH.split(":"):
            if found is None and Path(d, tool).exists():
                found = Path(d, tool)
        assert found is not None, tool
        (dest / tool).symlink_to(found)
    return dest


def server(exe: Path, tmp_path: Path, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "data"
    argv = server_argv(
        exe, data, http_port=free_port(), https_port=free_port(), api_port=free_port(),
        authorized_keys=tmp_path / "keys",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_")}
    env["PATH"] = path
    return subprocess.run(
        [*argv, *extra], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(" !    "), result.stderr[-3000:]
    return lines[0]


def test_missing_tools_message_names_tools_and_packages() -> None:
    assert missing_tools_message({}) is None
    message = missing_tools_message({"bwrap": "bubblewrap", "git": "git"})
    assert message == (
        "minipaas server needs bwrap, git, not found on PATH: install them "
        "(apt-get install bubblewrap git) or run install.sh again."
    )


@pytest.mark.parametrize(
    ("leave_out", "expected"),
    [
        ({"bwrap"}, "needs bwrap, not found on PATH: install them (apt-get install bubblewrap)"),
        ({"git", "choom"}, "needs choom, git, not found on PATH"),
    ],
)
def test_server_without_a_tool_says_what_to_install(
    tmp_path: Path, leave_out: set[str], expected: str
) -> None:
    path = str(tools_dir(tmp_path / "path", leave_out))
    line = one_sentence(server(BIN / "minipaas", tmp_path, path))
    assert expected in line, line
    assert not (tmp_path / "data" / "minipaas.pid").exists()  # nothing started


def test_server_refuses_an_ip_address_as_its_domain(tmp_path: Path) -> None:
    line = one_sentence(server(BIN / "minipaas", tmp_path, SYSTEM_PATH, "--domain", "192.0.2.10"))
    assert "Invalid domain '192.0.2.10'" in line and "192.0.2.10.sslip.io" in line, line


def test_binary_without_caddy_or_bwrap_says_what_to_install(tmp_path: Path) -> None:
    exe = tmp_path / "bin" / "minipaas"
    exe.parent.mkdir()
    exe.symlink_to(built_binary())  # alone: no caddy beside it
    no_caddy = str(tools_dir(tmp_path / "no-caddy", {"caddy"}))
    line = one_sentence(server(exe, tmp_path, no_caddy))
    assert "No caddy binary found" in line and "run install.sh again" in line, line
    no_bwrap = str(tools_dir(tmp_path / "no-bwrap", {"bwrap"}))
    line = one_sentence(server(exe, tmp_path, no_bwrap))
    assert "apt-get install bubblewrap" in line, line
