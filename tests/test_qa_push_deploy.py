"""The deploy pipeline's bookkeeping when a build fails for a reason that is not the pusher's
(a bug, a full disk): the build is marked failed and its half-built slug removed, as for a
build error, instead of being left 'pending' with the slug on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from minipaas.build import BuildRequest, BuildResult
from minipaas.deploy import Deployer
from minipaas.git import Repos
from minipaas.logs import LogStore
from minipaas.settings import Settings
from minipaas.store import Store
from tests.paas import commit, git_env


class BrokenBuilder:
    """A builder with a bug: it raises something that is not a `UserError`."""

    async def build(self, req: BuildRequest, log: Any) -> BuildResult:
        log("-----> Procfile app detected")
        raise RuntimeError("a bug in the builder")


async def test_an_internal_build_error_fails_the_build_and_removes_its_slug(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    repos = Repos(settings.paths.repos)
    store = Store(tmp_path / "state.db")
    await store.open()
    try:
        app = await store.create_app("broken")
        repos.create("broken")
        work = tmp_path / "work"
        work.mkdir()
        (work / "Procfile").write_text("web: python3 -m http.server $PORT\n")
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=git_env())
        commit(work, "v1")
        subprocess.run(
            ["git", "-C", str(work), "push", "-q", str(repos.path("broken")), "main"],
            check=True, env=git_env(),
        )  # fmt: skip
        sha = repos.head_sha("broken")
        assert sha is not None
        parts: dict[str, Any] = dict.fromkeys(("supervisor", "router"))
        deployer = Deployer(
            settings=settings,
            store=store,
            repos=repos,
            builder=BrokenBuilder(),  # type: ignore[arg-type]
            logs=LogStore(tmp_path / "logs"),
            api_upstream=lambda: "127.0.0.1:1",
            **parts,
        )
        lines: list[str] = []
        with pytest.raises(RuntimeError, match="a bug in the builder"):
            await deployer.deploy("broken", sha, lines.append, who="test")
        [build] = await store.builds(app)
        assert build.status == "failed"
        assert not settings.paths.slug("broken", f"b{build.id}").exists()
        assert list(settings.paths.run.iterdir()) == []  # the scratch dir is gone too
    finally:
        await store.close()
