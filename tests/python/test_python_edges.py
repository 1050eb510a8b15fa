"""In-process edge cases of the Python adapter: the exception policy of
callbacks fired by native code on a thread that holds the GIL, waiting for
an entry with the GIL held, and the nanobind header's include order."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import cbreg
from conftest import ENGINE_DIR, ROOT, need_engine

CALLBACK_FAILED, OK = 5, 0


class Boom(Exception):
    pass


def boom(*args):
    raise Boom("from the callback")


# ---- exception policy (cbreg.register(errors=...)) ----

@need_engine
def test_propagate_policy_raises_in_the_python_caller_of_native_code():
    import cbreg_engine
    with cbreg.register(boom) as sub:  # errors="propagate" is the default
        with pytest.raises(Boom, match="from the callback"):
            cbreg_engine.run_sync(sub.id, 3)


@need_engine
def test_unraisable_policy_routes_to_unraisablehook_and_leaves_no_exception(monkeypatch):
    import cbreg_engine
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    with cbreg.register(boom, errors="unraisable") as sub:
        statuses, pending = cbreg_engine.run_sync(sub.id, 3)
    assert (statuses, pending, seen) == ([CALLBACK_FAILED] * 3, False, [Boom] * 3)


@need_engine
def test_unraisable_flag_through_the_nanobind_adapter(monkeypatch):
    import cbreg_engine
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    entry = cbreg_engine.subscribe(boom, unraisable=True)
    try:
        assert cbreg_engine.run_sync(entry, 2) == ([CALLBACK_FAILED] * 2, False)
    finally:
        cbreg.unregister(entry)
    assert seen == [Boom] * 2


def test_unraisable_policy_from_cbreg_invoke_raises_callback_failed(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    with cbreg.register(boom, errors="unraisable") as sub:
        with pytest.raises(cbreg.CallbackFailed):
            cbreg.invoke(sub.id, 1)
    assert seen == [Boom]


def test_propagate_policy_from_cbreg_invoke_raises_the_callbacks_exception():
    with cbreg.register(boom, errors="propagate") as sub:
        with pytest.raises(Boom):
            cbreg.invoke(sub.id, 1)


def test_errors_keyword_accepts_only_the_two_policies():
    with pytest.raises(ValueError, match="errors"):
        cbreg.register(print, errors="ignore")


# ---- waiting with the GIL held ----

WAIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    sys.path.insert(0, sys.argv[1])
    import cbreg, cbreg_engine as ext
    inside = threading.Event()
    calls = [0]
    def slow(*args):
        calls[0] += 1
        inside.set()
        time.sleep(0.02)
    base = sys.getrefcount(slow)
    live = cbreg.stats().live
    sub = cbreg.register(slow)
    ext.start(sub.id, 0.0)
    assert inside.wait(10)
    t0 = time.monotonic()
    status = {how}
    waited = time.monotonic() - t0
    n = calls[0]
    time.sleep(0.1)
    # Released: the entry is gone and its reference dropped (free-threaded
    # CPython defers the reference counts of functions, so getrefcount says
    # nothing there; the stats do).
    released = cbreg.stats().live == live and (
        sys.getrefcount(slow) == base or not getattr(sys, "_is_gil_enabled", lambda: True)())
    print(status, waited < 1.0, calls[0] == n, released)
    ext.stop()
""")


@need_engine
@pytest.mark.parametrize("how", ["ext.unregister_wait(sub.id)",
                                 "cbreg.unregister(sub.id, wait=True)"],
                         ids=["c_abi_bound_method", "cbreg_unregister_wait"])
def test_unregister_wait_with_the_gil_held_while_a_native_thread_is_inside(how):
    try:
        p = subprocess.run([sys.executable, "-c", WAIT_SCRIPT.format(how=how), ENGINE_DIR],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("unregister_wait with the GIL held hung for 30 s")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0" if "ext." in how else "True", "True", "True", "True"], p.stdout


# ---- the nanobind and pybind11 headers, either side of cbreg.h / cbreg.hpp ----

ORDERS = {
    "after_cbreg_h": ['"cbreg.h"', '"cbreg_nanobind.hpp"'],
    "after_cbreg_hpp": ['"cbreg.hpp"', '"cbreg_nanobind.hpp"'],
    "before_cbreg_hpp": ['"cbreg_nanobind.hpp"', '"cbreg.hpp"', '"cbreg.h"'],
    "after_nanobind": ["<nanobind/nanobind.h>", '"cbreg.hpp"', '"cbreg_nanobind.hpp"'],
}
PYBIND11_ORDERS = {
    "after_cbreg_h": ['"cbreg.h"', '"cbreg_pybind11.hpp"'],
    "before_cbreg_hpp": ['"cbreg_pybind11.hpp"', '"cbreg.hpp"', '"cbreg.h"'],
    "after_pybind11": ["<pybind11/pybind11.h>", '"cbreg.hpp"', '"cbreg_pybind11.hpp"'],
    "beside_nanobind": ['"cbreg_nanobind.hpp"', '"cbreg_pybind11.hpp"'],
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_nanobind_header_compiles_in_any_include_order(order, tmp_path):
    nanobind = pytest.importorskip("nanobind")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    assert cxx, "no C++ compiler"
    src = tmp_path / "order.cpp"
    src.write_text("".join(f"#include {h}\n" for h in ORDERS[order]) + textwrap.dedent("""
        int main() {
            nanobind::handle fn;
            (void)[&] { return cbreg::nb::subscribe(fn).release(); };
            return cbreg_py_is_closed() ? 1 : 0;
        }
    """))
    p = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror",
                        "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "cpp_shim"),
                        "-I", nanobind.include_dir(), "-I", sysconfig.get_paths()["include"],
                        str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("order", sorted(PYBIND11_ORDERS))
def test_pybind11_header_compiles_in_any_include_order(order, tmp_path):
    pybind11 = pytest.importorskip("pybind11")
    nanobind = pytest.importorskip("nanobind")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    assert cxx, "no C++ compiler"
    src = tmp_path / "order.cpp"
    src.write_text("".join(f"#include {h}\n" for h in PYBIND11_ORDERS[order]) + textwrap.dedent("""
        int main() {
            pybind11::function fn;
            (void)[&] { return cbreg::py::subscribe(fn).release(); };
            (void)[&](pybind11::args a) { return cbreg::py::invoke(1, a); };
            return cbreg_py_is_closed() ? 1 : 0;
        }
    """))
    p = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror",
                        "-I", os.path.join(ROOT, "include"), "-I", os.path.join(ROOT, "cpp_shim"),
                        "-I", pybind11.get_include(), "-I", nanobind.include_dir(),
                        "-I", sysconfig.get_paths()["include"], str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
