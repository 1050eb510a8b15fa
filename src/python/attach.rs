//! Attaching a thread to an entry's interpreter and detaching after.
//! `Attached` names each way in (already there, `PyGILState_Ensure`, the
//! thread's kept state, a fresh state, a state swapped in from another
//! interpreter, a subinterpreter state carried in by a main one), so the
//! way out is the one that undoes it. `with_python` is the one door:
//! it takes the pass and the attach permit, attaches, runs, detaches. Also
//! the blocking hook that lets a waiting thread give the GIL up.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use pyo3_ffi as py;

use super::cpython::{gil_holder, interpreter_alive, AttachPermit};
use super::fork::new_thread_state;
use super::gate;
use super::interp::Interp;
use super::kept::{detach_kept, keep, KeptRecord};
use super::pass::{GatePass, KeptPass, IN_HOOK};
use super::{InterpState, TState};

// Declared here rather than taken from pyo3-ffi, which exports it only in
// some of the versions this crate accepts (every one from 0.23 on, whichever
// the dependent's pyo3 brings). Every CPython since 3.9 exports it. Not
// part of cbreg's C ABI, so kept out of the header (`cbindgen:ignore`,
// which cbindgen reads from the block's doc comment).
#[allow(unused_doc_comments)]
/// cbindgen:ignore
extern "C" {
    fn PyThreadState_GetInterpreter(tstate: TState) -> InterpState;
}

/// How this thread got into the entry's interpreter, to be undone after.
#[derive(Clone, Copy)]
pub(super) enum Attached {
    /// It already held the GIL there.
    Already,
    /// `PyGILState_Ensure` (main interpreter, this thread's own state).
    Ensured(py::PyGILState_STATE),
    /// The thread state kept for this native thread (main interpreter),
    /// GIL taken: given back after the call, the state kept.
    Kept,
    /// A thread state of its own, made for this call, GIL taken.
    Fresh(TState),
    /// It held the GIL in another interpreter: swapped to a state made for
    /// this call (the GIL is shared on the CPython versions that allow it).
    Swapped { made: TState, previous: TState },
    /// A subinterpreter's state made for this call under the GIL, which a
    /// main-interpreter state made for the call (`carrier`) took first.
    Carried { made: TState, carrier: TState },
}

impl Attached {
    /// # Safety
    /// The interpreter `state` of `interp` is alive, and the caller holds a
    /// pass of its gate unless it is `Already`; `holder` is `gil_holder()`
    /// on this thread, just read. (A thread's kept state is attached by
    /// `with_kept_state`.)
    pub(super) unsafe fn attach(
        interp: &'static Interp,
        state: InterpState,
        holder: Option<TState>,
    ) -> Option<Attached> {
        let main = interp.main.load(Relaxed);
        match holder {
            // SAFETY: `t` is the live state this thread holds the GIL with.
            Some(t) if unsafe { PyThreadState_GetInterpreter(t) } == state => {
                Some(Attached::Already)
            }
            // SAFETY: `state` is alive; this thread holds the GIL.
            Some(_) => unsafe { Self::swapped(state) },
            // SAFETY: `state` is alive; this thread holds no GIL.
            None if !main => unsafe { Self::carried(state) },
            None => {
                // SAFETY: callable without the GIL; `own`, when not null, is
                // this thread's own state, alive while its thread is.
                let own_here = unsafe {
                    let own = py::PyGILState_GetThisThreadState();
                    !own.is_null() && PyThreadState_GetInterpreter(own) == state
                };
                if own_here {
                    // SAFETY: the main interpreter is alive (pass held) and
                    // this thread's own state is in it.
                    return Some(Attached::Ensured(unsafe { py::PyGILState_Ensure() }));
                }
                // SAFETY: `state` is alive.
                let made = unsafe { new_thread_state(state) };
                if made.is_null() {
                    return None;
                }
                // SAFETY: a new state of this thread, which holds no GIL.
                unsafe { py::PyEval_RestoreThread(made) };
                // SAFETY: `made` is current here, the GIL held, in `interp`.
                if interp.gate.is_open() && unsafe { keep(made, interp) } {
                    return Some(Attached::Kept);
                }
                Some(Attached::Fresh(made))
            }
        }
    }

    /// Into interpreter `state` from a thread that holds the GIL in another
    /// one: a state made for the call, swapped in.
    ///
    /// # Safety
    /// The interpreter `state` is alive; this thread holds the GIL.
    pub(super) unsafe fn swapped(state: InterpState) -> Option<Attached> {
        // SAFETY: `state` is alive and the GIL held (the caller's promise);
        // `made` is checked before it is swapped in.
        unsafe {
            let made = py::PyThreadState_New(state);
            (!made.is_null()).then(|| Attached::Swapped {
                made,
                previous: py::PyThreadState_Swap(made),
            })
        }
    }

    /// Into subinterpreter `state` from a thread holding no GIL (CPython
    /// 3.11, whose interpreters share one GIL). `_xxsubinterpreters.destroy`
    /// checks that the interpreter has a single thread state and then ends
    /// it on the first state of its list, holding the GIL from the check to
    /// the pick: a state made without the GIL in between would be the one
    /// picked, and the interpreter would be ended on a state this thread is
    /// about to use. So the subinterpreter's state is made only once this
    /// thread holds the GIL, taken with a main-interpreter state made for
    /// the call (the main interpreter is never ended that way).
    ///
    /// # Safety
    /// As `attach`, with no GIL held by this thread.
    pub(super) unsafe fn carried(state: InterpState) -> Option<Attached> {
        // SAFETY: the main interpreter outlives every subinterpreter, so it
        // is alive; this thread holds no GIL, so it may take it with the
        // new `carrier`; then, GIL held, `state` (alive) gets a state of its
        // own, checked before it is swapped in.
        unsafe {
            let carrier = new_thread_state(py::PyInterpreterState_Main());
            if carrier.is_null() {
                return None;
            }
            py::PyEval_RestoreThread(carrier);
            let made = py::PyThreadState_New(state);
            if made.is_null() {
                delete_current(carrier);
                return None;
            }
            py::PyThreadState_Swap(made);
            Some(Attached::Carried { made, carrier })
        }
    }

    /// # Safety
    /// On the thread that attached, still holding the GIL from `attach`.
    #[inline(always)]
    pub(super) unsafe fn detach(self) {
        match self {
            Attached::Already => {}
            // SAFETY: the `PyGILState_Ensure` of this thread's `attach`.
            Attached::Ensured(gil) => unsafe { py::PyGILState_Release(gil) },
            // SAFETY: this thread's kept state is current, the GIL held; it
            // is detached and kept.
            Attached::Kept => unsafe {
                py::PyEval_SaveThread();
            },
            // SAFETY: `made` for this call, current, the GIL held.
            Attached::Fresh(made) => unsafe { delete_current(made) },
            // SAFETY: `made` for this call is current, the GIL held;
            // `previous` was this thread's state before it and is alive.
            Attached::Swapped { made, previous } => unsafe {
                py::PyThreadState_Clear(made);
                py::PyThreadState_Swap(previous);
                py::PyThreadState_Delete(made);
            },
            // SAFETY: as `Swapped`, back to `carrier`, made for this call
            // too, which is then current and deleted.
            Attached::Carried { made, carrier } => unsafe {
                py::PyThreadState_Clear(made);
                py::PyThreadState_Swap(carrier);
                py::PyThreadState_Delete(made);
                delete_current(carrier);
            },
        }
    }
}

/// Clears and deletes `tstate`, current on this thread with the GIL held
/// (CPython unbinds it from the thread's `PyGILState` slot and gives the
/// GIL back). It cannot be cut by a fork the way making a state can (see
/// `new_thread_state`): on 3.11 it holds the GIL, which the forking thread
/// holds; from 3.12 on CPython holds its thread-state lock across the fork.
///
/// # Safety
/// `tstate` is current on this thread, the GIL held, and nothing uses it
/// after.
pub(super) unsafe fn delete_current(tstate: TState) {
    // SAFETY: `tstate` is current and the GIL held (the caller's promise).
    unsafe {
        py::PyThreadState_Clear(tstate);
        py::PyThreadState_DeleteCurrent();
    }
}

/// Undoes an attachment if a Rust panic unwinds past it (it is forgotten
/// otherwise). A forced unwind (CPython ending the thread) leaves it alone:
/// the thread holds no GIL.
pub(super) struct DetachOnPanic(Attached);

impl Drop for DetachOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: a panic comes from our own code, run with the GIL.
            unsafe { self.0.detach() };
        }
    }
}

/// Runs `f` attached as `attached`, then detaches (also when a Rust panic
/// unwinds out of `f`).
///
/// # Safety
/// As `Attached::detach`: `attached` was just made on this thread.
#[inline(always)]
pub(super) unsafe fn run_attached<R>(attached: Attached, f: impl FnOnce() -> R) -> R {
    let guard = DetachOnPanic(attached);
    let result = f();
    std::mem::forget(guard);
    // SAFETY: attached on this thread, the GIL still held.
    unsafe { attached.detach() };
    result
}

/// Runs `f` attached to `interp` when Python may be entered from this
/// thread; otherwise returns `None` without touching Python. `f` gets
/// whether the caller already held the GIL in that interpreter.
#[inline(always)]
pub(super) fn with_python<R>(
    interp: &'static Interp,
    for_release: bool,
    f: impl FnOnce(bool) -> R,
) -> Option<R> {
    let holder = gil_holder();
    if holder.is_none() {
        if let Some(record) = KeptRecord::of_this_thread(interp) {
            return with_kept_state(record, interp, for_release, || f(false));
        }
    }
    with_other_state(interp, for_release, holder, f)
}

/// `with_python` on a thread that keeps a state in `interp` and holds no
/// GIL: its own counter is its pass, and it attaches with its state.
#[inline(always)]
pub(super) fn with_kept_state<R>(
    record: &'static KeptRecord,
    interp: &'static Interp,
    for_release: bool,
    f: impl FnOnce() -> R,
) -> Option<R> {
    let Some(_pass) = KeptPass::enter(record, interp, for_release) else {
        // The exit hook has begun: the thread gives its state back now,
        // while the hook still lets it through.
        // SAFETY: this thread holds no GIL; `detach_kept` checks Python is
        // alive.
        unsafe { detach_kept(interp, None) };
        return None;
    };
    // Whether the interpreter is alive is looked at once the pass is held.
    if interp.state.load(Acquire).is_null() {
        return None;
    }
    let permit = AttachPermit::take(interp.view.load(Acquire))?;
    // SAFETY: this thread's kept state, its pass held, Python alive.
    unsafe { py::PyEval_RestoreThread(record.state.load(Relaxed)) };
    drop(permit);
    // SAFETY: attached just above.
    Some(unsafe { run_attached(Attached::Kept, f) })
}

/// `with_python` on every other thread: one that holds the GIL (in `interp`
/// or another interpreter), or holds none and keeps no state in `interp`.
#[inline(never)]
pub(super) fn with_other_state<R>(
    interp: &'static Interp,
    for_release: bool,
    holder: Option<TState>,
    f: impl FnOnce(bool) -> R,
) -> Option<R> {
    // Whether the interpreter is alive is looked at once the pass is held
    // (no entry exists before initialization, and after finalization no
    // thread holds the GIL: `holder` is none).
    let state = interp.state.load(Acquire);
    let same = holder.is_some_and(|t| {
        // SAFETY: `t` is the thread state this thread holds the GIL with.
        !state.is_null() && unsafe { PyThreadState_GetInterpreter(t) } == state
    });
    // A thread already inside Python there needs no pass; others count in
    // first, so the exit hook cannot end the interpreter behind them.
    let _pass = if same {
        if interp.gate.state() == gate::CLOSED && !IN_HOOK.with(Cell::get) && !for_release {
            return None;
        }
        None
    } else {
        Some(GatePass::enter(interp, for_release)?)
    };
    let state = interp.state.load(Acquire);
    if state.is_null() {
        return None;
    }
    let permit = if same {
        if !interpreter_alive() {
            return None;
        }
        None
    } else {
        Some(AttachPermit::take(interp.view.load(Acquire))?)
    };
    // SAFETY: alive, and (unless already attached) the pass is held.
    let attached = unsafe { Attached::attach(interp, state, holder)? };
    drop(permit);
    // SAFETY: attached just above.
    Some(unsafe { run_attached(attached, || f(same)) })
}

/// A cbreg wait (unregister_wait, registry free) on a thread that holds the
/// GIL gives it up while it waits.
///
/// # Safety
/// Called by the core around a wait, on the waiting thread; the token is
/// given back to `take_gil_back` on that thread.
pub(super) unsafe extern "C" fn release_gil_while_waiting() -> *mut c_void {
    // SAFETY: callable at any time.
    if unsafe { py::Py_IsInitialized() } == 0 || gil_holder().is_none() {
        return null_mut();
    }
    // SAFETY: this thread holds the GIL (`gil_holder`).
    unsafe { py::PyEval_SaveThread() }.cast()
}

/// Takes the GIL back after a wait.
///
/// # Safety
/// `token` came from `release_gil_while_waiting` on this thread.
pub(super) unsafe extern "C" fn take_gil_back(token: *mut c_void) {
    if !token.is_null() {
        // SAFETY: the state this thread detached for the wait.
        unsafe { py::PyEval_RestoreThread(token.cast()) };
    }
}
