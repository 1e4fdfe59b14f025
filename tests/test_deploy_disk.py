"""Disk housekeeping of the deploy layer: the build cache is cleared once it outgrows its limit,
and discarded trees (old slugs, destroyed apps) vanish at once and are deleted later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minipaas.deploy import Deployer
from minipaas.settings import Settings


def deployer(tmp_path: Path, limit: int) -> Deployer:
    parts: dict[str, Any] = dict.fromkeys(
        ("store", "repos", "builder", "supervisor", "router", "logs")
    )
    return Deployer(
        settings=Settings(data_dir=tmp_path, cache_limit=limit),
        api_upstream=lambda: "127.0.0.1:1",
        **parts,
    )


def test_cache_cleared_over_its_limit(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "app" / "venv"
    cache.mkdir(parents=True)
    (cache / "big").write_bytes(b"x" * 300_000)
    assert deployer(tmp_path, limit=1_000_000)._prune_cache("app") is False
    assert (cache / "big").exists()
    assert deployer(tmp_path, limit=100_000)._prune_cache("app") is True
    assert not (tmp_path / "cache" / "app").exists()
    assert deployer(tmp_path, limit=100_000)._prune_cache("app") is False  # nothing left


async def test_discarded_trees_vanish_at_once_and_are_deleted_later(tmp_path: Path) -> None:
    d = deployer(tmp_path, limit=1_000_000)
    slug = tmp_path / "slugs" / "app" / "b1"
    (slug / "sub").mkdir(parents=True)
    (slug / "sub" / "file").write_text("x")
    (tmp_path / "slugs" / "app" / "b2").mkdir()
    d._discard(slug)
    assert not slug.exists()  # gone for everyone at once: renamed into the trash
    assert (tmp_path / "slugs" / "app" / "b2").is_dir()  # its neighbours stay
    [trashed] = list((tmp_path / "trash").iterdir())
    assert trashed.name.startswith("app-b1-") and (trashed / "sub" / "file").exists()
    d._discard(tmp_path / "slugs" / "app" / "missing")  # nothing there: nothing happens
    await d.empty_trash()
    assert list((tmp_path / "trash").iterdir()) == []
