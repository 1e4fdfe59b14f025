"""Router log lines end to end: which dyno answered, the client's address, and Heroku's router
error codes decided from what happened (real server, Caddy, resolver and bwrap dynos)."""

from __future__ import annotations

from pathlib import Path

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


