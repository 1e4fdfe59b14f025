#!/bin/sh
# minipaas dyno init: runs inside a fresh private mount namespace (made by `unshare --mount`).
# Gives the dyno a throwaway writable layer over its read-only slug, then drops to the app's uid
# and execs bubblewrap. Every value arrives as an argument; nothing here is built from strings.
#   sandbox_init.sh LOWER SCRATCH UID|- SECCOMP|- -- ARGV...
# SECCOMP: bubblewrap's seccomp program as a printf format of octal escapes (`\040\000…`),
# written into the layer's tmpfs and opened as fd 3 (ARGV then says `--seccomp 3`).
set -eu
lower=$1
scratch=$2
uid=$3
if [ "$4" = "--" ]; then  # called as before SECCOMP existed (a server older than this file)
    seccomp=-
    shift 4
else
    seccomp=$4
    shift 5
fi
mount -t tmpfs -o mode=0755 minipaas-layer "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/app"
if [ "$seccomp" != "-" ]; then
    # shellcheck disable=SC2059 # the format is the program: octal escapes, nothing else
    printf "$seccomp" > "$scratch/seccomp"
    exec 3< "$scratch/seccomp"
fi
if [ "$uid" != "-" ]; then
    chown "$uid:$uid" "$scratch/upper" "$scratch/work"
fi
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/app"
chmod 0755 "$scratch/app"
if [ "$uid" = "-" ]; then
    exec "$@"
fi
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all -- "$@"
