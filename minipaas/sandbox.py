"""How any app command runs: bubblewrap with the slug at `/app`, the app's uid, a private `/tmp`.

This module knows nothing about apps, releases or dynos. It turns a `SandboxJob` ("run this argv
with this directory at /app as this uid") into the argv that does it, as a pure function, and
offers the environment every sandboxed command starts from. The caller spawns the argv with the
environment it wants (secrets travel in the environment, never in argv, which other users of the
host can read in /proc).

Layout inside the sandbox: an empty tmpfs root, read-only binds of the system dirs, `/app`, a
private `/tmp`, `/var/tmp` and `/dev/shm`, its own `/proc` (own PID namespace) and a minimal,
read-only `/dev`. Builds get `/app` bound read-write; dynos get a throwaway overlay over the
immutable slug (bubblewrap 0.8 on Debian 12 has no `--overlay`, so `sandbox_init.sh` mounts it in a
private mount namespace first).

Nothing a sandboxed command writes may grow without bound in RAM: tmpfs pages belong to no
process, so the kernel's OOM killer cannot free them by killing the writer. A dyno's layer, `/tmp`,
`/var/tmp` and `/dev/shm` are directories of one tmpfs of `scratch_bytes` (writes beyond it fail
with ENOSPC, "No space left on device"); a build's are directories on disk (`tmp_dir`), as big
downloads and wheel builds need room.

As root, the command runs as the job's uid: the init script drops privileges with `setpriv`
before bubblewrap starts, so bubblewrap itself runs unprivileged inside a user namespace and the
app never holds root, not even a namespaced one beyond what bubblewrap grants itself.
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: System directories bound read-only into every sandbox (when they exist on the host).
SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/var/lib/dpkg")
#: Merged-/usr style links recreated in the sandbox root.
USR_LINKS = (
    ("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"),
)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Processes and threads one app uid may have at once (its dynos, one-off dynos and builds
#: together; RLIMIT_NPROC): a fork bomb stops there instead of taking every pid of the host
#: (32,768 by default), which would leave minipaas, Caddy and sshd unable to fork.
MAX_PROCESSES = 1024
#: Every sandboxed command is the kernel's first choice when memory runs out: an app that
#: leaks loses a dyno (which its supervisor starts again), not Caddy or minipaas, which run
#: at `minipaas.server.OOM_SCORE_ADJ` (-500) as root.
OOM_SCORE_ADJ = 500
INIT_SCRIPT = Path(__file__).with_name("sandbox_init.sh")
#: The writable places of a sandbox besides /app: (directory under the scratch space, target).
TMP_DIRS = (("tmp", "/tmp"), ("vartmp", "/var/tmp"), ("shm", "/dev/shm"))  # noqa: S108
MIB = 1024 * 1024
#: Bounds of a dyno's scratch space (its writable layer, /tmp, /var/tmp and /dev/shm together):
#: an eighth of the host's memory, at least 64 MiB, at most 1 GiB.
MIN_SCRATCH_BYTES = 64 * MIB
MAX_SCRATCH_BYTES = 1024 * MIB


def scratch_bytes_for(memory_bytes: int) -> int:
    """A dyno's scratch space on a host with `memory_bytes` of RAM."""
    return min(MAX_SCRATCH_BYTES, max(MIN_SCRATCH_BYTES, memory_bytes // 8 // MIB * MIB))


def default_scratch_bytes() -> int:
    """`scratch_bytes_for` this host's memory."""
    return scratch_bytes_for(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))

#: ioctl(2) requests a dyno must not make on its terminal. With TIOCSTI it typed into the
#: terminal of the user who ran `minipaas run` (an attached run's controlling terminal is
#: theirs), and their shell ran that once the run ended; TIOCLINUX can do the same on a VT.
BLOCKED_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX
#: ioctl's syscall numbers per audit arch, for each machine the seccomp filter knows (foreign
#: ABIs included: an x86_64 process may also call the i386 and x32 entry points).
IOCTL_SYSCALLS: dict[str, dict[int, tuple[int, ...]]] = {
    "x86_64": {0xC000003E: (16, 0x40000000 | 16, 0x40000000 | 514), 0x40000003: (54,)},
    "aarch64": {0xC00000B7: (29,), 0x40000028: (54,)},
}
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
_SECCOMP_ARCH, _SECCOMP_NR, _SECCOMP_ARG1_LOW = 4, 0, 24  # offsets in struct seccomp_data


@dataclass(frozen=True)
class Bind:
    """An extra host path visible inside the sandbox."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxJob:
    """Run `command` with `app_dir` at /app.

    `layer=True` (dynos) mounts a throwaway writable layer over `app_dir`, which then stays
    untouched; it needs `scratch`, an empty directory used as the mount point of a tmpfs of
    `scratch_bytes` (None: `default_scratch_bytes()`) that holds the layer and the temporary
    dirs. `layer=False` (builds) binds `app_dir` read-write and the temporary dirs from `tmp_dir`
    (see `make_tmp_dirs`).
    """

    app_dir: Path
    command: Sequence[str]
    uid: int | None = None
    layer: bool = True
    scratch: Path | None = None
    scratch_bytes: int | None = None
    tmp_dir: Path | None = None
    binds: Sequence[Bind] = field(default_factory=tuple)
    share_net: bool = True
    cwd: str = "/app"
    #: With `uid`: the RLIMIT_NPROC the command starts with (None: the caller's).
    max_processes: int | None = MAX_PROCESSES
    #: Killed with everything it started when its parent dies (bwrap's `--die-with-parent`):
    #: builds and one-off dynos, which nothing takes back after a crash of the server (a
    #: kill -9 left a silent build or release command running for good). Never for dynos,
    #: which outlive restarts of the server by design.
    die_with_parent: bool = False


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every sandboxed command starts from, plus `extra`."""
    # /tmp here is the sandbox's own private tmpfs, not the host's.
    env = {"PATH": DEFAULT_PATH, "HOME": "/app", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}  # noqa: S108
    if extra:
        env.update(extra)
    return env


def dyno_command(command: str, *, job_control: bool = False) -> list[str]:
    """argv that sources `/app/.profile.d/*.sh` and then runs a Procfile `command` with /bin/sh.

    The command is passed as a positional argument, never pasted into the script text. With
    `job_control` (a terminal's run, inside `on_terminal`) the shell runs each of the command's
    pipelines as a job, which gets the terminal: Ctrl-C then reaches the command alone, not
    this shell too (dash would end with it once the command is done, whatever the command did
    with it: a Python REPL's `exit(3)` after a Ctrl-C gave 130).
    """
    script = (
        'for f in /app/.profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; '
        'eval "$1"'
    )
    if job_control:
        script = f"set -m; {script}"
    return ["/bin/sh", "-c", script, "dyno", command]


def on_terminal(command: Sequence[str]) -> list[str]:
    """argv that gives the terminal on stdin to `command`'s own process group, then runs it.

    An attached run's session is made outside the sandbox (`setsid --ctty` must run as root
    to take over the caller's terminal), so the terminal's foreground process group is the
    sandbox's outer processes', which the dyno cannot see (own PID namespace). Ctrl-C then
    also hit bubblewrap itself, which died and took the whole run with it (a Python REPL got no
    KeyboardInterrupt: the session ended), and an interactive `sh` could not give the terminal
    back on `exit` ("Cannot set tty process group", status 2).

    Here an inner shell with job control (`set -m`) runs `command` as a job: a process group
    of its own, seen from inside, and the terminal's foreground group while it runs. That
    shell's own attempt to give the terminal back as it exits fails the same way, which would
    make its status 2: so it says nothing (stderr to /dev/null by then) and hands the command's
    status to the outer shell over fd 3 (a command substitution's pipe). Fds 3 and 4 are closed
    for `command`. A job that died of Ctrl-C makes such a shell send itself SIGINT (it was not
    in the foreground to get it): its no-op trap lets it report the status (130) all the same.
    """
    inner = 'trap : INT QUIT; set -m; "$@" 3>&- 4>&-; echo "$?" >&3; exec 2>/dev/null'
    script = (
        "exec 4>&1; "
        f"status=$(/bin/sh -c '{inner}' dyno-terminal \"$@\" 3>&1 1>&4); "
        'exec 4>&-; exit "${status:-1}"'
    )
    return ["/bin/sh", "-c", script, "dyno-terminal", *command]


def make_tmp_dirs(tmp_dir: Path, uid: int | None) -> None:
    """Create `tmp_dir` (private to `uid`) and the temporary dirs a job with that `tmp_dir`
    binds (sticky and world-writable inside, like /tmp; only `uid` runs in there)."""
    tmp_dir.mkdir(mode=0o700)
    for name, _target in TMP_DIRS:
        (tmp_dir / name).mkdir()
        (tmp_dir / name).chmod(0o1777)
    if uid is not None:
        for path in (tmp_dir, *(tmp_dir / name for name, _target in TMP_DIRS)):
            os.chown(path, uid, uid)


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The classic-BPF seccomp program (for bubblewrap's `--seccomp`) that fails the ioctls of
    `BLOCKED_IOCTLS` with EPERM and allows everything else; None on a machine it does not know.

    Only the low 32 bits of the request are compared: the kernel ignores the upper ones, and a
    filter that read all 64 could be passed with 0x1_00005412 (CVE-2019-10063 in Flatpak).
    """
    table = IOCTL_SYSCALLS.get(machine or platform.machine())
    if table is None:
        return None
    per_arch = list(table.items())
    # Layout: load arch; one jump per arch; allow; per arch: load nr, one jump per nr, allow;
    # then the check: load the request, one jump per blocked one, allow, deny.
    starts = []
    at = 1 + len(per_arch) + 1
    for _arch, nrs in per_arch:
        starts.append(at)
        at += 1 + len(nrs) + 1
    check = at
    deny = check + 1 + len(BLOCKED_IOCTLS) + 1
    prog: list[tuple[int, int, int, int]] = [(_BPF_LD_W_ABS, 0, 0, _SECCOMP_ARCH)]
    for index, (arch, _nrs) in enumerate(per_arch):
        prog.append((_BPF_JEQ_K, starts[index] - len(prog) - 1, 0, arch))
    prog.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    for _arch, nrs in per_arch:
        prog.append((_BPF_LD_W_ABS, 0, 0, _SECCOMP_NR))
        for nr in nrs:
            prog.append((_BPF_JEQ_K, check - len(prog) - 1, 0, nr))
        prog.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    prog.append((_BPF_LD_W_ABS, 0, 0, _SECCOMP_ARG1_LOW))  # little-endian: the low half first
    for request in BLOCKED_IOCTLS:
        prog.append((_BPF_JEQ_K, deny - len(prog) - 1, 0, request))
    prog.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    prog.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO_EPERM))
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)


@functools.cache
def bwrap_can_disable_userns() -> bool:
    """Does this bubblewrap have `--disable-userns` (0.8 and later; Ubuntu 22.04 has 0.6)?
    Asked once per process."""
    try:
        out = subprocess.run(
            ["bwrap", "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--disable-userns" in out.stdout + out.stderr


def sandbox_argv(
    job: SandboxJob, *, as_root: bool | None = None, disable_userns: bool | None = None
) -> list[str]:
    """The full argv that runs `job` (pure apart from checking which system dirs exist and,
    unless `disable_userns` says, whether bubblewrap can forbid nested user namespaces)."""
    if as_root is None:
        as_root = os.geteuid() == 0
    if disable_userns is None:
        disable_userns = bwrap_can_disable_userns()
    if job.uid is not None and not as_root:
        raise ValueError("running as another uid needs root")
    if job.layer and job.scratch is None:
        raise ValueError("a layered sandbox needs a scratch directory")
    if not job.layer and job.tmp_dir is None:
        raise ValueError("a sandbox without a layer needs a tmp_dir (see make_tmp_dirs)")

    bwrap = [
        host_tool("bwrap"), "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"
    ]
    if disable_userns:
        # No user namespaces inside: the app gets no "root" of its own to reach the kernel's
        # namespace-only code paths with (the usual start of a local privilege escalation).
        bwrap.insert(2, "--disable-userns")
    if not job.share_net:
        bwrap.append("--unshare-net")
    if job.die_with_parent:
        bwrap.append("--die-with-parent")
    bwrap += ["--hostname", "dyno", "--tmpfs", "/"]
    for path in SYSTEM_DIRS:
        if os.path.isdir(path):
            bwrap += ["--ro-bind", path, path]
    for target, link in USR_LINKS:
        bwrap += ["--symlink", target, link]
    bwrap += ["--proc", "/proc", "--dev", "/dev"]
    tmp_source = job.scratch if job.layer else job.tmp_dir  # the init script fills scratch
    assert tmp_source is not None
    for name, target in TMP_DIRS:
        bwrap += ["--bind", str(tmp_source / name), target]
    app_source = Path(job.scratch, "app") if job.layer and job.scratch else job.app_dir
    bwrap += ["--bind", str(app_source), "/app"]
    for bind in job.binds:
        bwrap += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    if job.uid is not None:
        bwrap += ["--uid", str(job.uid), "--gid", str(job.uid)]
    # Layered jobs (dynos, one-off runs: an attached one has the user's terminal) get the
    # seccomp filter, which sandbox_init.sh writes out and opens as fd 3 for bubblewrap.
    seccomp = seccomp_filter() if job.layer else None
    if seccomp is not None:
        bwrap += ["--seccomp", "3"]
    # Only /app and the temporary dirs are writable: /dev (a tmpfs of its own, or files could be
    # written there without a bound) and the assembled root itself go read-only last.
    bwrap += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", job.cwd, "--", *job.command]

    # Root is exempt from RLIMIT_NPROC: the limit bites once the uid is the app's.
    # Each tool by its absolute path: they run as root with the job's environment, whose PATH
    # an app's config may set (`host_tool`).
    limit = [host_tool("choom"), "-n", str(OOM_SCORE_ADJ), "--"]
    if job.uid is not None and job.max_processes is not None:
        limit += [host_tool("prlimit"), f"--nproc={job.max_processes}:{job.max_processes}", "--"]
    if not job.layer:
        if job.uid is None:
            return [*limit, *bwrap]
        return [
            *limit, host_tool("setpriv"), f"--reuid={job.uid}", f"--regid={job.uid}",
            "--clear-groups", "--inh-caps=-all", "--", *bwrap,
        ]
    assert job.scratch is not None
    size = job.scratch_bytes if job.scratch_bytes is not None else default_scratch_bytes()
    unshare = [host_tool("unshare"), "--mount", "--propagation", "private"]
    if not as_root:
        # An unprivileged user gets the mount rights for the overlay from a user namespace.
        unshare = [
            host_tool("unshare"), "--user", "--map-root-user", "--mount", "--propagation", "private"
        ]
    uid_arg = "-" if job.uid is None else str(job.uid)
    # As a printf format of octal escapes only (argv cannot carry NUL bytes).
    filter_arg = "-" if seccomp is None else "".join(f"\\{byte:03o}" for byte in seccomp)
    return [
        *limit, *unshare, "--", "/bin/sh", str(INIT_SCRIPT), str(job.app_dir), str(job.scratch),
        uid_arg, str(size), filter_arg, "--", *bwrap,
    ]


#: Installs a seccomp program (hex, argv[1]) with no_new_privs, then execs argv[2:]. Run with
#: the server's own interpreter on the host side, before anything enters a sandbox's namespaces:
#: a filter is kept across fork, exec and setns, so everything `exec_argv` starts carries it.
_SECCOMP_EXEC = (
    "import ctypes, os, sys\n"
    "prog = bytes.fromhex(sys.argv[1])\n"
    "class Fprog(ctypes.Structure):\n"
    "    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_char_p)]\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "fprog = Fprog(len(prog) // 8, prog)\n"
    "if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0):\n"
    "    sys.exit(f'cannot install the seccomp filter: {os.strerror(ctypes.get_errno())}')\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def host_tool(name: str) -> str:
    """The absolute path of a system tool (`DEFAULT_PATH`), for a command that runs as root with
    an app's environment: each tool of a chain finds the next on $PATH, and the app's config
    may set PATH (to a directory of its own slug, say)."""
    return shutil.which(name, path=DEFAULT_PATH) or name


def seccomp_python() -> str:
    """The interpreter for `exec_argv`'s seccomp step: this one, or, in the one-file binary
    (whose executable takes no `-c`), the system's python3, which install.sh installs."""
    if getattr(sys, "frozen", False):
        return host_tool("python3")
    return sys.executable


def inner_pid(outer_pid: int) -> int | None:
    """The first process inside the sandbox that `sandbox_argv` started as `outer_pid`: the
    child bubblewrap forked into the new PID namespace (its init, pid 1 in there), or None when
    there is none (not started yet, or gone).

    The outer process (bwrap, after the exec chain of choom, prlimit, unshare, the init script
    and setpriv) stays in the host's PID namespace and in the init script's mount namespace,
    not in the dyno's: only its child holds the namespaces the dyno's command sees.
    """
    try:
        children = Path(f"/proc/{outer_pid}/task/{outer_pid}/children").read_text().split()
        ours = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    for child in children:
        try:
            if os.readlink(f"/proc/{child}/ns/pid") != ours:
                return int(child)
        except OSError:
            continue
    return None


def exec_argv(
    target: int,
    uid: int,
    command: Sequence[str],
    *,
    max_processes: int | None = MAX_PROCESSES,
    python: str | None = None,
) -> list[str]:
    """argv that runs `command` inside a running sandbox (`minipaas ps:exec`): in the mount,
    PID, IPC, UTS and network namespaces of `target` (see `inner_pid`), with its root, as `uid`
    with no groups, no capabilities (bounding set empty too) and no_new_privs, in /app, under
    the same seccomp filter, OOM score and process limit as the sandbox's own commands.

    Run as root (entering another user's namespaces needs it). The sandbox's user namespace is
    not entered: the command keeps the host's view of `uid` (the same number bubblewrap maps it
    to), and nothing of the namespace's "root" can be reached. `nsenter` forks so that the
    command is a process of the sandbox's PID namespace: it ends (SIGKILL from the kernel) when
    the sandbox's init does. `python` is the interpreter that installs the seccomp filter
    (default: `seccomp_python()`).
    """
    argv = [host_tool("choom"), "-n", str(OOM_SCORE_ADJ), "--"]
    if max_processes is not None:
        argv += [host_tool("prlimit"), f"--nproc={max_processes}:{max_processes}", "--"]
    seccomp = seccomp_filter()
    if seccomp is not None:
        argv += [python or seccomp_python(), "-I", "-S", "-c", _SECCOMP_EXEC, seccomp.hex()]
    argv += [
        host_tool("nsenter"), f"--target={target}", "--mount", "--pid", "--ipc", "--uts", "--net",
        "--root", "--wd", "--",
        host_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs", "--",
        # nsenter's --wd is the target's working directory: /app for a dyno, which bubblewrap
        # starts there (`--chdir`); said again here, for a command that changed its own.
        "/bin/sh", "-c", 'cd /app && exec "$@"', "dyno-exec", *command,
    ]
    return argv
