"""Scenario (c): a native engine thread is still firing a Python callback at
full rate while Python exits.

CBREG_TEST_ENGINE_HZ: firing rate (default 0 = as fast as possible).
CBREG_TEST_ENGINE_TICKS: ticks to observe before exiting (default 1000).
CBREG_TEST_ENGINE_CALLBACK: "function" (default) registers a Python function;
  "builtin" registers dict.__setitem__ (a C method taking the same two
  arguments), so no Python frame runs on the engine thread.
"""
import os
import threading
import time

from _ext import ext

hz = float(os.environ.get("CBREG_TEST_ENGINE_HZ", "0"))
wanted = int(os.environ.get("CBREG_TEST_ENGINE_TICKS", "1000"))
kind = os.environ.get("CBREG_TEST_ENGINE_CALLBACK", "function")
deadline = time.monotonic() + 30

if kind == "builtin":
    sink = {}
    ext.register(1, sink.__setitem__)
    ext.start_engine(1, hz)
    while len(sink) < wanted and time.monotonic() < deadline:
        time.sleep(0.001)
    ticks = len(sink)
else:
    ready = threading.Event()
    ticks = 0

    def on_tick(tick, t):
        global ticks
        ticks += 1
        if ticks >= wanted:
            ready.set()

    ext.register(1, on_tick)
    ext.start_engine(1, hz)
    ready.wait(timeout=30)

if ticks < wanted:
    raise SystemExit(f"engine_at_exit: only {ticks} of {wanted} ticks in 30 s")
print(f"engine_at_exit: {ticks} ticks ({kind}), exiting", flush=True)
# Exit with the engine thread still running and the callback registered.
