//! The Python side of fork. In the child, each gate is recounted to the
//! passes the forking thread holds and the kept states of other threads
//! are forgotten. Making a thread state without the GIL is kept out of the
//! fork's way (`new_thread_state`, `MAKING_TSTATE`): a fork in the middle
//! would leave the child with CPython's locks held. The interpreter guards
//! (CPython 3.15) that threads of the parent held at the fork are closed in
//! the child (`HELD_GUARDS`): its finalization waits for every guard. The
//! fork hooks here (run by `crate::fork`'s one handler, after the core's
//! child steps), and on free-threaded builds and CPythons with interpreter
//! guards the `os.register_at_fork` hooks, do all this.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};

use pyo3_ffi as py;

use super::cpython::{close_guard, new_none, py_minor, Guard};
use super::exit::{call_in_module, HookDef};
use super::kept::kept_after_fork_in_child;
use super::pass::recount_after_fork_in_child;
use super::{InterpState, PyObj, TState};
use crate::Status;

/// The adapter's child hook (`crate::fork`): in a forked child only the
/// forking thread exists, so each gate counts the passes that thread
/// holds, nothing else. The core's steps (the barrier's among them) have
/// run before it.
pub(super) fn gates_after_fork_in_child() {
    MAKING_TSTATE.store(0, SeqCst);
    GUARDS_CHANGING.store(0, SeqCst);
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
/// leaves the child hung. The fork's prepare hook waits (the
/// makers need no GIL). From 3.12 on CPython holds that lock across the
/// fork itself (`PyOS_BeforeFork`) before that hook runs, so waiting
/// there would wait for a thread blocked on the forking thread: only 3.11
/// waits there.
///
/// On a free-threaded build `PyThreadState_New` may stop the interpreter's
/// world, taking the interpreter's stop-the-world mutex and then (3.13.5)
/// the runtime's stop-the-world lock, which `os.fork` holds: such a thread
/// parks holding the mutex, and the child inherits it locked (its next
/// collection waits forever). That thread is parked before the prepare
/// hook runs, so the wait happens earlier, in an `os.register_at_fork`
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

/// Interpreter guards (CPython 3.15) held right now by attach permits, one
/// per slot (null: free). A thread holds its guard while it waits for the
/// GIL, which the thread calling `os.fork` holds: the child inherits
/// CPython's count of guards held with no thread to close them, and its
/// finalization, which waits until none is held, would never end. Every
/// guard held is published here until it is closed, and the child closes
/// what is left (`close_guards_after_fork`). More threads than slots on
/// their way in at once take turns.
const GUARD_SLOTS: usize = 128;
static HELD_GUARDS: [AtomicPtr<c_void>; GUARD_SLOTS] =
    [const { AtomicPtr::new(null_mut()) }; GUARD_SLOTS];
static NEXT_GUARD_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The mark of a published guard whose permit was dropped while a fork was
/// under way (guards are allocated, so the low bit is free).
const CLOSE_AFTER_FORK: usize = 1;

/// Threads between taking (or closing) a guard and publishing (or
/// clearing) it. The fork's `before` hook waits until there are none and
/// lets no taking begin until the fork is done; a closing that finds a fork
/// under way leaves its guard published, marked. So at the fork the slots
/// hold exactly the guards CPython counts as held. Taking a guard waits
/// for neither the GIL nor another thread (it locks the runtime's
/// interpreter list, which `os.fork` takes only after the hook), and a
/// thread taking one is attached nowhere, so neither the hook's wait nor
/// the taker's can close a cycle.
static GUARDS_CHANGING: AtomicUsize = AtomicUsize::new(0);

/// Takes a guard with `take` (null: refused) and publishes it; returns the
/// guard and its slot.
pub(super) fn take_published(take: impl Fn() -> Guard) -> Option<(Guard, usize)> {
    loop {
        while FORKING.load(SeqCst) {
            std::thread::yield_now();
        }
        GUARDS_CHANGING.fetch_add(1, SeqCst);
        if FORKING.load(SeqCst) {
            GUARDS_CHANGING.fetch_sub(1, SeqCst);
            continue;
        }
        let guard = take();
        let slot = if guard.is_null() {
            None
        } else {
            publish(guard)
        };
        if guard.is_null() || slot.is_some() {
            GUARDS_CHANGING.fetch_sub(1, SeqCst);
            return slot.map(|slot| (guard, slot));
        }
        // Every slot taken: give the guard back and try again once others
        // have attached (never waiting while counted in).
        close_guard(guard);
        GUARDS_CHANGING.fetch_sub(1, SeqCst);
        std::thread::yield_now();
    }
}

fn publish(guard: Guard) -> Option<usize> {
    let start = NEXT_GUARD_SLOT.fetch_add(1, Relaxed);
    (0..GUARD_SLOTS)
        .map(|i| (start + i) % GUARD_SLOTS)
        .find(|&i| {
            HELD_GUARDS[i]
                .compare_exchange(null_mut(), guard, SeqCst, Relaxed)
                .is_ok()
        })
}

/// Clears `guard`'s slot and closes it. Never waits for a fork: the thread
/// is attached by now, and the fork may wait for it (for the GIL, or to
/// stop the world). While one is under way the guard stays published,
/// marked, and is closed after it.
pub(super) fn close_published(guard: Guard, slot: usize) {
    GUARDS_CHANGING.fetch_add(1, SeqCst);
    if FORKING.load(SeqCst) {
        let marked = guard.cast::<u8>().wrapping_add(CLOSE_AFTER_FORK);
        HELD_GUARDS[slot].store(marked.cast(), SeqCst);
    } else {
        HELD_GUARDS[slot].store(null_mut(), SeqCst);
        close_guard(guard);
    }
    GUARDS_CHANGING.fetch_sub(1, SeqCst);
}

/// After a fork, from `os.fork`'s `after_in_parent` and `after_in_child`
/// hooks (CPython has released or reset its own locks by then, which
/// closing the last guard may take). In the parent: the guards whose
/// permits were dropped during the fork. In the child: every guard still
/// published, since the threads that held them are not in this process.
fn close_guards_after_fork(in_child: bool) {
    for slot in &HELD_GUARDS {
        let published = slot.load(SeqCst);
        let marked = published as usize & CLOSE_AFTER_FORK != 0;
        if published.is_null() || !(in_child || marked) {
            continue;
        }
        if slot
            .compare_exchange(published, null_mut(), SeqCst, Relaxed)
            .is_err()
        {
            continue; // a live permit's own, changed meanwhile (parent only)
        }
        // No permit closes it now (dropped, or its thread is not in this
        // process), and it left its slot above: closed once.
        close_guard(
            published
                .cast::<u8>()
                .wrapping_sub(usize::from(marked))
                .cast(),
        );
    }
}

pub(super) fn before_fork() {
    if py_minor() != 11 {
        return;
    }
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

pub(super) fn after_fork_in_parent() {
    FORKING.store(false, SeqCst);
}

/// The `before` hook of `os.fork` in the main interpreter of a free-threaded
/// build (see `MAKING_TSTATE`) or of a CPython with interpreter guards (see
/// `GUARDS_CHANGING`). It waits detached: a thread making a state may be
/// stopping the interpreter's world, which waits for every attached
/// thread, this one too, to park. Anything that thread waits for, CPython's
/// own stop-the-world for the fork would wait for as well.
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn fork_before_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    // SAFETY: the GIL is held, so this thread has a state to detach.
    let saved = unsafe { py::PyEval_SaveThread() };
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 || GUARDS_CHANGING.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    // SAFETY: the state detached above, on this thread; then the GIL is held.
    unsafe {
        py::PyEval_RestoreThread(saved);
        new_none()
    }
}

/// The `after_in_parent` hook of `os.fork` (the crate's fork hooks have
/// let threads go on already, for every fork).
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn fork_done_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    FORKING.store(false, SeqCst);
    close_guards_after_fork(false);
    // SAFETY: the GIL is held.
    unsafe { new_none() }
}

/// The `after_in_child` hook of `os.fork`.
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn fork_child_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    FORKING.store(false, SeqCst);
    close_guards_after_fork(true);
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
    b"Lets native threads make thread states again after a fork, and closes the interpreter guards dropped during it.\0",
);
pub(super) static FORK_CHILD_DEF: HookDef = HookDef::new(
    b"cbreg_after_fork_in_child\0",
    fork_child_hook,
    b"In the child: lets threads make thread states, and closes the interpreter guards the parent's threads held.\0",
);

/// Registers the fork hooks with `os.register_at_fork` (the main
/// interpreter of a free-threaded build or of a CPython with interpreter
/// guards, GIL held; see `MAKING_TSTATE` and `GUARDS_CHANGING`).
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn register_fork_hooks() -> Result<(), Status> {
    // SAFETY: the GIL is held (the caller's promise); every object passed on
    // is one made here and checked non-null first.
    unsafe {
        let before = FORK_BEFORE_DEF.function();
        let done = FORK_DONE_DEF.function();
        let child = FORK_CHILD_DEF.function();
        let kwargs = if before.is_null() || done.is_null() || child.is_null() {
            null_mut()
        } else {
            py::Py_BuildValue(
                b"{s:O,s:O,s:O}\0".as_ptr().cast(),
                b"before\0".as_ptr(),
                before,
                b"after_in_parent\0".as_ptr(),
                done,
                b"after_in_child\0".as_ptr(),
                child,
            )
        };
        for func in [before, done, child] {
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
