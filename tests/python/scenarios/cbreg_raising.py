"""cbreg scenario: callbacks that raise. Fired from a native thread the
exception goes to sys.unraisablehook and the caller gets CALLBACK_FAILED;
fired from Python it propagates. Then exits with an engine still firing a
raising callback."""
import sys

import cbreg
from _ext import ext  # cbreg_engine

CALLBACK_FAILED = 5
hooked = []
sys.unraisablehook = lambda u: hooked.append(u.exc_type)


def boom(*args):
    raise RuntimeError("boom")


sub = cbreg.register(boom)
assert ext.fire_on_thread(sub.id, 1) == CALLBACK_FAILED
assert hooked == [RuntimeError], hooked
try:
    cbreg.invoke(sub.id, 1)
except RuntimeError:
    pass
else:
    raise SystemExit("exception did not propagate")
ext.start(sub.id, 0.0)
while ext.engine_stats()["failed"] < 50:
    pass
print("cbreg_raising: ok", flush=True)
