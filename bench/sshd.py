"""The private OpenSSH server for the TUI benchmarks: a thin layer over tests/support/sshd.py.

Owns: nothing of its own but this binding. The bench runs the tests' helper unchanged (the
bench is always run from the repo root as `python -m bench`, so `tests.support` imports): one
`sshd` on a free 127.0.0.1 port inside a private mount namespace, with its own host key and
client key, from Debian's openssh-server binaries in the tests' cache (fetched with
`apt-get download` + `dpkg-deb -x` on first use, never installed). bench/tui.py points its
AuthorizedKeysFile at the one the bench server's `keys:add` maintains, so the forced command is
the real `minipaas ssh`, connects with `SSHServer.ssh_argv()`, and stops it (by pid) with
`SSHServer.stop()`. Must not touch: the system's ssh configuration, /etc, port 22, or any
process it did not start.
"""

from __future__ import annotations

from tests.support.sshd import SSHServer, start_sshd

__all__ = ["SSHServer", "start_sshd"]
