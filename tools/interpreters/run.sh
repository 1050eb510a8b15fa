#!/bin/sh
# Run the Python suite on each named interpreter inside its Debian root and
# print the table:
#   tools/interpreters/run.sh CACHE NAME...
# CACHE holds the roots (CACHE/trixie, CACHE/sid: make_root.sh) and one
# folder per NAME. Names:
#   3.13                trixie's CPython 3.13 (GIL)
#   3.14, 3.15          sid's CPython 3.14 and 3.15 (GIL); 3.15 takes the
#                       PEP 788 path (interpreter guards)
#   3.13t               CPython 3.13 built with --disable-gil; pyo3-ffi is
#                       told the truth (PYO3_PYTHON = 3.13t)
#   3.13t-gil-layout    3.13t, but pyo3-ffi configured for the GIL 3.13 (what
#                       a build that finds plain `python3` gets)
#   3.13t-skip-check    3.13t with UNSAFE_PYO3_SKIP_VERSION_CHECK=1, pyo3-ffi's
#                       own 3.13t layout
# Any name may end in +nogil: the suite runs with PYTHON_GIL=0 (the GIL
# stays off whatever the modules declare), and in :RUNS (3.14:20) to run
# RUNS per exit scenario there instead of CBREG_SHUTDOWN_RUNS. Exits
# non-zero when any interpreter's build or suite failed.
set -u
cache=$(cd "$1" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
ft=/opt/python3.13t/bin/python3.13t
failed=0
names=

for spec in "$@"; do
    name=${spec%%:*}
    runs=${CBREG_SHUTDOWN_RUNS:-20}
    [ "$name" != "$spec" ] && runs=${spec#*:}
    names="$names $name"
    base=${name%+nogil}
    runtime=
    [ "$base" != "$name" ] && runtime="PYTHON_GIL=0"
    pyo3=
    suite=trixie
    case $base in
        3.13) py=/usr/bin/python3.13; defines= ;;
        3.14|3.15) py=/usr/bin/python$base; defines=; suite=sid ;;
        3.13t) py=$ft; defines= ;;
        3.13t-gil-layout) py=$ft; defines=CBREG_PYO3_PYTHON=/usr/bin/python3.13 ;;
        3.13t-skip-check) py=$ft; defines=; pyo3=UNSAFE_PYO3_SKIP_VERSION_CHECK=1 ;;
        *) echo "unknown interpreter: $name" >&2; exit 2 ;;
    esac
    echo "== $name: $py" >&2
    start=$(date +%s)
    mkdir -p "$cache/$name" && rm -f "$cache/$name/status.txt"
    # Each root builds into a cargo target dir of its own: what one links
    # against its glibc need not run in the other.
    # shellcheck disable=SC2086 # optional words
    "$here/in_root.sh" "$cache/$suite" env CBREG_TARGET_DIR="$cache/target-$suite" \
        CBREG_SHUTDOWN_RUNS="$runs" \
        CBREG_HANG_LIMIT="${CBREG_HANG_LIMIT:-30}" \
        $runtime $pyo3 "$here/suite.sh" "$name" "$py" "$cache/$name" $defines
    rc=$?
    echo "total_s=$(( $(date +%s) - start ))" >> "$cache/$name/status.txt"
    [ -n "$runtime" ] && echo "runtime_env=$runtime" >> "$cache/$name/status.txt"
    [ -n "$pyo3$defines" ] && echo "pyo3_config=$pyo3$defines" >> "$cache/$name/status.txt"
    echo "== $name: exit $rc in $(( $(date +%s) - start )) s" >&2
    [ $rc -eq 0 ] || failed=1
done

# shellcheck disable=SC2086 # one word per name
python3 "$here/table.py" "$cache" $names
exit $failed
