#!/bin/sh
# One interpreter's whole Python run, inside the trixie root (in_root.sh):
#   tools/interpreters/suite.sh NAME PYTHON OUT [CMAKE_VAR=VALUE...]
# venv OUT/../venv-<PYTHON's tag> (shared by runs of one interpreter), then
# `pip install .` (build dir under OUT, cargo's target dir $CBREG_TARGET_DIR,
# one per root),
# the naive control and the engine extensions under OUT, `import cbreg` (GIL
# state, warnings), and pytest tests/python. Each step's log and outcome go to OUT
# (status.txt, *.log, gil.txt, tally.json, junit.xml); table.py reads them. Exits 0
# when every step passed.
set -u
name=$1 py=$2 out=$3
shift 3
tree=$(cd "$(dirname "$0")/../.." && pwd)
cache=$(dirname "$out")
tag=$("$py" -c 'import sys, sysconfig; print("%d.%d%s" % (sys.version_info[:2] + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "",)))')
venv=$cache/venv-$tag
vpy=$venv/bin/python
runs=${CBREG_SHUTDOWN_RUNS:-20}

mkdir -p "$out"
rm -f "$out"/status.txt "$out"/gil.txt "$out"/tally.json "$out"/junit.xml "$out"/*.log
status() { echo "$1=$2" >> "$out/status.txt"; }
elapsed() { echo $(( $(date +%s) - $1 )); }
echo "python=$py" > "$out/status.txt"
status version "$("$py" -c 'import sys; print(sys.version.split()[0])')"
status free_threaded "$("$py" -c 'import sysconfig; print(int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))))')"

# ---- venv (re-made when the requirements change) ----
t=$(date +%s)
req=$tree/python/requirements-dev.txt
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
    rm -rf "$venv"
    "$py" -m venv "$venv" > "$out/venv.log" 2>&1 &&
    "$vpy" -m pip install -q -r "$req" >> "$out/venv.log" 2>&1 &&
    cp "$req" "$venv/.requirements" || { status venv FAIL; exit 1; }
fi
status venv_s "$(elapsed $t)"

# ---- the cbreg package: cargo (PYO3_PYTHON from CMake) + nanobind ----
# One cargo target dir for every run in the root (the crates built once);
# pyo3-ffi's build script reruns when PYO3_PYTHON or this signature change,
# so no run reuses another's interpreter configuration.
t=$(date +%s)
export PYO3_ENVIRONMENT_SIGNATURE="$name"
defines=
for d in "$@"; do defines="$defines -C cmake.define.$d"; done
# shellcheck disable=SC2086 # one word per define, no spaces in them
if "$vpy" -m pip install --no-build-isolation --force-reinstall --no-deps \
        -C build-dir="$out/py" \
        -C cmake.define.CBREG_CARGO_TARGET_DIR="${CBREG_TARGET_DIR:-$cache/target}" \
        $defines . > "$out/build.log" 2>&1; then
    status build ok
else
    status build FAIL
fi
status build_s "$(elapsed $t)"
grep -q '^build=ok' "$out/status.txt" || exit 1

t=$(date +%s)
VENV_PY=$vpy tests/python/build_ext.sh tests/python/naive "$out/naive" > "$out/ext.log" 2>&1 &&
VENV_PY=$vpy tests/python/build_ext.sh tests/python/engine "$out/engine" >> "$out/ext.log" 2>&1 &&
    status extensions ok || { status extensions FAIL; exit 1; }
status extensions_s "$(elapsed $t)"

# ---- the GIL after import (3.13+: sys._is_gil_enabled) ----
"$vpy" -W default -c '
import sys
import cbreg
print(getattr(sys, "_is_gil_enabled", lambda: True)())
' > "$out/gil.txt" 2> "$out/import.log"
status import_rc $?

# ---- the suite ----
# A test that kills pytest (a segfault in-process) is noted, deselected, and
# the suite run again, so one crash does not hide the other results.
t=$(date +%s)
crashed= deselect=
: > "$out/pytest.log"
for attempt in 1 2 3 4 5 6 7 8; do
    # shellcheck disable=SC2086 # one word per deselected test
    CBREG_REQUIRE_BUILT=1 CBREG_SHUTDOWN_RUNS=$runs \
    CBREG_NAIVE_DIR=$out/naive CBREG_ENGINE_DIR=$out/engine \
    CBREG_TALLY_OUT=$out/tally.json PYTHONPATH=$tree/tools/interpreters \
        "$vpy" -m pytest -q -p scenario_tally -p no:cacheprovider --junitxml="$out/junit.xml" \
        $deselect tests/python \
        > "$out/pytest.$attempt.log" 2>&1
    rc=$?
    cat "$out/pytest.$attempt.log" >> "$out/pytest.log"
    [ $rc -gt 128 ] || break
    # faulthandler's traceback names the test that was running.
    hit=$(grep -m1 -oE 'tests/python/test_[A-Za-z0-9_]+\.py", line [0-9]+ in test_[A-Za-z0-9_]+' \
          "$out/pytest.$attempt.log") || break
    test_id="${hit%%.py*}.py::${hit##* in }"
    crashed="$crashed $test_id(SIG$((rc - 128)))"
    deselect="$deselect --deselect $test_id"
    echo "CRASHED $test_id: pytest (exit $rc); running the rest again" >> "$out/pytest.log"
done
[ -n "$crashed" ] && [ $rc -eq 0 ] && rc=1
status pytest_rc $rc
status pytest_crashed "${crashed# }"
status pytest_summary "$(tail -n 1 "$out/pytest.$attempt.log")"
status suite_s "$(elapsed $t)"
exit $rc
