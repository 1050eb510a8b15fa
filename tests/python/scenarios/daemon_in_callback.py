"""Exit scenario: a Python daemon thread is inside a callback (a callback
that keeps sleeping) when the program exits. With cbreg the thread fires
through cbreg.invoke; with the naive control through naive_ext.fire. The exit
must neither wait for the thread nor abort when CPython ends it."""
import threading
import time

from _ext import MODULE, ext
from _timing import end_of_work

inside = threading.Event()


def slow_callback(*args):
    inside.set()
    while True:
        time.sleep(0.002)  # gives the GIL up and takes it back, for ever


if MODULE == "naive_ext":
    ext.register(1, slow_callback)
    fire = lambda: ext.fire(1)  # noqa: E731
else:
    import cbreg
    sub = cbreg.register(slow_callback)
    fire = lambda: cbreg.invoke(sub.id)  # noqa: E731

for _ in range(2):
    threading.Thread(target=fire, daemon=True).start()
if not inside.wait(10):
    raise SystemExit("daemon_in_callback: no thread got inside")
print("daemon_in_callback: threads inside, exiting", flush=True)
end_of_work()
