//! A Python entry: its context (`PyEntry`, reused, never freed), the call
//! the core makes (`call_python`: attach, convert, vectorcall, convert
//! back) and its release (`release_python`, in the entry's interpreter).
//! A Python caller's own objects pass straight through (`PyCall`).

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicPtr, AtomicU32};
use std::sync::{Mutex, PoisonError};

use pyo3_ffi as py;

use super::attach::{with_kept_state, with_other_state, with_python};
use super::convert::{result_comes_back_as_is, store_result, to_python};
use super::cpython::{api, gil_holder};
use super::interp::Interp;
use super::kept::KeptRecord;
use super::{PyObj, CBREG_PY_UNRAISABLE};
use crate::ffi;
use crate::{Status, Value};

/// A Python entry's context. Never freed, only reused (`FREE_ENTRIES`):
/// the exit hook reads `interp` of entries that another thread may be
/// releasing at that moment.
pub(super) struct PyEntry {
    pub(super) callable: AtomicPtr<py::PyObject>,
    pub(super) interp: AtomicPtr<Interp>,
    pub(super) flags: AtomicU32,
}

pub(super) static FREE_ENTRIES: Mutex<Vec<&'static PyEntry>> = Mutex::new(Vec::new());

pub(super) fn new_entry(callable: PyObj, interp: &'static Interp, flags: u32) -> &'static PyEntry {
    let reused = FREE_ENTRIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let entry = reused.unwrap_or_else(|| {
        Box::leak(Box::new(PyEntry {
            callable: AtomicPtr::new(null_mut()),
            interp: AtomicPtr::new(null_mut()),
            flags: AtomicU32::new(0),
        }))
    });
    entry.callable.store(callable, Relaxed);
    entry.flags.store(flags, Relaxed);
    entry
        .interp
        .store(interp as *const Interp as *mut Interp, Release);
    entry
}

pub(super) fn free_entry(entry: &'static PyEntry) {
    entry.callable.store(null_mut(), Relaxed);
    entry.interp.store(null_mut(), Release);
    FREE_ENTRIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
}

/// The interpreter of a Python entry's context (null: none, being reused).
pub(super) fn interp_of(ctx: *mut c_void) -> *const Interp {
    // SAFETY: contexts with `release_python` are `PyEntry`s, never freed.
    unsafe { &*(ctx as *const PyEntry) }.interp.load(Acquire)
}

/// The entry's `call`: calls the Python callable in its interpreter.
///
/// # Safety
/// Called by the core with the context registered with it and `args`,
/// `nargs`, `ret` as `cbreg_invoke` passes them.
pub(super) unsafe extern "C-unwind" fn call_python(
    ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> u32 {
    // SAFETY: the core passes the context we registered (a `PyEntry`, never
    // freed), and its interpreter record while the entry can be invoked
    // (records are never freed).
    let (entry, interp) = unsafe {
        let entry = &*(ctx as *const PyEntry);
        (entry, &*entry.interp.load(Acquire))
    };
    let callable = entry.callable.load(Relaxed);
    // `with_python`, its two ways spelled out so that the first, a native
    // thread on its kept state (an engine's usual call), is compiled for
    // that case alone: no Python caller, exceptions to the unraisable hook.
    // Through `with_python` itself that case would carry the other's work
    // (the caller look-up, the flags); `make bench-python-instructions`
    // counts the difference.
    let holder = gil_holder();
    if holder.is_none() {
        if let Some(record) = KeptRecord::of_this_thread(interp) {
            return with_kept_state(record, interp, false, || {
                // SAFETY: attached to the callable's interpreter; args and
                // ret come from invoke.
                unsafe { call_attached(callable, args, nargs, ret, false, interp, None) }
            })
            .unwrap_or(Status::Closed) as u32;
        }
    }
    let unraisable = entry.flags.load(Relaxed) & CBREG_PY_UNRAISABLE != 0;
    with_other_state(interp, false, holder, |held_gil| {
        // The Python caller on this thread, if this is its very call (its
        // objects are of this interpreter only when it held the GIL here).
        let caller = if held_gil {
            // SAFETY: a published `PyCall` lives on the stack of the
            // `cbreg_py_invoke` further out on this thread, until its scope
            // takes it back.
            unsafe { PY_CALL.with(Cell::get).as_ref() }.filter(|c| {
                // (With no arguments the core may pass no vector.)
                c.nargs == nargs && (nargs == 0 || c.values == args) && std::ptr::eq(c.ret, ret)
            })
        } else {
            None
        };
        // SAFETY: attached to the callable's interpreter; args and ret come
        // from invoke; `caller` made them from its objects.
        unsafe {
            call_attached(
                callable,
                args,
                nargs,
                ret,
                held_gil && !unraisable,
                interp,
                caller,
            )
        }
    })
    .unwrap_or(Status::Closed) as u32
}

/// `nargsf` flag: the callee may use the slot before the first argument.
pub(super) const VECTORCALL_ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// Calls with the GIL held in the callable's interpreter. `propagate`: a
/// raised exception is left set for the caller (which held the GIL there);
/// otherwise it goes to `sys.unraisablehook`. `caller`: the Python caller
/// whose objects the values were made from.
///
/// # Safety
/// The GIL is held in `interp`, the interpreter of the live `callable`;
/// `args` points to `nargs` values (or is null with none), `ret` is null
/// or valid for writes; `caller`'s `items` are the live objects the
/// values were made from.
#[inline(always)]
pub(super) unsafe fn call_attached(
    callable: PyObj,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
    propagate: bool,
    interp: &'static Interp,
    caller: Option<&PyCall>,
) -> Status {
    // SAFETY: the GIL is held in `interp`, `callable`'s interpreter, and `args`,
    // `nargs`, `ret`, `caller` are as the caller promises; exactly the
    // `objs` written are read back and released once.
    unsafe {
        if !py::PyErr_Occurred().is_null() {
            // Never call Python with an exception pending; it is the caller's.
            return Status::CallbackFailed;
        }
        if nargs > ffi::CBREG_MAX_ARGS {
            return Status::InvalidArgument;
        }
        let args = if nargs == 0 || args.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(args, nargs)
        };
        // The arguments as a vector (no tuple), with the slot before the first
        // free for the callee (PY_VECTORCALL_ARGUMENTS_OFFSET).
        let mut objs = [std::mem::MaybeUninit::<PyObj>::uninit(); 1 + ffi::CBREG_MAX_ARGS];
        let release = |objs: &[std::mem::MaybeUninit<PyObj>]| {
            for o in objs {
                py::Py_DecRef(o.assume_init());
            }
        };
        if let ([v], None) = (args, caller) {
            // One value from a native caller, an engine's usual call: no loop.
            match to_python(v) {
                Ok(obj) => objs[1].write(obj),
                Err(e) => return e,
            };
        } else {
            for (i, v) in args.iter().enumerate() {
                let obj = match caller {
                    Some(c) if c.as_is & (1 << i) != 0 => {
                        let obj = *c.items.add(i);
                        py::Py_IncRef(obj);
                        obj
                    }
                    _ => match to_python(v) {
                        Ok(obj) => obj,
                        Err(e) => {
                            release(&objs[1..1 + i]);
                            return e;
                        }
                    },
                };
                objs[1 + i].write(obj);
            }
        }
        let argv = objs.as_ptr().add(1).cast::<PyObj>();
        let result = (api().vectorcall)(
            callable,
            argv,
            args.len() | VECTORCALL_ARGUMENTS_OFFSET,
            null_mut(),
        );
        release(&objs[1..1 + args.len()]);
        if result.is_null() {
            if !propagate {
                py::PyErr_WriteUnraisable(callable);
            }
            return Status::CallbackFailed;
        }
        match (caller, ret.as_mut()) {
            (Some(c), _) if c.result.get().is_null() && result_comes_back_as_is(result) => {
                c.result.set(result);
            }
            (_, Some(ret)) => store_result(result, ret, interp),
            (_, None) => py::Py_DecRef(result),
        }
        Status::Ok
    }
}

/// A Python caller's invocation in progress on this thread
/// (`cbreg_py_invoke`): the objects its values were made from, so that the
/// entry called with exactly those values and `ret` passes the objects
/// that would convert back to equal ones straight through, and hands such
/// a result back as the object itself.
pub(super) struct PyCall {
    pub(super) values: *const Value,
    pub(super) nargs: usize,
    pub(super) ret: *const Value,
    pub(super) items: *const PyObj,
    /// Bit i: `items[i]` converts back to an equal object of its type.
    pub(super) as_is: u64,
    /// The result object handed back (a new reference), or null.
    pub(super) result: Cell<PyObj>,
}

thread_local! {
    /// The innermost Python caller's invocation on this thread.
    pub(super) static PY_CALL: Cell<*const PyCall> = const { Cell::new(std::ptr::null()) };
}

/// Publishes a `PyCall` for the duration of one invoke; the one it hides
/// comes back on drop (also when unwinding).
pub(super) struct PyCallScope(*const PyCall);

impl PyCallScope {
    pub(super) fn enter(call: &PyCall) -> PyCallScope {
        PyCallScope(PY_CALL.with(|c| c.replace(call)))
    }
}

impl Drop for PyCallScope {
    fn drop(&mut self) {
        PY_CALL.with(|c| c.set(self.0));
    }
}

/// The entry's `release`: drops the callable in its interpreter.
///
/// # Safety
/// Called by the core once, with the context registered with it, while
/// nothing invokes the entry.
pub(super) unsafe extern "C-unwind" fn release_python(ctx: *mut c_void) {
    // SAFETY: our context (a `PyEntry`, never freed); the core runs this
    // once, nothing invokes it now; interpreter records are never freed.
    let (entry, interp): (&'static PyEntry, &'static Interp) = unsafe {
        let entry = &*(ctx as *const PyEntry);
        (entry, &*entry.interp.load(Acquire))
    };
    let callable = entry.callable.load(Relaxed);
    // SAFETY: attached to the callable's interpreter; we own this reference.
    let released = with_python(interp, true, |_| unsafe { py::Py_DecRef(callable) }).is_some();
    if !released {
        ffi::cbreg_release_mark_leaked();
    }
    let _ = interp
        .entries
        .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    free_entry(entry);
}
