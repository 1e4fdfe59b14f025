"""The CLI's parser: which commands wait for their answer however long it takes.

A change (config:set, ps:scale, rollback, apps:destroy, …) can take longer than the read
timeout of 60 s — new web dynos may take up to `boot_timeout` (60 s) to boot, and a busy app
waits up to BUSY_WAIT first — and a client that gave up then said "failed: timed out" while the
server went on and made the change. Reads keep the 60 s timeout."""

from __future__ import annotations

import pytest

from minipaas.cli import build_parser

CHANGES = [
    ["apps:destroy", "-a", "x", "--confirm", "x"],
    ["config:set", "A=1", "-a", "x"],
    ["config:unset", "A", "-a", "x"],
    ["ps:scale", "web=2", "-a", "x"],
    ["ps:restart", "-a", "x"],
    ["ps:stop", "web", "-a", "x"],
    ["ps:start", "web", "-a", "x"],
    ["rollback", "-a", "x"],
]
READS = [["apps"], ["ps", "-a", "x"], ["config", "-a", "x"], ["releases", "-a", "x"]]


@pytest.mark.parametrize("argv", CHANGES, ids=lambda argv: argv[0])
def test_changes_wait_for_their_answer(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).long is True


@pytest.mark.parametrize("argv", READS, ids=lambda argv: argv[0])
def test_reads_keep_the_timeout(argv: list[str]) -> None:
    assert getattr(build_parser().parse_args(argv), "long", False) is False
