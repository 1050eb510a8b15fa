"""cbreg scenario: a thread is inside a long Python callback when the
program exits, and native code waits for that entry after finalization (a
C++ static destructor of cbreg_engine: `cbreg_unregister_wait` of the entry,
or `cbreg_registry_free` of its registry). From CPython 3.14 the thread is
parked for ever when it takes the GIL back during finalization, so its
invocation never ends: the wait must still return, within the exit budget.

CBREG_TEST_WAIT: unregister_wait (default) or registry_free.
CBREG_TEST_PARKED_BY: native (an engine thread, the default) or daemon (a
Python daemon thread calling cbreg.invoke)."""
import os
import threading
import time

import cbreg
from _ext import ext  # cbreg_engine
from _timing import end_of_work

WAIT = os.environ.get("CBREG_TEST_WAIT", "unregister_wait")
BY = os.environ.get("CBREG_TEST_PARKED_BY", "native")
inside = threading.Event()


def long_callback(*args):
    inside.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.002)  # gives the GIL up and takes it back


handle = ext.new_registry() if WAIT == "registry_free" else 0
if handle:
    sub_id = ext.subscribe_in(handle, long_callback)
else:
    sub = cbreg.register(long_callback)  # kept: dropping it would unregister
    sub_id = sub.id
if BY == "daemon":
    if handle:
        raise SystemExit("parked_wait_at_exit: a daemon thread fires the default registry only")
    threading.Thread(target=cbreg.invoke, args=(sub_id,), daemon=True).start()
elif handle:
    ext.start_in(handle, sub_id, 0.0)
else:
    ext.start(sub_id, 0.0)
if not inside.wait(10):
    raise SystemExit("parked_wait_at_exit: no thread got inside")
ext.wait_at_exit(WAIT, handle, sub_id)
print(f"parked_wait_at_exit: {BY} thread inside, {WAIT} at exit", flush=True)
end_of_work()
