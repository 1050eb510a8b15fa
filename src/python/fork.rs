//! The Python side of fork. In the child, each gate is recounted to the
//! passes the forking thread holds and the kept states of other threads
//! are forgotten. Making a thread state without the GIL is kept out of the
//! fork's way (`new_thread_state`, `MAKING_TSTATE`): a fork in the middle
//! would leave the child with CPython's locks held. The `pthread_atfork`
//! handlers here, and on free-threaded builds the `os.register_at_fork`
//! hooks, do both.

use std::ptr::null_mut;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use pyo3_ffi as py;

use super::cpython::{new_none, py_minor};
use super::exit::{call_in_module, HookDef};
use super::kept::kept_after_fork_in_child;
use super::pass::recount_after_fork_in_child;
use super::{InterpState, PyObj, TState};
use crate::Status;

/// In a forked child only the forking thread exists: each gate counts the
/// passes that thread holds, nothing else.
pub(super) extern "C" fn gates_after_fork_in_child() {
    MAKING_TSTATE.store(0, SeqCst);
    FORKING.store(false, SeqCst);
    kept_after_fork_in_child();
    recount_after_fork_in_child();
}

/// Threads making a thread state without the GIL right now, and whether a
/// fork is under way: no state is begun while one is, and the fork waits
/// for those being made, which a fork could otherwise cut in two ways.
///
/// CPython 3.11's forked child takes the runtime's thread-state lock before
/// re-creating it: a thread that held it in `PyThreadState_New` at the fork
/// leaves the child hung. The `pthread_atfork` prepare handler waits (the
/// makers need no GIL). From 3.12 on CPython holds that lock across the
/// fork itself (`PyOS_BeforeFork`) before that handler runs, so waiting
/// there would wait for a thread blocked on the forking thread: only 3.11
/// waits there.
///
/// On a free-threaded build `PyThreadState_New` may stop the interpreter's
/// world, taking the interpreter's stop-the-world mutex and then (3.13.5)
/// the runtime's stop-the-world lock, which `os.fork` holds: such a thread
/// parks holding the mutex, and the child inherits it locked (its next
/// collection waits forever). That thread is parked before the prepare
/// handler runs, so the wait happens earlier, in an `os.register_at_fork`
/// `before` hook (`fork_before_hook`), which CPython runs before it stops
/// the world. docs/python.md ("A fork while a state is being made") has
/// the details.
pub(super) static MAKING_TSTATE: AtomicUsize = AtomicUsize::new(0);
pub(super) static FORKING: AtomicBool = AtomicBool::new(false);

/// `PyThreadState_New(state)`, made out of a fork's way.
///
/// # Safety
/// The interpreter `state` is alive.
pub(super) unsafe fn new_thread_state(state: InterpState) -> TState {
    loop {
        while FORKING.load(SeqCst) {
            std::thread::yield_now();
        }
        MAKING_TSTATE.fetch_add(1, SeqCst);
        if !FORKING.load(SeqCst) {
            break;
        }
        MAKING_TSTATE.fetch_sub(1, SeqCst);
    }
    // SAFETY: `state` is alive (the caller's promise); no GIL is needed.
    let made = unsafe { py::PyThreadState_New(state) };
    MAKING_TSTATE.fetch_sub(1, SeqCst);
    made
}

pub(super) extern "C" fn before_fork() {
    if py_minor() != 11 {
        return;
    }
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

pub(super) extern "C" fn after_fork_in_parent() {
    FORKING.store(false, SeqCst);
}

/// The `before` hook of `os.fork` in the main interpreter of a free-threaded
/// build (see `MAKING_TSTATE`). It waits detached: a thread making a state
/// may be stopping the interpreter's world, which waits for every attached
/// thread, this one too, to park. Anything that thread waits for, CPython's
/// own stop-the-world for the fork would wait for as well.
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn fork_before_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    // SAFETY: the GIL is held, so this thread has a state to detach.
    let saved = unsafe { py::PyEval_SaveThread() };
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    // SAFETY: the state detached above, on this thread; then the GIL is held.
    unsafe {
        py::PyEval_RestoreThread(saved);
        new_none()
    }
}

/// The `after_in_parent` and `after_in_child` hooks of `os.fork` (the
/// `pthread_atfork` handlers have done the same already, for every fork).
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn fork_done_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    FORKING.store(false, SeqCst);
    // SAFETY: the GIL is held.
    unsafe { new_none() }
}

pub(super) static FORK_BEFORE_DEF: HookDef = HookDef::new(
    b"cbreg_before_fork\0",
    fork_before_hook,
    b"Waits until no native thread is making a thread state, and lets none begin until the fork is done.\0",
);
pub(super) static FORK_DONE_DEF: HookDef = HookDef::new(
    b"cbreg_after_fork\0",
    fork_done_hook,
    b"Lets native threads make thread states again after a fork.\0",
);

/// Registers the fork hooks with `os.register_at_fork` (the main
/// interpreter of a free-threaded build, GIL held; see `MAKING_TSTATE`).
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn register_fork_hooks() -> Result<(), Status> {
    // SAFETY: the GIL is held (the caller's promise); every object passed on
    // is one made here and checked non-null first.
    unsafe {
        let before = FORK_BEFORE_DEF.function();
        let done = FORK_DONE_DEF.function();
        let kwargs = if before.is_null() || done.is_null() {
            null_mut()
        } else {
            py::Py_BuildValue(
                b"{s:O,s:O,s:O}\0".as_ptr().cast(),
                b"before\0".as_ptr(),
                before,
                b"after_in_parent\0".as_ptr(),
                done,
                b"after_in_child\0".as_ptr(),
                done,
            )
        };
        for func in [before, done] {
            if !func.is_null() {
                py::Py_DecRef(func);
            }
        }
        if kwargs.is_null() {
            py::PyErr_Clear();
            return Err(Status::NoMemory);
        }
        let args = py::PyTuple_New(0);
        let registered = call_in_module(b"os\0", b"register_at_fork\0", args, kwargs);
        py::Py_DecRef(kwargs);
        if !args.is_null() {
            py::Py_DecRef(args);
        }
        registered
    }
}
