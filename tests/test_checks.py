"""Health check settings: `checks:set` pairs and app.json healthchecks."""

from __future__ import annotations

import pytest

from minipaas import checks
from minipaas.errors import UserError


def test_pairs() -> None:
    assert checks.parse_pairs(["path=/health", "expect=ok", "min_uptime=3", "timeout=20"]) == {
        "path": "/health",
        "expect": "ok",
        "min_uptime": 3.0,
        "timeout": 20.0,
    }
    assert checks.parse_pairs([]) == {
        "path": None,
        "expect": None,
        "min_uptime": 0.0,
        "timeout": None,
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["path"], "KEY=VALUE"),
        (["path=health"], "'health'"),
        (["path=/a b"], "'/a b'"),
        (["expect=ok"], "needs a `path`"),
        (["min_uptime=-1"], "'-1'"),
        (["min_uptime=abc"], "'abc'"),
        (["timeout=9999"], "'9999'"),
        (["timeout=0.5"], "at least 1 s"),
        (["colour=red"], "'colour'"),
        # it must stay up 5 s within 3 s: every deploy would fail its check
        (["min_uptime=5", "timeout=3"], "min_uptime '5': it must be less than the timeout"),
        (["min_uptime=3", "timeout=3"], "less than the timeout"),
    ],
)
def test_bad_pairs(pairs: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        checks.parse_pairs(pairs)


def test_from_app_json() -> None:
    hc = {
        "web": [{"type": "startup", "path": "/health", "content": "ok", "timeout": 30, "uptime": 2}]
    }
    assert checks.from_app_json(hc) == {
        "path": "/health",
        "expect": "ok",
        "min_uptime": 2.0,
        "timeout": 30.0,
    }
    assert checks.from_app_json({}) is None
    assert checks.from_app_json({"web": [{"type": "liveness", "path": "/x"}]}) is None
    with pytest.raises(UserError):
        checks.from_app_json({"web": "nope"})
    with pytest.raises(UserError, match="less than the timeout"):
        checks.from_app_json({"web": [{"path": "/", "timeout": 10, "uptime": 30}]})
