//! The exit hooks: the hook each interpreter registers with its `atexit`
//! (`ensure_hooks`; the main interpreter's too, whichever imports first),
//! and what it does (`interpreter_exit`): shut the gates, drain the threads
//! inside, release the interpreter's Python entries while it is whole, and
//! shut the gates for good. The main interpreter's exit is the process's.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use pyo3_ffi as py;

use super::abi::cbreg_py_atexit_clear;
use super::attach::Attached;
use super::cpython::{free_threaded_build, has_interpreter_guards, new_none};
use super::entry::{interp_of, release_python};
use super::fork::register_fork_hooks;
use super::gate::{self, shut_all};
use super::interp::{interp_record, interps, Interp, MAX_INTERPRETERS};
use super::pass::{drain, IN_HOOK};
use super::PyObj;
use crate::Status;

/// How long a process exit hook waits, in all, for threads inside Python
/// callbacks before it lets finalization go on without them.
pub(super) const EXIT_DRAIN: Duration = Duration::from_millis(400);

/// The function each interpreter's `atexit` calls.
///
/// # Safety
/// Called by CPython as a `METH_NOARGS` function, with the GIL held.
pub(super) unsafe extern "C" fn atexit_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    cbreg_py_atexit_clear();
    // SAFETY: the GIL is held.
    unsafe { new_none() }
}

pub(super) struct HookDef(std::cell::UnsafeCell<py::PyMethodDef>);
// SAFETY: written only by CPython's own bookkeeping, under the GIL.
unsafe impl Sync for HookDef {}

impl HookDef {
    /// A hook taking no arguments; `name` and `doc` NUL-terminated.
    pub(super) const fn new(
        name: &'static [u8],
        hook: unsafe extern "C" fn(PyObj, PyObj) -> PyObj,
        doc: &'static [u8],
    ) -> HookDef {
        HookDef(std::cell::UnsafeCell::new(py::PyMethodDef {
            ml_name: name.as_ptr().cast(),
            ml_meth: py::PyMethodDefPointer { PyCFunction: hook },
            ml_flags: py::METH_NOARGS,
            ml_doc: doc.as_ptr().cast(),
        }))
    }

    /// A new function object for the hook (null on failure, no exception
    /// left set).
    ///
    /// # Safety
    /// The GIL is held.
    pub(super) unsafe fn function(&'static self) -> PyObj {
        // SAFETY: the GIL is held (the caller's promise); the definition is
        // static, as `PyCFunction_New` needs.
        unsafe {
            let func = py::PyCFunction_New(self.0.get(), null_mut());
            if func.is_null() {
                py::PyErr_Clear();
            }
            func
        }
    }
}

pub(super) static HOOK_DEF: HookDef = HookDef::new(
    b"cbreg_atexit_clear\0",
    atexit_hook,
    b"Releases cbreg's Python callbacks before the interpreter finalizes.\0",
);

/// Calls `module.name(*args, **kwargs)` (`args` a tuple, `kwargs` a dict or
/// null; GIL held); Ok when it returned, no exception left set.
///
/// # Safety
/// The GIL is held; `module` and `name` end in NUL; `args` is a tuple or
/// null, `kwargs` a dict or null.
pub(super) unsafe fn call_in_module(
    module: &[u8],
    name: &[u8],
    args: PyObj,
    kwargs: PyObj,
) -> Result<(), Status> {
    // SAFETY: the GIL is held (the caller's promise); `module` and `name` end
    // in NUL; every object is checked non-null before use and released
    // once.
    unsafe {
        let found = py::PyImport_ImportModule(module.as_ptr().cast());
        let func = if found.is_null() {
            null_mut()
        } else {
            let func = py::PyObject_GetAttrString(found, name.as_ptr().cast());
            py::Py_DecRef(found);
            func
        };
        let result = if func.is_null() || args.is_null() {
            null_mut()
        } else {
            py::PyObject_Call(func, args, kwargs)
        };
        if !func.is_null() {
            py::Py_DecRef(func);
        }
        if result.is_null() {
            py::PyErr_Clear();
            return Err(Status::Internal);
        }
        py::Py_DecRef(result);
        Ok(())
    }
}

/// Registers the hook with the current interpreter's `atexit` (GIL held).
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn register_atexit() -> Result<(), Status> {
    // SAFETY: the GIL is held (the caller's promise); `func` and `args` are
    // checked non-null before use and released once.
    unsafe {
        let func = HOOK_DEF.function();
        if func.is_null() {
            return Err(Status::NoMemory);
        }
        let args = py::PyTuple_Pack(1, func);
        py::Py_DecRef(func);
        let done = call_in_module(b"atexit\0", b"register\0", args, null_mut());
        if !args.is_null() {
            py::Py_DecRef(args);
        }
        done
    }
}

/// Makes sure `interp` (the current interpreter, GIL held) has its exit
/// hook, and the main interpreter its own: whichever interpreter imports
/// first, the process-wide exit is handled in the main one.
///
/// # Safety
/// The GIL is held in `interp`'s interpreter.
pub(super) unsafe fn ensure_hooks(interp: &'static Interp) -> Result<(), Status> {
    if !interp.hook_installed.swap(true, SeqCst) {
        // SAFETY: the GIL is held.
        if let Err(e) = unsafe { register_atexit() } {
            interp.hook_installed.store(false, SeqCst);
            return Err(e);
        }
        // os.fork is the main interpreter's alone.
        if interp.main.load(Relaxed) && (free_threaded_build() || has_interpreter_guards()) {
            // SAFETY: the GIL is held.
            unsafe { register_fork_hooks()? };
        }
    }
    if interp.main.load(Relaxed) {
        return Ok(());
    }
    // SAFETY: the GIL is held; the main interpreter outlives this one.
    let main_state = unsafe { py::PyInterpreterState_Main() };
    // SAFETY: as above.
    let main = unsafe { interp_record(main_state)? };
    if main.hook_installed.swap(true, SeqCst) {
        return Ok(());
    }
    // Into the main interpreter for the registration (shared GIL: 3.11).
    // SAFETY: the main interpreter is alive; this thread holds the GIL.
    let Some(swapped) = (unsafe { Attached::swapped(main_state) }) else {
        main.hook_installed.store(false, SeqCst);
        return Err(Status::NoMemory);
    };
    // SAFETY: attached to the main interpreter, the GIL held; then back out
    // of it on the same thread.
    let installed = unsafe {
        let installed = register_atexit();
        swapped.detach();
        installed
    };
    if installed.is_err() {
        main.hook_installed.store(false, SeqCst);
    }
    installed
}

/// The exit of `this` interpreter (GIL held there). The main one's exit is
/// the process's: every interpreter's gate is shut and every Python entry
/// released. A subinterpreter's concerns only itself.
///
/// # Safety
/// The GIL is held in `this` interpreter.
pub(super) unsafe fn interpreter_exit(this: &'static Interp) {
    if this.exit_done.swap(true, SeqCst) {
        return;
    }
    let main = this.main.load(Relaxed);
    let mut targets: [Option<&'static Interp>; MAX_INTERPRETERS] = [None; MAX_INTERPRETERS];
    if main {
        for (slot, interp) in targets.iter_mut().zip(interps()) {
            *slot = Some(interp);
        }
    } else {
        targets[0] = Some(this);
    }
    let mut gates: [&'static Interp; MAX_INTERPRETERS] = [this; MAX_INTERPRETERS];
    let mut n = 0;
    for t in targets.iter().flatten() {
        gates[n] = t;
        n += 1;
    }
    let gates = &gates[..n];
    // A subinterpreter cannot end while a native thread has a thread state
    // in it (CPython aborts), so its hook waits as long as those take.
    let deadline = main.then(|| Instant::now() + EXIT_DRAIN);
    // Waits with the GIL given up, then takes it back.
    let detached = |wait: &dyn Fn()| {
        // SAFETY: the GIL is held here (this function's contract), detached
        // for the wait and taken back with the same state on this thread.
        let saved = unsafe { py::PyEval_SaveThread() };
        wait();
        // SAFETY: as above.
        unsafe { py::PyEval_RestoreThread(saved) };
    };
    let drain_unlocked = |gates: &[&'static Interp]| detached(&|| drain(gates, deadline));

    IN_HOOK.with(|h| h.set(true));
    for g in gates {
        g.closed.store(true, SeqCst);
    }
    shut_all(gates.iter().map(|g| &g.gate), gate::DRAINING); // no new calls
    drain_unlocked(gates);
    extern "C" fn ours(ctx: *mut c_void, gates: *mut c_void) -> bool {
        // SAFETY: `gates` is the slice passed below, alive for the call;
        // ctx is one of our entries (its release is `release_python`).
        let gates = unsafe { &*(gates as *const &[&'static Interp]) };
        let owner = interp_of(ctx);
        gates.iter().any(|g| std::ptr::eq(*g, owner))
    }
    crate::rendezvous::retire_matching(
        Some(release_python),
        ours,
        &gates as *const &[&'static Interp] as *mut c_void,
    );
    // Releases deferred to invokers still in flight run there, the gate
    // letting releases through until every entry is released (or time is up).
    let release_deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
    detached(&|| loop {
        drain(gates, Some(release_deadline));
        crate::rendezvous::collect_all();
        let released = gates.iter().all(|g| g.entries.load(SeqCst) == 0);
        if released || Instant::now() >= release_deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    });
    shut_all(gates.iter().map(|g| &g.gate), gate::CLOSED);
    drain_unlocked(gates);
    IN_HOOK.with(|h| h.set(false));
    if !main {
        this.state.store(null_mut(), Release); // ended: its entries are gone
    }
}
