"""`python -m tui [--data-dir DIR]`: the TUI without the `minipaas` command (for development).

Owns: argument parsing for this entry point only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minipaas.client import AsyncClient
from tui.app import run_tui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description=__doc__)
    parser.add_argument("--data-dir", help="the server's data dir (default: the environment's)")
    args = parser.parse_args(argv)
    return run_tui(AsyncClient.from_env(Path(args.data_dir) if args.data_dir else None))


if __name__ == "__main__":
    sys.exit(main())
