"""Caddy access-log lines rendered as router log lines."""

from __future__ import annotations

import json

from minipaas.router.accesslog import router_line


def test_router_line() -> None:
    raw = json.dumps({
        "ts": 1795000000.25, "status": 502, "size": 12, "duration": 0.0034,
        "request": {"method": "GET", "uri": '/a"b', "host": "Web.Example.com:8443",
                    "headers": {"X-Request-Id": ["abc"]}},
    })
    line = router_line(raw)
    assert line is not None
    assert line.host == "web.example.com"
    assert line.text == (
        'at=error method=GET path="/a\\"b" host=web.example.com request_id=abc status=502 '
        "bytes=12 service=3ms"
    )
    assert line.ts.timestamp() == 1795000000.25


def test_garbage_is_skipped() -> None:
    assert router_line(b"not json") is None
    assert router_line(json.dumps({"status": 200})) is None
