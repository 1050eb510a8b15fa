"""cbreg scenario: the program forks while native engine threads fire
Python callbacks flat out (so a thread is inside, or waiting to get inside,
at the fork). Each child does a little Python and exits normally; it must
exit at once (nothing in it waits for threads that only exist in the
parent). Prints the slowest child's lifetime."""
import os
import threading
import time
import warnings

import cbreg
from _ext import ext  # cbreg_engine
from _fork import child_lifetime
from _timing import end_of_work

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
count = [0]
ready = threading.Event()


def on_tick(*args):
    count[0] += 1
    if count[0] >= 50:
        ready.set()


subs = [cbreg.register(on_tick) for _ in range(2)]
for s in subs:
    ext.start(s.id, 0.0)
if not ready.wait(10):
    raise SystemExit("fork_while_firing: the engine never fired")
slowest = 0.0
for _ in range(3):
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        cbreg.register(print)  # the child uses the registry, then exits normally
        raise SystemExit(0)
    slowest = max(slowest, child_lifetime(pid, t0, "fork_while_firing"))
print(f"fork_while_firing: slowest child {slowest:.3f} s", flush=True)
end_of_work()
