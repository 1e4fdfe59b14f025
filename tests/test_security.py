"""Isolation, tested as an attacker: one app's own push, build or dyno tries to reach what it must
not (the host outside its sandbox, another app's code, config, logs or traffic, the platform's
keys) on a real server with real builds in bubblewrap, and each attack is shown to fail.

One server (and one sshd) serves the whole module; each test uses its own apps.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.paas import Paas, commit, git_env, git_repo, ssh_push
from tests.support.dirs import app_readable_tmp
from tests.support.sshd import SSHServer


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, env=git_env(), capture_output=True)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_a_buildpack_ref_cannot_pass_options_to_git_fetch(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    """`BUILDPACK_URL=file:///bp.git#--upload-pack=/x/payload` once made the second build's
    `git fetch origin REF` run the payload on the host, as the app's uid, outside bubblewrap."""
    paas, sshd = env
    with app_readable_tmp() as shared:
        marker_dir = shared / "out"
        marker_dir.mkdir()
        marker_dir.chmod(0o777)
        payload = shared / "payload.sh"
        _write(payload, f'#!/bin/sh\nid > {marker_dir}/escaped\nexec git-upload-pack "$@"\n', 0o755)
        # A working buildpack whose repository has a branch named like a git option.
        work = shared / "bp"
        _write(work / "bin" / "detect", "#!/bin/sh\necho Evil\n", 0o755)
        _write(work / "bin" / "compile", "#!/bin/sh\n", 0o755)
        release = "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  worker: sleep 1\\n'\n"
        _write(work / "bin" / "release", release, 0o755)
        _git("init", "-q", "-b", "main", cwd=work)
        _git("add", "bin", cwd=work)
        _git("commit", "-q", "-m", "bp", cwd=work)
        ref = f"--upload-pack={payload}"
        _git("update-ref", f"refs/heads/{ref}", "HEAD", cwd=work)
        for p in [work, *work.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o555 if p.is_dir() else p.stat().st_mode | 0o444)

        paas.cli("apps:create", "bpref")
        paas.cli("config:set", "-a", "bpref", f"BUILDPACK_URL=file://{work}#{ref}")
        repo = git_repo_with(tmp_path / "bpref", {"x": "x\n"})
        outputs = []
        for attempt in range(2):  # the first build clones, the second fetched with the ref
            commit(repo, f"attempt {attempt}")
            result = ssh_push(sshd, repo, "bpref")
            outputs.append(result.stdout + result.stderr)
        assert not (marker_dir / "escaped").exists(), (marker_dir / "escaped").read_text()
        for out in outputs:
            assert "which is not a branch, tag or commit" in out, out


def git_repo_with(dest: Path, files: dict[str, str]) -> Path:
    """A new repository at `dest` holding `files`, committed on main."""
    src = dest.with_name(dest.name + "-src")
    for name, text in files.items():
        _write(src / name, text)
    return git_repo(src, dest)
