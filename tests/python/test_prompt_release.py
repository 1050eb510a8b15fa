"""A Python callable's reference goes back when unregister returns, also
while other threads that have invoked are alive (native entries wait for a
batch then; Python entries are registered CBREG_PROMPT)."""
import sys
import threading

import cbreg


class Callback:
    def __call__(self, *args):
        return len(args)


def test_refcount_back_at_once_while_another_invoker_is_alive():
    keep = cbreg.register(lambda: None)
    invoked = threading.Event()
    done = threading.Event()

    def other():
        cbreg.invoke(keep.id)  # this thread now holds a record
        invoked.set()
        done.wait()

    t = threading.Thread(target=other)
    t.start()
    try:
        assert invoked.wait(10)
        fn = Callback()
        base = sys.getrefcount(fn)
        for _ in range(200):
            sub = cbreg.register(fn)
            assert sys.getrefcount(fn) == base + 1
            assert sub.unregister()
            assert sys.getrefcount(fn) == base, "released before unregister returned"
    finally:
        done.set()
        t.join()
        keep.unregister()
