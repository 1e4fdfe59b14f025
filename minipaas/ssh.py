"""The SSH entry point: what `minipaas ssh --key FPR` (the authorized_keys forced command) does.

sshd runs it for every connection of a key added with `keys:add`, with the requested command in
`SSH_ORIGINAL_COMMAND`. It serves `git-receive-pack`/`git-upload-pack` over stdio (the deploy
itself runs in the server, reached through the local socket, and streams back as `remote:`
lines), runs plain client words (`ssh minipaas@host ps -a web`), and refuses anything else.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from minipaas.client import ApiError, Client, default_data_dir
from minipaas.names import is_utf8, shown

Progress = Callable[[str], None]

GIT_SERVICES = ("git-receive-pack", "git-upload-pack")
SERVER_GONE = (
    "The minipaas server stopped during this deploy (restarted or killed); unless it had "
    "gone live (see `minipaas releases`), the previous release keeps serving: push again once "
    "the server is back"
)

HELP = """\
minipaas over SSH. Try:
  git push minipaas@HOST:APP main     deploy
  ssh minipaas@HOST apps              list apps
  ssh minipaas@HOST ps -a APP         list an app's dynos
  ssh minipaas@HOST logs -a APP -t    follow an app's logs
  ssh -t minipaas@HOST                the terminal UI
"""


def serve_ssh(data_dir: Path | None, fingerprint: str, original_command: str) -> int:
    data_dir = data_dir or default_data_dir()
    os.environ["MINIPAAS_DATA_DIR"] = str(data_dir)
    os.environ.pop("MINIPAAS_URL", None)
    with Client(socket=data_dir / "minipaas.sock", timeout=30.0) as client:
        try:
            key = client.get(f"/api/keys/by-fingerprint/{fingerprint}")
        except ApiError as exc:
            print(f" !    {exc}", file=sys.stderr)
            return 1
    who = f"{key['name']} (ssh)"
    if not is_utf8(original_command):
        # sshd passes the client's bytes as they came; Python holds the bytes that are not UTF-8
        # as lone surrogates, which no app name, URL or API body can carry.
        raw = os.fsencode(original_command)
        cut = "…" if len(raw) > 60 else ""
        print(f" !    The command {raw[:60]!r}{cut} is not UTF-8 text.", file=sys.stderr)
        return 1
    try:
        words = shlex.split(original_command)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        print(
            f" !    Cannot parse the command {shown(original_command)}: {str(exc).lower()}.",
            file=sys.stderr,
        )
        return 1
    if not words:
        if sys.stdin.isatty() and sys.stdout.isatty():  # `ssh -t minipaas@host`
            # Straight into the TUI, skipping the command-line parser (first frame ≤ 1 s).
            from minipaas.cli import open_tui

            return open_tui(Client(socket=data_dir / "minipaas.sock", timeout=60.0))
        sys.stdout.write(HELP)
        return 0
    if words[0] in GIT_SERVICES:
        return _serve_git(data_dir, original_command, who)
    from minipaas.cli import run_words

    os.environ["MINIPAAS_WHO"] = who
    return run_words(words)


def _serve_git(data_dir: Path, command: str, who: str) -> int:
    from minipaas.git import Repos
    from minipaas.git.stdio import serve_stdio

    def gate(app: str, sha: str, progress: Progress, *, ref: str, old: str | None) -> str | None:
        status = "deploy failed"
        with Client(socket=data_dir / "minipaas.sock", timeout=None) as client:
            try:
                # The server moves `ref` once the release is live: if this process is killed
                # meanwhile (Ctrl-C, a dropped connection), the branch still follows the deploy.
                for item in client.deploy(app, sha, who, ref=ref, old=old):
                    if "line" in item:
                        progress(str(item["line"]))
                    elif item.get("status") == "ok":
                        return None
                    elif item.get("status") == "failed":
                        progress(f" !     {item.get('message', 'the deploy failed')}")
                        return status
                # The answer ended without an outcome: the server stopped mid-deploy.
                progress(f" !     {SERVER_GONE}")
            except ApiError as exc:
                progress(f" !     {exc}")
        return status

    return serve_stdio(
        Repos(data_dir / "repos"), command, gate, sys.stdin.buffer, sys.stdout.buffer, sys.stderr
    )
