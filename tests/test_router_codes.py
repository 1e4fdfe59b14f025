"""Router log lines end to end: which dyno answered, the client's address, and Heroku's router
error codes decided from what happened (real server, Caddy, resolver and bwrap dynos);
`apps:errors` counting them."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paas import Paas, deployed, git_repo, ssh_push
from tests.support.ports import wait_for
from tests.support.sshd import SSHServer

# Answers "/" (and the health check); on "/close" closes the connection without a word.
APP = '''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/close":
            self.close_connection = True
            return
        data = b"codes ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def _router_line(paas: Paas, app: str, *wanted: str) -> str:
    """The newest router log line of `app` with every one of `wanted` in it (polled)."""

    def find() -> str | None:
        out = paas.cli("logs", "-a", app, "--source", "router", "-n", "200").stdout
        hits = [ln for ln in out.splitlines() if all(w in ln for w in wanted)]
        return hits[-1] if hits else None

    return wait_for(find, timeout=15, interval=0.2, message=f"a router line with {wanted}")


def _status(paas: Paas, host: str, wanted: int, path: str = "/") -> None:
    wait_for(lambda: paas.curl(host, path)[0] == wanted, timeout=15, interval=0.2)


def test_router_lines_name_the_dyno_and_the_error_codes(
    env: tuple[Paas, SSHServer], tmp_path: Path
) -> None:
    paas, sshd = env
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text(APP)
    (src / "requirements.txt").write_text("")
    (src / "Procfile").write_text("web: python app.py\n")
    paas.cli("apps:create", "codes")
    deployed(ssh_push(sshd, git_repo(src, tmp_path / "codes"), "codes"))
    paas.wait_body("codes.localhost", "codes ok")

    line = _router_line(paas, "codes", "status=200", 'path="/"')
    assert line.split("router[router]: ", 1)[1].startswith("at=info method=GET ")
    assert ' fwd="127.0.0.1" dyno=web.1 service=' in line and line.endswith(" protocol=https")
    assert "code=" not in line

    # the dyno closes the connection without answering: H13, with the dyno named
    assert paas.curl("codes.localhost", "/close")[0] == 502
    line = _router_line(paas, "codes", "code=H13")
    assert 'at=error code=H13 desc="Connection closed without response"' in line
    assert 'path="/close"' in line and "dyno=web.1" in line and "status=502" in line

    paas.cli("maintenance:on", "-a", "codes")
    _status(paas, "codes.localhost", 503)
    line = _router_line(paas, "codes", "code=H80")
    assert 'at=error code=H80 desc="Maintenance mode"' in line and "status=503" in line
    paas.cli("maintenance:off", "-a", "codes")
    paas.wait_body("codes.localhost", "codes ok")

    paas.cli("ps:scale", "web=0", "-a", "codes")
    _status(paas, "codes.localhost", 503)
    line = _router_line(paas, "codes", "code=H14")
    assert 'at=error code=H14 desc="No web dynos running"' in line and "dyno=" not in line

    # created, never pushed: Heroku's "blank app"
    paas.cli("apps:create", "blank")
    _status(paas, "blank.localhost", 503)
    line = _router_line(paas, "blank", "code=H81")
    assert 'at=error code=H81 desc="Blank app"' in line

    counts = json.loads(paas.cli("apps:errors", "-a", "codes", "--json").stdout)
    assert counts["hours"] == 24
    assert counts["router"]["H13"] >= 1 and counts["router"]["H80"] >= 1
    assert counts["router"]["H14"] >= 1 and "H81" not in counts["router"]
    table = paas.cli("apps:errors", "-a", "codes", "--hours", "1").stdout
    assert "=== Errors on codes in the last 1 h" in table
    assert any(ln.split()[:2] == ["router", "H14"] for ln in table.splitlines()), table
    blank = json.loads(paas.cli("apps:errors", "-a", "blank", "--json").stdout)
    assert set(blank["router"]) == {"H81"}
    over_ssh = subprocess.run(
        [*sshd.ssh_argv(), "apps:errors", "-a", "blank", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(over_ssh.stdout)["router"] == blank["router"]

    for bad in ("0", "100000"):
        result = paas.cli("apps:errors", "-a", "codes", "--hours", bad, check=False)
        assert result.returncode == 1, result
        assert f"Invalid hours '{bad}'" in result.stderr and len(result.stderr.splitlines()) == 1
    assert paas.cli("apps:errors", "-a", "nope", check=False).returncode == 1


def test_apps_errors_counts_dyno_errors_by_process_type(tmp_path: Path) -> None:
    """Pure: R14/R15 and crashes from the supervisor's lines, router codes from the router's."""
    from datetime import UTC, datetime, timedelta

    from minipaas.app_errors import app_errors
    from minipaas.logs import LogStore

    logs = LogStore(tmp_path)
    now = datetime.now(UTC)
    old = now - timedelta(hours=30)
    logs.append("shop", "minipaas", "web.1", "Error R14 (Memory quota exceeded)", ts=now)
    logs.append("shop", "minipaas", "web.2", "Error R14 (Memory quota exceeded)", ts=now)
    logs.append("shop", "minipaas", "worker.1", "Crashed: exited 3 times", ts=now)
    logs.append("shop", "minipaas", "web.1", "Error R15 (Memory quota vastly exceeded)", ts=old)
    logs.append("shop", "app", "web.1", "code=H14 says the app itself", ts=now)
    logs.append_timed("shop", "router", "router", [
        (now, 'at=error code=H14 desc="No web dynos running" method=GET'),
        (old, 'at=error code=H12 desc="Request timeout" method=GET'),
    ])
    logs.close()
    answer = app_errors(logs, "shop", 24, now + timedelta(seconds=1))
    assert answer["router"] == {"H14": 1}
    assert answer["dyno"] == {"web R14": 2, "worker crashed": 1}
    assert app_errors(logs, "shop", 48, now + timedelta(seconds=1))["router"] == {
        "H12": 1, "H14": 1
    }



# "/slow" answers after 5 s; "/exit" ends the dyno. A dyno started while something listens on
# the gate port exits at once (status 3): the test opens the gate to turn a serving app into
# one whose every restart crashes, without a new release (a web release that cannot start is
# refused before the switch).
STALL_APP = '''
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    socket.create_connection(("127.0.0.1", GATE), timeout=1).close()
    print("gate open: crashing at start", flush=True)
    sys.exit(3)
except OSError:
    pass


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(5)
        if self.path == "/exit":
            threading.Timer(0.1, lambda: os._exit(3)).start()
        data = b"stall ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


@pytest.fixture
def gate() -> Iterator[socket.socket]:
    """A socket bound to a free local port, listening only once the test says so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def test_client_hangup_is_h27_and_all_web_crashed_is_h10(
    env: tuple[Paas, SSHServer], tmp_path: Path, gate: socket.socket
) -> None:
    paas, sshd = env
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text(STALL_APP.replace("GATE", str(gate.getsockname()[1])))
    (src / "requirements.txt").write_text("")
    (src / "Procfile").write_text("web: python app.py\n")
    paas.cli("apps:create", "stall")
    deployed(ssh_push(sshd, git_repo(src, tmp_path / "stall"), "stall"))
    paas.wait_body("stall.localhost", "stall ok")

    # H27: the client hangs up while the dyno still works on the answer (Caddy logs 499)
    hung = subprocess.run(
        ["curl", "-sS", "--max-time", "1", "--cacert", str(paas.ca), "--resolve",
         f"stall.localhost:{paas.https_port}:127.0.0.1",
         f"https://stall.localhost:{paas.https_port}/slow"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert hung.returncode == 28, hung  # curl's "operation timed out": it gave up, not Caddy
    line = _router_line(paas, "stall", "code=H27")
    assert 'at=info code=H27 desc="Client Request Interrupted"' in line, line
    assert 'path="/slow"' in line and "dyno=web.1" in line and "status=499" in line
    counts = json.loads(paas.cli("apps:errors", "-a", "stall", "--json").stdout)
    assert counts["router"].get("H27") == 1, counts

    # H10: every web dyno crashed. A config release first, so that the crash loop is not
    # taken for a fresh deploy's and rolled back automatically.
    paas.cli("config:set", "STALL=1", "-a", "stall")
    paas.wait_body("stall.localhost", "stall ok")
    gate.listen()
    started = time.monotonic()
    paas.curl("stall.localhost", "/exit")

    def crashed() -> bool:
        ps = json.loads(paas.cli("ps", "-a", "stall", "--json").stdout)["dynos"]
        return bool(ps) and all(d["state"] == "crashed" for d in ps if d["type"] == "web")

    wait_for(crashed, timeout=40, interval=0.3, message="web.1 crashed")
    print(f"web.1 crashed {time.monotonic() - started:.1f} s after its exit")
    _status(paas, "stall.localhost", 503)
    line = _router_line(paas, "stall", "code=H10")
    assert 'at=error code=H10 desc="App crashed"' in line and "status=503" in line, line
    counts = json.loads(paas.cli("apps:errors", "-a", "stall", "--json").stdout)
    assert counts["router"].get("H10", 0) >= 1 and counts["dyno"].get("web crashed", 0) >= 1
