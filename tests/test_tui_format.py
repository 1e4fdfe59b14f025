"""Pure helpers of the TUI: formatting, log line cleaning, filters, metric series."""

from __future__ import annotations

import time

import pytest

from tui import format as fmt
from tui.screens.app_detail import waiting_dynos
from tui.screens.apps import app_state
from tui.screens.host import summarize_host
from tui.screens.logs import SOURCES, next_in
from tui.screens.metrics import summarize
from tui.widgets.logview import matches


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "\u2013"), (-1, "\u2013"), (5, "5s"), (125, "2m 05s"), (3 * 3600 + 300, "3h 05m"),
     (2 * 86400 + 4 * 3600, "2d 4h")],
)  # fmt: skip
def test_duration(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_sizes_rates_and_masks() -> None:
    assert fmt.size(None) == "\u2013"
    assert fmt.size(512) == "512B"
    assert fmt.size(2048) == "2K"
    assert fmt.size(104_857_600) == "100.0M"
    assert fmt.size(3 * 1024**3) == "3.0G"
    assert fmt.rate(41.5) == "42/s" and fmt.rate(0.44) == "0.4/s"
    assert fmt.millis(87.0) == "87ms" and fmt.millis(3.21) == "3.2ms"
    assert fmt.masked("s3cret", False) == fmt.MASK and fmt.masked("s3cret", True) == "s3cret"
    assert fmt.number(True) is None and fmt.number("3") is None and fmt.number(3) == 3.0


def test_clean_line_removes_terminal_control_and_surrogates() -> None:
    assert fmt.clean_line("a\x1b[2Jb\tc\r\n") == "a\ufffd[2Jb  c"  # tab stops of 4
    assert fmt.clean_line("bad \udcff byte") == "bad \ufffd byte"
    assert fmt.clean_line("caf\u00e9 \u2713") == "caf\u00e9 \u2713"
    # bidi overrides and isolates would reorder the rest of the line on the terminal
    assert fmt.clean_line("ok \u202egnp.exe\u2066x\u200f") == "ok \ufffdgnp.exe\ufffdx\ufffd"
    assert fmt.clean_cell("a\u202eb\nc") == "a\ufffdb\ufffdc"
    assert fmt.clean_line("\u05e9\u05dc\u05d5\u05dd") == "\u05e9\u05dc\u05d5\u05dd"  # RTL stays


def test_compact_line_keeps_the_time_of_day() -> None:
    line = "2026-11-22T10:00:00.123456+00:00 app[web.1]: hi 2026-11-22T10:00:00"
    assert fmt.compact_line(line) == "10:00:00 app[web.1]: hi 2026-11-22T10:00:00"
    assert fmt.compact_line("no stamp here") == "no stamp here"


def test_parsing_prompts() -> None:
    assert fmt.parse_assignment("A=b=c") == ("A", "b=c")
    assert fmt.parse_assignment("A=") == ("A", "")
    assert fmt.parse_assignment("nope") is None and fmt.parse_assignment("=x") is None
    assert fmt.parse_count(" 3 ") == 3 and fmt.parse_count("-1") == -1
    assert fmt.parse_count("lots") is None


def test_filters_and_search() -> None:
    assert next_in(SOURCES, None) == "app"
    assert next_in(SOURCES, SOURCES[-1]) is None
    assert next_in([None, "web.1"], "gone.1") is None
    assert matches("App[web.1]: GET /", "get") and matches("x", "")
    assert not matches("heartbeat 12", "heartbeat 2")


def test_app_state_words() -> None:
    base = {"release": 3, "dynos_up": 2, "dynos_desired": 2}
    assert app_state(base) == "up"
    assert app_state({**base, "maintenance": True}) == "maintenance"
    assert app_state({**base, "release": None}) == "new"
    assert app_state({**base, "dynos_up": 1}) == "partial"
    assert app_state({**base, "dynos_up": 0}) == "down"
    # minipaas has just started and not yet started these dynos
    assert app_state({**base, "dynos_up": 0, "start_pending": True}) == "starting"
    assert app_state({**base, "start_pending": True}) == "up"
    assert app_state({**base, "dynos_desired": 0, "dynos_up": 0}) == "idle"


def test_summarize_metrics_sums_dynos_aligned_at_the_end() -> None:
    data = {
        "router": [{"t": 1, "rps": 1, "p95": 10, "r4xx": 1, "r5xx": 0},
                   {"t": 2, "rps": 3, "p95": 30, "r4xx": 0, "r5xx": 2}],
        "dynos": {"web.1": [{"t": 1, "cpu": 10, "rss": 100}, {"t": 2, "cpu": 20, "rss": 200}],
                  "web.2": [{"t": 2, "cpu": 5, "rss": 50}]},
        "current": {"rps": 3, "p95": 30, "r4xx": 0, "r5xx": 2},
    }  # fmt: skip
    out = summarize(data)
    assert out["rps"] == ([1.0, 3.0], "3.0/s", "3.0/s")
    assert out["errors"][0] == [1.0, 2.0] and out["errors"][1] == "2.0/s"
    assert out["cpu"][0] == [10.0, 25.0] and out["cpu"][1] == "25.0%"
    assert out["rss"][0] == [100.0, 250.0]
    assert summarize({})["rps"] == ([], "\u2013", "\u2013")


def test_used_of_a_total() -> None:
    gib = 1024**3
    assert fmt.used_of(1.5 * gib, 4 * gib) == "1.5G / 4.0G (38%)"
    assert fmt.used_of(512, None) == "512B"  # no total: the amount alone
    assert fmt.used_of(None, 4 * gib) == "\u2013"


def test_summarize_host_prefers_the_last_sample_and_peaks_include_it() -> None:
    gib = 1024**3
    data = {
        "current": {"cpu": 50.0, "cpus": 2, "mem_used": 3 * gib, "mem_total": 4 * gib,
                    "disk_used": gib, "disk_total": 10 * gib},
        "series": [{"t": 1, "cpu": 10.0, "mem_used": gib, "mem_total": 4 * gib,
                    "disk_used": gib, "disk_total": 10 * gib},
                   {"t": 2, "cpu": None, "mem_used": 2 * gib, "mem_total": 4 * gib,
                    "disk_used": gib, "disk_total": 10 * gib}],
    }  # fmt: skip
    out = summarize_host(data)
    assert out["host-cpu"] == ([10.0, 0.0], "50.0%", "50.0%")
    assert out["host-mem"] == ([gib, 2.0 * gib], "3.0G / 4.0G (75%)", "3.0G")
    assert out["host-disk"][1] == "1.0G / 10.0G (10%)"
    # The first round has no sample yet: the newest point of the series stands in.
    out = summarize_host({"current": {}, "series": data["series"]})
    assert out["host-mem"][1] == "2.0G / 4.0G (50%)" and out["host-cpu"][1] == "\u2013"
    assert summarize_host({})["host-disk"] == ([], "\u2013", "\u2013")


def test_waiting_dynos_after_a_reboot() -> None:
    info = {
        "formation": {"worker": 1, "web": 2, "clock": 0},
        "dynos": [{"name": "web.1", "state": "starting"}],
        "start_pending": True,
    }
    assert waiting_dynos(info) == ["web.2", "worker.1"]
    assert waiting_dynos({**info, "start_pending": False}) == []
    every = [{"name": n} for n in ("web.1", "web.2", "worker.1")]
    assert waiting_dynos({**info, "dynos": every}) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("syslog+tls://logs.example.com:6514", "syslog+tls://logs.example.com:6514"),
        ("https://user:s3cret@h.example/p?q=1", "https://***@h.example/p?q=1"),
        ("https://user@h.example/", "https://***@h.example/"),  # the user name too
        ("https://:s3cret@h.example", "https://***@h.example"),
        ("syslog://u:p@ss@127.0.0.1:514", "syslog://***@127.0.0.1:514"),  # the last @ ends it
        ("https://h.example/in@box?to=a@b#x@y", "https://h.example/in@box?to=a@b#x@y"),
        ("https://u:pw@h.example?q@r", "https://***@h.example?q@r"),
        ("not a url @ all", "not a url @ all"),
    ],
)
def test_a_drain_url_is_shown_without_userinfo(url: str, shown: str) -> None:
    assert fmt.without_userinfo(url) == shown


def test_a_servers_sentence_about_a_drain_url_loses_the_user_name_too() -> None:
    said = "The drain URL 'https://bob:***@h.example:x/' is not a valid URL (Port ...)."
    assert fmt.without_userinfo_in(said) == (
        "The drain URL 'https://***@h.example:x/' is not a valid URL (Port ...)."
    )
    plain = "The app 'shop' already drains its logs to syslog://h.example:514, a@b.example."
    assert fmt.without_userinfo_in(plain) == plain


def test_drain_status_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        ok = {"delivered": 1234, "dropped": 0, "failing_since": None, "error": None}
        assert fmt.drain_status(ok) == ("delivering", "1,234 sent", "delivering: 1,234 lines sent")
        one = {**ok, "delivered": 1, "dropped": 7}
        assert fmt.drain_status(one)[2] == (
            "delivering: 1 line sent, 7 dropped (the drain fell behind)"
        )
        failing = {**ok, "failing_since": 1_800_000_000.0, "error": "Connection refused"}
        assert fmt.drain_status(failing) == (
            "failing",
            "Connection refused",
            "failing since 2027-01-15 08:00: Connection refused; 1,234 lines sent",
        )
        assert fmt.drain_status({**failing, "error": None})[1] == "delivery failed"
        assert fmt.drain_status(None)[0] == "unknown"  # a server running no forwarder for it
        assert fmt.drain_status({"delivered": "lots"})[1] == "0 sent"  # never a traceback
    finally:
        monkeypatch.undo()
        time.tzset()


def test_postgres_version_and_dates() -> None:
    assert fmt.pg_version("15.14 (Debian 15.14-0+deb12u1)") == "15.14"
    assert fmt.pg_version("16.4") == "16.4"
    assert fmt.pg_version(None) == fmt.pg_version("") == "\u2013"
    assert fmt.day(None) == fmt.when(None) == "\u2013"
    assert len(fmt.day(1_800_000_000.0)) == len("2027-01-15")


def test_tls_cell() -> None:
    assert fmt.tls(None) == fmt.DASH
    assert fmt.tls({"status": "issued", "expires": "2027-03-06T08:00:00+00:00"}) == (
        "issued until 2027-03-06"
    )
    assert fmt.tls({"status": "pending", "note": "The internal CA issues it ..."}) == "pending"
    failing = fmt.tls({"status": "failing", "error": "x" * 100}, width=30)
    assert failing == "failing: " + "x" * 20 + "…"
    assert len(failing) == 30
    assert fmt.tls({"status": "failing", "error": "refused"}) == "failing: refused"
