"""`python -m tui [--data-dir DIR]`: the TUI without the `minipaas` command (for development).

Owns: argument parsing for this entry point only. Starts like `minipaas tui`: the first apps
list is requested before Textual is imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minipaas.client import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description=__doc__)
    parser.add_argument("--data-dir", help="the server's data dir (default: the environment's)")
    args = parser.parse_args(argv)
    client = Client.from_env(Path(args.data_dir) if args.data_dir else None, timeout=60.0)
    first_apps = client.fetch("/api/apps")
    from tui.app import run_tui

    return run_tui(client, first_apps=first_apps)


if __name__ == "__main__":
    sys.exit(main())
