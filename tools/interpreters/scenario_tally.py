"""pytest plugin: records every exit-scenario batch the suite runs (scenario,
extension, runs, exit codes, first failure's stderr, the slowest exit after
the scenario's own work and the slowest forked child) and writes them as
JSON to $CBREG_TALLY_OUT at the end of the session. A batch run by a test
marked as expected to fail that did fail is marked "expected_failure", so
the table can tell a known defect from a new one.

    pytest -p scenario_tally tests/python      (with this folder on sys.path)

It wraps conftest.run_scenario when tests/python/conftest.py is registered,
before the test modules import it, so no scenario runs twice.
"""
import json
import os
import re

_batches = []
_xfailed = set()


def _tally(run_scenario):
    def wrapped(name, module, runs, env=None, timeout=60):
        codes, results = run_scenario(name, module, runs, env, timeout)
        bad = [r for r in results if r[0] != 0]
        # (code, stdout, stderr, time the run ended), as conftest.run_scenario
        ends = [r[3] - float(m.group(1)) for r in results
                if (m := re.search(r"^END ([0-9.]+)", r[1], re.M))]
        children = [float(m.group(1)) for r in results
                    if (m := re.search(r"slowest child ([0-9.]+) s", r[1]))]
        _batches.append({
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0],
            "scenario": name,
            "variant": (env or {}).get("CBREG_TEST_ENGINE_CALLBACK", ""),
            "module": module,
            "runs": runs,
            "exit0": codes.get(0, 0),
            "codes": {str(k): v for k, v in codes.items()},
            "first_failure_stderr": bad[0][2][-2000:] if bad else "",
            "slowest_exit_s": max(ends, default=None),
            "slowest_child_s": max(children, default=None),
        })
        return codes, results

    wrapped.tallied = True
    return wrapped


def pytest_plugin_registered(plugin, manager):
    fn = getattr(plugin, "run_scenario", None)
    if getattr(plugin, "__name__", "") == "conftest" and fn and not getattr(fn, "tallied", False):
        plugin.run_scenario = _tally(fn)


def pytest_runtest_logreport(report):
    if getattr(report, "wasxfail", None) is not None and report.skipped:
        _xfailed.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("CBREG_TALLY_OUT")
    for b in _batches:
        b["expected_failure"] = b["test"] in _xfailed
    if out:
        with open(out, "w") as f:
            json.dump(_batches, f, indent=1)
