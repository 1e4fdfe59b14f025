"""The build subsystem: Procfile and app.json parsing, the classic buildpack runner, and
minipaas's own buildpacks (python, node, static, procfile-only) in `buildpacks/`.

Builds an exported source tree into a slug in place. It starts no long-lived process and
touches no SQLite, git repository of an app, or Caddy: the deploy pipeline does those.
"""

from minipaas.build.appjson import (
    AppJson,
    CronJob,
    EnvVar,
    Formation,
    initial_config,
    parse_app_json,
)
from minipaas.build.procfile import parse_procfile
from minipaas.build.runner import Builder, BuildRequest, BuildResult

__all__ = [
    "AppJson",
    "BuildRequest",
    "BuildResult",
    "Builder",
    "CronJob",
    "EnvVar",
    "Formation",
    "initial_config",
    "parse_app_json",
    "parse_procfile",
]
