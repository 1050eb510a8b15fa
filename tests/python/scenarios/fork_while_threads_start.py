"""cbreg scenario: the program forks again and again, each time right after
starting more native engine threads, so threads are making their first
Python thread state as it forks (on free-threaded CPython making one may
stop the interpreter's world). Each child does a little Python and exits
normally; it must exit at once. Prints the slowest child's lifetime."""
import os
import time
import warnings

from _ext import ext
from _fork import child_lifetime
from _timing import end_of_work

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
FORKS = 12
THREADS_PER_FORK = 3
ticks = [0]


def on_tick(*args):
    ticks[0] += 1


ext.register(1, on_tick)
slowest = 0.0
for _ in range(FORKS):
    for _ in range(THREADS_PER_FORK):
        ext.start_engine(1, 500.0)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        ext.count()  # the child uses the extension, then exits normally
        raise SystemExit(0)
    slowest = max(slowest, child_lifetime(pid, t0, "fork_while_threads_start"))
print(f"fork_while_threads_start: slowest child {slowest:.3f} s, {ticks[0]} ticks", flush=True)
end_of_work()
