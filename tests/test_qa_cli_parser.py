"""The CLI's parser: which commands wait for their answer however long it takes.

A change (config:set, ps:scale, rollback, apps:destroy, …) can take longer than the read
timeout of 60 s — new web dynos may take up to `boot_timeout` (60 s) to boot, and a busy app
waits up to BUSY_WAIT first — and a client that gave up then said "failed: timed out" while the
server went on and made the change. Reads keep the 60 s timeout."""

from __future__ import annotations

import pytest

from minipaas.cli import UsageError, build_parser, main

CHANGES = [
    ["apps:destroy", "-a", "x", "--confirm", "x"],
    ["config:set", "A=1", "-a", "x"],
    ["config:unset", "A", "-a", "x"],
    ["ps:scale", "web=2", "-a", "x"],
    ["ps:restart", "-a", "x"],
    ["ps:stop", "web", "-a", "x"],
    ["ps:start", "web", "-a", "x"],
    ["rollback", "-a", "x"],
    ["ps:type", "web=standard-2x", "-a", "x"],  # restarts the type's dynos, like ps:restart
    ["ps:resize", "web=1G", "-a", "x"],
    # a config release, the dynos restarted with the new URL
    ["pg:credentials:rotate", "-a", "x", "--confirm", "x"],
    ["redis:credentials", "--reset", "-a", "x", "--confirm", "x"],
]
READS = [
    ["apps"], ["ps", "-a", "x"], ["config", "-a", "x"], ["releases", "-a", "x"],
    ["apps:errors", "-a", "x"],
    # ps:wait has its own --timeout; each of its checks is a read
    ["ps:wait", "-a", "x"], ["releases:output", "-a", "x"],
]


@pytest.mark.parametrize("argv", CHANGES, ids=lambda argv: argv[0])
def test_changes_wait_for_their_answer(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).long is True


@pytest.mark.parametrize("argv", READS, ids=lambda argv: argv[0])
def test_reads_keep_the_timeout(argv: list[str]) -> None:
    assert getattr(build_parser().parse_args(argv), "long", False) is False


def test_metrics_interval_is_a_server_flag_within_bounds() -> None:
    assert build_parser().parse_args(["server"]).metrics_interval == 5.0
    assert build_parser().parse_args(["server", "--metrics-interval", "1"]).metrics_interval == 1
    for bad in ("0", "0.1", "61", "nan", "inf", "soon"):
        with pytest.raises(UsageError, match=f"use 0.5 to 60 seconds, not '{bad}'"):
            build_parser().parse_args(["server", "--metrics-interval", bad])


def test_acme_ca_must_be_an_https_url() -> None:
    """`server --acme-ca URL`: the ACME directory public names' certificates come from."""
    url = "https://acme-staging-v02.api.letsencrypt.org/directory"  # parsed, never dialled
    assert build_parser().parse_args(["server", "--acme-ca", url]).acme_ca == url
    assert build_parser().parse_args(["server"]).acme_ca is None
    for bad in ("http://127.0.0.1/dir", "letsencrypt", "https://", "https://a b/dir"):
        with pytest.raises(UsageError, match=f"use an https:// ACME directory URL .* not {bad!r}"):
            build_parser().parse_args(["server", "--acme-ca", bad])


def test_help_lists_the_commands_and_shows_one(capsys: pytest.CaptureFixture[str]) -> None:
    """`minipaas help` (Heroku's word) was an 'invalid choice' listing ~90 words cut at 300
    characters; `help COMMAND` is that command's --help."""
    assert main(["help"]) == 0
    assert "pg:backups:restore" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["help", "pg:reset"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: minipaas pg:reset ")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["pg:backup", "-a", "x"],
         "Unknown command 'pg:backup'; did you mean pg:backups? `minipaas help` lists them."),
        (["help", "redis:clie"],
         "Unknown command 'redis:clie'; did you mean redis:cli? `minipaas help` lists them."),
        (["frobnicate"], "Unknown command 'frobnicate'; `minipaas help` lists them."),
    ],
)
def test_an_unknown_command_is_one_sentence(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == said + "\n"
