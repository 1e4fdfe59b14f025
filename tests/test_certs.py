"""`certs` / `certs:auto`: each hostname's TLS certificate, from a real Caddy's storage and log.

Two real servers: the shared `localhost` one (internal CA: `pending` until the first HTTPS
visit, then `issued` with issuer and expiry; over the local socket, MINIPAAS_URL, ssh and the
API with a token), and one for a public-looking domain whose ACME CA (`--acme-ca`) is a closed
local port: its hosts are `failing` with Caddy's own error. No test reaches the internet:
Caddy is never given Let's Encrypt's URL, and its log must not mention it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from minipaas.router.certs import (
    Attempt,
    Certificate,
    attempts,
    host_status,
    parse_der,
    parse_pem,
)
from tests.paas import Paas, start_paas
from tests.support import localhost_cli
from tests.support.ports import free_port, wait_for
from tests.support.sshd import SSHServer

APP = "certapp"
NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def certs(paas: Paas, app: str, *, remote: bool = False) -> dict[str, dict[str, Any]]:
    """`certs --json -a APP`, by hostname; `remote`: from a laptop, through Caddy (MINIPAAS_URL
    `https://minipaas.localhost:PORT`, a token, TLS checked against the internal CA)."""
    words = ["certs", "--json", "-a", app]
    argv, env = [str(paas.exe), *words], paas.env
    if remote:
        argv = localhost_cli.argv(*words)
        env = {**paas.remote_env(), "PYTHONPATH": localhost_cli.root()}
    out = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return {row["hostname"]: row for row in json.loads(out.stdout)}


# --- the localhost server: pending, then issued --------------------------------------------


def test_pending_then_issued_after_the_first_https_visit(env: tuple[Paas, SSHServer]) -> None:
    paas, sshd = env
    paas.cli("apps:create", APP)
    host = f"{APP}.localhost"

    rows = certs(paas, APP)
    assert list(rows) == [host]
    assert rows[host]["status"] == "pending"
    assert rows[host]["ca"] == "internal"
    assert "first HTTPS visit" in rows[host]["note"]
    assert rows[host]["expires"] is None
    shown = paas.cli("certs:auto", "-a", APP).stdout
    assert f"{host}: pending: The internal CA issues it at the first HTTPS visit." in shown

    # The first handshake has the internal CA issue it (the app has no dynos: 503 is fine).
    status, _ = paas.curl(host)
    assert status == 503
    rows = wait_for(
        lambda: (r := certs(paas, APP))[host]["status"] == "issued" and r,
        timeout=30, interval=0.2, message=f"{host} issued",
    )  # fmt: skip
    row = rows[host]
    assert row["issuer"] == "minipaas internal CA"
    assert row["error"] is None
    # The expiry is the certificate's own notAfter, as openssl reads it.
    stored = paas.data_dir / "caddy/data/caddy/certificates/local" / host / f"{host}.crt"
    end = subprocess.run(
        ["openssl", "x509", "-in", str(stored), "-noout", "-enddate"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().removeprefix("notAfter=")  # fmt: skip
    expected = datetime.strptime(end, "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)
    assert datetime.fromisoformat(row["expires"]) == expected
    assert expected > datetime.now(UTC)

    table = paas.cli("certs", "-a", APP).stdout.splitlines()
    assert table[0] == f"=== {APP} Automated Certificate Management"
    assert table[1].split() == ["Domain", "Status", "Issuer", "Expires"]
    assert table[3].split() == [
        host, "issued", "minipaas", "internal", "CA", f"{expected:%Y-%m-%d}",
    ]  # fmt: skip

    # The same answer over MINIPAAS_URL (through Caddy, with a token) and over ssh.
    assert certs(paas, APP, remote=True) == rows
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "certs", "--json", "-a", APP],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert over_ssh.returncode == 0, over_ssh.stderr
    assert {r["hostname"]: r for r in json.loads(over_ssh.stdout)} == rows


def test_an_unknown_app_is_one_sentence_and_a_404(env: tuple[Paas, SSHServer]) -> None:
    paas, _ = env
    said = paas.fails("certs", "-a", "nosuchapp")
    assert len(said.splitlines()) == 1
    assert "nosuchapp" in said
    token = paas.cli("auth:token").stdout.strip()
    answer = httpx.get(
        f"http://127.0.0.1:{paas.api_port}/api/apps/nosuchapp/certs",
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 404
    assert "nosuchapp" in answer.json()["error"]


# --- a public domain against a closed ACME CA: failing ---------------------------------------


@pytest.fixture(scope="module")
def acme_paas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Paas, int]]:
    """A server for `apps.example.com` whose ACME CA is a local port nothing listens on."""
    work = tmp_path_factory.mktemp("acme")
    closed = free_port()
    paas = start_paas(
        work / "authorized_keys",
        work / "server.log",
        server_args=[
            "--domain", "apps.example.com", "--acme-ca", f"https://127.0.0.1:{closed}/dir",
        ],
    )  # fmt: skip
    try:
        yield paas, closed
    finally:
        paas.stop()
        shutil.rmtree(paas.data_dir.parent, ignore_errors=True)
    paas.assert_no_crashes()


def test_acme_hosts_fail_with_caddys_error(acme_paas: tuple[Paas, int]) -> None:
    paas, closed = acme_paas
    paas.cli("apps:create", "shop")
    paas.cli("domains:add", "-a", "shop", "www.shop-example.org")
    paas.cli("domains:add", "-a", "shop", "intranet.test")  # a private name: the internal CA
    hosts = ["shop.apps.example.com", "www.shop-example.org"]

    def failing() -> dict[str, dict[str, Any]] | None:
        rows = certs(paas, "shop")
        return rows if all(rows[h]["status"] == "failing" for h in hosts) else None

    rows = wait_for(failing, timeout=60, interval=0.3, message="both ACME hosts failing")
    assert list(rows) == ["shop.apps.example.com", "intranet.test", "www.shop-example.org"]
    for host in hosts:
        assert rows[host]["ca"] == "acme"
        assert f"127.0.0.1:{closed}" in rows[host]["error"]
        assert "connection refused" in rows[host]["error"]
        assert "\n" not in rows[host]["error"]
    private = wait_for(lambda: (r := certs(paas, "shop"))["intranet.test"]["status"] == "issued"
                       and r["intranet.test"], timeout=30, interval=0.2)
    assert private["issuer"] == "minipaas internal CA"

    shown = paas.cli("certs", "-a", "shop").stdout
    assert any(line.split()[:2] == ["www.shop-example.org", "failing"]
               for line in shown.splitlines())
    assert "www.shop-example.org: failing since 20" in shown
    # Caddy asked the CA it was given, and never Let's Encrypt (no test reaches the internet).
    log = (paas.data_dir / "caddy" / "caddy.log").read_text()
    assert f"https://127.0.0.1:{closed}/dir" in log
    assert "letsencrypt" not in log.lower()


# --- pure: Caddy's log lines and the status rules ------------------------------------------

# Real lines from Caddy 2.11's log (a failed ACME attempt, then a shutdown mid-retry).
LOG = [
    '{"level":"info","ts":1796542411.14,"logger":"tls.obtain","msg":"obtaining certificate",'
    '"identifier":"shop.example.com"}',
    '{"level":"error","ts":1796542411.65,"logger":"tls.obtain","msg":"could not get certificate'
    ' from issuer","identifier":"shop.example.com","issuer":"127.0.0.1:1-dir","error":"registerin'
    'g account [] with server: dial tcp 127.0.0.1:1: connect: connection refused"}',
    '{"level":"error","ts":1796542411.66,"logger":"tls.obtain","msg":"will retry","error":'
    '"[shop.example.com] Obtain: ...","attempt":1,"retrying_in":60}',
    '{"level":"error","ts":1796542415.11,"logger":"tls.obtain","msg":"unable to unlock",'
    '"identifier":"shop.example.com","error":"remove x.lock: no such file or directory"}',
    '{"level":"info","ts":1796542411.17,"logger":"tls.obtain","msg":"certificate obtained '
    'successfully","identifier":"A.localhost","issuer":"local"}',
    # A config reload interrupted an attempt: not the CA's answer, so not a failure.
    '{"level":"error","ts":1796542412.0,"logger":"tls.obtain","msg":"could not get certificate'
    ' from issuer","identifier":"shop.example.com","issuer":"127.0.0.1:1-dir","error":"locking'
    ' account registration: context canceled"}',
    "not json at all",
    '{"level":"error","logger":"tls.obtain","msg":"broken","identifier":"x.example.com"}',
]


def test_attempts_keep_the_last_word_per_host() -> None:
    last = attempts(LOG)
    assert set(last) == {"shop.example.com", "a.localhost"}
    assert last["a.localhost"].ok
    failed = last["shop.example.com"]
    assert not failed.ok
    assert failed.error is not None and failed.error.startswith("registering account")
    assert failed.at == datetime.fromtimestamp(1796542411.65, tz=UTC)


def test_status_rules() -> None:
    valid = ("local", Certificate("Caddy Local Authority", datetime(2027, 1, 1, tzinfo=UTC)))
    acme = ("acme-v02", Certificate("Let's Encrypt", datetime(2027, 1, 1, tzinfo=UTC)))
    expired = ("acme-v02", Certificate("Let's Encrypt", datetime(2026, 1, 1, tzinfo=UTC)))
    fail = Attempt(ok=False, at=NOW, error="boom")
    assert host_status("a", "internal", valid, None, NOW).issuer == "minipaas internal CA"
    issued = host_status("a", "acme", acme, fail, NOW)  # a failed renewal: still issued
    assert (issued.status, issued.issuer) == ("issued", "Let's Encrypt")
    assert host_status("a", "acme", expired, fail, NOW).status == "failing"
    stale = host_status("a", "acme", expired, None, NOW)
    assert stale.status == "pending"
    assert stale.note is not None and stale.note.startswith("The certificate expired on 2026-01-01")
    assert host_status("a", "acme", None, Attempt(ok=True, at=NOW), NOW).status == "pending"


def test_bad_certificates_are_value_errors() -> None:
    for junk in (b"", b"\x30", b"\x30\x85\x00\x00\x00\x00\x01", b"\x02\x01\x00", b"\x30\x00"):
        with pytest.raises(ValueError):
            parse_der(junk)
    with pytest.raises(ValueError):
        parse_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError):
        parse_pem(Path(__file__).read_bytes())
