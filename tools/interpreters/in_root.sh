#!/bin/sh
# Run a command inside the Debian root ROOT with this work tree and the host's
# Rust toolchain visible at their host paths.
#   tools/interpreters/in_root.sh ROOT COMMAND [ARG...]
#
# The bind mounts live in a private mount namespace (unshare -m): they vanish
# when the command ends, so a later `rm -rf build` can never reach through
# the root into the work tree or ~/.cargo. Only a small, fixed environment
# crosses into the root; pass more with `env NAME=VALUE ...` as COMMAND.
set -eu
root=$(cd "$1" && pwd)
shift
tree=$(cd "$(dirname "$0")/../.." && pwd)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}

exec unshare --mount --propagation private /bin/sh -eu -c '
root=$1 tree=$2 cargo_home=$3 rustup_home=$4
shift 4
bind() { mkdir -p "$root$2" && mount --bind "$1" "$root$2"; }
mount -t proc proc "$root/proc"
mkdir -p "$root/dev" && mount --rbind /dev "$root/dev"
bind "$tree" "$tree"
if [ -d "$cargo_home" ]; then bind "$cargo_home" /root/.cargo; fi
if [ -d "$rustup_home" ]; then bind "$rustup_home" /root/.rustup; fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
exec chroot "$root" /usr/bin/env -i \
  HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
  /bin/sh -c "cd \"\$1\" && shift && exec \"\$@\"" sh "$tree" "$@"
' sh "$root" "$tree" "$cargo_home" "$rustup_home" "$@"
