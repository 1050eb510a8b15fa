"""Exit scenario: a native engine thread is inside a Python callback that
runs far longer than any wait of the exit hook (it sleeps in small steps for
a minute) when the program exits. CPython ends that thread when it takes the
GIL back during finalization (a forced unwind through the frames below it):
the exit must neither abort nor wait for the callback.
CBREG_TEST_ENGINE_VIA=shim: the thread fires through the C++ shim
(`cbreg::registry::invoke`), so the unwind passes its frames too."""
import os
import threading
import time

from _ext import MODULE, ext
from _timing import end_of_work

inside = threading.Event()


def long_callback(*args):
    inside.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.002)


if MODULE == "naive_ext":
    ext.register(1, long_callback)
    ext.start_engine(1, 0.0)
else:
    import cbreg
    sub = cbreg.register(long_callback)
    if os.environ.get("CBREG_TEST_ENGINE_VIA") == "shim":
        ext.start_shim(sub.id, 0.0)
    else:
        ext.start(sub.id, 0.0)
if not inside.wait(10):
    raise SystemExit("native_long_callback: the engine never got inside")
print("native_long_callback: engine inside, exiting", flush=True)
end_of_work()
