"""`ps:wait` and `releases:output`, with the real server, sshd, Caddy and bwrap dynos.

The python-flask sample (it has a release phase) with a Procfile whose web dynos take
BOOT_DELAY seconds to boot (so a `config:set`'s rolling restart lasts long enough to be waited
for) and a worker that exits at once while CRASH is set (a crashed dyno).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, ssh_push
from tests.support import localhost_cli
from tests.support.ports import wait_for
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


def pending_config_set(paas: Paas, var: str) -> tuple[int, subprocess.Popen[str]]:
    """`config:set VAR` started in the background, once its release is being rolled out
    (pending): the version before it, and the running CLI (its output on stdout)."""
    before = releases(paas)[0]["version"]
    change = subprocess.Popen(
        [str(paas.exe), "config:set", var, "-a", APP],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=paas.env,
    )  # fmt: skip
    try:
        wait_for(
            lambda: releases(paas)[0]["version"] > before
            and releases(paas)[0]["status"] == "pending",
            timeout=30,
            message="config:set's release to be pending",
        )
    except BaseException:
        change.kill()
        change.communicate()
        raise
    return before, change


def test_ps_wait_waits_for_a_config_set_rolling_restart(
    env: tuple[Paas, SSHServer], app: Path
) -> None:
    paas, _ = env
    paas.cli("ps:scale", "web=2", "-a", APP)
    before, change = pending_config_set(paas, "BOOT_DELAY=3")
    try:
        # ps:wait starts while the new release is still being rolled out.
        started = time.monotonic()
        waited = paas.cli(
            "ps:wait", "-a", APP, "--wait-interval", "0.2", "--timeout", "120", check=False
        )
        took = time.monotonic() - started
        assert waited.returncode == 0, waited
        new = before + 1
        assert waited.stdout == f"Waiting for every dyno to be running v{new}... 2 / 2, done\n"
        assert waited.stderr == ""
        # It did wait: the new dynos sleep 3 s before they boot.
        assert took > 1, took
        dynos = ps_json(paas)["dynos"]
        assert sorted(d["name"] for d in dynos) == ["web.1", "web.2"], dynos
        assert all(d["release"] == new and d["state"] == "up" for d in dynos), dynos
        assert releases(paas)[0]["current"] and releases(paas)[0]["version"] == new
    finally:
        out, _ = change.communicate(timeout=180)
    assert change.returncode == 0, out
    # Nothing under way: it answers at once, over MINIPAAS_URL too.
    far = remote(paas, "ps:wait", "-a", APP, "--type", "web")
    assert far.returncode == 0 and far.stdout.endswith(" 2 / 2, done\n"), far


def test_ps_wait_fails_fast_on_a_crashed_dyno(env: tuple[Paas, SSHServer], app: Path) -> None:
    paas, sshd = env
    paas.cli("ps:scale", "web=1", "worker=1", "-a", APP)
    paas.cli("config:set", "CRASH=1", "-a", APP)
    version = releases(paas)[0]["version"]
    started = time.monotonic()
    failed = paas.cli(
        "ps:wait", "-a", APP, "--wait-interval", "0.2", "--timeout", "600", check=False
    )
    took = time.monotonic() - started
    assert failed.returncode == 1, failed
    assert failed.stderr.count("\n") == 1, failed.stderr
    assert failed.stderr.startswith(f" !    worker.1 crashed on v{version} ("), failed.stderr
    assert f"see `minipaas logs --dyno worker.1 -a {APP}`." in failed.stderr
    assert took < 120, took  # the crash loop's back-off, not the 600 s timeout
    # Only the web dynos: they are all up.
    web = subprocess.run(
        [*sshd.ssh_argv(), "ps:wait", "-a", APP, "--type", "web", "--wait-interval", "0.2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert web.returncode == 0 and web.stdout.endswith(" 1 / 1, done\n"), web
    paas.cli("ps:scale", "worker=0", "-a", APP)


def test_ps_wait_times_out_naming_the_dynos(env: tuple[Paas, SSHServer], app: Path) -> None:
    paas, _ = env
    # A stopped type is not waited for.
    paas.cli("ps:stop", "web", "-a", APP)
    try:
        done = paas.cli("ps:wait", "-a", APP, "--wait-interval", "0.2", "--timeout", "5")
        assert done.stdout.endswith(" 0 / 0, done\n"), done
    finally:
        paas.cli("ps:start", "web", "-a", APP)
    before, change = pending_config_set(paas, "BOOT_DELAY=8")
    try:
        failed = paas.cli(
            "ps:wait", "-a", APP, "--wait-interval", "0.2", "--timeout", "2", check=False
        )
    finally:
        out, _ = change.communicate(timeout=180)
    assert change.returncode == 0, out
    assert failed.returncode == 1, failed
    assert failed.stderr.count("\n") == 1, failed.stderr
    assert failed.stderr.startswith(
        f" !    Not every dyno of {APP} runs v{before + 1} after 2 s: "
    ), failed.stderr
    assert f"(up on v{before})" in failed.stderr, failed.stderr
    ok = paas.cli("ps:wait", "-a", APP, "--wait-interval", "0.2", "--timeout", "120")
    assert ok.stdout == f"Waiting for every dyno to be running v{before + 1}... 1 / 1, done\n"


def test_ps_wait_with_run_waits_for_one_off_dynos(env: tuple[Paas, SSHServer], app: Path) -> None:
    paas, _ = env
    one_off = paas.run_in_background(APP, "sleep 300")
    runs: list[dict[str, Any]] = []
    try:
        runs = wait_for(lambda: ps_json(paas)["one_offs"], timeout=30, message="run.N to start")
        old = runs[0]["release"]
        paas.cli("config:set", "WITH_RUN=1", "-a", APP)
        new = releases(paas)[0]["version"]
        assert new > old
        plain = paas.cli("ps:wait", "-a", APP, "--wait-interval", "0.2")
        assert plain.stdout.endswith(f"v{new}... 1 / 1, done\n"), plain
        failed = paas.cli(
            "ps:wait", "-a", APP, "--with-run", "--wait-interval", "0.2", "--timeout", "1",
            check=False,
        )
        assert failed.returncode == 1, failed
        assert failed.stderr == (
            f" !    Not every dyno of {APP} runs v{new} after 1 s: "
            f"{runs[0]['name']} (a one-off dyno on v{old}).\n"
        )
    finally:
        if runs:
            paas.cli("ps:stop", runs[0]["name"], "-a", APP, check=False)
        else:
            one_off.kill()  # the CLI process by its pid; its dyno never showed up
        one_off.wait(timeout=60)
    done = paas.cli("ps:wait", "-a", APP, "--with-run", "--wait-interval", "0.2")
    assert done.stdout.endswith(f"v{new}... 1 / 1, done\n"), done


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
        (["ps:wait", "-a", "no-such-app"], 1, "no-such-app"),
        (["ps:wait", "-a", APP, "--type", "we b"], 1, "Invalid process type 'we b'"),
        (["ps:wait", "-a", APP, "--type", "nosuch"], 1, f"{APP} has no 'nosuch' process type"),
        (["ps:wait", "-a", "empty-waiter"], 1, "empty-waiter has no release yet"),
        (["ps:wait", "-a", APP, "--wait-interval", "0"], 2, "not '0'"),
        (["ps:wait", "-a", APP, "--wait-interval", "nan"], 2, "not 'nan'"),
        (["ps:wait", "-a", APP, "--wait-interval", "soon"], 2, "not 'soon'"),
        (["ps:wait", "-a", APP, "--timeout", "-5"], 2, "not '-5'"),
        (["ps:wait", "-a", APP, "--timeout", "inf"], 2, "not 'inf'"),
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
