"""Python threads racing on the registry (docs/contract.md 4.3, 4.6). On free-threaded
CPython they run in parallel; on a GIL build they interleave at the GIL's
switch points. Each case runs in a fresh interpreter (some close the default
registry) with a deadline, and checks exactly-once release through
finalizers that count themselves."""
import textwrap

import pytest

from conftest import run_python

PRELUDE = textwrap.dedent("""
    import sys, threading, time
    import cbreg
    released = []
    # Re-entrant: a finalizer can run inside another one's `with lock:` on
    # the same thread (a collection, or on free-threaded CPython an object
    # another thread let go of, freed at the owner's next check), and a
    # plain Lock would then wait for itself.
    lock = threading.RLock()

    class Counted:
        # A callable whose release is counted (exactly once, or it fails).
        def __init__(self, name):
            self.name = name
            self.calls = 0
        def __call__(self, *args):
            self.calls += 1
            return len(args)
        def __del__(self):
            with lock:
                released.append(self.name)

    def run(threads):
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "a thread did not finish"
""")


def run_script(body, timeout=90):
    return run_python(PRELUDE + textwrap.dedent(body), timeout)


def test_threads_invoke_one_entry_while_others_register_unregister_clear_and_close():
    out = run_script("""
        shared = cbreg.register(Counted("shared"))
        stop = threading.Event()
        made = [0]
        refused = [0]
        bad = []

        def invoker():
            while not stop.is_set():
                try:
                    cbreg.invoke(shared.id, 1, 2.0, "x")
                except cbreg.NotFound:
                    pass          # cleared: fine
                except Exception as e:
                    bad.append(repr(e))

        def churner(k):
            i = 0
            while not stop.is_set():
                i += 1
                obj = Counted(f"c{k}-{i}")
                try:
                    s = cbreg.register(obj, once=(i % 3 == 0))
                except cbreg.Closed:
                    with lock:
                        refused[0] += 1   # never registered: freed here
                    return
                del obj
                with lock:
                    made[0] += 1
                try:
                    if i % 2:
                        cbreg.invoke(s.id)
                    s.unregister()
                except cbreg.NotFound:
                    pass

        def clearer():
            for _ in range(20):
                time.sleep(0.01)
                cbreg.clear()

        threads = [threading.Thread(target=invoker) for _ in range(6)]
        threads += [threading.Thread(target=churner, args=(k,)) for k in range(3)]
        threads += [threading.Thread(target=clearer)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        cbreg.close()             # while everything runs
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        cbreg.collect()
        import gc; gc.collect()
        s = cbreg.stats()
        names = [n for n in released]
        assert not bad, bad[:3]
        assert len(names) == len(set(names)), "a release ran twice"
        assert s.live == 0 and s.pending == 0, s
        assert s.released + s.leaked == s.registered, s
        assert "shared" in names
        assert len(names) == made[0] + refused[0] + 1, (len(names), made[0], refused[0])
        print("ok", made[0], s.invoked)
    """)
    assert out.startswith("ok")


def test_callback_that_unregisters_itself_while_other_threads_invoke_it():
    out = run_script("""
        box = {}
        class SelfRemoving(Counted):
            def __call__(self, *args):
                self.calls += 1
                if self.calls == 50:
                    cbreg.unregister(box["id"])
        sub = cbreg.register(SelfRemoving("self"))
        box["id"] = sub.id
        gone = threading.Event()
        def invoker():
            for _ in range(10000):
                try:
                    cbreg.invoke(sub.id)
                except cbreg.NotFound:
                    gone.set()
                    return
        run([threading.Thread(target=invoker) for _ in range(8)])
        del sub
        cbreg.collect()
        import gc; gc.collect()
        assert gone.is_set()
        assert released == ["self"], released
        assert cbreg.stats().live == 0
        print("ok")
    """)
    assert out.startswith("ok")


def test_one_shot_invoked_from_8_threads_at_once_runs_once():
    out = run_script("""
        for round in range(100):
            sub = cbreg.register(Counted(f"once{round}"), once=True)
            go = threading.Barrier(8)
            oks = []
            def invoker():
                go.wait()
                try:
                    cbreg.invoke(sub.id)
                    with lock:
                        oks.append(1)
                except cbreg.NotFound:
                    pass
            run([threading.Thread(target=invoker) for _ in range(8)])
            assert len(oks) == 1, (round, len(oks))
        cbreg.collect()
        import gc; gc.collect()
        assert sorted(released) == sorted(f"once{r}" for r in range(100)), released[:5]
        print("ok")
    """)
    assert out.startswith("ok")


@pytest.mark.parametrize("run", range(10))
def test_exit_while_threads_invoke_register_and_unregister(run):
    out = run_script("""
        shared = cbreg.register(Counted("shared"))
        def invoker():
            while True:
                try:
                    cbreg.invoke(shared.id, 1)
                except (cbreg.NotFound, cbreg.Closed):
                    pass
        def churner():
            i = 0
            while True:
                i += 1
                try:
                    cbreg.register(Counted(f"c{i}"), once=True).unregister()
                except (cbreg.Closed, cbreg.NotFound):
                    pass
        for _ in range(6):
            threading.Thread(target=invoker, daemon=True).start()
        for _ in range(2):
            threading.Thread(target=churner, daemon=True).start()
        time.sleep(0.2)
        print("ok, exiting with 8 threads running", flush=True)
    """, timeout=30)
    assert out.startswith("ok")
