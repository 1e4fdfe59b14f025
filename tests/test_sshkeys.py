"""SSH public keys: parsing, fingerprints and the authorized_keys file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from minipaas import sshkeys
from minipaas.errors import UserError


@pytest.fixture
def pubkey(tmp_path: Path) -> str:
    key = tmp_path / "k"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "me@x"], check=True
    )
    return (tmp_path / "k.pub").read_text()


def test_fingerprint_matches_ssh_keygen(pubkey: str, tmp_path: Path) -> None:
    key = sshkeys.parse_public_key(pubkey)
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert key.fingerprint == out.split()[1]
    assert key.comment == "me@x"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hello",
        "ssh-ed25519",
        "ssh-ed25519 not-base64!!",
        "ssh-dss AAAAB3NzaC1kc3M=",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOtY",  # body says ed25519
    ],
)
def test_malformed_keys(bad: str) -> None:
    with pytest.raises(UserError):
        sshkeys.parse_public_key(bad)


def test_two_keys_at_once_refused(pubkey: str) -> None:
    with pytest.raises(UserError, match="exactly one"):
        sshkeys.parse_public_key(pubkey + pubkey)


def test_render_and_atomic_write(pubkey: str, tmp_path: Path) -> None:
    key = sshkeys.parse_public_key(pubkey)
    text = sshkeys.render_authorized_keys(
        [("alice", key.fingerprint, key.line)], "/usr/local/bin/minipaas", Path("/var/lib/minipaas")
    )
    line = text.splitlines()[1]
    assert line.startswith(
        'command="/usr/local/bin/minipaas ssh --data-dir /var/lib/minipaas '
        f'--key {key.fingerprint}"'
        ",restrict,pty ssh-ed25519 "
    )
    target = tmp_path / "ssh" / "authorized_keys"
    sshkeys.write_authorized_keys(target, text)
    assert target.read_text() == text
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["authorized_keys"]


def test_paths_with_quotes_refused() -> None:
    with pytest.raises(UserError):
        sshkeys.forced_command('/bin/x"; rm -rf /', Path("/d"), "SHA256:x")
