#!/bin/sh
# Make a Debian root that hosts interpreters other than the host's:
#   tools/interpreters/make_root.sh ROOT [SUITE]
# SUITE is trixie (the default) or sid:
#   trixie  CPython 3.13 (python3.13, -dev, -venv) and what building CPython
#           from source needs (for 3.13t, build_python_ft.sh)
#   sid     CPython 3.14 and 3.15 (python3.14, python3.15, -dev, -venv)
# Both: debootstrap --variant=minbase, this machine's CA certificates (the
# network may intercept TLS), the C/C++ tool chain for cargo's linker and the
# extensions. Each suite is a root of its own, so neither interpreter set
# mixes its libraries with the other's. Cargo and rustc are not installed:
# in_root.sh binds the host's toolchain in. No plain `python3` is installed
# on purpose: every build step must name its interpreter.
#
# sid's Release file may be past its Valid-Until date on a mirror that
# stopped syncing; apt in the sid root is told not to check it
# (debootstrap never does). What sid serves changes over time: the versions
# installed are written to ROOT.versions.
set -eu
root=$1
suite=${2:-trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)

case $suite in
    trixie)
        pythons="python3.13 python3.13-dev python3.13-venv"
        extra="libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libexpat1-dev"
        deb_src="deb-src $mirror trixie main" ;;
    sid)
        pythons="python3.14 python3.14-dev python3.14-venv python3.15 python3.15-dev python3.15-venv"
        extra=
        deb_src= ;;
    *) echo "make_root.sh: unknown suite $suite (trixie or sid)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
    echo "make interpreters needs root (debootstrap, then a chroot in a private mount namespace)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1 || ! command -v unshare >/dev/null 2>&1; then
    apt-get update -q
    apt-get install -y -q debootstrap util-linux
fi

if [ ! -e "$root/.debootstrap.stamp" ]; then
    rm -rf "$root"
    mkdir -p "$root"
    echo "debootstrap $suite into $root (log: $root.log)"
    debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.log" 2>&1 ||
        { tail -n 30 "$root.log"; exit 1; }
    touch "$root/.debootstrap.stamp"
fi

# The host's extra CAs: ca-certificates' postinst (or the explicit run
# below) folds them into the root's bundle, which pip and cargo use.
mkdir -p "$root/usr/local/share/ca-certificates"
if [ -d /usr/local/share/ca-certificates ]; then
    cp -rL /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
# Until the root's own bundle exists, the host's stands in for it.
mkdir -p "$root/etc/ssl/certs"
if [ ! -s "$root/etc/ssl/certs/ca-certificates.crt" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$root/etc/pip.conf"
printf 'deb %s %s main\n%s\n' "$mirror" "$suite" "$deb_src" > "$root/etc/apt/sources.list"
if [ "$suite" = sid ]; then
    printf 'Acquire::Check-Valid-Until "false";\n' > "$root/etc/apt/apt.conf.d/99cbreg-no-valid-until"
fi

echo "apt-get install in the root (log: $root.log)"
# shellcheck disable=SC2086 # package lists, one word each
"$here/in_root.sh" "$root" env DEBIAN_FRONTEND=noninteractive sh -euc '
apt-get update -q
apt-get install -y -q --no-install-recommends \
    ca-certificates curl xz-utils \
    gcc g++ make pkg-config dpkg-dev "$@"
update-ca-certificates >/dev/null
apt-get clean
dpkg-query -W "$@" > /tmp/versions
' sh $pythons $extra >> "$root.log" 2>&1 || { tail -n 30 "$root.log"; exit 1; }
mv "$root/tmp/versions" "$root.versions"
cat "$root.versions"
