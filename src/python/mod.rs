//! The Python adapter: entries that own a Python callable (feature `python`).
//!
//! Built with pyo3-ffi's `extension-module` feature, so this library never
//! links libpython: the symbols come from the interpreter that loads the
//! extension module that loads us. Only exported CPython functions are used:
//! no inline refcount macros, and no type checks that read an object's
//! header (`kind_of`), which differs between the GIL and free-threaded
//! builds. What differs between CPython versions is looked up at run time,
//! in `cpython.rs` alone; the one layout the adapter reads is 3.11's thread
//! state, to serve 3.11 subinterpreters (checked at start-up). The rules
//! that turn values into Python objects and back live in `convert.rs`
//! alone; the C++ adapters reach them through `cbreg_py_args_new` and
//! `cbreg_py_value_to_object`.
//!
//! Every Python entry belongs to the interpreter that registered it and is
//! only ever called or released in that interpreter. Each interpreter has a
//! *gate*: threads that must attach to it (native threads, or a thread of
//! another interpreter) count themselves in before touching Python; its exit
//! hook shuts the gate and, with the GIL released, waits a bounded time for
//! those inside. A thread that already holds the GIL in the entry's own
//! interpreter is Python's own business and is not counted, so it never
//! holds the hook up. A native thread keeps the thread state it makes in
//! the main interpreter across calls, and only that thread deletes it.
//! `docs/python.md` has the argument.
//!
//! No `catch_unwind` frame lies on any path that calls CPython: CPython ends
//! a thread that takes the GIL back during finalization with a forced unwind
//! (`pthread_exit`), which must pass through these frames (a callback that
//! let the GIL go, and takes it back through CPython's own functions). Where
//! the adapter itself takes the GIL, through pyo3-ffi's `PyEval_RestoreThread`
//! and `PyGILState_Ensure`, pyo3-ffi parks such a thread for ever instead,
//! before CPython 3.14 (3.14 parks it itself): `docs/python.md`, "A thread
//! parked at exit", says what that leaves. What runs while
//! unwinding (the gate's `Drop`, an attach permit's) touches no Python; the
//! thread-state guards undo themselves only for a Rust panic, never for a
//! forced unwind (the thread does not hold the GIL then). The code between
//! is written not to panic. Each export in `abi.rs` says at its
//! declaration which of this applies to it.
//!
//! The rooms, each owning one concern (this file: the map, the names they
//! share, and the set-up done once per process):
//!
//! - `abi.rs`: the `cbreg_py_*` exports, and nothing else.
//! - `cpython.rs`: which CPython runs, looked-up functions, PEP 788 guards,
//!   the 3.11 layout; the only file that knows versions.
//! - `interp.rs`: one record per interpreter, found by id, reused.
//! - `gate.rs`: a gate and its counts, in plain Rust (checked by loom).
//! - `pass.rs`: passes through an interpreter's gate, and the exit drain.
//! - `attach.rs`: the ways a thread attaches to an interpreter and back.
//! - `kept.rs`: thread states kept for native threads, their pthread key.
//! - `fork.rs`: the Python side of fork (gates recounted, states made out
//!   of the fork's way).
//! - `convert.rs`: every rule between values and Python objects.
//! - `entry.rs`: a Python entry's context, its call and its release.
//! - `exit.rs`: the interpreters' exit hooks and what they do.
//! - `testing.rs`: diagnostics for tests, left out of the C header.

#![deny(unsafe_op_in_unsafe_fn)]

mod abi;
mod attach;
mod convert;
mod cpython;
mod entry;
mod exit;
mod fork;
// `cbindgen:ignore` keeps a module out of the C header.
/// cbindgen:ignore
mod gate;
mod interp;
mod kept;
mod pass;
/// cbindgen:ignore
#[doc(hidden)]
pub mod testing;

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;

use pyo3_ffi as py;

pub use abi::*;

type PyObj = *mut py::PyObject;
type TState = *mut py::PyThreadState;
type InterpState = *mut py::PyInterpreterState;

/// `flags` for `cbreg_py_register`: when the callback raises on a thread
/// that holds the GIL (it was fired from Python, or from native code that
/// Python called), the exception goes to `sys.unraisablehook` and no
/// exception is left set; the caller gets `CALLBACK_FAILED`. Without it the
/// exception is left set for the caller to raise (see `cbreg_py_register`).
pub const CBREG_PY_UNRAISABLE: u32 = 2;

/// Once per process.
///
/// # Safety
/// The GIL is held.
unsafe fn set_up_process() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, SeqCst) {
        return;
    }
    // SAFETY: the GIL is held (the caller's promise).
    unsafe { cpython::probe_thread_id_offset() };
    cpython::api(); // looked up now: the fork handlers use it
    crate::sync::barrier::init(); // before any kept-state counter is used
    kept::make_kept_key();
    // Installed in the copy of cbreg that owns the registries (the one
    // that waits), whichever copy this is.
    crate::rendezvous::set_blocking_hook(attach::release_gil_while_waiting, attach::take_gil_back);
    // Run by the crate's one fork handler, after the core's own child steps
    // (`crate::fork` has the order).
    let hooked = crate::fork::add_prepare_hook(fork::before_fork)
        && crate::fork::add_parent_hook(fork::after_fork_in_parent)
        && crate::fork::add_child_hook(fork::gates_after_fork_in_child);
    debug_assert!(hooked, "the fork hook lists have room for the adapter's");
}
