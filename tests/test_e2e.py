"""End to end, as a user does it: the real `git` client pushing over a real sshd and over HTTPS
through Caddy, real buildpack builds, real sandboxed dynos, curl through real Caddy.

One server (and one sshd) serves the whole module; each test uses its own apps.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.paas import SAMPLES, Paas, commit, deployed, git_repo, https_push, push, ssh_push
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

APPS = Path(__file__).parent / "apps"


def test_python_stdlib_over_ssh_then_config_set(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "pystd")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "pystd")
    out = deployed(ssh_push(sshd, repo, "pystd"))
    assert "remote: -----> Building pystd" in out
    body = paas.wait_body("pystd.localhost", "hello from python-stdlib")
    assert body.strip() == "hello from python-stdlib"

    result = paas.cli("config:set", "GREETING=bonjour", "-a", "pystd")
    assert "GREETING" in result.stdout
    paas.wait_body("pystd.localhost", "hello from python-stdlib bonjour")
    info = json.loads(paas.curl("pystd.localhost", "/info")[1])
    assert info["DYNO"] == "web.1"
    assert paas.cli("config:get", "GREETING", "-a", "pystd").stdout.strip() == "bonjour"

    releases = paas.cli("releases", "-a", "pystd").stdout
    assert "Deploy" in releases and "Set GREETING" in releases


def test_flask_release_phase_output_in_push(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "flask")
    repo = git_repo(SAMPLES / "python-flask", tmp_path / "flask")
    out = deployed(ssh_push(sshd, repo, "flask"))
    assert "remote:        release phase: migrations applied" in out
    paas.wait_body("flask.localhost", "hello from python-flask")

    # A release phase that fails: the push is rejected and v1 keeps serving.
    (repo / "migrate.py").write_text("import sys\nprint('migration exploded')\nsys.exit(1)\n")
    (repo / "app.py").write_text((repo / "app.py").read_text().replace("hello from", "BROKEN"))
    commit(repo, "broken migration")
    result = ssh_push(sshd, repo, "flask")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "migration exploded" in out
    assert "release command" in out and "exited with status 1" in out
    assert paas.curl("flask.localhost")[1].startswith("hello from python-flask")
    heads = subprocess.run(
        ["git", "ls-remote", sshd.url("flask.git")],
        capture_output=True,
        text=True,
        env={**subprocess.os.environ, "GIT_SSH_COMMAND": sshd.git_ssh_command()},
    )
    assert (
        heads.stdout.split()[0]
        != subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )


def test_failed_build_keeps_previous_release(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "keepme")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "keepme")
    deployed(ssh_push(sshd, repo, "keepme"))
    paas.wait_body("keepme.localhost", "hello from python-stdlib")

    (repo / "requirements.txt").write_text("this-package-does-not-exist-minipaas==9.9.9\n")
    (repo / "app.py").write_text((repo / "app.py").read_text().replace("hello from", "NEW"))
    commit(repo, "unknown requirement")
    result = ssh_push(sshd, repo, "keepme")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "this-package-does-not-exist-minipaas" in out
    assert "[remote rejected]" in out
    assert paas.curl("keepme.localhost")[1].startswith("hello from python-stdlib")


def test_node_express_over_https_with_token(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    paas.cli("apps:create", "nodeapp")
    repo = git_repo(SAMPLES / "node-express", tmp_path / "nodeapp")
    bad = https_push(paas, repo, "nodeapp", "wrong-token")
    assert bad.returncode != 0
    assert "Authentication failed" in bad.stderr or "401" in bad.stderr, bad.stderr
    out = deployed(https_push(paas, repo, "nodeapp", token))
    assert "remote: -----> " in out
    paas.wait_body("nodeapp.localhost", "hello from node-express")


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/2"])
def test_push_larger_than_git_post_buffer_over_https(
    env: tuple[Paas, SSHServer], tmp_path: Path, version: str
) -> None:
    """git streams a pack over 1 MiB chunked while minipaas already answers (progress): over
    HTTP/1.1 Caddy must pass the body through in full duplex, or the pack arrives with holes."""
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    app = "bigpush1" if version == "HTTP/1.1" else "bigpush2"
    paas.cli("apps:create", app)
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / app)
    (repo / "blob.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # incompressible
    commit(repo, "a big file")
    url = f"https://x:{token}@minipaas.localhost:{paas.https_port}/git/{app}.git"
    result = push(
        repo,
        url,
        env={
            "GIT_SSL_CAINFO": str(paas.ca),
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.version",
            "GIT_CONFIG_VALUE_0": version,
        },
    )
    deployed(result)
    paas.wait_body(f"{app}.localhost", "hello from python-stdlib")


def test_static_site_served_by_caddy(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "site")
    repo = git_repo(SAMPLES / "static-site", tmp_path / "site")
    (repo / ".secret").write_text("do not serve me")
    commit(repo, "with a dotfile")
    deployed(ssh_push(sshd, repo, "site"))
    paas.wait_body("site.localhost", "hello from static-site")
    code, body = paas.curl("site.localhost", "/css/site.css")
    assert code == 200 and "teal" in body
    code, body = paas.curl("site.localhost", "/.secret")
    assert code == 404 and "do not serve me" not in body
    assert "No dynos" in paas.cli("ps", "-a", "site").stdout


def test_worker_scale_and_logs(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    paas.cli("apps:create", "ww")
    repo = git_repo(SAMPLES / "worker-web", tmp_path / "ww")
    deployed(ssh_push(sshd, repo, "ww"))
    paas.wait_body("ww.localhost", "hello from worker-web")
    assert "Scaled ww to web=1, worker=1" in paas.cli("ps:scale", "worker=1", "-a", "ww").stdout

    def heartbeat() -> bool:
        return "app[worker.1]: heartbeat" in paas.cli("logs", "-a", "ww", "-n", "50").stdout

    wait_for(heartbeat, timeout=30, interval=0.3)
    ps = paas.cli("ps", "-a", "ww").stdout
    assert "worker.1: up" in ps and "web.1: up" in ps
    only_worker = paas.cli("logs", "-a", "ww", "--dyno", "worker.1", "-n", "5").stdout
    assert only_worker and all("worker.1" in ln for ln in only_worker.splitlines())


def test_app_json_formation_sets_the_first_counts(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """A process type starts with its app.json `formation` quantity; `ps:scale` then decides."""
    paas, sshd = env
    paas.cli("apps:create", "formed")
    repo = git_repo(SAMPLES / "worker-web", tmp_path / "formed")
    (repo / "app.json").write_text(json.dumps({"formation": {"worker": {"quantity": 1}}}))
    commit(repo, "a worker from the start")
    deployed(ssh_push(sshd, repo, "formed"))

    def states() -> dict[str, str]:
        out = json.loads(paas.cli("ps", "-a", "formed", "--json").stdout)["dynos"]
        return {d["name"]: d["state"] for d in out}

    wait_for(lambda: states() == {"web.1": "up", "worker.1": "up"}, timeout=30)
    paas.cli("ps:scale", "worker=0", "-a", "formed")
    wait_for(lambda: set(states()) == {"web.1"}, timeout=30)
    (repo / "MARK").write_text("v2\n")
    commit(repo, "a redeploy keeps the scaled formation")
    deployed(ssh_push(sshd, repo, "formed"))
    assert set(states()) == {"web.1"}
    formation = json.loads(paas.cli("apps:info", "-a", "formed", "--json").stdout)["formation"]
    assert formation == {"web": 1, "worker": 0}


def test_app_json_env_sets_up_a_new_app(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    """The first deploy sets app.json `env` values and secrets, and refuses while a required
    var is unset (nothing is kept from that push); later pushes leave the config alone."""
    paas, sshd = env
    paas.cli("apps:create", "setup")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "setup")
    doc = {
        "env": {
            "GREETING": {"value": "hello"},
            "SECRET_KEY": {"generator": "secret"},
            "DATABASE_URL": {"description": "your database"},
            "OPTIONAL": {"required": False},
        },
        "scripts": {
            "postdeploy": 'python -c \'import os; print("set up for", os.environ["GREETING"])\''
        },
    }
    (repo / "app.json").write_text(json.dumps(doc))
    commit(repo, "app.json")

    def config() -> dict[str, str]:
        return json.loads(paas.cli("config", "-a", "setup", "--json").stdout)  # type: ignore[no-any-return]

    refused = ssh_push(sshd, repo, "setup")
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out
    assert "app.json requires the config var DATABASE_URL, which is not set" in out
    assert config() == {}

    paas.cli("config:set", "DATABASE_URL=postgres://db/setup", "-a", "setup")
    out = deployed(ssh_push(sshd, repo, "setup"))
    assert "Config vars from app.json: GREETING, SECRET_KEY" in out
    assert "Running postdeploy command" in out and "set up for hello" in out
    first = config()
    assert first["GREETING"] == "hello" and first["DATABASE_URL"] == "postgres://db/setup"
    assert len(first["SECRET_KEY"]) == 64 and first["SECRET_KEY"] not in out
    assert "OPTIONAL" not in first

    paas.cli("config:unset", "GREETING", "-a", "setup")
    commit(repo, "a redeploy")
    out = deployed(ssh_push(sshd, repo, "setup"))
    assert "Config vars from app.json" not in out and "postdeploy" not in out
    assert config() == {k: v for k, v in first.items() if k != "GREETING"}


def test_a_failed_postdeploy_leaves_the_first_release_live(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    paas.cli("apps:create", "postfail")
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "postfail")
    (repo / "app.json").write_text(json.dumps({"scripts": {"postdeploy": "exit 3"}}))
    commit(repo, "a postdeploy that fails")
    out = deployed(ssh_push(sshd, repo, "postfail"))
    assert "The postdeploy command exited with status 3; v1 is live" in out
    assert "minipaas run -a postfail -- exit 3" in out
    paas.wait_body("postfail.localhost", "hello from python-stdlib")


def test_sandbox_isolation(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    for name in ("proba", "probb"):
        paas.cli("apps:create", name)
        paas.cli("config:set", "SECRET=" + name + "-secret", "-a", name)
        deployed(ssh_push(sshd, git_repo(APPS / "probe", tmp_path / name), name))
    slug_a = next((paas.data_dir / "slugs" / "proba").iterdir())
    paas.cli("config:set", f"OTHER_SLUG={slug_a}", "-a", "probb")
    paas.wait_body("probb.localhost", "probe ok")

    def probe() -> dict[str, object] | None:
        code, body = paas.curl("probb.localhost", "/probe")
        data = json.loads(body) if code == 200 else None
        return data if data and data.get("secret") == "probb-secret" else None

    facts = wait_for(probe, timeout=30, interval=0.2)
    info = json.loads(paas.cli("apps:info", "-a", "probb", "--json").stdout)
    assert facts["uid"] == info["uid"] != 0
    assert facts["gid"] == info["uid"]
    assert facts["write_app"] is True and facts["write_tmp"] is True
    assert facts["write_usr"] is False and facts["write_etc"] is False
    assert facts["write_root"] is False
    assert facts["read_other_slug"] is False and facts["list_other_slug"] is False
    assert len(facts["pids"]) <= 4, facts["pids"]  # its own PID namespace: init, sh, python
    assert facts["home"] == "/app" and facts["cwd"] == "/app"
    # The dyno's write went to its throwaway layer, never into the immutable slug.
    slug_b = next((paas.data_dir / "slugs" / "probb").iterdir())
    assert not (slug_b / "written-by-dyno").exists()
    # The slug itself is private to app B's uid.
    assert slug_b.stat().st_uid == info["uid"] and (slug_b.stat().st_mode & 0o077) == 0
    # Logs and repositories are the server's: no app uid reads another app's.
    for private in (paas.data_dir / "logs", paas.data_dir / "repos" / "probb.git"):
        assert private.stat().st_mode & 0o007 == 0, private


def test_bad_input(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    for bad in ("../x", "A", "a_b", "a" * 31, "minipaas", "www"):
        result = paas.cli("apps:create", bad, check=False)
        assert result.returncode == 1, (bad, result)
        assert repr(bad) in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    listed = paas.cli("apps", "--json").stdout
    assert "a_b" not in listed and "../x" not in listed  # nothing was created

    # unknown app: the message names apps:create
    repo = git_repo(SAMPLES / "python-stdlib", tmp_path / "ghost")
    result = ssh_push(sshd, repo, "ghost")
    assert result.returncode != 0 and "minipaas apps:create ghost" in result.stderr, result.stderr
    # `..` in the git path
    result = push(repo, sshd.url("../etc.git"), env={"GIT_SSH_COMMAND": sshd.git_ssh_command()})
    assert result.returncode != 0 and "Invalid" in result.stderr, result.stderr
    # other branches are refused
    paas.cli("apps:create", "branchy")
    result = ssh_push(sshd, repo, "branchy", ref="main:feature")
    assert result.returncode != 0 and "main or master" in result.stderr, result.stderr
    # unknown SSH command
    ssh = [*sshd.ssh_argv(), "rm", "-rf", "/"]
    result = subprocess.run(ssh, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "Unknown command" in result.stderr, result.stderr
    # no command and no terminal: a short help, not the TUI
    result = subprocess.run(sshd.ssh_argv(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "minipaas over SSH" in result.stdout, result.stderr
    assert "ssh -t minipaas@HOST" in result.stdout
    # a plain CLI word over SSH works
    result = subprocess.run([*sshd.ssh_argv(), "apps"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "branchy" in result.stdout, result.stderr
    # config keys
    result = paas.cli("config:set", "1BAD=x", "-a", "branchy", check=False)
    assert result.returncode == 1 and "'1BAD'" in result.stderr
    # unknown CLI command is a usage error
    assert paas.cli("frobnicate", check=False).returncode == 2
    # API without / with a wrong token: 401 through Caddy
    code, body = paas.curl("minipaas.localhost", "/api/apps")
    assert code == 401 and "token" in body.lower()
    # malformed Procfile and no buildpack: the push fails and says why
    paas.cli("apps:create", "badproc")
    bad = tmp_path / "badproc"
    bad.mkdir()
    (bad / "Procfile").write_text("web python app.py\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(bad)], check=True)
    commit(bad, "bad procfile")
    result = ssh_push(sshd, bad, "badproc")
    assert result.returncode != 0 and "Procfile" in result.stderr, result.stderr
    (bad / "Procfile").unlink()
    (bad / "notes.txt").write_text("nothing to build\n")
    commit(bad, "nothing")
    result = ssh_push(sshd, bad, "badproc")
    assert result.returncode != 0 and "No buildpack detected" in result.stderr, result.stderr
    assert "looked for" in result.stderr and "requirements.txt" in result.stderr
    # keys: the same key twice, a malformed key
    pub = sshd.client_key.with_suffix(".pub").read_text()
    result = paas.cli("keys:add", "second", input=pub, check=False)
    assert result.returncode == 1 and "already added as 'tester'" in result.stderr
    result = paas.cli("keys:add", "broken", input="ssh-ed25519 not-base64!! x", check=False)
    assert result.returncode == 1 and "malformed" in result.stderr
    # a fingerprint minipaas does not know is refused by the forced command itself
    forced = subprocess.run(
        [
            str(paas.env["PATH"].split(":")[0] + "/minipaas"),
            "ssh",
            "--data-dir",
            str(paas.data_dir),
            "--key",
            "SHA256:unknown",
        ],
        env={**paas.env, "SSH_ORIGINAL_COMMAND": "apps"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert forced.returncode == 1 and "Unknown SSH key 'SHA256:unknown'" in forced.stderr


def test_removed_key_is_locked_out(env: tuple[Paas, SSHServer]) -> None:
    paas, sshd = env
    pub = sshd.client_key.with_suffix(".pub").read_text()
    paas.cli("keys:remove", "tester")
    try:
        result = subprocess.run(
            [*sshd.ssh_argv(), "apps"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 255 and "Permission denied" in result.stderr
    finally:
        paas.cli("keys:add", "tester", input=pub)
    result = subprocess.run([*sshd.ssh_argv(), "apps"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_remote_cli_with_token_and_domains(env: tuple[Paas, SSHServer], tmp_path: Path) -> None:
    paas, sshd = env
    token = paas.cli("auth:token").stdout.strip()
    remote = {k: v for k, v in paas.env.items() if k != "MINIPAAS_DATA_DIR"}
    remote["MINIPAAS_URL"] = f"http://127.0.0.1:{paas.api_port}"
    minipaas = paas.env["PATH"].split(":")[0] + "/minipaas"

    def run(*args: str, token_: str | None = token) -> subprocess.CompletedProcess[str]:
        env_ = dict(remote)
        if token_:
            env_["MINIPAAS_TOKEN"] = token_
        return subprocess.run(
            [minipaas, *args], env=env_, capture_output=True, text=True, timeout=60
        )

    assert run("apps:create", "remote").returncode == 0
    assert run("apps:create", "keeper").returncode == 0
    no_token = run("apps", token_=None)
    assert no_token.returncode == 1 and "Missing API token" in no_token.stderr
    wrong = run("apps", token_="nope")
    assert wrong.returncode == 1 and "Invalid API token" in wrong.stderr
    shown = run("auth:token")
    assert shown.returncode == 1 and "only shown on the server" in shown.stderr

    deployed(ssh_push(sshd, git_repo(SAMPLES / "python-stdlib", tmp_path / "remote"), "remote"))
    added = run("domains:add", "www.example.test", "-a", "remote")
    assert added.returncode == 0 and "Added www.example.test" in added.stdout
    paas.wait_body("www.example.test", "hello from python-stdlib")
    assert "www.example.test" in run("domains", "-a", "remote").stdout
    bad = run("domains:add", "not a host", "-a", "remote")
    assert bad.returncode == 1 and "'not a host'" in bad.stderr
    assert run("domains:remove", "www.example.test", "-a", "remote").returncode == 0
    # No route and no certificate any more: plain HTTP gets the catch-all 404.
    wait_for(lambda: paas.curl("www.example.test", https=False)[0] == 404, timeout=10)
    assert paas.curl("www.example.test")[0] != 200

    # destroy removes the app's routes, dynos, repo, slugs and logs, and nothing else
    refused = run("apps:destroy", "-a", "remote")
    assert refused.returncode == 2 and "--confirm remote" in refused.stderr
    assert run("apps:destroy", "-a", "remote", "--confirm", "remote").returncode == 0
    assert paas.curl("remote.localhost", https=False)[0] == 404
    assert paas.curl("remote.localhost")[0] != 200
    for leftover in ("repos/remote.git", "slugs/remote", "cache/remote", "logs/remote",
                     "run/dynos/remote"):
        assert not (paas.data_dir / leftover).exists(), leftover
    assert (paas.data_dir / "repos" / "keeper.git").exists()
