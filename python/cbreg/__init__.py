"""cbreg: a shutdown-safe, thread-safe callback registry.

Python callables registered here live in cbreg's process-wide default
registry, the same table C, C++ and Rust code (other extension modules
built with ``find_package(cbreg)`` from :func:`get_cmake_dir`, Rust crates,
C programs linked against :func:`get_library`) register into and invoke
from, from any thread. The table is owned by Rust and never destroyed at exit;
importing this package installs an ``atexit`` hook that releases the Python
callbacks while the interpreter is still whole (native entries stay live),
so callbacks still registered at exit, and native threads still firing them,
cannot crash the interpreter's shutdown. The hook also runs when the package
is first imported inside another ``atexit`` handler (the installed
``_cbreg_exit_hook`` module, loaded at start-up by ``cbreg-exit-hook.pth``,
calls it after every other handler).

Each callback belongs to the interpreter that registered it: native threads
call it in that interpreter, and it is released when that interpreter ends
(subinterpreters: CPython 3.11, whose subinterpreters share the GIL).

Exceptions: a callback that raises on a thread that does not hold the GIL
(a native thread) goes to :func:`sys.unraisablehook`, and the native caller
gets ``CALLBACK_FAILED``. On a thread that holds the GIL (:func:`invoke`, or
native code that Python called, such as an engine's ``run()`` firing
callbacks synchronously) the registration chooses: ``errors="propagate"``
(the default) leaves the exception set for that caller, so it propagates to
the Python code that called it (:func:`invoke` raises it; native code must
hand it on, e.g. with ``cbreg::nb::check``); ``errors="unraisable"`` sends it
to :func:`sys.unraisablehook`, leaves no exception set, and :func:`invoke`
raises :class:`CallbackFailed`.

    import cbreg

    with cbreg.register(print) as sub:
        cbreg.invoke(sub.id, "hello", 440.0)

Arguments and return values: None, bool, int (64-bit), float, str, bytes,
and lists of ints or floats.
"""
import os as _os
from dataclasses import dataclass as _dataclass

from . import _core
# Both are native: a call goes straight to the adapter, with no Python
# frame between (their docs are in _core).
from ._core import Subscription, invoke
from ._errors import (CallbackFailed, Closed, Error, Full, InternalError, InvalidArgument,
                      InvalidRegistry, InvalidSignal, NoMemory, NotFound, WouldDeadlock)

__all__ = [
    "register", "invoke", "unregister", "clear", "close", "collect", "stats", "is_closed",
    "Subscription", "Stats", "get_include", "get_library", "get_cmake_dir", "get_static_library",
    "Error", "NotFound", "Closed", "InvalidArgument", "InvalidRegistry", "CallbackFailed",
    "WouldDeadlock", "NoMemory", "InternalError", "Full", "InvalidSignal",
]

# Cargo.toml's version, written by the build (python/CMakeLists.txt).
from ._version import __version__

_HERE = _os.path.dirname(_os.path.abspath(__file__))


@_dataclass(frozen=True)
class Stats:
    """Counters of the default registry (see ``cbreg_stats`` in cbreg.h)."""

    live: int
    registered: int
    invoked: int
    released: int
    deferred: int
    pending: int
    leaked: int


_ERROR_POLICIES = ("propagate", "unraisable")


def register(fn, *, once: bool = False, errors: str = "propagate") -> Subscription:
    """Registers callable ``fn``; the registry holds a strong reference until
    the entry is released. Dropping (or garbage-collecting) the returned
    :class:`Subscription` does not unregister: use it as a context manager,
    or call its ``unregister()``. ``once=True``: it runs at most once, then
    unregisters itself. ``errors``: where an exception raised by ``fn`` goes
    when it is fired on a thread that holds the GIL: ``"propagate"`` (to the
    Python caller; the default) or ``"unraisable"`` (to
    :func:`sys.unraisablehook`). Fired from a native thread it always goes to
    :func:`sys.unraisablehook`. Raises :class:`Closed` once this interpreter
    is exiting; ``RuntimeError`` from a subinterpreter on a CPython where
    that cannot be made safe."""
    if not callable(fn):
        raise TypeError(f"cbreg.register: {fn!r} is not callable")
    if errors not in _ERROR_POLICIES:
        raise ValueError(f"cbreg.register: errors must be 'propagate' or 'unraisable', not {errors!r}")
    return Subscription(_core.register(fn, once, errors == "unraisable"), once)


def unregister(id: int, *, wait: bool = False) -> bool:
    """Unregisters entry ``id``; no invocation starts after this returns.
    ``wait=True``: also waits until no invocation of it is running on any
    thread and its release has run (the GIL is given up while waiting);
    where that wait would deadlock (from inside that entry's own callback,
    which would wait for itself, or a cycle of waits between threads) it
    unregisters without waiting. Returns False if there was no such live
    entry."""
    return _core.unregister(id, wait)


def clear() -> int:
    """Unregisters every entry of the default registry (native ones too);
    returns how many."""
    return _core.clear()


def close() -> int:
    """Clears, then makes the default registry refuse registrations with
    :class:`Closed` for the rest of the process. Returns entries cleared."""
    return _core.close()


def collect() -> int:
    """Runs deferred releases that are ready; returns how many ran."""
    return _core.collect()


def stats() -> Stats:
    """The default registry's counters."""
    return Stats(**_core.stats())


def is_closed() -> bool:
    """Whether Python registration is closed in this interpreter (its exit
    hook has run)."""
    return _core.is_closed()


def get_include() -> str:
    """Directory holding cbreg.h, cbreg.hpp and the nanobind and pybind11
    adapter headers."""
    return _os.path.join(_HERE, "include")


def get_library() -> str:
    """Path of the package's libcbreg.so: cbreg's C ABI without Python, for
    C and C++ programs (and ctypes). Whatever links it shares the process's
    one set of registries with this package. Extension modules link
    :func:`get_static_library` instead (``cbreg::cbreg`` in CMake)."""
    return _os.path.join(_HERE, "libcbreg.so")


def get_static_library() -> str:
    """Path of libcbreg_python.a: cbreg with its Python adapter, a static
    library for extension modules (what ``cbreg::cbreg`` links). The module
    needs nothing of this package at run time, and its copy of cbreg joins
    the process's one set of registries at its first call."""
    return _os.path.join(_HERE, "libcbreg_python.a")


def get_cmake_dir() -> str:
    """Directory of cbreg's CMake package: ``find_package(cbreg CONFIG)``
    with ``cbreg_DIR`` set to it (or on ``CMAKE_PREFIX_PATH``)."""
    return _os.path.join(_HERE, "cmake")
