"""`releases:output` (and `ps:wait`), with the real server, sshd, Caddy and bwrap dynos.

The python-flask sample (it has a release phase) with a Procfile whose web dynos take
BOOT_DELAY seconds to boot (so a `config:set`'s rolling restart lasts long enough to be waited
for) and a worker that exits at once while CRASH is set (a crashed dyno).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support import localhost_cli
from tests.support.sshd import SSHServer

APP = "waiter"
PROCFILE = (
    "web: sleep ${BOOT_DELAY:-0}; exec gunicorn app:app --bind 0.0.0.0:$PORT --workers 1\n"
    'worker: if [ -n "$CRASH" ]; then exit 3; fi; exec sleep 100000\n'
    "release: python migrate.py\n"
)
MIGRATE = 'print("release phase: {text}", flush=True)\nraise SystemExit({code})\n'


def version_of(out: str) -> int:
    return int(out.split("-----> Deployed v")[1].split()[0])


@pytest.fixture(scope="module")
def app(env: tuple[Paas, SSHServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    paas, sshd = env
    paas.cli("apps:create", APP)
    repo = git_repo(SAMPLES / "python-flask", tmp_path_factory.mktemp("repo") / APP)
    (repo / "Procfile").write_text(PROCFILE)
    commit(repo, "slow web, crashable worker")
    out = deployed(ssh_push(sshd, repo, APP))
    assert version_of(out) == 1
    yield repo


def remote(paas: Paas, *words: str) -> subprocess.CompletedProcess[str]:
    """`minipaas WORDS…` from a laptop: MINIPAAS_URL (HTTPS through Caddy) and a token."""
    return subprocess.run(
        localhost_cli.argv(*words), capture_output=True, text=True, timeout=120, check=False,
        env={**paas.remote_env(), "PYTHONPATH": localhost_cli.root()},
    )


def ps_json(paas: Paas, app: str = APP) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(paas.cli("ps", "-a", app, "--json").stdout)
    return data


def releases(paas: Paas) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(paas.cli("releases", "-a", APP, "--json").stdout)
    return data


def test_releases_output_of_the_first_deploy(env: tuple[Paas, SSHServer], app: Path) -> None:
    paas, sshd = env
    shown = paas.cli("releases:output", "-a", APP).stdout
    assert shown.startswith(f"=== Release phase of v1 of {APP} ("), shown
    assert "exited with status 0; v1 is succeeded" in shown
    assert shown.endswith("\nrelease phase: migrations applied\n"), shown
    data = json.loads(paas.cli("releases:output", "v1", "-a", APP, "--json").stdout)
    assert data["version"] == 1 and data["exit_code"] == 0 and data["status"] == "succeeded"
    assert data["output"] == "release phase: migrations applied"
    # The same over ssh and over MINIPAAS_URL (HTTPS through Caddy, a token).
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "releases:output", "1", "-a", APP],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert over_ssh.returncode == 0 and over_ssh.stdout == shown, over_ssh
    far = remote(paas, "releases:output", "-a", APP)
    assert far.returncode == 0 and far.stdout == shown, far


def test_releases_output_of_a_failed_and_a_later_release_phase(
    env: tuple[Paas, SSHServer], app: Path
) -> None:
    paas, sshd = env
    (app / "migrate.py").write_text(MIGRATE.format(text="migration 7 failed: boom", code=1))
    commit(app, "a failing migration")
    pushed = ssh_push(sshd, app, APP)
    assert pushed.returncode != 0, pushed
    failed = releases(paas)[0]
    assert failed["status"] == "failed", failed
    shown = paas.cli("releases:output", "-a", APP).stdout
    assert shown.startswith(
        f"=== Release phase of v{failed['version']} of {APP} ("
    ), shown
    assert f"exited with status 1; v{failed['version']} is failed" in shown
    assert shown.endswith("\nrelease phase: migration 7 failed: boom\n"), shown

    (app / "migrate.py").write_text(MIGRATE.format(text="migration 7 applied", code=0))
    commit(app, "the migration fixed")
    latest = version_of(deployed(ssh_push(sshd, app, APP)))
    data = json.loads(paas.cli("releases:output", "-a", APP, "--json").stdout)
    assert (data["version"], data["exit_code"], data["status"]) == (latest, 0, "succeeded")
    assert data["output"] == "release phase: migration 7 applied"
    again = json.loads(paas.cli("releases:output", f"v{latest}", "-a", APP, "--json").stdout)
    assert again == data
    first = json.loads(paas.cli("releases:output", "v1", "-a", APP, "--json").stdout)
    assert first["output"] == "release phase: migrations applied"


def test_bad_input_is_one_sentence(env: tuple[Paas, SSHServer], app: Path) -> None:
    paas, _ = env
    paas.cli("apps:create", "empty-waiter")
    paas.cli("config:set", "GREETING=hi", "-a", APP)  # a release without a release phase
    config_release = next(r for r in releases(paas) if r["description"].startswith("Set "))
    cases: list[tuple[list[str], int, str]] = [
        (["releases:output", "-a", "no-such-app"], 1, "no-such-app"),
        (["releases:output", "v99", "-a", APP], 1, f"No release v99 for app {APP!r}."),
        (["releases:output", "vx", "-a", APP], 1, "Invalid release 'vx': use vN, e.g. v3."),
        (["releases:output", "", "-a", APP], 1, "Invalid release '': use vN, e.g. v3."),
        (
            ["releases:output", f"v{config_release['version']}", "-a", APP],
            1,
            f"v{config_release['version']} of {APP!r} ran no release phase (only a deploy",
        ),
        (
            ["releases:output", "-a", "empty-waiter"],
            1,
            "No release of 'empty-waiter' ran a release phase (only a deploy",
        ),
    ]
    for argv, code, says in cases:
        result = paas.cli(*argv, check=False)
        assert result.returncode == code, (argv, result)
        assert result.stderr.count("\n") == 1 and says in result.stderr, (argv, result.stderr)
        assert "Traceback" not in result.stderr
