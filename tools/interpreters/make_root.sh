#!/bin/sh
# Make the Debian trixie root that hosts the other interpreters:
#   tools/interpreters/make_root.sh ROOT
# debootstrap --variant=minbase, this machine's CA certificates (the network
# may intercept TLS), then CPython 3.13 (python3.13, -dev, -venv), the C/C++
# tool chain for cargo's linker and the extensions, and what building
# CPython from source needs (for 3.13t). Cargo and rustc are not installed:
# in_root.sh binds the host's toolchain in. No plain `python3` is installed
# on purpose: every build step must name its interpreter.
set -eu
root=$1
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)

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
    echo "debootstrap trixie into $root (log: $root.log)"
    debootstrap --variant=minbase trixie "$root" "$mirror" > "$root.log" 2>&1 ||
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
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror trixie main
deb-src $mirror trixie main
SOURCES

echo "apt-get install in the root (log: $root.log)"
"$here/in_root.sh" "$root" env DEBIAN_FRONTEND=noninteractive sh -euc '
apt-get update -q
apt-get install -y -q --no-install-recommends \
    ca-certificates curl xz-utils \
    python3.13 python3.13-dev python3.13-venv \
    gcc g++ make pkg-config dpkg-dev \
    libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libexpat1-dev
update-ca-certificates >/dev/null
apt-get clean
' >> "$root.log" 2>&1 || { tail -n 30 "$root.log"; exit 1; }
