"""In-process behaviour of the cbreg package and the nanobind adapter."""
import gc
import subprocess
import sys
import threading
import weakref

import pytest

import cbreg
from conftest import need_engine


class Callback:
    def __call__(self, *args):
        return len(args)


def test_refcount_back_to_baseline_after_unregister():
    fn = Callback()
    base = sys.getrefcount(fn)
    subs = [cbreg.register(fn) for _ in range(10)]
    assert sys.getrefcount(fn) == base + 10
    for s in subs:
        assert s.unregister()
    assert sys.getrefcount(fn) == base


def test_refcount_back_to_baseline_after_clear():
    fn = Callback()
    base = sys.getrefcount(fn)
    for _ in range(5):
        cbreg.register(fn)
    cbreg.register(fn, once=True)
    assert cbreg.clear() >= 6
    assert sys.getrefcount(fn) == base


def test_refcount_back_after_one_shot_ran():
    fn = Callback()
    base = sys.getrefcount(fn)
    sub = cbreg.register(fn, once=True)
    assert sub(1) == 1
    with pytest.raises(cbreg.NotFound):
        sub(1)
    assert sys.getrefcount(fn) == base


def test_weakref_callback_fires_when_released():
    released = threading.Event()
    fn = Callback()
    ref = weakref.ref(fn, lambda _: released.set())
    sub = cbreg.register(fn)
    del fn
    gc.collect()
    assert ref() is not None and not released.is_set()
    sub.unregister()
    assert released.is_set() and ref() is None


def test_context_manager_unregisters():
    with cbreg.register(Callback()) as sub:
        assert cbreg.invoke(sub.id, 1, 2) == 2
    with pytest.raises(cbreg.NotFound):
        cbreg.invoke(sub.id)
    assert not sub.unregister()


def test_values_round_trip():
    args = (None, True, -7, 2.5, "A4 ♪", b"\x00\xff", [1, 2, 3], [1, 2.5])
    got = []
    with cbreg.register(lambda *a: got.append(a)) as sub:
        assert sub(*args) is None
    assert got == [(None, True, -7, 2.5, "A4 ♪", b"\x00\xff", [1, 2, 3], [1.0, 2.5])]
    for ret in (None, True, 3, 2.5, "text ♪", b"raw"):
        with cbreg.register(lambda r=ret: r) as sub:
            assert sub() == ret and type(sub()) is type(ret)


def test_unsupported_argument_is_a_type_error():
    with cbreg.register(Callback()) as sub:
        with pytest.raises(TypeError):
            sub(object())
        with pytest.raises(TypeError):
            sub(["mixed", 1])


def test_exception_propagates_when_invoked_from_python():
    class Boom(Exception):
        pass

    def boom(*args):
        raise Boom("from callback")

    with cbreg.register(boom) as sub:
        with pytest.raises(Boom, match="from callback"):
            cbreg.invoke(sub.id, 1)


def test_lone_surrogate_str_argument_is_an_error():
    with cbreg.register(Callback()) as sub:
        with pytest.raises(UnicodeEncodeError):
            sub("\udcff")


def test_stale_and_zero_ids():
    with pytest.raises(cbreg.NotFound):
        cbreg.invoke(0)
    with pytest.raises(cbreg.NotFound):
        cbreg.invoke(0xDEAD_0000_0001)
    assert issubclass(cbreg.NotFound, cbreg.Error)


def test_stats_count_registrations_and_releases():
    before = cbreg.stats()
    with cbreg.register(Callback()) as sub:
        sub()
    after = cbreg.stats()
    assert after.registered == before.registered + 1
    assert after.invoked >= before.invoked + 1
    assert after.released == before.released + 1
    assert after.leaked == before.leaked


def test_register_refuses_non_callables():
    with pytest.raises(TypeError):
        cbreg.register(42)


def test_closed_registry_raises_closed():
    code = ("import cbreg\ncbreg.close()\n"
            "try:\n    cbreg.register(print)\nexcept cbreg.Closed:\n    print('closed')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip()) == (0, "closed"), p.stderr


def test_helpers_point_at_installed_files():
    import os
    assert os.path.isfile(os.path.join(cbreg.get_include(), "cbreg.h"))
    assert os.path.isfile(os.path.join(cbreg.get_include(), "cbreg_nanobind.hpp"))
    assert os.path.isfile(cbreg.get_library())


# ---- with the separately built engine and peer modules ----

CALLBACK_FAILED, INVALID_ARGUMENT, OK = 5, 3, 0


@need_engine
def test_native_thread_exception_goes_to_unraisablehook(monkeypatch):
    import cbreg_engine
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    def boom(*args):
        raise ValueError("on a native thread")

    with cbreg.register(boom) as sub:
        assert cbreg_engine.fire_on_thread(sub.id, 1, 2.0) == CALLBACK_FAILED
    assert seen == [ValueError]


@need_engine
def test_native_thread_call_converts_arguments():
    import cbreg_engine
    got = []
    with cbreg.register(lambda *a: got.append(a)) as sub:
        assert cbreg_engine.fire_on_thread(sub.id, 1, 440.0, "A4", [1, 2]) == OK
    assert got == [(1, 440.0, "A4", [1, 2])]


@need_engine
def test_invalid_utf8_str_argument_fails_with_code_invalid_argument():
    import cbreg_engine
    got = []
    with cbreg.register(lambda *a: got.append(a)) as sub:
        assert cbreg_engine.fire_raw_str(sub.id, b"ok")[0] == OK
        # The adapter refuses to convert (nothing called): its own code.
        assert cbreg_engine.fire_raw_str(sub.id, b"\xff\xfe") == (CALLBACK_FAILED, INVALID_ARGUMENT)
    assert got == [("ok",)]


@need_engine
def test_two_separately_built_modules_share_the_default_registry():
    import cbreg_engine
    import cbreg_peer
    got = []
    id_from_engine = cbreg_engine.subscribe(lambda *a: got.append(("engine", a)))
    id_from_peer = cbreg_peer.subscribe(lambda *a: got.append(("peer", a)))
    try:
        cbreg_peer.invoke(id_from_engine, 1)
        cbreg.invoke(id_from_peer, 2)
        assert cbreg_engine.fire_on_thread(id_from_peer, 3) == OK
        assert got == [("engine", (1,)), ("peer", (2,)), ("peer", (3,))]
        assert cbreg_peer.live() == cbreg.stats().live
    finally:
        assert cbreg.unregister(id_from_engine) and cbreg.unregister(id_from_peer)


@need_engine
def test_engine_threads_fire_and_stop():
    import cbreg_engine
    ticks = []
    done = threading.Event()

    def on_tick(tick, freq, note):
        ticks.append((freq, note))
        if len(ticks) >= 100:
            done.set()

    with cbreg.register(on_tick) as sub:
        cbreg_engine.start(sub.id, 0.0)
        assert done.wait(10)
        cbreg_engine.stop()
    assert cbreg_engine.engine_stats()["running"] == 0
    assert set(ticks) == {(440.0, "A4")}
