#!/bin/sh
# Build a test extension (a CMake + nanobind project) out of source with the
# venv's cmake and ninja.
#   tests/python/build_ext.sh SOURCE_DIR BUILD_DIR [BUILD_TYPE]
# e.g. tests/python/naive (needs `make venv`) or tests/python/engine (needs
# `make python-install`). Override the interpreter with VENV_PY. Prints the
# directory that holds the modules.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${VENV_PY:-$root/.venv/bin/python}
case $py in /*) ;; *) py=$root/$py ;; esac
src=$1
build=$2
build_type=${3:-Release}
bin=$(dirname "$py")

"$bin/cmake" -S "$src" -B "$build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$bin/ninja" \
    -DCMAKE_BUILD_TYPE="$build_type" \
    -DPython_EXECUTABLE="$py" \
    -Dnanobind_DIR="$("$py" -m nanobind --cmake_dir)" >&2
"$bin/cmake" --build "$build" >&2
echo "$build"
