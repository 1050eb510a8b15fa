"""Exit scenario: the extension is imported for the first time inside an
atexit handler, which registers a callback (an instance whose __del__ tells
whether it was released while Python was whole) and starts a native engine
firing it. Nothing imports threading before exit (so nothing can tell, from
Python, that atexit is running). cbreg's exit hook must still run: release
the callback while the interpreter is whole and stop the engine entering
Python, so the exit neither crashes nor waits."""
import atexit
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Listener:
    def __init__(self):
        self.ticks = 0

    def __call__(self, *args):
        self.ticks += 1

    def __del__(self):
        print(f"import_in_atexit: Listener.__del__ finalizing={sys.is_finalizing()}", flush=True)


def late():
    sys.path.insert(0, HERE)
    from _ext import MODULE, ext
    from _timing import end_of_work
    listener = Listener()
    if MODULE == "naive_ext":
        ext.register(1, listener)
        ext.start_engine(1, 0.0)
    else:
        import cbreg
        sub = cbreg.register(listener)
        ext.start(sub.id, 0.0)
    deadline = time.monotonic() + 10
    while listener.ticks < 200 and time.monotonic() < deadline:
        time.sleep(0.001)
    print(f"import_in_atexit: {listener.ticks} ticks inside atexit", flush=True)
    end_of_work()


atexit.register(late)
