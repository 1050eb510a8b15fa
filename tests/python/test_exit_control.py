"""The controls: the naive extension (callbacks in a C++ static map) must
crash at exit, and on free-threaded CPython a fork that meets a
stop-the-world must leave its child hung. This proves the exit-code and
fork tests can fail. Only the variants that fail reliably are asserted, and
only "non-zero" (134 or 139 vary)."""
import sys
import sysconfig

import pytest

from conftest import describe, need_naive, run_scenario

CONTROL_RUNS = 3


FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


@need_naive
@pytest.mark.parametrize("name, env", [
    pytest.param("holds_print", {}, marks=pytest.mark.skipif(
        FREE_THREADED, reason="on free-threaded CPython the naive map holding a "
        "builtin exits 0; the instance and engine controls still crash")),
    ("holds_instance", {}),
    ("engine_at_exit", {"CBREG_TEST_ENGINE_CALLBACK": "builtin"}),
    ("kept_state_at_exit", {}),
], ids=["held_print", "held_instance", "engine_builtin", "kept_state_joined_at_exit"])
def test_naive_control_crashes_at_exit(name, env):
    codes, results = run_scenario(name, "naive_ext", CONTROL_RUNS, env)
    assert all(c != 0 for c in codes.elements()), describe(codes, results)


EDGE_CONTROL_RUNS = 10

# The naive extension's exit waits this long for its calls in flight (see
# naive_ext.cpp, NAIVE_EXT_WAIT_AT_EXIT) before it says they never came back.
# Only where CPython parks threads (3.14+): before, they crash at once.
WAIT_AT_EXIT = {"NAIVE_EXT_WAIT_AT_EXIT": "3"} if sys.version_info >= (3, 14) else {}
# A control run still going after this long has hung (from 3.14 some hang
# before that wait, in exit handlers that take the GIL): a failure too.
EDGE_CONTROL_TIMEOUT = 20


@need_naive
@pytest.mark.parametrize("name, env", [
    ("daemon_in_callback", WAIT_AT_EXIT),
    ("native_long_callback", WAIT_AT_EXIT),
    ("import_in_atexit", {}),
], ids=["daemon_in_callback", "native_long_callback", "import_in_atexit"])
def test_naive_control_fails_the_exit_edges(name, env):
    """The same scripts as test_exit_edges.py, on the naive extension: a
    daemon thread inside a callback, a native thread inside a long callback
    and a first import inside atexit crash most runs (SIGSEGV or SIGABRT),
    not every run, so at least one of EDGE_CONTROL_RUNS must fail.

    From CPython 3.14 the first two no longer crash: CPython parks a thread
    that takes the GIL back during finalization instead of ending it, and
    the process exits 0 around it. What fails there is waiting for that
    thread: the naive extension waits at exit for its calls in flight,
    which never return (status 3, "never came back"). cbreg's own exit
    never waits for such a thread (test_exit_edges.py)."""
    codes, results = run_scenario(name, "naive_ext", EDGE_CONTROL_RUNS, env,
                                  timeout=EDGE_CONTROL_TIMEOUT)
    failed = sum(n for c, n in codes.items() if c != 0)
    print(f"naive {name}: {failed}/{EDGE_CONTROL_RUNS} runs failed {dict(codes)}")
    assert failed >= 1, describe(codes, results)


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"),
                    reason="only free-threaded CPython stops the world")
def test_control_stopping_the_world_as_it_forks_hangs_the_child():
    """The control of the fork scenarios in test_exit_edges.py: a thread
    that stops the interpreter's world while os.fork runs (what a native
    thread making its first thread state may do, and what cbreg's fork hook
    waits out) leaves the child hung on CPython 3.13.5t, so their check that
    every child exits can fail."""
    codes, results = run_scenario("fork_while_stopping_world", "python", CONTROL_RUNS)
    hung = sum("child hung" in r[1] for r in results)
    assert hung >= 1, describe(codes, results)
