"""cbreg scenario: native entries (a C++ counter, in the default registry
and in a registry of its own) stay live through Python's exit hook, and a
native engine thread firing one of them never sees NOT_FOUND; the Python
entries of both registries are released by the hook while Python is whole.

An atexit handler registered before cbreg is imported runs after cbreg's
hook (atexit is last in, first out) and reports what it sees there."""
import atexit
import sys
import time

OK, NOT_FOUND, CLOSED = 0, 1, 2
report = {}


def after_hook():
    import cbreg
    report["closed"] = cbreg.is_closed()
    report["native_default"] = ext.fire_on_thread(native_id)
    report["native_own"] = ext.fire_in_on_thread(own, native_own_id)
    report["python_default"] = ext.fire_on_thread(py_sub.id)
    report["python_own"] = ext.fire_in_on_thread(own, py_own_id)
    before = ext.native_calls()
    deadline = time.monotonic() + 5
    while ext.native_calls() < before + 100 and time.monotonic() < deadline:
        time.sleep(0.001)
    report["engine_kept_firing"] = ext.native_calls() >= before + 100
    stats = ext.engine_stats()
    report["engine_not_found"] = stats["not_found"]
    report["engine_closed"] = stats["closed"]
    print(f"native_entries_survive_exit: {sorted(report.items())}", flush=True)
    end_of_work()


atexit.register(after_hook)

import cbreg  # noqa: E402
from _ext import ext  # noqa: E402  (cbreg_engine)
from _timing import end_of_work  # noqa: E402


class Held:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return None

    def __del__(self):
        print(f"native_entries_survive_exit: {self.name}.__del__ "
              f"finalizing={sys.is_finalizing()}", flush=True)


native_id = ext.subscribe_native()
own = ext.new_registry()
native_own_id = ext.subscribe_native_in(own)
py_sub = cbreg.register(Held("python_default"))
py_own_id = ext.subscribe_in(own, Held("python_own"))
assert ext.fire_on_thread(native_id) == OK
assert ext.fire_in_on_thread(own, py_own_id) == OK
ext.start(native_id, 0.0)  # a native thread firing the native entry throughout
