#!/bin/sh
# Build the `minipaas` binary from this checkout with PyInstaller (packaging/minipaas.spec).
#
#   packaging/build.sh                 -> dist/minipaas (one file, ~18 MB, about 35 s on 2 cores)
#   packaging/build.sh --onedir        -> dist/minipaas-onedir/minipaas (faster start, a directory)
#   packaging/build.sh --dist DIR --work DIR    output and scratch dirs (default dist/, build/)
#
# Needs the dev virtualenv (.venv with `pip install -e '.[dev]'`, which brings PyInstaller), or
# PYTHON=/path/to/python of any environment that has minipaas's dependencies and PyInstaller.
# The binary does not contain Caddy or uv: install.sh puts them next to it.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-$root/.venv/bin/python}
dist=$root/dist
work=$root/build/pyinstaller
onedir=0
die() { printf ' !     %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --onedir) onedir=1; shift ;;
        --dist) [ $# -ge 2 ] || die "--dist needs a directory."; dist=$2; shift 2 ;;
        --work) [ $# -ge 2 ] || die "--work needs a directory."; work=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "Unknown option '$1'; see packaging/build.sh --help." ;;
    esac
done
[ -x "$python" ] || die "No Python at $python: create the dev venv (python3 -m venv .venv && .venv/bin/pip install -e '.[dev]') or set PYTHON."
"$python" -c "import PyInstaller" 2>/dev/null \
    || die "PyInstaller is not installed for $python: run $python -m pip install pyinstaller."
"$python" -c "import minipaas.cli, dulwich, uvicorn, textual" 2>/dev/null \
    || die "minipaas or its dependencies are not importable by $python: run $python -m pip install -e '.[dev]'."

start=$(date +%s)
MINIPAAS_ONEDIR=$onedir "$python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work" packaging/minipaas.spec
if [ "$onedir" = 1 ]; then exe=$dist/minipaas-onedir/minipaas; else exe=$dist/minipaas; fi
version=$("$exe" --version)
printf -- '-----> Built %s (%s) in %ss\n' "$exe" "$version" "$(( $(date +%s) - start ))"
