"""Reports what a dyno can see and do, as JSON, for the sandboxing tests."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def can_write(path):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        return True
    except OSError:
        return False


def can_read(path):
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        return True
    except OSError:
        return False


def facts():
    other = os.environ.get("OTHER_SLUG", "/nonexistent")
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "write_app": can_write("/app/written-by-dyno"),
        "write_tmp": can_write("/tmp/x"),
        "write_usr": can_write("/usr/x"),
        "write_etc": can_write("/etc/x"),
        "write_root": can_write("/x"),
        "read_other_slug": can_read(os.path.join(other, "Procfile")),
        "list_other_slug": os.path.exists(other),
        "secret": os.environ.get("SECRET", ""),
        "home": os.environ.get("HOME"),
        "dyno": os.environ.get("DYNO"),
        "cwd": os.getcwd(),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps(facts()).encode() if self.path == "/probe" else b"probe ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
