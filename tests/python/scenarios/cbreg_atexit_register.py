"""cbreg scenario: other modules' atexit handlers register callbacks, both
before cbreg's hook runs (atexit is LIFO: handlers added after importing
cbreg run first) and after it (added before importing). Each must succeed
or get cbreg.Closed; never crash. Also fires from a native engine meanwhile."""
import atexit

outcomes = []


def register_late(tag):
    import cbreg
    try:
        sub = cbreg.register(lambda *a: None)
        ext.start(sub.id, 0.0)
        outcomes.append((tag, "ok"))
    except cbreg.Closed:
        outcomes.append((tag, "closed"))
    print(f"cbreg_atexit_register: {outcomes[-1]}", flush=True)


# Added before cbreg is imported, so it runs after cbreg's hook: Closed.
atexit.register(register_late, "after-hook")

import cbreg  # noqa: E402
from _ext import ext  # noqa: E402

atexit.register(register_late, "before-hook")


s = cbreg.register(lambda *a: None)
ext.start(s.id, 0.0)
