"""The `minipaas` command: `server`, `ssh` (the forced command), `down`, and Heroku's client words.

Parsing and printing only: every client command is one API call through `minipaas.client`, and
the business rules live on the server. Heavy imports happen inside the command that needs them,
so `minipaas --version` and the SSH entry point start fast. Errors print one sentence and exit 1;
usage errors exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from minipaas import __version__

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # A mistyped command: argparse would list every one of the ~90 words, cut at 300
        # characters; one sentence and the nearest word instead.
        unknown = re.match(r"argument COMMAND: invalid choice: '(.*?)' \(choose from (.*)\)$",
                           message, re.DOTALL)
        if unknown is not None:
            import difflib

            words = re.findall(r"'([^']*)'", unknown.group(2))
            close = difflib.get_close_matches(unknown.group(1), words, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(f"Unknown command {unknown.group(1)!r}; {hint}`minipaas help` "
                             "lists them.")
        # argparse quotes every unrecognized argument: cut a 100 kB `ssh host apps x x x …`.
        cut = message if len(message) <= 300 else message[:300] + "…"
        raise UsageError(f"{self.prog}: {cut}")


class _OneApp(argparse.Action):
    """`-a`/`--app`: given twice with two names (`pg:killall -a prod -a staging`), a usage
    error naming both, as Heroku's CLI refuses a flag given twice; argparse kept the last one
    silently, so a word acted on the app named last."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not None and before != values:
            from minipaas.names import shown

            raise UsageError(f"Two apps given, -a {shown(str(before))} and -a "
                             f"{shown(str(values))}: name one.")
        setattr(namespace, self.dest, values)


def _client(args: argparse.Namespace) -> Any:
    """The client for a command. Changes (`long`: config:set, ps:scale, rollback, …) wait for
    the answer however long: the server bounds them (new dynos must boot within boot_timeout,
    a busy app answers 409 after BUSY_WAIT), and a client that gave up after 60 s reported a
    failure while the change went on and was made."""
    from minipaas.client import Client

    data_dir = getattr(args, "data_dir", None)
    return Client.from_env(
        Path(data_dir) if data_dir else None, timeout=None if getattr(args, "long", False) else 60.0
    )


def _app_from_git_remote() -> str | None:
    """The app behind the `minipaas` git remote of the current directory, as Heroku does."""
    try:
        url = subprocess.run(
            ["git", "config", "--get", "remote.minipaas.url"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if not url:
        return None
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git") or None


def _app(args: argparse.Namespace) -> str:
    from minipaas import names

    name = args.app or os.environ.get("MINIPAAS_APP") or _app_from_git_remote()
    if not name:
        raise UsageError(
            "No app given: use -a NAME (or run inside a checkout with a `minipaas` remote)."
        )
    # Checked here, not only by the server: the name becomes part of the API path, where
    # `a?b` would reach app `a`, `../x` another route, and `é` cannot be sent at all.
    return names.app_name(str(name))


def _segment(value: str) -> str:
    """`value` as one segment of an API path, whatever it holds (`/`, `?`, spaces, `é`)."""
    import urllib.parse

    return urllib.parse.quote(value, safe="")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(c) for c in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    secs = int(time.time() - ts)
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- client commands ---------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        info = c.get("/api/status")
    if args.json:
        _print_json(info)
    else:
        print(f"minipaas {info['version']} is up at {info['control_url']} ({info['apps']} apps)")
    return 0


def _start_pending(app: dict[str, Any]) -> bool:
    """The server has just started and has yet to start some of this app's dynos."""
    return bool(app.get("start_pending")) and app["dynos_up"] < app["dynos_desired"]


def cmd_apps(args: argparse.Namespace) -> int:
    with _client(args) as c:
        apps = c.get("/api/apps")
    if args.json:
        _print_json(apps)
    elif not apps:
        print("No apps yet; create one with `minipaas apps:create NAME`.")
    else:
        _table(
            [
                (
                    a["name"],
                    f"v{a['release']}" if a["release"] else "-",
                    f"{a['dynos_up']}/{a['dynos_desired']}"
                    + (" (starting)" if _start_pending(a) else ""),
                    a["url"],
                )
                for a in apps
            ],
            ["name", "release", "dynos", "url"],
        )
    return 0


def cmd_apps_create(args: argparse.Namespace) -> int:
    with _client(args) as c:
        app = c.request("POST", "/api/apps", json_body={"name": args.name})
    print(f"Created {app['name']}: {app['url']} | {app['git_url']}")
    return 0


def cmd_apps_info(args: argparse.Namespace) -> int:
    _app_positional(args)
    app = _app(args)
    with _client(args) as c:
        info = c.get(f"/api/apps/{app}")
    if args.json:
        _print_json(info)
        return 0
    print(f"=== {info['name']}")
    print(f"Web URL:   {info['url']}")
    print(f"Git URL:   {info['git_url']}")
    print(f"Release:   {'v' + str(info['release']) if info['release'] else 'none yet'}")
    formation = " ".join(f"{k}={v}" for k, v in sorted(info["formation"].items())) or "none"
    print(f"Formation: {formation}")
    print(f"Domains:   {', '.join(info['domains']) or 'none'}")
    addons = [f"{a['service']} ({a['name']})" for a in info.get("addons", [])]
    print(f"Add-ons:   {', '.join(addons) or 'none'}")
    buildpacks = info.get("buildpacks", [])
    print(f"Buildpacks: {_buildpack_list(buildpacks) if buildpacks else 'none (detected)'}")
    print(f"Dynos:     {sum(1 for d in info['dynos'] if d['state'] == 'up')} up")
    if info.get("maintenance"):
        print("Maintenance: on")
    return 0


def _app_positional(args: argparse.Namespace) -> None:
    """Heroku's `apps:info [APP]` and `apps:destroy [APP] --confirm APP`: the app named
    without -a; both given must agree."""
    from minipaas.names import shown

    if args.app_name is None:
        return
    if args.app is not None and args.app != args.app_name:
        raise UsageError(f"Two apps given, {shown(args.app_name)} and -a {shown(args.app)}: "
                         "name one.")
    args.app = args.app_name


def cmd_apps_destroy(args: argparse.Namespace) -> int:
    _app_positional(args)
    app = _app(args)
    if args.confirm != app:
        raise UsageError(
            f"Destroying {app!r} deletes its code, releases, dynos and logs; "
            f"run again with --confirm {app}."
        )
    with _client(args) as c:
        done = c.request("DELETE", f"/api/apps/{app}", params={"confirm": app})
    print(f"Destroyed {app}{_and_backups(done)}.")
    return 0


def cmd_apps_rename(args: argparse.Namespace) -> int:
    from minipaas import names
    from minipaas.errors import UserError

    old = _app(args)
    new = names.new_app_name(args.new_name)
    if new == old:
        raise UserError(f"The app is already named {old!r}; give it another name.")
    body = {"name": new, "who": os.environ.get("MINIPAAS_WHO", "admin")}
    with _client(args) as c:
        done = c.request("PATCH", f"/api/apps/{old}", json_body=body)
    print(f"Renamed {old} to {done['name']}: {done['url']} | {done['git_url']}")
    if not getattr(args, "over_ssh", False):  # the checkout is the caller's, not the server's
        remote = _rename_git_remote(old, done["name"])
        if remote is not None:
            print(f"Git remote minipaas updated to {remote}")
    return 0


def _rename_git_remote(old: str, new: str) -> str | None:
    """Point the `minipaas` remote of the current checkout at `new` if it names `old` (as
    `git:remote` prints it: `…/old.git` or `minipaas@host:old`); its new URL, or None."""
    try:
        url = subprocess.run(
            ["git", "config", "--get", "remote.minipaas.url"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(?s)(.*[/:])([^/:]*?)(\.git)?(/*)", url)
    if match is None or match.group(2) != old:
        return None
    renamed = f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"
    try:
        result = subprocess.run(
            ["git", "remote", "set-url", "minipaas", renamed],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return renamed if result.returncode == 0 else None


def _and_backups(answer: dict[str, Any]) -> str:
    """`and its 2 backups` when a destroy deleted backups of the app's database too."""
    removed = int(answer.get("backups_removed") or 0)
    return f" and its {removed} backup{'s' if removed != 1 else ''}" if removed else ""


def cmd_config(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        config = c.get(f"/api/apps/{app}/config")
    if args.json:
        _print_json(config)
    elif args.shell:  # `eval "$(minipaas config --shell)"`, or a .env file, as Heroku's
        for key, value in config.items():
            print(f"{key}={shlex.quote(value)}")
    elif not config:
        print(f"{app} has no config vars.")
    else:
        print(f"=== {app} Config Vars")
        width = max(len(k) for k in config) + 1
        for key, value in config.items():
            print(f"{(key + ':').ljust(width)} {value}")
    return 0


def cmd_config_get(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        config = c.get(f"/api/apps/{app}/config")
    if args.key not in config:
        print(f"{args.key} is not set on {app}.", file=sys.stderr)
        return 1
    print(config[args.key])
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    app = _app(args)
    changes: dict[str, str | None] = {}
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"Expected KEY=VALUE, got {pair!r}.")
        changes[key] = value
    print(_change_config(args, app, changes, "Set"))
    return 0


def cmd_config_unset(args: argparse.Namespace) -> int:
    app = _app(args)
    print(_change_config(args, app, dict.fromkeys(args.keys), "Unset"))
    return 0


def _change_config(
    args: argparse.Namespace, app: str, changes: dict[str, str | None], verb: str
) -> str:
    """Apply `changes`; the one line that says what happened (a release, restarted dynos, or
    nothing at all when every var already was as asked)."""
    path = f"/api/apps/{app}/config"
    keys = ", ".join(changes)
    with _client(args) as c:
        before = c.get(path)
        after = c.request("PATCH", path, json_body=changes)
        info = c.get(f"/api/apps/{app}") if after != before else None
    if info is None:
        return f"Nothing to change: {keys} on {app} already as asked."
    release = f" (v{info['release']})" if info.get("release") else ""
    if any(d.get("state") in ("up", "starting") for d in info.get("dynos", [])):
        return f"{verb} {keys} on {app}{release} and restarted its dynos."
    return f"{verb} {keys} on {app}{release}."


def cmd_ps(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        data = c.get(f"/api/apps/{app}/dynos")
    if args.json:
        _print_json(data)
        return 0
    stopped = set(data.get("stopped", ()))
    one_offs: list[dict[str, Any]] = data.get("one_offs", [])
    wanted = sum(v for k, v in data["formation"].items() if k not in stopped)
    for ptype in sorted(stopped):
        print(
            f"=== {ptype} ({data['formation'].get(ptype, 0)}): stopped; "
            f"`minipaas ps:start {ptype} -a {app}` starts it again.\n"
        )
    if data.get("start_pending") and len(data["dynos"]) < wanted:
        formation = " ".join(
            f"{k}={v}" for k, v in sorted(data["formation"].items()) if v and k not in stopped
        )
        print(f"minipaas has just started: {app}'s dynos ({formation}) are waiting to start.\n")
    elif not data["dynos"] and not one_offs:
        if not stopped:
            print(f"No dynos on {app}.")
        return 0
    by_type: dict[str, list[dict[str, Any]]] = {}
    for dyno in data["dynos"]:
        by_type.setdefault(dyno["type"], []).append(dyno)
    sizes: dict[str, str] = data.get("sizes", {})
    for ptype, dynos in sorted(by_type.items()):
        count = data["formation"].get(ptype, 0)
        size = f", {_size_text(sizes[ptype])}" if sizes.get(ptype) else ""
        print(f"=== {ptype} ({count}{size}): {dynos[0]['command']}")
        for d in dynos:
            up = f" {_ago(d['started_at'])}" if d["state"] == "up" else ""
            pid = f" pid={d['pid']}" if d["pid"] is not None else ""
            extra = f" restarts={d['restarts']}" if d["restarts"] else ""
            reason = f": {d['reason']}" if d.get("reason") else ""
            if not reason and d.get("last_error"):  # up again after minipaas killed it
                reason = f": restarted after {d['last_error']}"
            print(f"{d['name']}: {d['state']}{up} v{d['release']}{pid}{extra}{reason}")
        print()
    if one_offs:
        print(f"=== one-off processes ({len(one_offs)})")
        for o in one_offs:
            up = _ago(o["started_at"])
            command = " ".join(str(o["command"]).split())
            command = command if len(command) <= 80 else command[:79] + "…"
            print(f"{o['name']}: up {up} v{o['release']} pid={o['pid']}: {command}")
        print()
    return 0


def cmd_ps_scale(args: argparse.Namespace) -> int:
    from minipaas.errors import UserError
    from minipaas.names import shown

    app = _app(args)
    counts: dict[str, int] = {}
    changes: dict[str, int] = {}  # `web+1` / `worker-2`: relative to the current formation
    for pair in args.pairs:
        ptype, sep, raw = pair.partition("=")
        if not sep and (relative := re.fullmatch(r"(.+)([+-])([0-9]{1,6})", pair)):
            ptype, sign, amount = relative.groups()
            changes[ptype] = int(amount) if sign == "+" else -int(amount)
            continue
        if not sep:
            raise UsageError(f"Expected TYPE=COUNT or TYPE+N / TYPE-N, got {pair!r}.")
        # ASCII digits only: int() also reads ' 2', '+1' and '٣' (and `web+1` means "one more"
        # on Heroku, so '+1' must not quietly mean 1). A negative count goes on to the server,
        # which says which counts are allowed.
        if not re.fullmatch(r"-?[0-9]{1,1000}", raw):
            raise UsageError(
                f"Invalid count {shown(raw)} for {shown(ptype)}: use a whole number."
            )
        counts[ptype] = int(raw)
    with _client(args) as c:
        dynos = c.get(f"/api/apps/{app}/dynos") if changes else None
        if dynos is not None:
            current = dynos.get("formation", {})
            for ptype, change in changes.items():
                now = int(current.get(ptype, 0))
                if now + change < 0:
                    raise UserError(
                        f"Cannot scale {shown(ptype)} by {change:+d}: it has {now} dynos."
                    )
                counts[ptype] = now + change
        formation = c.request("PATCH", f"/api/apps/{app}/formation", json_body=counts)
        if dynos is None:  # scaling changes the formation, never which types are stopped
            dynos = c.get(f"/api/apps/{app}/dynos")
        stopped = sorted(set(dynos.get("stopped", ())) & set(counts))
    summary = ", ".join(f"{k}={v}" for k, v in sorted(formation.items()))
    print(f"Scaled {app} to {summary}.")
    for ptype in stopped:  # else "Scaled to web=2" while nothing starts
        print(f"{ptype} is stopped: its dynos start with `minipaas ps:start {ptype} -a {app}`.")
    return 0


def _size_text(size: str | None) -> str:
    from minipaas import sizes

    return sizes.describe(size)


def cmd_ps_type(args: argparse.Namespace) -> int:
    """`ps:type` shows each process type's size; `ps:type web=standard-2x worker=1G` sets
    them (`none` clears one), which restarts those types' dynos and makes no release."""
    from minipaas import sizes

    app = _app(args)
    changes: dict[str, str | None] = {}
    for pair in args.pairs:
        ptype, sep, size = pair.partition("=")
        if not sep or not ptype:
            raise UsageError(f"Expected TYPE=SIZE (web=standard-2x, worker=1G), got {pair!r}.")
        changes[ptype] = None if size.strip().lower() == sizes.NONE else size
    with _client(args) as c:
        if changes:
            after = c.request("PATCH", f"/api/apps/{app}/sizes", json_body=changes)
            summary = ", ".join(
                f"{ptype} to {sizes.describe(after.get(ptype))}" for ptype in sorted(changes)
            )
            print(f"Resized {summary} on {app}; their dynos restart with it.")
            return 0
        data = c.get(f"/api/apps/{app}/dynos")
    formation: dict[str, int] = data["formation"]
    current: dict[str, str] = data.get("sizes", {})
    if args.json:
        _print_json(
            [
                {
                    "type": ptype,
                    "size": current.get(ptype),
                    "memory": sizes.quota_bytes(current.get(ptype)),
                    "quantity": count,
                }
                for ptype, count in sorted(formation.items())
            ]
        )
        return 0
    if not formation:
        print(f"No process types on {app} yet: push a Procfile first.")
        return 0
    rows = []
    for ptype, count in sorted(formation.items()):
        size = current.get(ptype)
        quota = sizes.quota_bytes(size)
        rows.append((ptype, size or "-", "none" if quota is None else sizes.human(quota), count))
    print(f"=== {app} dyno sizes")
    _table(rows, ("type", "size", "memory quota", "qty"))
    if len(current) < len(formation):
        print(
            "\nA type without a size has no memory quota (the default). Set one with "
            f"`minipaas ps:type TYPE=SIZE -a {app}`: {', '.join(sizes.SIZES)}, or an amount "
            "such as 512M or 2G."
        )
    return 0


def cmd_ps_restart(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        c.request("POST", f"/api/apps/{app}/restart", json_body={"type": args.type})
    if not args.type:
        what = ""
    elif "." in args.type:
        what = f"{args.type} of "
    else:
        what = f"{args.type} dynos of "
    print(f"Restarted {what}{app}.")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    app = _app(args)
    params: dict[str, Any] = {"n": args.num}
    if args.source:
        params["source"] = args.source
    if args.dyno:
        params["dyno"] = args.dyno
    if not args.tail:
        with _client(args) as c:
            for item in c.get(f"/api/apps/{app}/logs", **params):
                print(item["line"])
        return 0
    params["tail"] = "1"
    with contextlib.suppress(KeyboardInterrupt):
        _follow_logs(args, app, params)
    return 0


#: `logs -t`: how long a follower waits for a server that went away (a restart, an upgrade).
FOLLOW_RECONNECT_S = 120.0
#: How many lines a reconnected follower asks for, to print what was logged while it was away.
FOLLOW_CATCH_UP = 10_000


def _follow_logs(args: argparse.Namespace, app: str, params: dict[str, Any]) -> None:
    """Print the app's log as it grows, until Ctrl-C. When the server goes away, say so once,
    wait for it to come back and go on from the last line printed: lines logged meanwhile are
    printed once, none twice (lines are in time order and start with their UTC time)."""
    import http.client

    import httpx

    from minipaas.client import FOLLOW_READ, ApiError

    gone = (OSError, http.client.HTTPException, httpx.TransportError)
    last, printed_at_last = "", set[str]()  # the newest time printed; its lines printed so far
    away: float | None = None
    while True:
        try:
            with _client(args) as c:
                logs = f"/api/apps/{app}/logs"
                for item in c.stream("GET", logs, params=params, read_timeout=FOLLOW_READ):
                    if item.get("end") == "destroyed":
                        raise ApiError(f"The app {app!r} was destroyed.", status=410)
                    if "line" not in item:
                        continue  # "end": "restarting" (the server stops), or newer news
                    line = str(item["line"])
                    stamp = line.split(" ", 1)[0]
                    if stamp < last or (stamp == last and line in printed_at_last):
                        continue  # printed before the server went away
                    if stamp != last:
                        last, printed_at_last = stamp, set()
                    printed_at_last.add(line)
                    if away is not None:
                        print("minipaas: reconnected.", file=sys.stderr, flush=True)
                        away = None
                    print(line, flush=True)
        except ApiError as exc:
            if exc.status not in (0, 502, 503, 504):  # 0: unreachable; 5xx: from the router
                raise
        except gone:
            pass
        if away is None:
            away = time.monotonic()
            print("minipaas: the server went away; reconnecting…", file=sys.stderr, flush=True)
        elif time.monotonic() - away > FOLLOW_RECONNECT_S:
            raise ApiError(
                f"The minipaas server did not come back within {FOLLOW_RECONNECT_S:g} s."
            )
        params["n"] = FOLLOW_CATCH_UP
        time.sleep(0.5)


def cmd_releases(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        releases = c.get(f"/api/apps/{app}/releases")
    if args.json:
        _print_json(releases)
    elif not releases:
        print(f"{app} has no releases yet; push with `git push minipaas main`.")
    else:
        print(f"=== {app} Releases")
        for r in releases:
            mark = "*" if r["current"] else " "
            print(
                f"{mark} v{r['version']:<4} {r['description']:<30} {r['created_by']:<16} "
                f"{_when(r['created_at'])}  {r['status']}"
            )
    return 0


def cmd_apps_errors(args: argparse.Namespace) -> int:
    """Heroku's `apps:errors`: router error codes and dyno errors over the last hours."""
    app = _app(args)
    with _client(args) as c:
        data = c.get(f"/api/apps/{app}/errors", hours=args.hours)
    if args.json:
        _print_json(data)
        return 0
    hours = data["hours"]
    rows = [("router", code, n) for code, n in data["router"].items()]
    rows += [(kind.split(" ")[0], kind.split(" ")[-1], n) for kind, n in data["dyno"].items()]
    if not rows:
        print(f"No errors on {app} in the last {hours} h.")
        return 0
    print(f"=== Errors on {app} in the last {hours} h")
    descriptions = data.get("descriptions", {})
    for where, code, n in rows:
        print(f"{where:<8} {code:<8} {n:>7}  {descriptions.get(code, '')}")
    return 0


def cmd_releases_info(args: argparse.Namespace) -> int:
    from minipaas import names

    app = _app(args)
    version = names.release_version(args.version)
    with _client(args) as c:
        r = c.get(f"/api/apps/{app}/releases/v{version}")
    if args.json:
        _print_json(r)
        return 0
    print(f"=== Release v{r['version']} of {app}")
    print(f"By:       {r['created_by']}")
    print(f"Change:   {r['description']}")
    print(f"When:     {_when(r['created_at'])}")
    print(f"Status:   {r['status']}")
    print(f"Commit:   {r['sha'] or '-'}")
    print(f"Config:   {', '.join(r['config']) or 'none'}")
    for ptype, command in sorted(r["process_types"].items()):
        print(f"Process:  {ptype}: {command}")
    return 0


def cmd_releases_output(args: argparse.Namespace) -> int:
    """Heroku's `releases:output [vN]`: what a release's release phase printed (default: the
    newest release that had one)."""
    from minipaas import names

    app = _app(args)
    params = {} if args.version is None else {"version": names.release_version(args.version)}
    with _client(args) as c:
        out = c.get(f"/api/apps/{app}/release-output", **params)
    if args.json:
        _print_json(out)
        return 0
    if out["exit_code"] is None:
        ended = "was killed at its timeout"
    else:
        ended = f"exited with status {out['exit_code']}"
    print(f"=== Release phase of v{out['version']} of {app} ({_when(out['started_at'])}): "
          f"{ended}; v{out['version']} is {out['status']}")
    if out["output"]:
        print(out["output"])
    return 0


def _seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from `low` to `high` (else a usage error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not low <= value <= high:  # NaN too
            raise argparse.ArgumentTypeError(f"use {low:g} to {high:g} seconds, not {text!r}")
        return value

    return parse


def _not_there(
    data: dict[str, Any], target: dict[str, Any], ptype: str | None, with_run: bool
) -> tuple[list[str], int, int]:
    """For `ps:wait`: (the dynos not yet up on the target release, with why; how many are up on
    it; how many are wanted), from `ps --json` and the release to wait for."""
    version = target["version"]
    stopped = set(data.get("stopped", ()))
    wanted = {
        t: n
        for t, n in data["formation"].items()
        if n and t not in stopped and t in target["process_types"] and ptype in (None, t)
    }
    missing: list[str] = []
    ready = 0
    for t, count in sorted(wanted.items()):
        dynos = [d for d in data["dynos"] if d["type"] == t]
        on = [d for d in dynos if d["release"] == version and d["state"] == "up"]
        ready += min(len(on), count)
        for d in dynos:
            if d not in on:
                missing.append(f"{d['name']} ({d['state']} on v{d['release']})")
        if len(on) < count and len(dynos) < count:
            missing.append(f"{count - len(dynos)} {t} dyno(s) not started yet")
    if with_run:
        for o in data.get("one_offs", []):
            if o["type"] == "run" and o["release"] != version:
                missing.append(f"{o['name']} (a one-off dyno on v{o['release']})")
    return missing, ready, sum(wanted.values())


def cmd_ps_wait(args: argparse.Namespace) -> int:
    """Heroku's `ps:wait`: exit 0 once every dyno (of `--type`) runs the app's newest release
    and is up; exit 1 at `--timeout`, or at once when one of them crashed on that release."""
    from minipaas import names
    from minipaas.errors import UserError

    app = _app(args)
    if args.type is not None:
        names.process_type(args.type)
    deadline = time.monotonic() + args.timeout
    shown_version = None
    with _client(args) as c:
        while True:
            releases = c.get(f"/api/apps/{app}/releases")
            data = c.get(f"/api/apps/{app}/dynos")
            # A change under way (a deploy, config:set) made a pending release: wait for it.
            # Else the current one (a failed newer release never went live).
            pending = releases[0] if releases and releases[0]["status"] == "pending" else None
            target = pending or next((r for r in releases if r["current"]), None)
            if target is None:
                raise UserError(f"{app} has no release yet; push with `git push minipaas main`.")
            if args.type is not None and args.type not in target["process_types"]:
                raise UserError(
                    f"{app} has no {args.type!r} process type in v{target['version']} "
                    f"(it has {', '.join(sorted(target['process_types'])) or 'none'})."
                )
            if shown_version != target["version"]:
                shown_version = target["version"]
                print(f"Waiting for every dyno to be running v{shown_version}...",
                      end="", flush=True)
            missing, ready, wanted = _not_there(data, target, args.type, args.with_run)
            crashed = [
                d for d in data["dynos"]
                if d["state"] == "crashed" and d["release"] == target["version"]
                and args.type in (None, d["type"])
            ]
            if crashed and pending is None:
                print()
                d = crashed[0]
                raise UserError(
                    f"{d['name']} crashed on v{target['version']}"
                    + (f" ({d['reason']})" if d.get("reason") else "")
                    + f"; see `minipaas logs --dyno {d['name']} -a {app}`."
                )
            if not missing and pending is None and not data.get("start_pending"):
                print(f" {ready} / {wanted}, done")
                return 0
            if time.monotonic() + args.wait_interval > deadline:
                print()
                waiting = ", ".join(missing) or f"v{target['version']} is still being released"
                raise UserError(
                    f"Not every dyno of {app} runs v{target['version']} after "
                    f"{args.timeout:g} s: {waiting}."
                )
            time.sleep(args.wait_interval)


def cmd_rollback(args: argparse.Namespace) -> int:
    from minipaas import names

    app = _app(args)
    version = None
    # `rollback ""` (an empty $VERSION in a script) is a bad release, not "the previous one".
    if args.version is not None:
        if not re.fullmatch(r"v?[0-9]+", args.version):
            raise UsageError(f"Invalid release {names.shown(args.version)}: use vN, e.g. v3.")
        version = names.release_version(args.version)  # and not past the largest one
    with _client(args) as c:
        result = c.request("POST", f"/api/apps/{app}/rollback", json_body={"version": version})
    print(f"{result['description']} on {app}: released v{result['release']}.")
    return 0


def cmd_ps_stop_start(action: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        app = _app(args)
        with _client(args) as c:
            c.request("POST", f"/api/apps/{app}/ps/{action}", json_body={"type": args.type})
        if action == "stop" and "." in args.type:
            print(f"Stopped {args.type} of {app}.")  # a one-off dyno (`ps` lists them)
        else:
            print(f"{'Stopped' if action == 'stop' else 'Started'} {args.type} dynos of {app}.")
        return 0

    return run


def cmd_checks(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        data = c.get(f"/api/apps/{app}/checks")
    if args.json:
        _print_json(data)
    elif data["check"] is None:
        print(f"{app} has no health check: new web dynos must accept connections on $PORT.")
    else:
        check = data["check"]
        print(f"=== {app} health check (from {data['source']})")
        for key in ("path", "expect", "min_uptime", "timeout"):
            print(f"{key + ':':<12} {'' if check[key] is None else check[key]}")
    return 0


def cmd_checks_set(args: argparse.Namespace) -> int:
    from minipaas.checks import parse_pairs

    app = _app(args)
    check = parse_pairs(args.pairs)
    with _client(args) as c:
        c.request("PUT", f"/api/apps/{app}/checks", json_body=check)
    print(f"Set the health check of {app}; it applies from the next deploy or restart.")
    return 0


def cmd_checks_unset(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        c.request("DELETE", f"/api/apps/{app}/checks")
    print(f"Removed the health check settings of {app}.")
    return 0


def _one_off_command(args: argparse.Namespace, word: str) -> str:
    """The command of `run` / `run:detached`: one argument as it is (a shell line), several
    quoted for the shell (`run -- echo 'a b'`)."""
    words = list(args.command)
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise UsageError(f"No command given; use `minipaas {word} -a APP -- COMMAND`.")
    return shlex.join(words) if len(words) > 1 else words[0]


def cmd_run_detached(args: argparse.Namespace) -> int:
    app = _app(args)
    command = _one_off_command(args, "run:detached")
    with _client(args) as c:
        result = c.request(
            "POST", f"/api/apps/{app}/run", json_body={"command": command, "detached": True}
        )
    dyno = result["dyno"]
    print(
        f"Running `{command}` on {app} as {dyno}: see its output with `minipaas logs -a {app} "
        f"--dyno {dyno}`, stop it with `minipaas ps:stop {dyno} -a {app}`."
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return _run_one_off(args, _app(args), _one_off_command(args, "run"))


def _run_one_off(args: argparse.Namespace, app: str, command: str, *, bare: bool = False) -> int:
    """`command` in a one-off dyno of `app` with this terminal or these pipes (the local
    socket, `ssh -t`, MINIPAAS_URL), else streamed; `bare`: without the app's slug (an empty
    /app), for the add-on clients, which also work before the first push."""
    local = not os.environ.get("MINIPAAS_URL") or getattr(args, "data_dir", None)
    if local and _stdin_attachable():
        # The dyno gets this very terminal (works through `ssh -t` too), or the pipe or file
        # on stdin (`echo 'select 1' | minipaas run -- psql`), as Heroku's run does.
        from minipaas.api.attach import run_attached_client
        from minipaas.client import default_data_dir

        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        who = os.environ.get("MINIPAAS_WHO", "admin")
        sock = data_dir / "minipaas-run.sock"
        try:
            return run_attached_client(sock, app, command, who, bare=bare)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            # The API's words ("Cannot reach … is `minipaas server` running?"), not a bare
            # " !    No such file or directory".
            from minipaas.client import Client

            raise Client(socket=sock)._unreachable(exc) from exc
    if not local and _stdin_attachable():
        # Over MINIPAAS_URL: a WebSocket carries this terminal's keys and size (or the piped
        # stdin) to the dyno and its output back (api/remote_run.py).
        from minipaas.attach_client import run_remote_attached
        from minipaas.client import endpoint_from_env

        remote = endpoint_from_env()
        return run_remote_attached(
            remote["url"], remote["token"], remote["verify"], app, command, bare=bare
        )
    code = 1
    body: dict[str, Any] = {"command": command}
    if bare:
        body["bare"] = True
    with _client(args) as c:
        for item in c.stream("POST", f"/api/apps/{app}/run", json_body=body):
            if "line" in item:
                print(item["line"], flush=True)
            if "error" in item:
                print(f" !    {item['error']}", file=sys.stderr)
            if "exit" in item:
                code = int(item["exit"])
    return code


def cmd_ps_exec(args: argparse.Namespace) -> int:
    """`ps:exec`: a command (default: a shell) inside a running dyno, with this terminal or
    these pipes, through the same plumbing as `run` (local socket, `ssh -t`, MINIPAAS_URL)."""
    app = _app(args)
    words = list(args.command)
    if words[:1] == ["--"]:
        words = words[1:]
    command = shlex.join(words) if len(words) > 1 else "".join(words)
    dyno = args.dyno
    if not os.environ.get("MINIPAAS_URL") or getattr(args, "data_dir", None):
        from minipaas.api.attach import run_attached_client
        from minipaas.client import default_data_dir

        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        who = os.environ.get("MINIPAAS_WHO", "admin")
        sock = data_dir / "minipaas-run.sock"
        try:
            return run_attached_client(sock, app, command, who, dyno=dyno)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            from minipaas.client import Client

            raise Client(socket=sock)._unreachable(exc) from exc
    from minipaas.attach_client import run_remote_attached
    from minipaas.client import endpoint_from_env

    remote = endpoint_from_env()
    return run_remote_attached(
        remote["url"], remote["token"], remote["verify"], app, command, dyno=dyno
    )


def _stdin_attachable() -> bool:
    """Stdin is a terminal, or a pipe, file or socket that may carry input for the dyno (the
    API's run has no stdin: it would be silently dropped). /dev/null or a closed stdin: no."""
    import stat

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return os.isatty(0) or stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def cmd_metrics(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        data = c.get(f"/api/apps/{app}/metrics", since=args.since)
    if args.json:
        _print_json(data)
    else:
        from minipaas.metrics.cli_view import render_metrics

        print(render_metrics(data))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("The terminal UI needs a terminal; over SSH use `ssh -t`.")
    return open_tui(_client(args))


def open_tui(client: Any) -> int:
    """Run the TUI on `client`'s server (also the SSH entry point's `ssh -t`, without argparse).

    Importing Textual takes ~0.3 s of the 1 s budget to the first apps list, so the list is
    requested first, in a thread: its answer is in by the time the screen is drawn. Loading
    Textual and drawing the first frames allocate a lot and free little, so the cyclic GC, which
    would only walk the new objects again and again (~10% of that time), is off until the TUI
    has drawn the list (`run_tui` turns it back on).
    """
    import gc

    first_apps = client.fetch("/api/apps")
    gc.disable()
    try:
        from tui.app import run_tui
    except BaseException:
        gc.enable()
        raise
    return run_tui(client, first_apps=first_apps)


def cmd_domains(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        domains = c.get(f"/api/apps/{app}/domains")
        info = c.get(f"/api/apps/{app}")
    if args.json:
        _print_json(domains)
        return 0
    print(f"=== {app} Domains")
    print(info["url"].split("//", 1)[1].split(":")[0])
    for d in domains:
        print(d["hostname"])
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    """`certs` / `certs:auto`: each of the app's hostnames, its certificate's status, issuer
    and expiry; Caddy's last error for those it fails to get."""
    app = _app(args)
    with _client(args) as c:
        rows = c.get(f"/api/apps/{app}/certs")
    if args.json:
        _print_json(rows)
        return 0
    print(f"=== {app} Automated Certificate Management")
    _table(
        [
            [r["hostname"], r["status"], r["issuer"] or "", (r["expires"] or "")[:10]]
            for r in rows
        ],
        ["Domain", "Status", "Issuer", "Expires"],
    )
    for r in rows:
        if r["status"] == "failing":
            print(f"\n{r['hostname']}: failing since {r['error_at'][:19]}Z: {r['error']}")
        elif r["status"] == "pending" and r.get("note"):
            print(f"\n{r['hostname']}: pending: {r['note']}")
    return 0


def cmd_domains_add(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        d = c.request("POST", f"/api/apps/{app}/domains", json_body={"hostname": args.hostname})
    print(f"Added {d['hostname']} to {app}; point its DNS at this server.")
    return 0


def cmd_domains_remove(args: argparse.Namespace) -> int:
    from minipaas import names

    app = _app(args)
    host = names.hostname(args.hostname)  # the server's rule: `a/b` would miss the route
    with _client(args) as c:
        c.request("DELETE", f"/api/apps/{app}/domains/{host}")
    print(f"Removed {host} from {app}.")
    return 0


def cmd_drains(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        drains = c.get(f"/api/apps/{app}/drains")
    if args.json:
        _print_json(drains)
        return 0
    if not drains:
        print(f"{app} has no log drains; add one with `minipaas drains:add URL -a {app}`.")
        return 0
    print(f"=== {app} Drains")
    for d in drains:
        status = d.get("status") or {}
        if status.get("failing_since"):
            state = f"failing for {_ago(status['failing_since'])}: {status.get('error')}"
        else:
            state = f"{status.get('delivered', 0)} lines delivered"
        if status.get("dropped"):
            state += f", {status['dropped']} dropped"
        print(f"{_url_shown(d['url'])} ({d['token']}): {state}")
    return 0


def _url_shown(url: str) -> str:
    from minipaas.drains import redacted

    return redacted(url)


def cmd_drains_add(args: argparse.Namespace) -> int:
    from minipaas.drains import parse_drain_url

    app = _app(args)
    url = parse_drain_url(args.url)  # the server's rule, checked before a request
    with _client(args) as c:
        d = c.request("POST", f"/api/apps/{app}/drains", json_body={"url": url.url})
    print(f"Added drain {url.shown()} ({d['token']}) to {app}: its new log lines go there.")
    return 0


def cmd_drains_remove(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        d = c.request("DELETE", f"/api/apps/{app}/drains", json_body={"drain": args.drain})
    print(f"Removed drain {_url_shown(d['url'])} ({d['removed']}) from {app}.")
    return 0


def _buildpack_list(urls: Sequence[str]) -> str:
    return urls[0] if len(urls) == 1 else ", ".join(f"{n}. {u}" for n, u in enumerate(urls, 1))


def cmd_buildpacks(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        urls = c.buildpacks(app)
    if args.json:
        _print_json([{"index": n, "url": u} for n, u in enumerate(urls, start=1)])
    elif not urls:
        print(
            f"{app} has no buildpacks set: each build detects one (or follows BUILDPACK_URL, "
            "a .buildpacks file or app.json); set one with `minipaas buildpacks:set URL`."
        )
    else:
        print(f"=== {app} Buildpack URL{'s' if len(urls) > 1 else ''}")
        for n, url in enumerate(urls, start=1):
            print(f"{n}. {url}")
    return 0


def _buildpacks_changed(app: str, done: str, urls: Sequence[str]) -> str:
    """What a `buildpacks:*` change did, Heroku's words, in one line: no release is made."""
    uses = f"will use {_buildpack_list(urls)}" if urls else "will detect its buildpack"
    return (
        f"{done} Next release on {app} {uses}: push to make one (`git commit --allow-empty` "
        "and push, to rebuild the same code)."
    )


def cmd_buildpacks_set(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        urls = c.set_buildpack(app, args.url, 1 if args.index is None else args.index)
    print(_buildpacks_changed(app, "Buildpack set.", urls))
    return 0


def cmd_buildpacks_add(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        urls = c.add_buildpack(app, args.url, args.index)
    print(_buildpacks_changed(app, "Buildpack added.", urls))
    return 0


def cmd_buildpacks_remove(args: argparse.Namespace) -> int:
    app = _app(args)
    if args.url is not None and args.index is not None:
        from minipaas.names import shown

        raise UsageError(f"Give the buildpack to remove by URL ({shown(args.url)}) or by -i "
                         f"{args.index}, not both.")
    if args.url is None and args.index is None:
        raise UsageError("Name the buildpack to remove: buildpacks:remove URL, or -i N.")
    with _client(args) as c:
        urls = c.remove_buildpack(app, args.url, args.index)
    print(_buildpacks_changed(app, "Buildpack removed.", urls))
    return 0


def cmd_buildpacks_clear(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        urls = c.replace_buildpacks(app, [])
    print(_buildpacks_changed(app, "Buildpacks cleared.", urls))
    return 0


def _addon_service(text: str) -> tuple[str, str | None]:
    from minipaas.addons import service

    kind, plan = service(text)  # the server's rule, checked before a request
    return kind.name, plan


def cmd_addons(args: argparse.Namespace) -> int:
    explicit = args.app or os.environ.get("MINIPAAS_APP") or _app_from_git_remote()
    app = _app(args) if explicit else None
    with _client(args) as c:
        addons = c.get(f"/api/apps/{app}/addons" if app else "/api/addons")
    if args.json:
        _print_json(addons)
        return 0
    if not addons:
        where = f"{app} has" if app else "No app has"
        print(f"{where} no add-ons; create one with `minipaas addons:create heroku-postgresql"
              f" -a {app or 'APP'}` (or heroku-redis).")
        return 0
    rows = [(a["app"], a["service"], a["name"], a["plan"], a["config_var"]) for a in addons]
    _table(rows, ["App", "Add-on", "Name", "Plan", "Config var"])
    return 0


def cmd_addons_create(args: argparse.Namespace) -> int:
    app = _app(args)
    service, plan = _addon_service(args.service)
    var, attachment, _ = _addon_words(service)
    if args.attach_as is not None and args.attach_as.removesuffix("_URL") != attachment:
        from minipaas.names import shown

        raise UsageError(f"--as {shown(args.attach_as)} is not offered: an app has one "
                         f"{service} add-on here, always attached as {var}.")
    with _client(args) as c:
        a = c.request("POST", f"/api/apps/{app}/addons", json_body={"service": args.service})
    ignored = f" (plan {plan!r} ignored: one local plan)" if plan else ""
    print(f"Created {service} {a['name']} for {app}{ignored}; its URL is set as "
          f"{a['config_var']}.")
    return 0


def cmd_addons_destroy(args: argparse.Namespace) -> int:
    app = _app(args)
    from minipaas.addons import SERVICES

    for kind in SERVICES:  # Heroku's attachment: DATABASE_URL, DATABASE
        if args.service in _addon_words(kind.name)[:2]:
            args.service = kind.name
    # The service (heroku-postgresql) or the add-on's own name, as `addons` lists it: the
    # server knows the names.
    if args.confirm != app:
        from minipaas.addons import service
        from minipaas.errors import UserError

        try:
            what = f"its {service(args.service)[0].data}"
        except UserError:  # an add-on's own name
            what = "it"
        raise UsageError(
            f"Destroying {args.service} of {app!r} deletes {what} and all its data; "
            f"run again with --confirm {app}."
        )
    with _client(args) as c:
        done = c.request(
            "DELETE", f"/api/apps/{app}/addons/{_segment(args.service)}", params={"confirm": app}
        )
    d = done["destroyed"]
    print(f"Destroyed {d['service']} {d['name']} of {app}{_and_backups(done)}; "
          f"{d['config_var']} is unset.")
    return 0


def _bytes(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def _addon_words(service: str) -> tuple[str, str, str]:
    """What Heroku's optional DATABASE argument (`pg:backups:capture DATABASE_URL`) may say for
    `service`'s add-on besides the add-on's own name (an app has at most one of each kind
    here): its config var, its attachment (the var without _URL) and the service itself."""
    from minipaas.addons import by_name

    var = by_name(service).config_var
    return var, var.removesuffix("_URL"), service


def _check_addon_arg(args: argparse.Namespace, app: str, service: str) -> None:
    """Heroku's `[DATABASE]` argument of the pg: and redis: words (`pg:reset DATABASE_URL`,
    `redis:cli REDIS_URL`): accepted when it names the app's add-on of that kind, refused in
    one sentence otherwise (a Heroku app may have several databases; a minipaas app has one)."""
    from minipaas.errors import UserError
    from minipaas.names import shown

    given = getattr(args, "addon", None)
    if given is None or given in _addon_words(service):
        return
    with _client(args) as c:
        names = [a["name"] for a in c.get(f"/api/apps/{app}/addons") if a["service"] == service]
    if given in names:
        return
    words = " or ".join([_addon_words(service)[0], *names])
    raise UserError(
        f"The app {app!r} has no {service} add-on named {shown(given)}: name it {words}, or "
        f"leave it out (an app has one)."
    )


def cmd_pg_info(args: argparse.Namespace) -> int:
    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        info = c.get(f"/api/apps/{app}/addons/heroku-postgresql/info")
    if args.json:
        _print_json(info)
        return 0
    print(f"=== {info['config_var']} ({info['name']})")
    print(f"Plan:        {info['plan']} (minipaas's own cluster, port {info['port']})")
    print(f"PG Version:  {info['version']}")
    print(f"Data Size:   {_bytes(int(info['size']))}")
    print(f"Connections: {info['connections']}")
    print(f"Created:     {_when(info['created_at'])}")
    return 0


def cmd_pg_psql(args: argparse.Namespace) -> int:
    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        c.get(f"/api/apps/{app}/addons/heroku-postgresql/info")  # has one, and it answers
    command = 'psql "$DATABASE_URL"'
    if args.sql_command is not None:
        command += " -c " + shlex.quote(args.sql_command)
    # The system's psql, as the app's uid in a one-off without the slug: as on Heroku (where
    # psql runs on the user's machine) it needs no push, and no app code runs before it.
    return _run_one_off(args, app, command, bare=True)


def cmd_redis_info(args: argparse.Namespace) -> int:
    app = _app(args)
    _check_addon_arg(args, app, "heroku-redis")
    with _client(args) as c:
        info = c.get(f"/api/apps/{app}/addons/heroku-redis/info")
    if args.json:
        _print_json(info)
        return 0
    print(f"=== {info['config_var']} ({info['name']})")
    print(f"Plan:        {info['plan']} (minipaas's own redis-server, port {info['port']})")
    print(f"Version:     {info['version']}")
    print(f"Memory:      {_bytes(int(info['used_memory']))} used of "
          f"{_bytes(int(info['maxmemory']))} (policy {info['maxmemory_policy']})")
    print(f"Clients:     {info['clients']}")
    print(f"Keys:        {info['keys']}")
    print(f"Persistence: {info['persistence']}")
    print(f"Created:     {_when(info['created_at'])}")
    return 0


def cmd_redis_maxmemory(args: argparse.Namespace) -> int:
    app = _app(args)
    _check_addon_arg(args, app, "heroku-redis")
    with _client(args) as c:
        done = c.request("PUT", f"/api/apps/{app}/addons/heroku-redis/maxmemory",
                         json_body={"policy": args.policy})
    # Heroku's two lines.
    print(f"Maxmemory policy for {done['name']} ({done['config_var']}) set to "
          f"{done['maxmemory_policy']}.")
    print(f"{done['maxmemory_policy']} {done['description']}.")
    return 0


#: redis-cli connected to REDIS_URL, the password passed in its environment (REDISCLI_AUTH),
#: not in its argv, where any user of the host could read it in `ps`.
REDIS_CLI = (
    'hp="${REDIS_URL##*@}"; pw="${REDIS_URL%@*}"; REDISCLI_AUTH="${pw#redis://:}" '
    'exec redis-cli -h "${hp%:*}" -p "${hp##*:}"'
)


def cmd_redis_cli(args: argparse.Namespace) -> int:
    app = _app(args)
    if args.confirm is not None and args.confirm != app:  # Heroku's flag, for its paid plans
        from minipaas.names import shown

        raise UsageError(f"--confirm {shown(args.confirm)} does not name the app {app!r}; "
                         f"leave it out or say --confirm {app}.")
    _check_addon_arg(args, app, "heroku-redis")
    with _client(args) as c:
        c.get(f"/api/apps/{app}/addons/heroku-redis/info")  # has one, and it answers
    command = REDIS_CLI
    if args.redis_command is not None:
        words = shlex.split(args.redis_command)
        if not words:
            raise UsageError("No Redis command given after -c; say one, such as -c PING.")
        command += " " + shlex.join(words)
    return _run_one_off(args, app, command, bare=True)  # as pg:psql


def _backup_status(b: dict[str, Any]) -> str:
    if b["status"] == "completed" and b.get("finished_at"):
        return f"Completed {_when(b['finished_at'])}"
    if b["status"] == "failed":
        return f"Failed: {b.get('error') or 'unknown'}"
    return "Running"


def cmd_pg_backups(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        backups = c.get(f"/api/apps/{app}/backups")
        schedule = c.get(f"/api/apps/{app}/backups/schedule")
    if args.json:
        _print_json(backups)
        return 0
    if not backups:
        print(f"{app} has no backups; capture one with `minipaas pg:backups:capture -a {app}`.")
    else:
        rows = [
            (b["id"], _when(b["created_at"]), _backup_status(b),
             _bytes(int(b["size"])) if b.get("size") is not None else "", b["kind"])
            for b in reversed(backups)
        ]
        _table(rows, ["ID", "Created at", "Status", "Size", "Method"])
    if schedule.get("at"):
        print(f"Daily backups at {schedule['at']} UTC (the newest {schedule['keep']} kept).")
    return 0


def cmd_pg_backups_info(args: argparse.Namespace) -> int:
    """Heroku's `pg:backups:info [ID]`: one backup (the newest without ID) in full."""
    from minipaas.errors import UserError

    app = _app(args)
    wanted = None if args.backup is None else _backup_segment(args.backup)
    with _client(args) as c:
        backups = c.get(f"/api/apps/{app}/backups")
    found = [b for b in backups if wanted in (None, b["id"])]
    if not found:
        raise UserError(
            f"The app {app!r} has no backup {wanted}; see `minipaas pg:backups -a {app}`."
            if wanted else
            f"{app} has no backups; capture one with `minipaas pg:backups:capture -a {app}`."
        )
    b = max(found, key=lambda b: int(b["number"]))
    if args.json:
        _print_json(b)
        return 0
    print(f"=== Backup {b['id']}")
    print(f"Started at:  {_when(b['created_at'])}")
    if b.get("finished_at"):
        print(f"Finished at: {_when(b['finished_at'])}")
    status = {"completed": "Completed", "failed": "Failed", "running": "Running"}
    print(f"Status:      {status.get(b['status'], b['status'])}"
          f"{': ' + b['error'] if b.get('error') else ''}")
    print(f"Type:        {str(b['kind']).capitalize()}")
    if b.get("size") is not None:
        print(f"Backup size: {_bytes(int(b['size']))}")
    return 0


def cmd_pg_backups_capture(args: argparse.Namespace) -> int:
    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        b = c.request("POST", f"/api/apps/{app}/backups")
    print(f"Captured {b['id']} of {app}'s database ({_bytes(int(b['size']))}); download it with "
          f"`minipaas pg:backups:download {b['id']} -a {app}`.")
    return 0


def _backup_segment(given: str | None) -> str:
    from minipaas.backups import backup_number

    if given is None:
        return "latest"
    return f"b{backup_number(given):03d}"  # the server's rule, checked before a request


def _writable_file(target: Path, given: str) -> None:
    """Refuse, before any request, an -o that cannot be written: said of the path given, not
    of the temporary file next to it, and not as a failed request to the server."""
    from minipaas.errors import UserError
    from minipaas.names import shown

    if given.endswith("/") or target.is_dir():
        raise UserError(f"Cannot write the backup to {shown(given)}: it is a directory; name a "
                        f"file in it, e.g. -o {target / 'latest.dump'}.")
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"Cannot write the backup to {shown(given)}: there is no directory "
                        f"{shown(str(parent))}.")
    if not os.access(parent, os.W_OK):
        raise UserError(f"Cannot write the backup to {shown(given)}: the directory "
                        f"{shown(str(parent))} is not writable.")


def cmd_pg_backups_download(args: argparse.Namespace) -> int:
    app = _app(args)
    ref = _backup_segment(args.backup)
    output = args.output or "latest.dump"
    path = f"/api/apps/{app}/backups/{ref}/download"
    with _client(args) as c:
        if output == "-":
            sink = sys.stdout.buffer
            headers = c.download(path, sink.write)
            sink.flush()
            print(f"Downloaded {headers.get('x-minipaas-backup', ref)} of {app} to standard "
                  "output.", file=sys.stderr)
            return 0
        # Under a temporary name until complete: an interrupted download never leaves a
        # truncated dump where a complete one is expected.
        target = Path(output)
        _writable_file(target, output)
        partial = target.with_name(f".{target.name}.partial")
        files: list[Any] = []  # opened at the first byte: a refused download leaves nothing

        def owner_only() -> Any:
            # A dump holds the whole database (users, password hashes…): the caller's alone,
            # as the server keeps its own copies, whatever the umask.
            partial.unlink(missing_ok=True)
            return os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

        def write(chunk: bytes) -> None:
            if not files:
                files.append(owner_only())
            files[0].write(chunk)

        try:
            try:
                headers = c.download(path, write)
            finally:
                for out in files:
                    out.close()
            if not files:
                owner_only().close()
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    size = target.stat().st_size
    print(f"Downloaded {headers.get('x-minipaas-backup', ref)} of {app} to {output} "
          f"({_bytes(size)}).")
    return 0


def _restore_source(args: argparse.Namespace, app: str) -> None:
    """Heroku's `pg:backups:restore [BACKUP] [DATABASE]`, in place: `b001 DATABASE_URL`,
    `DATABASE_URL` alone (the newest backup), and `APP::b001` for this app's own backups."""
    from minipaas.errors import UserError
    from minipaas.names import shown

    given = args.backup
    if given is None:
        return
    # A database alone (the newest backup): its words, Heroku's colour names
    # (HEROKU_POSTGRESQL_RED, refused by name below) or an add-on name (`demo_1a2b3c4d`).
    if args.addon is None and (given in _addon_words("heroku-postgresql")
                               or given.startswith("HEROKU_POSTGRESQL")
                               or re.fullmatch(r"[a-z][a-z0-9_]*_[0-9a-f]{8}", given)):
        args.backup, args.addon = None, given
        return
    owner, sep, backup = given.partition("::")
    if sep:
        if owner != app:
            raise UserError(
                f"Restoring another app's backup ({shown(given)}) is not offered: download it "
                f"with `minipaas pg:backups:download {backup} -a {owner}` and restore that file "
                f"with --file."
            )
        args.backup = backup


def cmd_pg_backups_restore(args: argparse.Namespace) -> int:
    app = _app(args)
    _restore_source(args, app)
    if args.dump_file is not None and args.backup is not None:
        raise UsageError(
            f"Give a backup id ({args.backup}) or --file, not both: --file restores a dump "
            "of your own."
        )
    ref = _backup_segment(args.backup)
    if args.confirm != app:
        raise UsageError(
            f"Restoring a backup into the database of {app!r} overwrites its data; run again "
            f"with --confirm {app}."
        )
    _check_addon_arg(args, app, "heroku-postgresql")
    if args.dump_file is not None:
        return _restore_upload(args, app)
    with _client(args) as c:
        done = c.request(
            "POST", f"/api/apps/{app}/backups/{ref}/restore", params={"confirm": app}
        )
    print(f"Restored {done['restored']['id']} into {app}'s database {done['database']}.")
    return 0


def _restore_upload(args: argparse.Namespace, app: str) -> int:
    """pg:backups:restore --file FILE|-: the dump is sent to the server as it is read."""
    path = f"/api/apps/{app}/backups/upload"
    shown = "standard input" if args.dump_file == "-" else args.dump_file
    with _client(args) as c:
        if args.dump_file == "-":
            done = c.upload(path, sys.stdin.buffer.read, params={"confirm": app})
        else:
            with open(args.dump_file, "rb") as dump:
                done = c.upload(path, dump.read, params={"confirm": app})
    print(f"Restored the dump from {shown} into {app}'s database {done['database']}.")
    return 0


def cmd_pg_backups_delete(args: argparse.Namespace) -> int:
    app = _app(args)
    ref = _backup_segment(args.backup)
    if args.confirm != app:
        raise UsageError(
            f"Deleting backup {ref} of {app!r} cannot be undone; run again with --confirm {app}."
        )
    with _client(args) as c:
        done = c.request("DELETE", f"/api/apps/{app}/backups/{ref}", params={"confirm": app})
    print(f"Deleted backup {done['deleted']['id']} of {app}.")
    return 0


def cmd_pg_backups_schedule(args: argparse.Namespace) -> int:
    from minipaas.backups import daily_time

    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    at = daily_time(args.at)  # the server's rule, checked before a request
    with _client(args) as c:
        done = c.request("PUT", f"/api/apps/{app}/backups/schedule", json_body={"at": at})
    print(f"Scheduled a daily backup of {app}'s database at {done['at']} UTC (the newest "
          f"{done['keep']} scheduled ones are kept).")
    return 0


def cmd_pg_backups_schedules(args: argparse.Namespace) -> int:
    """Heroku's `pg:backups:schedules`: the app's daily backup time, if any."""
    app = _app(args)
    with _client(args) as c:
        schedule = c.get(f"/api/apps/{app}/backups/schedule")
    if args.json:
        _print_json(schedule)
    elif schedule.get("at"):
        print(f"=== Backup Schedules\nDATABASE_URL: daily at {schedule['at']} UTC (the newest "
              f"{schedule['keep']} scheduled backups kept)")
    else:
        print(f"{app} has no backup schedule; set one with "
              f"`minipaas pg:backups:schedule --at 02:00 -a {app}`.")
    return 0


def cmd_pg_backups_unschedule(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        c.request("DELETE", f"/api/apps/{app}/backups/schedule")
    print(f"Stopped the daily backups of {app}'s database (those made are kept).")
    return 0


def cmd_pg_reset(args: argparse.Namespace) -> int:
    app = _app(args)
    if args.confirm != app:
        raise UsageError(
            f"Resetting the database of {app!r} deletes all its data; run again with "
            f"--confirm {app}."
        )
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        done = c.request(
            "POST", f"/api/apps/{app}/addons/heroku-postgresql/reset", params={"confirm": app}
        )
    print(f"Reset {app}'s database {done['reset']['name']}: it is empty; "
          f"{done['reset']['config_var']} is unchanged.")
    return 0


def _rotate(args: argparse.Namespace, service: str, what: str) -> dict[str, Any]:
    """A new password for the app's add-on of `service`, once --confirm names the app."""
    from minipaas.names import shown

    app = _app(args)
    if args.confirm is not None and args.confirm != app:
        raise UsageError(
            f"--confirm {shown(args.confirm)} does not name the app {app!r}: rotating the "
            f"credentials of its {what} ends its connections and restarts its dynos; run again "
            f"with --confirm {app}."
        )
    if args.confirm != app:
        raise UsageError(
            f"Rotating the credentials of {app}'s {what} ends its connections and restarts its "
            f"dynos; run again with --confirm {app}."
        )
    _check_addon_arg(args, app, service)
    with _client(args) as c:
        done: dict[str, Any] = c.request(
            "POST", f"/api/apps/{app}/addons/{service}/credentials/rotate",
            params={"confirm": app},
        )
    return done


def cmd_pg_credentials_rotate(args: argparse.Namespace) -> int:
    """Heroku's `pg:credentials:rotate`: a new password for the app's role, its sessions
    ended, DATABASE_URL changed by a config release."""
    done = _rotate(args, "heroku-postgresql", "database")
    print(f"Rotated the credentials of {done['name']} ({done['config_var']}) of {done['app']}: "
          f"the old password no longer works; released v{done['release']} with the new "
          f"{done['config_var']}.")
    return 0


def cmd_redis_credentials(args: argparse.Namespace) -> int:
    """Heroku's `redis:credentials`: the URL (with its password); with --reset a new password,
    its clients disconnected, REDIS_URL changed by a config release."""
    app = _app(args)
    if args.reset:
        done = _rotate(args, "heroku-redis", "Redis")
        print(f"Reset the credentials of {done['name']} ({done['config_var']}) of "
              f"{done['app']}: the old password no longer works; released v{done['release']} "
              f"with the new {done['config_var']}.")
        return 0
    if args.confirm is not None and args.confirm != app:
        from minipaas.names import shown

        raise UsageError(f"--confirm {shown(args.confirm)} does not name the app {app!r}; "
                         f"leave it out or say --confirm {app}.")
    _check_addon_arg(args, app, "heroku-redis")
    with _client(args) as c:
        found = c.get(f"/api/apps/{app}/addons/heroku-redis/credentials")
    print(found["url"])
    return 0


def _running_for(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{seconds % 60:06.3f}"


def cmd_pg_ps(args: argparse.Namespace) -> int:
    """Heroku's `pg:ps`: the queries running on the app's database now (idle connections are
    left out, as Heroku's are)."""
    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        found = c.get(f"/api/apps/{app}/addons/heroku-postgresql/activity",
                      **({"verbose": "true"} if args.verbose else {}))
    if args.json:
        _print_json(found["connections"])
        return 0
    if not found["connections"] and args.verbose:
        print(f"No connections to {app}'s database {found['name']}.")
        return 0
    if not found["connections"]:
        print(f"No queries running on {app}'s database {found['name']} (idle connections are "
              "listed by pg:ps --verbose).")
        return 0
    _table(
        [
            (row["pid"], row["state"] or "", row["source"] or "", _running_for(row["running_for"]),
             "yes" if row["waiting"] else "no", " ".join(str(row["query"] or "").split()))
            for row in found["connections"]
        ],
        ["pid", "state", "source", "running_for", "waiting", "query"],
    )
    return 0


def cmd_pg_kill(args: argparse.Namespace) -> int:
    """Heroku's `pg:kill PID [--force]`: cancel a query of the app's database (end its
    connection with --force); a pid of another database is refused by the server."""
    from minipaas.errors import UserError
    from minipaas.names import shown

    app = _app(args)
    if not re.fullmatch(r"[0-9]{1,10}", args.pid) or not 0 < int(args.pid) < 2**31:
        raise UserError(f"Invalid pid {shown(args.pid)}: give a number `minipaas pg:ps -a {app}` "
                        "shows.")
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        done = c.request("POST", f"/api/apps/{app}/addons/heroku-postgresql/kill",
                         json_body={"pid": int(args.pid), "force": bool(args.force)})
    if args.force:
        print(f"Terminated the connection of pid {done['pid']} to {app}'s database "
              f"{done['name']}.")
    else:
        print(f"Cancelled the query of pid {done['pid']} on {app}'s database {done['name']}.")
    return 0


def cmd_pg_killall(args: argparse.Namespace) -> int:
    """Heroku's `pg:killall`: end every connection to the app's database."""
    app = _app(args)
    _check_addon_arg(args, app, "heroku-postgresql")
    with _client(args) as c:
        done = c.request("POST", f"/api/apps/{app}/addons/heroku-postgresql/killall")
    count = int(done["terminated"])
    print(f"Terminated {count} connection{'' if count == 1 else 's'} to {app}'s database "
          f"{done['name']}.")
    return 0


def cmd_maintenance(on: bool) -> Handler:
    def run(args: argparse.Namespace) -> int:
        app = _app(args)
        with _client(args) as c:
            c.request("PUT", f"/api/apps/{app}/maintenance", json_body={"on": on})
        print(f"Maintenance mode {'on' if on else 'off'} for {app}.")
        return 0

    return run


def cmd_help(args: argparse.Namespace) -> int:
    """`help [COMMAND]`, Heroku's word: the list of commands, or one command's flags (an
    unknown one is named by `_Parser.error`, with the nearest word)."""
    parser = build_parser()
    if args.topic is None:
        parser.print_help()
        return 0
    parser.parse_args([args.topic, "--help"])  # prints it and exits 0, as `COMMAND --help`
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with _client(args) as c:
        keys = c.get("/api/keys")
    if args.json:
        _print_json(keys)
    elif not keys:
        print("No SSH keys; add one with `minipaas keys:add NAME < ~/.ssh/id_ed25519.pub`.")
    else:
        _table(
            [(k["name"], k["fingerprint"], k["public_key"][:24] + "…") for k in keys],
            ["name", "fingerprint", "key"],
        )
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    if not args.file and sys.stdin.isatty():
        raise UsageError(
            "Pipe the public key in: `minipaas keys:add NAME < ~/.ssh/id_ed25519.pub`."
        )
    text = _public_key_text(args.file)
    with _client(args) as c:
        key = c.request("POST", "/api/keys", json_body={"name": args.name, "public_key": text})
    print(f"Added SSH key {key['name']} ({key['fingerprint']}).")
    return 0


MAX_PUBLIC_KEY = 64 * 1024
"""The most `keys:add` reads: a public key line is a few kB at most (RSA 16384: 2.8 kB)."""


def _public_key_text(path: str | None) -> str:
    """The public key from the file `path`, or stdin: read up to MAX_PUBLIC_KEY bytes (not all
    of `--file /dev/zero`, or of an endless `ssh … keys:add NAME < /dev/zero`), as UTF-8 text
    (a binary file crashed the CLI with a UnicodeDecodeError)."""
    from minipaas.errors import UserError

    what = "Standard input" if path is None else f"The file {path!r}"
    if path is None:
        raw = sys.stdin.buffer.read(MAX_PUBLIC_KEY + 1)
    else:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PUBLIC_KEY + 1)
    if len(raw) > MAX_PUBLIC_KEY:
        raise UserError(
            f"{what} holds more than {MAX_PUBLIC_KEY // 1024} KiB; a public "
            "key is one line such as 'ssh-ed25519 AAAA… you@host'."
        )
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, as some editors save it, is no harm
    except UnicodeDecodeError:
        raise UserError(
            f"{what} is not UTF-8 text; a public key is one line such as "
            "'ssh-ed25519 AAAA… you@host'."
        ) from None


def cmd_keys_remove(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.request("DELETE", f"/api/keys/{_segment(args.name)}")
    print(f"Removed SSH key {args.name}.")
    return 0


def cmd_git_remote(args: argparse.Namespace) -> int:
    app = _app(args)
    with _client(args) as c:
        info = c.get(f"/api/apps/{app}")
        status = c.get("/api/status")
    if args.ssh:
        host = os.environ.get("MINIPAAS_SSH_HOST") or f"minipaas.{status['domain']}"
        print(f"minipaas@{host}:{app}")
    else:
        print(info["git_url"])
    return 0


def cmd_auth_token(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(c.get("/api/auth/token")["token"])
    return 0


# -- server-side commands ----------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    from minipaas.paths import default_data_dir
    from minipaas.server import run_server
    from minipaas.settings import Settings, default_ports

    http_default, https_default = default_ports()
    domain = args.domain
    if domain != "localhost":
        domain = server_domain(domain)
    check_server_tools()
    exe = shutil_which_self()
    settings = Settings(
        data_dir=Path(args.data_dir or os.environ.get("MINIPAAS_DATA_DIR") or default_data_dir()),
        domain=domain,
        http_port=args.http_port or http_default,
        https_port=args.https_port or https_default,
        listen_host=args.listen,
        api_port=args.api_port,
        acme_email=args.email,
        acme_ca=args.acme_ca,
        authorized_keys=Path(args.authorized_keys) if args.authorized_keys else None,
        stop_grace=args.stop_grace,
        metrics_interval=args.metrics_interval,
        minipaas_bin=exe,
        ssh_user=args.ssh_user,
    )
    return run_server(settings)


#: The programs `minipaas server` runs, and the Debian package of each.
SERVER_TOOLS = {
    "git": "git", "bwrap": "bubblewrap", "choom": "util-linux", "unshare": "util-linux",
}  # fmt: skip
#: Run only as root (dynos under their own uids).
ROOT_TOOLS = {"setpriv": "util-linux", "prlimit": "util-linux"}


def missing_tools_message(missing: dict[str, str]) -> str | None:
    """One sentence naming the programs not found and the packages that bring them (pure)."""
    if not missing:
        return None
    tools = ", ".join(sorted(missing))
    packages = " ".join(sorted(set(missing.values())))
    return (
        f"minipaas server needs {tools}, not found on PATH: install them "
        f"(apt-get install {packages}) or run install.sh again."
    )


def check_server_tools() -> None:
    """Raise `UserError` before starting when a program the server needs is missing, rather
    than failing on the first push or dyno (or with a traceback, for Caddy)."""
    import shutil

    from minipaas.errors import MinipaasError, UserError
    from minipaas.router.caddy import find_caddy

    wanted = {**SERVER_TOOLS, **(ROOT_TOOLS if os.geteuid() == 0 else {})}
    missing = {tool: pkg for tool, pkg in wanted.items() if shutil.which(tool) is None}
    if message := missing_tools_message(missing):
        raise UserError(message)
    try:
        find_caddy()
    except MinipaasError as exc:
        raise UserError(
            f"{str(exc).removesuffix('.')}, or run install.sh again (it puts Caddy next to "
            "minipaas)."
        ) from exc


def server_domain(domain: str) -> str:
    """`--domain` of `minipaas server`: a DNS name whose subdomains are the apps, so not an
    IP address (APP.1.2.3.4 resolves nowhere)."""
    from minipaas import names
    from minipaas.errors import UserError

    host = names.hostname(domain)
    if host.rsplit(".", 1)[-1].isdigit():
        raise UserError(
            f"Invalid domain '{domain}': an IP address cannot be the domain, apps answer at "
            f"APP.DOMAIN; use a DNS name with a wildcard record pointing here (with no DNS of "
            f"your own, {host}.sslip.io)."
        )
    return host


def shutil_which_self() -> str:
    """The absolute path of this `minipaas` executable, for forced commands."""
    import shutil

    if getattr(sys, "frozen", False):
        return os.path.realpath(sys.executable)
    argv0 = sys.argv[0]
    if os.path.sep in argv0 and os.path.exists(argv0):
        return os.path.abspath(argv0)
    return shutil.which("minipaas") or os.path.abspath(argv0)


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the server, its dynos and Caddy; works even when the server itself is gone."""
    from minipaas.client import ApiError, Client, default_data_dir
    from minipaas.postgres import stop_orphan as stop_postgres
    from minipaas.redis import stop_orphans as stop_redis
    from minipaas.router import resolver
    from minipaas.router.caddy import stop_orphan, stop_strays
    from minipaas.supervisor.supervisor import stop_orphans

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    pid = _server_pid(data_dir)
    if pid is not None:
        try:
            with Client(socket=data_dir / "minipaas.sock", timeout=10.0) as client:
                client.request("POST", "/api/admin/down")
        except ApiError:
            os.kill(pid, 15)  # unreachable API: SIGTERM at least stops the server
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            print(
                f"minipaas (pid {pid}) did not stop within {args.timeout:.0f} s.", file=sys.stderr
            )
            return 1
    # Whatever a killed server left behind: dynos outlive it by design, and so does Caddy.
    dynos = stop_orphans(data_dir / "run" / "dynos")
    caddy = stop_orphan(data_dir / "caddy")
    caddy = resolver.stop_orphan(data_dir / "caddy") or caddy
    # And any whose pid file was lost: found by the data dir's paths in their command lines.
    caddy = bool(stop_strays(data_dir / "caddy")) or caddy
    caddy = bool(resolver.stop_strays(data_dir / "caddy")) or caddy
    # The add-on PostgreSQL cluster outlives a killed server too (after the dynos, its clients).
    postgres = stop_postgres(data_dir / "postgres")
    redis = stop_redis(data_dir / "redis")
    if pid is None and not dynos and not caddy and not postgres and not redis:
        print(f"Nothing of minipaas is running for {data_dir}.")
    else:
        extra = [name for name, ran in (("PostgreSQL", postgres), ("Redis", redis)) if ran]
        print("Stopped minipaas, its dynos and Caddy"
              + (f" and {' and '.join(extra)}." if extra else "."))
    return 0


def _server_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "minipaas.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _acme_ca(text: str) -> str:
    """`--acme-ca`: an https:// ACME directory URL (anything else is a usage error)."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        ok = url.scheme == "https" and bool(url.hostname) and not any(c.isspace() for c in text)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"use an https:// ACME directory URL (such as "
            f"https://acme-staging-v02.api.letsencrypt.org/directory), not {text!r}"
        )
    return text


def _interval(text: str) -> float:
    """A sampling interval: 0.5 to 60 seconds (anything else is a usage error)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 60:
        raise argparse.ArgumentTypeError(f"use 0.5 to 60 seconds, not {text!r}")
    return value


def cmd_ssh(args: argparse.Namespace) -> int:
    from minipaas.ssh import serve_ssh

    return serve_ssh(
        Path(args.data_dir) if args.data_dir else None,
        args.key,
        os.environ.get("SSH_ORIGINAL_COMMAND", ""),
    )


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minipaas", description="Heroku for one server.")
    parser.add_argument("--version", action="version", version=f"minipaas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(
        name: str, handler: Handler, help_: str, *, app: bool = False, json_out: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        p.add_argument("--data-dir", help="reach the local server of this data dir")
        if app:
            p.add_argument("-a", "--app", action=_OneApp,
                           help="the app (default: from the `minipaas` git remote)")
        if json_out:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("server", cmd_server, "run the minipaas server (control plane)")
    p.add_argument("--domain", default="localhost", help="apps answer at NAME.DOMAIN")
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument("--https-port", type=int, default=0)
    p.add_argument("--listen", default="", help="router listen address (default: all)")
    p.add_argument(
        "--api-port", type=int, default=None,
        help="also serve the API on this loopback TCP port (0: any; default: none)",
    )
    p.add_argument("--email", help="ACME account e-mail for public domains")
    p.add_argument(
        "--acme-ca", type=_acme_ca, default=None, metavar="URL",
        help="ACME directory URL for public domains' certificates (default: Let's Encrypt)",
    )
    p.add_argument("--authorized-keys", help="authorized_keys file that keys:add maintains")
    p.add_argument("--ssh-user", help="the SSH user whose group may use the API socket and repos")
    p.add_argument(
        "--stop-grace", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL"
    )
    p.add_argument(
        "--metrics-interval",
        type=_interval,
        default=5.0,
        help="seconds between samples of dyno CPU and memory (memory quotas too; default 5)",
    )
    p = add("down", cmd_down, "stop the server, its dynos and Caddy")
    p.add_argument("--timeout", type=float, default=60.0)
    _ssh_arguments(add("ssh", cmd_ssh, SSH_HELP))

    add("status", cmd_status, "exit 0 once the server is ready", json_out=True)
    add("apps", cmd_apps, "list apps", json_out=True)
    p = add("apps:create", cmd_apps_create, "create an app")
    p.add_argument("name")
    p = add("apps:info", cmd_apps_info, "show an app", app=True, json_out=True)
    p.add_argument("app_name", nargs="?", metavar="APP", help="the app, as -a says it")
    p = add("apps:destroy", cmd_apps_destroy, "delete an app and everything it has", app=True)
    p.add_argument("app_name", nargs="?", metavar="APP", help="the app, as -a says it")
    p.set_defaults(long=True)
    p.add_argument("--confirm", help="the app's name, to confirm")
    p = add("apps:rename", cmd_apps_rename, "give an app a new name", app=True)
    p.add_argument("new_name", metavar="NEWNAME", help="the app's new name")
    p.set_defaults(long=True)
    p = add("config", cmd_config, "show config vars", app=True, json_out=True)
    p.add_argument("-s", "--shell", action="store_true", help="KEY=VALUE lines, shell-quoted")
    p = add("config:get", cmd_config_get, "print one config var", app=True)
    p.add_argument("key")
    p = add("config:set", cmd_config_set, "set config vars (restarts dynos)", app=True)
    p.set_defaults(long=True)
    p.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    p = add("config:unset", cmd_config_unset, "unset config vars (restarts dynos)", app=True)
    p.set_defaults(long=True)
    p.add_argument("keys", nargs="+", metavar="KEY")
    add("ps", cmd_ps, "list dynos", app=True, json_out=True)
    p = add("ps:scale", cmd_ps_scale, "scale process types", app=True)
    p.set_defaults(long=True)
    p.add_argument("pairs", nargs="+", metavar="TYPE=COUNT|TYPE+N|TYPE-N")
    for name, what in (("ps:type", "show or set"), ("ps:resize", "(alias of ps:type) show or set")):
        p = add(
            name,
            cmd_ps_type,
            f"{what} dyno sizes (memory quotas): web=standard-2x worker=1G, or none",
            app=True,
            json_out=True,
        )
        p.set_defaults(long=True)
        p.add_argument("pairs", nargs="*", metavar="TYPE=SIZE")
    p = add(
        "ps:exec",
        cmd_ps_exec,
        "run a command (default: a shell) inside a running dyno, as it sees things",
        app=True,
    )
    p.add_argument("-d", "--dyno", default="web.1", help="the dyno to enter (default web.1)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    p = add("ps:restart", cmd_ps_restart, "restart dynos (all, a type, or one: web.1)", app=True)
    p.set_defaults(long=True)
    p.add_argument("type", nargs="?", metavar="TYPE|DYNO")
    p = add("logs", cmd_logs, "show logs", app=True)
    p.add_argument("-n", "--num", type=int, default=100)
    p.add_argument("-t", "--tail", action="store_true", help="keep following")
    p.add_argument("--source", choices=["app", "router", "build", "release", "minipaas"])
    p.add_argument("--dyno", help="one dyno (web.1), or every dyno of a type (web)")
    add("releases", cmd_releases, "list releases", app=True, json_out=True)
    p = add(
        "apps:errors", cmd_apps_errors, "count router and dyno errors", app=True, json_out=True
    )
    p.add_argument("--hours", type=int, default=24, help="hours back (default 24)")
    p = add("releases:info", cmd_releases_info, "show a release", app=True, json_out=True)
    p.add_argument("version", metavar="vN")
    p = add(
        "releases:output",
        cmd_releases_output,
        "show a release's release phase output (default: the newest that ran one)",
        app=True,
        json_out=True,
    )
    p.add_argument("version", nargs="?", metavar="vN")
    p = add(
        "ps:wait",
        cmd_ps_wait,
        "wait until every dyno runs the newest release and is up",
        app=True,
    )
    p.add_argument("--type", help="only the dynos of this process type")
    p.add_argument("--with-run", action="store_true", help="one-off run dynos too")
    p.add_argument(
        "--wait-interval", type=_seconds(0.1, 60), default=5.0, metavar="S",
        help="seconds between checks (default 5)",
    )
    p.add_argument(
        "--timeout", type=_seconds(1, 86400), default=600.0, metavar="S",
        help="give up after S seconds (default 600)",
    )
    p = add(
        "rollback",
        cmd_rollback,
        "roll back to an earlier release (default: the previous)",
        app=True,
    )
    p.set_defaults(long=True)
    p.add_argument("version", nargs="?", metavar="vN")
    p = add(
        "ps:stop",
        cmd_ps_stop_start("stop"),
        "stop a process type (remembered), or a one-off dyno such as run.1",
        app=True,
    )
    p.set_defaults(long=True)
    p.add_argument("type")
    p = add("ps:start", cmd_ps_stop_start("start"), "start a stopped process type", app=True)
    p.set_defaults(long=True)
    p.add_argument("type")
    add("checks", cmd_checks, "show the web health check", app=True, json_out=True)
    p = add(
        "checks:set",
        cmd_checks_set,
        "set the web health check: path=/health [expect=TEXT] [min_uptime=S] [timeout=S]",
        app=True,
    )
    p.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    add("checks:unset", cmd_checks_unset, "remove the health check settings", app=True)
    p = add("run", cmd_run, "run a one-off command in a dyno of the current release", app=True)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    p = add(
        "run:detached",
        cmd_run_detached,
        "run a one-off command in the background; its output goes to the logs",
        app=True,
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND")
    p = add(
        "metrics",
        cmd_metrics,
        "throughput, latency, errors, CPU and memory",
        app=True,
        json_out=True,
    )
    p.add_argument("--since", type=int, default=3600, help="seconds of history (default 3600)")
    add("domains", cmd_domains, "list custom domains", app=True, json_out=True)
    for name in ("certs", "certs:auto"):
        add(name, cmd_certs, "TLS certificates of the app's hostnames: status, issuer, expiry",
            app=True, json_out=True)
    p = add("domains:add", cmd_domains_add, "add a custom domain", app=True)
    p.add_argument("hostname")
    p = add("domains:remove", cmd_domains_remove, "remove a custom domain", app=True)
    p.add_argument("hostname")
    add("drains", cmd_drains, "list log drains and how they fare", app=True, json_out=True)
    p = add("drains:add", cmd_drains_add, "copy log lines to syslog(+tls)://H:P or https://…",
            app=True)
    p.add_argument("url")
    p = add("drains:remove", cmd_drains_remove, "remove a log drain (URL or token)", app=True)
    p.add_argument("drain")
    add("buildpacks", cmd_buildpacks, "list the app's buildpacks", app=True, json_out=True)
    for name, handler, what in (
        ("buildpacks:set", cmd_buildpacks_set, "set the buildpack (replaces number N, default 1)"),
        ("buildpacks:add", cmd_buildpacks_add, "add a buildpack (at the end, or at number N)"),
    ):
        p = add(name, handler, what + "; the next push uses it", app=True)
        p.add_argument("url", metavar="URL", help="heroku/python, a git URL or a directory")
        p.add_argument("-i", "--index", type=int, metavar="N", help="1-based position")
    p = add("buildpacks:remove", cmd_buildpacks_remove, "remove a buildpack (URL or -i N)",
            app=True)
    p.add_argument("url", nargs="?", metavar="URL")
    p.add_argument("-i", "--index", type=int, metavar="N", help="1-based position")
    add("buildpacks:clear", cmd_buildpacks_clear, "clear the buildpacks: builds detect one",
        app=True)
    add("addons", cmd_addons, "list add-ons (of one app with -a)", app=True, json_out=True)
    p = add("addons:create", cmd_addons_create,
            "create an add-on: heroku-postgresql or heroku-redis", app=True)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("--wait", action="store_true",
                   help="Heroku's flag: taken; addons:create returns once the add-on is ready")
    p.add_argument("--as", dest="attach_as", metavar="NAME",
                   help="Heroku's attachment name: only DATABASE (or REDIS), the one offered")
    p.set_defaults(long=True)
    p = add("addons:destroy", cmd_addons_destroy, "destroy an add-on and its data", app=True)
    p.add_argument("service", metavar="SERVICE|NAME")
    p.add_argument("--confirm", help="the app's name, to confirm")
    p.set_defaults(long=True)
    p = add("pg:info", cmd_pg_info, "the app's database: size, connections, version",
            app=True, json_out=True)
    _database_argument(p)
    p = add("pg:psql", cmd_pg_psql, "psql connected to the app's database", app=True)
    _database_argument(p)
    p.add_argument("-c", "--command", dest="sql_command", help="run this SQL and exit")
    add("pg:backups", cmd_pg_backups, "the app's database backups", app=True, json_out=True)
    p = add("pg:backups:info", cmd_pg_backups_info, "one backup in full (default: the newest)",
            app=True, json_out=True)
    p.add_argument("backup", nargs="?", metavar="ID")
    p = add("pg:backups:capture", cmd_pg_backups_capture, "back up the app's database now",
            app=True)
    _database_argument(p)
    p.set_defaults(long=True)
    p = add("pg:backups:download", cmd_pg_backups_download,
            "download a backup (default: the newest) to FILE (default latest.dump; - for stdout)",
            app=True)
    p.add_argument("backup", nargs="?", metavar="ID")
    p.add_argument("-o", "--output", metavar="FILE")
    p.set_defaults(long=True)
    p = add("pg:backups:restore", cmd_pg_backups_restore,
            "restore a backup (default: the newest), or a dump of yours (--file), into the "
            "app's database", app=True)
    p.add_argument("backup", nargs="?", metavar="ID")
    _database_argument(p)
    p.add_argument("--file", dest="dump_file", metavar="FILE|-",
                   help="a pg_dump -Fc dump to upload and restore (- for standard input)")
    p.add_argument("--confirm", help="the app's name, to confirm")
    p.set_defaults(long=True)
    p = add("pg:backups:delete", cmd_pg_backups_delete, "delete a backup", app=True)
    p.add_argument("backup", metavar="ID")
    p.add_argument("--confirm", help="the app's name, to confirm")
    p = add("pg:backups:schedule", cmd_pg_backups_schedule,
            "back up the app's database daily at HH:MM UTC", app=True)
    _database_argument(p)
    p.add_argument("--at", required=True, metavar="HH:MM")
    add("pg:backups:schedules", cmd_pg_backups_schedules, "show the daily backup time",
        app=True, json_out=True)
    add("pg:backups:unschedule", cmd_pg_backups_unschedule, "stop the daily backups", app=True)
    p = add("pg:reset", cmd_pg_reset, "empty the app's database (same URL)", app=True)
    _database_argument(p)
    p.add_argument("--confirm", help="the app's name, to confirm")
    p.set_defaults(long=True)
    p = add("pg:credentials:rotate", cmd_pg_credentials_rotate,
            "a new password for the app's database: its connections ended, DATABASE_URL "
            "changed by a release", app=True)
    _database_argument(p)
    p.add_argument("--confirm", help="the app's name, to confirm")
    p.set_defaults(long=True)
    p = add("pg:ps", cmd_pg_ps, "the queries running on the app's database now",
            app=True, json_out=True)
    _database_argument(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="its idle connections too (with their last query)")
    p = add("pg:kill", cmd_pg_kill, "cancel a query of the app's database (--force: end its "
            "connection)", app=True)
    p.add_argument("pid", metavar="PID", help="a pid pg:ps shows")
    _database_argument(p)
    p.add_argument("-f", "--force", action="store_true",
                   help="end the connection (pg_terminate_backend), not only its query")
    p = add("pg:killall", cmd_pg_killall, "end every connection to the app's database",
            app=True)
    _database_argument(p)
    p = add("redis:info", cmd_redis_info, "the app's Redis: version, memory, clients, keys",
            app=True, json_out=True)
    _database_argument(p, "REDIS_URL")
    p = add("redis:maxmemory", cmd_redis_maxmemory,
            "set the key eviction policy of the app's Redis when it reaches its memory cap",
            app=True)
    _database_argument(p, "REDIS_URL")
    p.add_argument("-p", "--policy", required=True,
                   help="noeviction, allkeys-lfu, volatile-lfu, allkeys-lru, volatile-lru, "
                        "allkeys-random, volatile-random or volatile-ttl")
    p = add("redis:cli", cmd_redis_cli, "redis-cli connected to the app's Redis", app=True)
    _database_argument(p, "REDIS_URL")
    p.add_argument("-c", "--command", dest="redis_command",
                   help="run this Redis command and exit")
    p.add_argument("--confirm", help="the app's name (Heroku's flag; not needed here)")
    p = add("redis:credentials", cmd_redis_credentials,
            "show REDIS_URL's credentials; --reset: a new password, its clients disconnected, "
            "REDIS_URL changed by a release", app=True)
    _database_argument(p, "REDIS_URL")
    p.add_argument("--reset", action="store_true", help="set a new password")
    p.add_argument("--confirm", help="the app's name, to confirm --reset")
    p.set_defaults(long=True)
    add("maintenance:on", cmd_maintenance(True), "answer 503 with a maintenance page", app=True)
    add("maintenance:off", cmd_maintenance(False), "serve the app again", app=True)
    add("keys", cmd_keys, "list SSH keys", json_out=True)
    p = add("keys:add", cmd_keys_add, "add an SSH public key (on stdin or --file)")
    p.add_argument("name")
    p.add_argument("--file")
    p = add("keys:remove", cmd_keys_remove, "remove an SSH key")
    p.add_argument("name")
    p = add("git:remote", cmd_git_remote, "print the git push URL", app=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--ssh", action="store_true")
    group.add_argument("--https", action="store_true")
    add("auth:token", cmd_auth_token, "print the admin API token")
    add("tui", cmd_tui, "the terminal UI: apps, dynos, logs, metrics, scaling")
    p = add("help", cmd_help, "list the commands, or show one's flags: help pg:backups:restore")
    p.add_argument("topic", nargs="?", metavar="COMMAND")
    return parser


def _database_argument(p: argparse.ArgumentParser, var: str = "DATABASE_URL") -> None:
    """Heroku's optional `[DATABASE]` argument: typed from Heroku's docs, it names the one
    add-on of its kind an app has here (`_check_addon_arg`)."""
    p.add_argument("addon", nargs="?", metavar="DATABASE",
                   help=f"{var} or the add-on's name, as Heroku's commands take it (optional)")


SSH_HELP = "the SSH forced command (authorized_keys)"


def _ssh_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, help="fingerprint of the key that logged in")


def _ssh_parser() -> argparse.ArgumentParser:
    """`build_parser()` reduced to `ssh`: sshd runs it for every connection (each push, each TUI
    session), and building all the other commands' parsers takes ~20 ms."""
    parser = _Parser(prog="minipaas", description="Heroku for one server.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("ssh", help=SSH_HELP, description=SSH_HELP)
    p.set_defaults(handler=cmd_ssh)
    p.add_argument("--data-dir", help="reach the local server of this data dir")
    _ssh_arguments(p)
    return parser


#: Commands that only make sense on the server itself, never over SSH.
SERVER_ONLY = frozenset({"server", "down", "ssh"})


def client_words(parser: argparse.ArgumentParser) -> set[str]:
    """Every client command of the parser (what `ssh minipaas@host WORD …` may run)."""
    words: set[str] = set()
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction):
            words.update(action.choices)
    return words - SERVER_ONLY


def main(argv: Sequence[str] | None = None) -> int:
    # Nothing heavy is imported before a command needs it: `--version` and the SSH entry point
    # must start fast (the error classes are looked up only if they were ever imported).
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_router-resolver"]:  # internal: the router's DNS process (frozen binary)
        from minipaas.router.resolver import main as resolver_main

        return resolver_main(argv[1:])
    return _run(_ssh_parser() if argv[:1] == ["ssh"] else build_parser(), argv)


def _run(parser: argparse.ArgumentParser, argv: list[str], *, over_ssh: bool = False) -> int:
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        if over_ssh:
            _refuse_server_paths(args)
            args.over_ssh = True
        return int(args.handler(args))
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except _user_facing() as exc:
        print(f" !    {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe: the OSError answer below
        # `minipaas config --json | head -1`: the reader has all it wanted, as with any other
        # command whose output is cut short; no " !    Broken pipe" on the terminal.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would fail again
        return 141  # 128 + SIGPIPE, what the shell shows for a command killed by it
    except OSError as exc:
        print(
            f" !    {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1


def _stdout_closed() -> bool:
    """Has the reader of our stdout (a pipe or socket) gone away?"""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _user_facing() -> tuple[type[Exception], ...]:
    """The exception classes whose message is meant for the user (those already imported)."""
    found: list[type[Exception]] = []
    for module, name in (("minipaas.client", "ApiError"), ("minipaas.errors", "UserError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def run_words(words: Sequence[str]) -> int:
    """Run client words (for `ssh minipaas@host ps -a web`); refuses server-side commands."""
    from minipaas.names import shown

    parser = build_parser()  # once: it takes ~20 ms, on every `ssh minipaas@host WORDS`
    if not words or words[0] not in client_words(parser):
        print(
            f" !    Unknown command {shown(words[0] if words else '')}; try `apps`, "
            "`ps -a NAME` or `logs -a NAME`.",
            file=sys.stderr,
        )
        return 1
    return _run(parser, list(words), over_ssh=True)


#: Options naming a path on the server, and what to do instead: over SSH the key reaches the
#: server it logged in to, and these would only let it read the SSH user's files.
SERVER_PATH_OPTIONS = {
    "data_dir": ("--data-dir", "the key always reaches the server it logged in to"),
    "file": ("--file", "pipe the public key in, `ssh minipaas@HOST keys:add NAME < key.pub`"),
}


def _refuse_server_paths(args: argparse.Namespace) -> None:
    from minipaas.names import shown

    for dest, (option, instead) in SERVER_PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if value:
            raise UsageError(f"{option} {shown(value)} is not available over SSH: {instead}.")
    # A download would land in the SSH user's files on the server (latest.dump by default):
    # over SSH it goes to standard output, `ssh minipaas@HOST … -o - > latest.dump`.
    if getattr(args, "handler", None) is cmd_pg_backups_restore and args.dump_file not in (
        None, "-"
    ):
        raise UsageError(
            f"--file {shown(args.dump_file)} is not available over SSH: send the dump on "
            "standard input, `ssh minipaas@HOST pg:backups:restore -a APP --confirm APP "
            "--file - < latest.dump`."
        )
    if getattr(args, "handler", None) is cmd_pg_backups_download and args.output != "-":
        raise UsageError(
            f"-o {shown(args.output or 'latest.dump')} is not available over SSH: download to "
            "standard output, `ssh minipaas@HOST pg:backups:download -a APP -o - > latest.dump`."
        )


if __name__ == "__main__":
    sys.exit(main())
