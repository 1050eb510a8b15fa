"""Scenario: native threads that keep a Python thread state are alive when
Python exits: one parked between calls, one firing flat out, and one a
static destructor joins after the interpreter has finalized, so it exits
(with its kept state) when Python is gone.

On cbreg_engine each keeps the state cbreg made for it. On naive_ext the
joined thread keeps one by hand and detaches it in a thread_local
destructor (the control: that detach runs on a state finalization freed)."""
import threading
import time

from _ext import MODULE, ext
from _timing import end_of_work

wanted = 1000
ticks = [0]
ready = threading.Event()


def on_tick(*args):
    ticks[0] += 1
    if ticks[0] >= wanted:
        ready.set()


if MODULE == "naive_ext":
    ext.start_kept_joined_at_exit(on_tick, 2000.0)
    if not ready.wait(30):
        raise SystemExit(f"kept_state_at_exit: only {ticks[0]} ticks in 30 s")
else:
    import cbreg

    sub = cbreg.register(on_tick)
    ext.park(sub.id, 10)
    if ext.park_wait() != 0:
        raise SystemExit("kept_state_at_exit: the parked thread's calls failed")
    ext.start_joined_at_exit(sub.id, 2000.0)
    ext.start(sub.id, 0.0)
    if not ready.wait(30):
        raise SystemExit(f"kept_state_at_exit: only {ticks[0]} ticks in 30 s")
    deadline = time.monotonic() + 30
    while cbreg._core._thread_states()[0] != 3:  # each has made its first call
        if time.monotonic() > deadline:
            raise SystemExit(f"kept_state_at_exit: {cbreg._core._thread_states()[0]} kept "
                             "thread states after 30 s, not 3")
        time.sleep(0.001)
print("kept_state_at_exit: threads with kept states alive, exiting", flush=True)
end_of_work()
