"""Caddy access-log lines rendered as router log lines, with Heroku's router error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from minipaas.router.accesslog import RouterView, code_of, router_line


def _raw(status: int, **extra: Any) -> str:
    return json.dumps({
        "ts": 1795000000.25, "status": status, "size": 12, "duration": 0.0034,
        "request": {"method": "GET", "uri": '/a"b', "host": "Web.Example.com:8443",
                    "client_ip": "1.2.3.4", "remote_ip": "10.0.0.1", "tls": {"proto": "h2"},
                    "headers": {"X-Request-Id": ["abc"]}},
        **extra,
    })


def test_router_line() -> None:
    view = RouterView(dynos={5001: "web.1"})
    line = router_line(_raw(200, upstream="dynos.minipaas.:5001"), view)
    assert line is not None
    assert line.host == "web.example.com"
    assert line.text == (
        'at=info method=GET path="/a\\"b" host=web.example.com request_id=abc fwd="1.2.3.4" '
        "dyno=web.1 service=3ms status=200 bytes=12 protocol=https"
    )
    assert line.ts.timestamp() == 1795000000.25


RESOLVER = RouterView(dynos={5001: "web.1"}, resolver_port=7000)

# (status, access-log extras, the app as the router log saw it, expected code)
CASES = [
    (200, {"upstream": "127.0.0.1:5001"}, RESOLVER, None),
    (500, {"upstream": "127.0.0.1:5001"}, RESOLVER, None),  # the app's own 500: not ours
    (503, {"upstream": "127.0.0.1:5001"}, RESOLVER, None),  # the app's own 503 too
    (502, {"upstream": "127.0.0.1:5001"}, RESOLVER, "H13"),
    (502, {"upstream": "127.0.0.1:5001"}, RouterView(resolver_port=7000, crashed=True), "H10"),
    (504, {"upstream": "127.0.0.1:5001"}, RESOLVER, "H12"),
    (503, {"upstream": "127.0.0.1:7000"}, RESOLVER, "H14"),
    (503, {"upstream": "127.0.0.1:7000"}, RouterView(resolver_port=7000, crashed=True), "H10"),
    (503, {"upstream": "127.0.0.1:7000"}, RouterView(resolver_port=7000, released=False), "H81"),
    (404, {"upstream": "127.0.0.1:7000"}, RESOLVER, None),
    (503, {"minipaas_code": "H80"}, RESOLVER, "H80"),
    (503, {"minipaas_code": "H14"}, RouterView(), "H14"),
    (503, {"minipaas_code": "X; rm"}, RouterView(), "H99"),  # not a code: Caddy's own 503
    (499, {"upstream": "127.0.0.1:5001"}, RESOLVER, "H27"),
    (500, {}, RESOLVER, "H99"),
    (404, {}, RESOLVER, None),
    (502, {"upstream": "garbage"}, RESOLVER, "H99"),
]


@pytest.mark.parametrize(("status", "extra", "view", "code"), CASES)
def test_error_codes(
    status: int, extra: dict[str, str], view: RouterView, code: str | None
) -> None:
    line = router_line(_raw(status, **extra), view)
    assert line is not None
    assert code_of(line.text) == code
    if code is None:
        assert line.text.startswith("at=info method=")
    elif code == "H27":
        assert line.text.startswith('at=info code=H27 desc="Client Request Interrupted" ')
    else:
        assert line.text.startswith(f"at=error code={code} desc=")
    assert f"status={status} " in line.text


def test_dyno_and_protocol() -> None:
    view = RouterView(dynos={5001: "web.1", 5002: "web.2"}, resolver_port=7000)
    raw = json.loads(_raw(200, upstream="127.0.0.1:5002"))
    del raw["request"]["tls"], raw["request"]["client_ip"]
    line = router_line(json.dumps(raw), view)
    assert line is not None
    assert 'fwd="10.0.0.1" dyno=web.2 ' in line.text  # remote_ip without client_ip
    assert line.text.endswith(" protocol=http")
    resolver = router_line(_raw(503, upstream="127.0.0.1:7000"), view)
    assert resolver is not None and "dyno=" not in resolver.text  # no dyno answered


def test_garbage_is_skipped() -> None:
    assert router_line(b"not json") is None
    assert router_line(json.dumps({"status": 200})) is None
    assert router_line(json.dumps({"status": 200, "ts": 1e300, "request": {"host": "a"}})) is None
