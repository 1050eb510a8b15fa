"""cbreg scenario: several native engine threads fire Python callbacks flat
out (plus one builtin and one one-shot) while Python exits.

CBREG_TEST_ENGINE_THREADS (default 3), CBREG_TEST_ENGINE_TICKS (default 300
per callback before exiting)."""
import os
import threading
import time

import cbreg
from _ext import ext  # cbreg_engine

threads = int(os.environ.get("CBREG_TEST_ENGINE_THREADS", "3"))
wanted = int(os.environ.get("CBREG_TEST_ENGINE_TICKS", "300"))
seen = [0] * threads
done = threading.Event()


def make(i):
    def on_tick(tick, freq, note):
        seen[i] += 1
        if min(seen) >= wanted:
            done.set()
    return on_tick


subs = [cbreg.register(make(i)) for i in range(threads)]
for s in subs:
    ext.start(s.id, 0.0)
builtin = cbreg.register(slice)  # a C type taking (tick, freq, note): no Python frame
ext.start(builtin.id, 0.0)
once = cbreg.register(lambda *a: None, once=True)  # fired by the engine at most once
ext.start(once.id, 0.0)
if not done.wait(30):
    raise SystemExit(f"engine_full_rate: only {seen} in 30 s")
print(f"cbreg_engine_full_rate: {sum(seen)} ticks on {threads} threads, "
      f"engine {ext.engine_stats()}, exiting", flush=True)
