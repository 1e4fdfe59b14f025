"""Dyno sizes (minipaas/sizes.py): Heroku's names and plain amounts → memory quotas, and the
sentences that name a bad size."""

from __future__ import annotations

from pathlib import Path

import pytest

from minipaas import sizes
from minipaas.errors import UserError

HOST = 8 * sizes.GIB


@pytest.mark.parametrize(
    ("text", "canonical", "quota"),
    [
        ("eco", "eco", 512 * sizes.MIB),
        ("basic", "basic", 512 * sizes.MIB),
        ("standard-1x", "standard-1x", 512 * sizes.MIB),
        ("Standard-2X", "standard-2x", sizes.GIB),  # Heroku's CLI capitalizes them
        ("performance-m", "performance-m", 2560 * sizes.MIB),
        ("512M", "512M", 512 * sizes.MIB),
        ("512mb", "512M", 512 * sizes.MIB),
        ("64M", "64M", 64 * sizes.MIB),
        ("2G", "2G", 2 * sizes.GIB),
        ("2048M", "2G", 2 * sizes.GIB),
        ("1.5G", "1536M", 1536 * sizes.MIB),
        (" 1gb ", "1G", sizes.GIB),
    ],
)
def test_sizes_and_amounts(text: str, canonical: str, quota: int) -> None:
    assert sizes.parse_size(text, HOST) == canonical
    assert sizes.quota_bytes(canonical) == quota


def test_heroku_quotas_match_what_its_dynos_report() -> None:
    # /sys/fs/cgroup/memory/memory.limit_in_bytes on Heroku's dynos of these sizes
    assert sizes.SIZES["standard-1x"] == 536870912
    assert sizes.SIZES["standard-2x"] == 1073741824
    assert sizes.SIZES["performance-m"] == 2684354560
    assert sizes.SIZES["performance-l"] == 15032385536


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("huge", "Unknown dyno size 'huge': use one of eco, basic"),
        ("", "Unknown dyno size ''"),
        ("512", "Unknown dyno size '512'"),
        ("-1G", "Unknown dyno size '-1G'"),
        ("1T", "Unknown dyno size '1T'"),
        ("0M", "The dyno size '0M' is too small: a memory quota must be at least 64M."),
        ("63M", "The dyno size '63M' is too small"),
        ("0.05G", "The dyno size '0.05G' is too small"),
        ("9G", "The dyno size '9G' (9G) is more than this server's memory (8G)."),
        ("performance-l", "The dyno size 'performance-l' (14G) is more than this server's"),
        ("x" * 1000, "Unknown dyno size '" + "x" * 40 + "…'"),
    ],
)
def test_bad_sizes_are_named(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        sizes.parse_size(text, HOST)
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


def test_unknown_host_memory_has_no_upper_limit() -> None:
    assert sizes.parse_size("performance-2xl", None) == "performance-2xl"


def test_no_size_is_no_quota() -> None:
    assert sizes.quota_bytes(None) is None
    assert sizes.describe(None) == "no quota"
    assert sizes.describe("standard-2x") == "standard-2x (1G)"
    assert sizes.describe("performance-m") == "performance-m (2.5G)"
    assert sizes.describe("768M") == "768M"


def test_host_memory_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        8049876 kB\nMemFree:  1 kB\n")
    assert sizes.host_memory(meminfo) == 8049876 * 1024
    assert sizes.host_memory(tmp_path / "missing") is None
    assert sizes.host_memory() is not None  # this machine's
