"""Build-side failures a push must report quickly and in one sentence: a buildpack URL whose
host never answers (no internet on this server, a firewalled host)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.build import buildpack
from minipaas.errors import BuildError
from tests.support.silent import silent_server


@pytest.fixture
def silent_http() -> Iterator[str]:
    """A URL on 127.0.0.1 whose server accepts connections and never says a word."""
    with silent_server() as port:
        yield f"http://127.0.0.1:{port}/buildpack.git"


async def test_a_buildpack_host_that_never_answers_fails_fast(
    silent_http: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to hold the push for the whole step timeout (15 minutes by default)."""
    monkeypatch.setattr(buildpack, "FETCH_STALL_SECONDS", 2)
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(BuildError, match="Could not fetch the buildpack") as caught:
        await buildpack.fetch(
            silent_http, tmp_path / "external", uid=None, log=lines.append, time_limit=120
        )
    assert time.monotonic() - started < 60, lines
    assert silent_http in str(caught.value)
    # git's own reason is in the build log, indented under the "Fetching" line.
    assert any("too slow" in line.lower() for line in lines), lines


async def test_a_git_protocol_host_that_never_answers_fails_within_the_fetch_limit(
    silent_http: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`git://` has no stall detection: the fetch's own limit (not the build step's 15
    minutes) ends it."""
    monkeypatch.setattr(buildpack, "FETCH_TIME_LIMIT", 2.0)
    url = silent_http.replace("http://", "git://")
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"took longer than 2 seconds"):
        await buildpack.fetch(url, tmp_path / "external", uid=None, log=print, time_limit=900)
    assert time.monotonic() - started < 30
