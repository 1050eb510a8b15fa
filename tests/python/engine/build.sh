#!/bin/sh
# Build the test engine extensions against the installed cbreg package.
#   tests/python/engine/build.sh [BUILD_DIR] [BUILD_TYPE]
# Defaults: build/engine, Release. Needs `make python-install`. Prints the
# directory holding the modules.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
py=${VENV_PY:-$root/.venv/bin/python}
case $py in /*) ;; *) py=$root/$py ;; esac
build=${1:-$root/build/engine}
build_type=${2:-Release}
bin=$(dirname "$py")

"$bin/cmake" -S "$root/tests/python/engine" -B "$build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$bin/ninja" \
    -DCMAKE_BUILD_TYPE="$build_type" \
    -DPython_EXECUTABLE="$py" \
    -Dnanobind_DIR="$("$py" -m nanobind --cmake_dir)" >&2
"$bin/cmake" --build "$build" >&2
echo "$build"
