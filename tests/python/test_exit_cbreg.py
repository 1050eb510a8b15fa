"""Exit-time scenarios on cbreg: every run must exit 0 (CBREG_SHUTDOWN_RUNS
runs each, default 200). The first three are the very programs that crash
the naive control, run against cbreg_engine's naive_ext-compatible API."""
import pytest

from conftest import RUNS, describe, need_engine, run_scenario

SCENARIOS = [
    # (scenario, env, text every run's stdout must contain)
    ("holds_print", {}, "holds_print: fired once"),
    ("holds_instance", {}, ""),
    ("engine_at_exit", {"CBREG_TEST_ENGINE_CALLBACK": "builtin"}, "ticks (builtin)"),
    ("engine_at_exit", {"CBREG_TEST_ENGINE_CALLBACK": "function"}, "ticks (function)"),
    ("cbreg_builtins_lambdas", {}, "fired once"),
    ("cbreg_instance_del", {}, "L7.__del__"),
    ("cbreg_engine_full_rate", {}, "exiting"),
    ("cbreg_atexit_register", {}, "('after-hook', 'closed')"),
    ("cbreg_raising", {}, "cbreg_raising: ok"),
]


@need_engine
@pytest.mark.parametrize("name, env, expect", SCENARIOS,
                         ids=[f"{s[0]}-{s[1].get('CBREG_TEST_ENGINE_CALLBACK', '')}".rstrip("-")
                              for s in SCENARIOS])
def test_cbreg_exits_cleanly(name, env, expect):
    codes, results = run_scenario(name, "cbreg_engine", RUNS, env)
    assert codes == {0: RUNS}, describe(codes, results)
    missing = [r for r in results if expect not in r[1]]
    assert not missing, f"{len(missing)} runs lack {expect!r}; e.g. stdout {missing[0][1]!r}"


@need_engine
def test_atexit_registrations_before_the_hook_succeed():
    codes, results = run_scenario("cbreg_atexit_register", "cbreg_engine", 1)
    assert codes == {0: 1}, describe(codes, results)
    assert "('before-hook', 'ok')" in results[0][1]
