#!/bin/sh
# Build the naive control extension out of source.
#   tests/python/naive/build.sh [BUILD_DIR] [BUILD_TYPE]
# Defaults: build/naive, Release. Needs the venv (`make venv`); override the
# interpreter with VENV_PY. Prints the directory that holds the module, which
# is what CBREG_TEST_EXT_DIR should point at.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
py=${VENV_PY:-$root/.venv/bin/python}
case $py in /*) ;; *) py=$root/$py ;; esac
build=${1:-$root/build/naive}
build_type=${2:-Release}
bin=$(dirname "$py")

"$bin/cmake" -S "$root/tests/python/naive" -B "$build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$bin/ninja" \
    -DCMAKE_BUILD_TYPE="$build_type" \
    -DPython_EXECUTABLE="$py" \
    -Dnanobind_DIR="$("$py" -m nanobind --cmake_dir)" >&2
"$bin/cmake" --build "$build" >&2
echo "$build"
