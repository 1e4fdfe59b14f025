#!/bin/sh
# minipaas installer: sets up everything minipaas needs on Debian/Ubuntu and starts it.
#
#   From a checkout:   sudo ./install.sh [--domain example.com] [--email me@example.com]
#   Options:           --deps-only   install the distribution packages and stop there
#                      --no-start    install but do not start the server
#                      --prefix DIR  where the virtualenv goes (default /opt/minipaas)
#
# Idempotent: running it again upgrades in place.
set -eu

domain=localhost
email=""
deps_only=0
start=1
prefix=/opt/minipaas

say() { printf '%s\n' "-----> $*"; }
die() { printf ' !     %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --domain) [ $# -ge 2 ] || die "--domain needs a value, e.g. --domain example.com."; domain=$2; shift 2 ;;
        --email) [ $# -ge 2 ] || die "--email needs a value."; email=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory."; prefix=$2; shift 2 ;;
        --deps-only) deps_only=1; shift ;;
        --no-start) start=0; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "Unknown option '$1'; see ./install.sh --help." ;;
    esac
done

[ "$(id -u)" = 0 ] || die "Run the installer as root (sudo ./install.sh): it installs packages and runs apps under their own uids."
command -v apt-get >/dev/null 2>&1 || die "This installer supports Debian and Ubuntu (apt-get not found)."
case "$(uname -m)" in
    x86_64|aarch64) ;;
    *) die "Unsupported architecture '$(uname -m)': minipaas runs on x86_64 and aarch64." ;;
esac
case "$domain" in
    *[!a-z0-9.-]*|.*|*..*|"") die "Invalid domain '$domain': use a host name such as example.com." ;;
esac

here=$(cd "$(dirname "$0")" && pwd)

say "Installing system packages (git, bubblewrap, python3-venv, openssh)"
export DEBIAN_FRONTEND=noninteractive
packages="git bubblewrap python3-venv python3-pip util-linux openssh-client curl ca-certificates tmux"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
command -v node >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -qq $missing >/dev/null
fi

[ "$deps_only" = 1 ] && { say "System packages are installed."; exit 0; }

[ -f "$here/pyproject.toml" ] || die "Run install.sh from a minipaas checkout (pyproject.toml not found in $here)."

say "Installing minipaas into $prefix"
mkdir -p "$prefix"
[ -x "$prefix/venv/bin/python" ] || /usr/bin/python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade "$here"
ln -sf "$prefix/venv/bin/minipaas" /usr/local/bin/minipaas
ln -sf "$prefix/venv/bin/caddy" /usr/local/bin/minipaas-caddy

[ "$start" = 1 ] || { say "Installed (not started): run 'minipaas server'."; exit 0; }

args="--domain $domain"
[ -n "$email" ] && args="$args --email $email"
if [ -d /run/systemd/system ]; then
    say "Starting minipaas with systemd"
    cat > /etc/systemd/system/minipaas.service <<UNIT
[Unit]
Description=minipaas, Heroku for one server
After=network-online.target

[Service]
ExecStart=$prefix/venv/bin/minipaas server $args
Restart=on-failure
KillMode=mixed
TimeoutStopSec=90

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable --now minipaas.service
else
    say "No systemd here: starting minipaas in the background (log: /var/log/minipaas.log)"
    if minipaas status >/dev/null 2>&1; then
        minipaas down >/dev/null 2>&1 || true
    fi
    # shellcheck disable=SC2086 # $args is a list of flags
    nohup "$prefix/venv/bin/minipaas" server $args >>/var/log/minipaas.log 2>&1 &
fi

i=0
until minipaas status >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -le 300 ] || die "minipaas did not become ready; see /var/log/minipaas.log or 'journalctl -u minipaas'."
    sleep 0.2
done
say "minipaas is up: $(minipaas status)"
cat <<NEXT

Next:
  minipaas apps:create myapp
  minipaas keys:add me < ~/.ssh/id_ed25519.pub
  git remote add minipaas "\$(minipaas git:remote -a myapp)"
  git push minipaas main
NEXT
