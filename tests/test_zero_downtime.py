"""Zero-downtime deploys (issue 3): redeploys under continuous load through Caddy drop nothing.

Load: keep-alive GETs through the real Caddy (tests/support/load.py). The deploys are real
pushes over the real sshd with real builds.
"""

from __future__ import annotations

from pathlib import Path

from tests.paas import SAMPLES, Paas, commit, deploy_sample, deployed, git_repo, ssh_push
from tests.support.load import Load
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer


def redeploy_under_load(
    paas: Paas, sshd: SSHServer, app: str, repo: Path, bump: object, expect: object, rounds: int = 5
) -> None:
    host = f"{app}.localhost"
    with Load(paas.http_port, host, workers=4, max_seconds=600) as load:
        wait_for(lambda: load.result.ok > 20, timeout=30)
        for n in range(2, 2 + rounds):
            bump(repo, n)  # type: ignore[operator]
            commit(repo, f"release {n}")
            deployed(ssh_push(sshd, repo, app))
            # the new body is what Caddy serves as soon as the push returns
            code, body = paas.curl(host)
            assert code == 200 and expect(n) in body, (n, code, body)  # type: ignore[operator]
            target = load.total() + 20
            wait_for(lambda t=target: load.total() > t, timeout=30)
    result = load.result
    assert result.failed == 0, dict(result.failures)
    # Redeploys change no Caddy configuration (dynos are looked up over DNS), so not even an
    # idle keep-alive connection was closed: a client that never retries would see 0 failures.
    assert result.stale_retries == 0
    assert result.ok > 100
    assert any(expect(1 + rounds) in body for body in result.bodies)  # type: ignore[operator]


def test_slow_start_redeploys_drop_no_request(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "slow")
    paas.cli("config:set", "BOOT_SECONDS=3", "-a", "slow")
    repo = git_repo(SAMPLES / "slow-start", tmp_path / "slow")
    deployed(ssh_push(sshd, repo, "slow"))
    paas.wait_body("slow.localhost", "slow-start 1", timeout=30)

    def bump(repo: Path, n: int) -> None:
        (repo / "VERSION").write_text(f"{n}\n")

    redeploy_under_load(paas, sshd, "slow", repo, bump, lambda n: f"slow-start {n}")


def test_gunicorn_redeploys_drop_no_request(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "guni")
    repo = git_repo(SAMPLES / "python-flask", tmp_path / "guni")
    deployed(ssh_push(sshd, repo, "guni"))
    paas.wait_body("guni.localhost", "hello from python-flask")
    original = (repo / "app.py").read_text()

    def bump(repo: Path, n: int) -> None:
        (repo / "app.py").write_text(original.replace("hello from", f"r{n} from"))

    redeploy_under_load(
        paas,
        sshd,
        "guni",
        repo,
        bump,
        lambda n: "hello from python-flask" if n == 1 else f"r{n} from python-flask",
    )


def test_restarts_rollbacks_and_scaling_drop_no_request(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """Everything else that replaces or removes web dynos, under load: config:set (a new
    release), ps:restart (all, a type, one dyno), rollback, scaling up and down."""
    paas, sshd = env
    deploy_sample(paas, sshd, "python-flask", "steady", tmp_path)
    paas.wait_body("steady.localhost", "hello from python-flask")
    operations = [
        ("config:set", "COLOUR=blue"),
        ("ps:scale", "web=3"),
        ("ps:restart",),
        ("ps:restart", "web"),
        ("ps:restart", "web.2"),
        ("ps:scale", "web=1"),
        ("rollback",),
        ("config:unset", "COLOUR"),
    ]
    with Load(paas.http_port, "steady.localhost", workers=4, max_seconds=600) as load:
        wait_for(lambda: load.result.ok > 20, timeout=30)
        for operation in operations:
            paas.cli(*operation, "-a", "steady")
            target = load.total() + 20
            wait_for(lambda t=target: load.total() > t, timeout=30)
    result = load.result
    assert result.failed == 0, (dict(result.failures), result.ok)
    assert result.ok > 100
