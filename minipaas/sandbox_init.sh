#!/bin/sh
# minipaas dyno init: runs inside a fresh private mount namespace (made by `unshare --mount`).
# Gives the dyno a throwaway writable layer over its read-only slug and its temporary dirs, all in
# one tmpfs of SIZE bytes, then drops to the app's uid and execs bubblewrap (which binds
# SCRATCH/app, tmp, vartmp and shm). Every value arrives as an argument; nothing here is built
# from strings.
#   sandbox_init.sh LOWER SCRATCH UID|- SIZE SECCOMP|- -- ARGV...
# SECCOMP: bubblewrap's seccomp program as a printf format of octal escapes (`\040\000…`),
# written into the layer's tmpfs and opened as fd 3 (ARGV then says `--seccomp 3`).
set -eu
# This runs as root with the dyno's environment, whose PATH the app's config may set: the tools
# here are the system's, and the app's PATH is given back for bubblewrap and the dyno.
app_path=${PATH-}
PATH=/usr/sbin:/usr/bin:/sbin:/bin
lower=$1
scratch=$2
uid=$3
size=-
seccomp=-
if [ "$4" = "--" ]; then  # called as before SIZE and SECCOMP existed (an older server)
    shift 4
else
    size=$4
    seccomp=$5
    shift 6
fi
if [ "$size" = "-" ]; then
    mount -t tmpfs -o mode=0755 minipaas-layer "$scratch"
else
    mount -t tmpfs -o "mode=0755,size=$size" minipaas-layer "$scratch"
fi
mkdir "$scratch/upper" "$scratch/work" "$scratch/app"
mkdir -m 1777 "$scratch/tmp" "$scratch/vartmp" "$scratch/shm"
if [ "$seccomp" != "-" ]; then
    # shellcheck disable=SC2059 # the format is the program: octal escapes, nothing else
    printf "$seccomp" > "$scratch/seccomp"
    exec 3< "$scratch/seccomp"
fi
if [ "$uid" != "-" ]; then
    chown "$uid:$uid" "$scratch/upper" "$scratch/work" "$scratch/tmp" "$scratch/vartmp" "$scratch/shm"
fi
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/app"
chmod 0755 "$scratch/app"
setpriv=$(command -v setpriv)
PATH=$app_path
if [ "$uid" = "-" ]; then
    exec "$@"
fi
exec "$setpriv" --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all -- "$@"
