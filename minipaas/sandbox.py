"""How any app command runs: bubblewrap with the slug at `/app`, the app's uid, a private `/tmp`.

This module knows nothing about apps, releases or dynos. It turns a `SandboxJob` ("run this argv
with this directory at /app as this uid") into the argv that does it, as a pure function, and
offers the environment every sandboxed command starts from. The caller spawns the argv with the
environment it wants (secrets travel in the environment, never in argv, which other users of the
host can read in /proc).

Layout inside the sandbox: an empty tmpfs root, read-only binds of the system dirs, `/app`, a
private `/tmp`, its own `/proc` (own PID namespace) and a minimal `/dev`. Builds get `/app` bound
read-write; dynos get a throwaway overlay over the immutable slug (bubblewrap 0.8 on Debian 12 has
no `--overlay`, so `sandbox_init.sh` mounts it in a private mount namespace first).

As root, the command runs as the job's uid: the init script drops privileges with `setpriv`
before bubblewrap starts, so bubblewrap itself runs unprivileged inside a user namespace and the
app never holds root, not even a namespaced one beyond what bubblewrap grants itself.
"""

from __future__ import annotations

import os
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
    untouched; it needs `scratch`, an empty directory used as the layer's mount point.
    `layer=False` (builds) binds `app_dir` read-write.
    """

    app_dir: Path
    command: Sequence[str]
    uid: int | None = None
    layer: bool = True
    scratch: Path | None = None
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


def dyno_command(command: str) -> list[str]:
    """argv that sources `/app/.profile.d/*.sh` and then runs a Procfile `command` with /bin/sh.

    The command is passed as a positional argument, never pasted into the script text.
    """
    script = (
        'for f in /app/.profile.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; unset f; '
        'eval "$1"'
    )
    return ["/bin/sh", "-c", script, "dyno", command]


def sandbox_argv(job: SandboxJob, *, as_root: bool | None = None) -> list[str]:
    """The full argv that runs `job` (pure apart from checking which system dirs exist)."""
    if as_root is None:
        as_root = os.geteuid() == 0
    if job.uid is not None and not as_root:
        raise ValueError("running as another uid needs root")
    if job.layer and job.scratch is None:
        raise ValueError("a layered sandbox needs a scratch directory")

    bwrap = ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
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
    private_tmp = ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]  # noqa: S108 - fresh, per sandbox
    bwrap += ["--proc", "/proc", "--dev", "/dev", *private_tmp]
    app_source = Path(job.scratch, "app") if job.layer and job.scratch else job.app_dir
    bwrap += ["--bind", str(app_source), "/app"]
    for bind in job.binds:
        bwrap += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    if job.uid is not None:
        bwrap += ["--uid", str(job.uid), "--gid", str(job.uid)]
    # Only /app and /tmp are writable: the assembled root itself goes read-only last.
    bwrap += ["--remount-ro", "/", "--chdir", job.cwd, "--", *job.command]

    # Root is exempt from RLIMIT_NPROC: the limit bites once the uid is the app's.
    limit = ["choom", "-n", str(OOM_SCORE_ADJ), "--"]
    if job.uid is not None and job.max_processes is not None:
        limit += ["prlimit", f"--nproc={job.max_processes}:{job.max_processes}", "--"]
    if not job.layer:
        if job.uid is None:
            return [*limit, *bwrap]
        return [
            *limit, "setpriv", f"--reuid={job.uid}", f"--regid={job.uid}", "--clear-groups",
            "--inh-caps=-all", "--", *bwrap,
        ]
    assert job.scratch is not None
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if not as_root:
        # An unprivileged user gets the mount rights for the overlay from a user namespace.
        unshare = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    uid_arg = "-" if job.uid is None else str(job.uid)
    return [
        *limit, *unshare, "--", "/bin/sh", str(INIT_SCRIPT), str(job.app_dir), str(job.scratch),
        uid_arg, "--", *bwrap,
    ]
