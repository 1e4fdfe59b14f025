"""SSH public keys: parsing, fingerprints and the authorized_keys file of the minipaas user.

Parsing and rendering are pure; `write_authorized_keys` replaces the file atomically (write a
temporary file beside it, fsync, rename) so sshd never reads a half-written file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from minipaas.errors import UserError

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: str  # base64 as in the .pub file
    comment: str

    @property
    def fingerprint(self) -> str:
        """OpenSSH's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        return f"{self.type} {self.blob}"


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line, or raise `UserError` saying what is wrong."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        raise UserError(
            "Expected exactly one public key line such as 'ssh-ed25519 AAAA… you@host'."
        )
    parts = lines[0].split(None, 2)
    shown = lines[0][:40]
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise UserError(
            f"Not an OpenSSH public key: {shown!r}; expected a line starting with one of "
            f"{', '.join(sorted(KEY_TYPES))}."
        )
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError) as exc:
        raise UserError(f"The public key {shown!r} has a malformed base64 body.") from exc
    if embedded != key_type:
        raise UserError(f"The public key {shown!r} says {key_type} but contains {embedded!r}.")
    comment = parts[2] if len(parts) > 2 else ""
    return PublicKey(type=key_type, blob=blob, comment=comment)


def forced_command(minipaas_bin: str, data_dir: Path, fingerprint: str) -> str:
    """The command sshd runs for a key: the minipaas SSH entry point, bound to that key."""
    for value in (minipaas_bin, str(data_dir)):
        if any(c in value for c in '"\\\n '):
            raise UserError(f"The path {value!r} cannot be used in authorized_keys.")
    return f"{minipaas_bin} ssh --data-dir {data_dir} --key {fingerprint}"


def render_authorized_keys(
    keys: Iterable[tuple[str, str, str]], minipaas_bin: str, data_dir: Path
) -> str:
    """authorized_keys text for (name, fingerprint, public key line) triples (pure)."""
    out = ["# Managed by minipaas (`minipaas keys:add`); edits here are overwritten."]
    for name, fingerprint, line in keys:
        command = forced_command(minipaas_bin, data_dir, fingerprint)
        out.append(f'command="{command}",restrict,pty {line} minipaas:{name}')
    return "\n".join(out) + "\n"


def write_authorized_keys(path: Path, text: str) -> None:
    """Replace `path` atomically with `text` (mode 0600, same owner as its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".authorized_keys.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        st = path.parent.stat()
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
