"""`python -m bench [--quick] [--json FILE] [--only SCENARIO …]`: run the benchmarks of issue 6.

Starts its own `minipaas server` (temporary data dir, free loopback ports), runs the chosen
scenarios in a fixed order, prints one table (scenario, result, goal, pass) and writes JSON.
Goals are reported, never asserted: the exit status is 0 when every scenario could measure,
1 when one of them failed to (a push that did not deploy, an app that never came up).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import tui
from bench.report import Row, describe, machine, table, unmeasured
from bench.scenarios import SCENARIOS as CORE
from bench.scenarios import Context, ScenarioError
from bench.server import REPO_ROOT, venv_bin

# The TUI scenarios run before the 100-app fleet: with a hundred apps on the list, the app they
# open is no longer on the first screen.
_BEFORE_FLEET = {name: run for name, run in CORE.items() if name != "apps100"}
SCENARIOS = {**_BEFORE_FLEET, **tui.SCENARIOS, "apps100": CORE["apps100"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer runs, smaller")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO", choices=list(SCENARIOS),
        help=f"run only these ({', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--dir", metavar="DIR", type=Path, default=Path("/tmp"),  # noqa: S108 - app uids need x
        help="where the server's data dir and the scratch files go (default /tmp): the disk "
        "to measure (it must be traversable by other users, as /tmp is)",
    )
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"--dir {str(args.dir)!r} is not a directory.")
    return args


def byte_compile() -> None:
    """Compile minipaas/ and tui/ to bytecode, as `pip install` (install.sh) leaves an install.

    The repo's venv is an editable install; where PYTHONDONTWRITEBYTECODE is set (as on CI
    machines), every `minipaas` start would compile the modules it imports from source again,
    and the startup numbers (CLI, TUI) would measure that instead of minipaas."""
    for package in ("minipaas", "tui"):
        compileall.compile_dir(REPO_ROOT / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [name for name in SCENARIOS if not args.only or name in args.only]
    started = time.time()
    load_start = os.getloadavg()
    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    byte_compile()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="minipaas-bench-work-", dir=args.dir) as work:
        ctx = Context(quick=args.quick, work=Path(work), base=args.dir, log=log)
        try:
            for name in chosen:
                log(f"scenario {name}")
                s0 = time.perf_counter()
                try:
                    rows.extend(SCENARIOS[name](ctx))
                except (ScenarioError, TimeoutError, RuntimeError, OSError) as exc:
                    errors[name] = str(exc)
                    log(f"  {name} could not measure: {exc}")
                    if not isinstance(exc, ScenarioError):
                        traceback.print_exc()
                    rows.append(unmeasured(name, name, "", "error", error=str(exc)[-2000:]))
                timings[name] = round(time.perf_counter() - s0, 1)
        finally:
            if ctx._server is not None and errors:
                log("server log tail:\n" + ctx._server.tail(30))
            ctx.close()
    info = machine(REPO_ROOT, venv_bin() / "caddy", args.dir)
    info["loadavg_start"] = [round(x, 2) for x in load_start]
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    total = time.perf_counter() - t0
    print(table(rows))
    print(f"\nMachine: {describe(info)}")
    print(f"Load average (1/5/15 min) at start {info['loadavg_start']}, end {info['loadavg_end']}.")
    print(f"Mode: {'quick' if args.quick else 'full'}; total {total:.0f} s.")
    if args.json:
        document = {
            "started": started,
            "seconds": round(total, 1),
            "quick": args.quick,
            "machine": info,
            "scenario_seconds": timings,
            "errors": errors,
            "results": [row.to_json() for row in rows],
        }
        Path(args.json).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
