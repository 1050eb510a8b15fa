#!/bin/sh
# Build free-threaded CPython 3.13 (3.13t) inside the trixie root from
# Debian's python3.13 source package (the upstream tarball it carries;
# Debian's own patches target Debian's layout and are left out):
#   tools/interpreters/build_python_ft.sh ROOT
# Installs into ROOT/opt/python3.13t. `make -j<cores>`, no PGO/LTO: about
# 3.5 CPU-minutes. No pip in the prefix: each venv gets its own from the
# bundled ensurepip wheel.
set -eu
root=$1
here=$(cd "$(dirname "$0")" && pwd)
jobs=$(nproc)

log=$root.python3.13t.log
echo "building CPython 3.13t in $root/opt/python3.13t (log: $log)"
"$here/in_root.sh" "$root" env JOBS="$jobs" sh -euc '
src=/usr/src/python3.13t
rm -rf "$src" /opt/python3.13t
mkdir -p "$src"
cd "$src"
apt-get source --download-only -q python3.13
tar -xf python3.13_*.orig.tar.xz
cd Python-3.13*/
./configure -q --disable-gil --prefix=/opt/python3.13t --without-ensurepip \
    --with-system-expat
make -s -j"$JOBS"
make -s install
/opt/python3.13t/bin/python3.13t - <<PY
import ssl, sys, sysconfig, zlib, ctypes
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "not a free-threaded build"
assert not sys._is_gil_enabled()
print("python3.13t:", sys.version.replace(chr(10), " "))
PY
rm -rf "$src"
' > "$log" 2>&1 || { tail -n 30 "$log"; exit 1; }
tail -n 1 "$log"
