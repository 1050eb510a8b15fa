"""Shared helpers for the Python tests.

Built artefacts (made by `make python-test`):
  build/naive/   naive_ext, the control that keeps callbacks the wrong way
  build/engine/  cbreg_engine and cbreg_peer, built against the installed
                 cbreg package's libcbreg.so
Environment: CBREG_SHUTDOWN_RUNS (default 200) runs per exit scenario,
CBREG_TEST_JOBS (default 4) subprocesses at once, CBREG_HANG_LIMIT (default
30) seconds after which an exit counts as hung, CBREG_REQUIRE_BUILT=1 (set
by `make python-test`) to fail rather than skip when an artefact is missing.
"""
import collections
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCENARIOS = os.path.join(ROOT, "tests", "python", "scenarios")
NAIVE_DIR = os.environ.get("CBREG_NAIVE_DIR", os.path.join(ROOT, "build", "naive"))
ENGINE_DIR = os.environ.get("CBREG_ENGINE_DIR", os.path.join(ROOT, "build", "engine"))
RUNS = int(os.environ.get("CBREG_SHUTDOWN_RUNS", "200"))
JOBS = int(os.environ.get("CBREG_TEST_JOBS", "4"))
# A run still going this long after its own work is done (an exit, a
# forked child) is hung (seconds). The times below it are reported as
# figures, not judged: a busy machine stretches them.
HANG_LIMIT = float(os.environ.get("CBREG_HANG_LIMIT", "30"))

if ENGINE_DIR not in sys.path:
    sys.path.insert(0, ENGINE_DIR)


def _has_module(directory, name):
    return os.path.isdir(directory) and any(f.startswith(name + ".") for f in os.listdir(directory))


REQUIRE_BUILT = os.environ.get("CBREG_REQUIRE_BUILT") == "1"

need_naive = pytest.mark.skipif(not REQUIRE_BUILT and not _has_module(NAIVE_DIR, "naive_ext"),
                                reason="naive_ext not built (make naive-ext)")
need_engine = pytest.mark.skipif(not REQUIRE_BUILT and not _has_module(ENGINE_DIR, "cbreg_engine"),
                                 reason="cbreg_engine not built (make python-engine)")


def run_python(script, timeout):
    """Runs `script` in a fresh interpreter; fails the test on a non-zero
    exit or a hang. Returns its stdout."""
    try:
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s")
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-3000:]}"
    return p.stdout


def run_scenario(name, module, runs, env=None, timeout=60):
    """Runs scenarios/<name>.py `runs` times in fresh interpreters, JOBS at a
    time; returns (Counter of exit codes, list of (code, stdout, stderr))."""
    ext_dir = NAIVE_DIR if module == "naive_ext" else ENGINE_DIR
    full_env = dict(os.environ, CBREG_TEST_EXT_DIR=ext_dir, CBREG_TEST_EXT_MODULE=module,
                    PYTHONUNBUFFERED="1", **(env or {}))
    script = os.path.join(SCENARIOS, name + ".py")

    def once(_):
        try:
            p = subprocess.run([sys.executable, script], env=full_env, capture_output=True,
                               text=True, timeout=timeout)
            return p.returncode, p.stdout, p.stderr, time.time()
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return "timeout", out, "", time.time()

    with ThreadPoolExecutor(JOBS) as pool:
        results = list(pool.map(once, range(runs)))
    return collections.Counter(r[0] for r in results), results


def exit_seconds(results):
    """Per run: seconds from the scenario's END line (its own work done) to
    the process having exited; None for a run that printed no END."""
    out = []
    for r in results:
        m = re.search(r"^END ([0-9.]+)", r[1], re.M)
        out.append(r[3] - float(m.group(1)) if m else None)
    return out


def latency_figures(seconds):
    """'median m s, p90 p s, slowest x s' for a list of latencies."""
    s = sorted(seconds)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return f"median {pick(0.5):.3f} s, p90 {pick(0.9):.3f} s, slowest {s[-1]:.3f} s"


def assert_exits_not_hung(results):
    """Every run printed END and exited within HANG_LIMIT after it. Returns
    the latencies (seconds from END to the exit) to report."""
    times = exit_seconds(results)
    missing = sum(t is None for t in times)
    assert not missing, f"{missing} runs never reached the end of their work"
    hung = sorted(t for t in times if t > HANG_LIMIT)
    assert not hung, (f"{len(hung)} of {len(times)} exits took over {HANG_LIMIT} s "
                      f"after the work was done ({latency_figures(times)})")
    return times


def describe(codes, results):
    bad = [r for r in results if r[0] != 0][:1]
    detail = f"\nfirst failure stdout:\n{bad[0][1]}\nstderr:\n{bad[0][2]}" if bad else ""
    return f"exit codes {dict(codes)}{detail}"
