"""The sandbox's seccomp program, run by a small classic-BPF interpreter over the system calls
it must refuse or allow on each machine it knows (the foreign ABIs cannot be run here for real;
tests/test_security.py shows the native one refusing TIOCSTI in a real attached run)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from minipaas.sandbox import SandboxJob, sandbox_argv, seccomp_filter

ALLOW = 0x7FFF0000
EPERM = 0x00050001
TIOCSTI, TIOCLINUX, TCGETS = 0x5412, 0x541C, 0x5401
X86_64, I386, AARCH64, ARM = 0xC000003E, 0x40000003, 0xC00000B7, 0x40000028


def run(program: bytes, arch: int, nr: int, arg1: int) -> int:
    """What the filter returns for syscall `nr` of `arch` whose second argument is `arg1`."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, 0, arg1, 0, 0, 0, 0)
    code = [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:  # ld w [k]
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op == 0x15:  # jeq #k
            pc += 1 + (jt if acc == k else jf)
        elif op == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected instruction {op:#x}")


@pytest.mark.parametrize(
    ("machine", "arch", "nr", "arg1", "expected"),
    [
        ("x86_64", X86_64, 16, TIOCSTI, EPERM),
        ("x86_64", X86_64, 16, TIOCLINUX, EPERM),
        ("x86_64", X86_64, 16, (1 << 32) | TIOCSTI, EPERM),  # the kernel ignores the high half
        ("x86_64", X86_64, 16, TCGETS, ALLOW),
        ("x86_64", X86_64, 1, TIOCSTI, ALLOW),  # write(2) with that number as its buffer
        ("x86_64", X86_64, 0x40000000 | 514, TIOCSTI, EPERM),  # x32
        ("x86_64", X86_64, 0x40000000 | 16, TIOCSTI, EPERM),
        ("x86_64", I386, 54, TIOCSTI, EPERM),
        ("x86_64", I386, 54, TCGETS, ALLOW),
        ("x86_64", AARCH64, 29, TIOCSTI, ALLOW),  # not this machine's
        ("aarch64", AARCH64, 29, TIOCSTI, EPERM),
        ("aarch64", AARCH64, 29, TCGETS, ALLOW),
        ("aarch64", ARM, 54, TIOCLINUX, EPERM),
        ("aarch64", AARCH64, 64, TIOCSTI, ALLOW),
    ],
)
def test_seccomp_filter(machine: str, arch: int, nr: int, arg1: int, expected: int) -> None:
    program = seccomp_filter(machine)
    assert program is not None
    assert run(program, arch, nr, arg1) == expected


def test_no_filter_for_an_unknown_machine() -> None:
    assert seccomp_filter("riscv64") is None


def test_nested_user_namespaces_are_forbidden_where_bubblewrap_can() -> None:
    """bubblewrap 0.6 (Ubuntu 22.04) has no --disable-userns: every dyno would fail with it."""
    job = SandboxJob(Path("/srv/slug"), ["true"], layer=False, tmp_dir=Path("/srv/tmp"))
    assert "--disable-userns" in sandbox_argv(job, as_root=False, disable_userns=True)
    assert "--disable-userns" not in sandbox_argv(job, as_root=False, disable_userns=False)
