#!/bin/sh
# The test command (README "Quick start", step 2; CI runs exactly this).
# Installs what the tests need (system packages via install.sh --deps-only, a dev virtualenv in
# .venv), then runs ruff, mypy --strict and pytest. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    sh ./install.sh --deps-only
else
    sudo sh ./install.sh --deps-only
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
echo "-----> ruff"
.venv/bin/ruff check minipaas tui tests bench
echo "-----> mypy --strict"
.venv/bin/mypy
echo "-----> pytest"
exec .venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"
