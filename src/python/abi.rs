//! The adapter's part of the C ABI: the `cbreg_py_*` exports and nothing
//! else. Each checks its arguments and hands over to the room that owns
//! the work; none has a `catch_unwind` frame (see the module doc of
//! `python`).

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use pyo3_ffi as py;

use super::convert::{arg_value, set_error, to_python, Lists, PyArgs};
use super::cpython::{gil_holder, interpreter_alive, subinterpreters_supported};
use super::entry::{
    call_python, free_entry, new_entry, release_python, PyCall, PyCallScope, PyEntry,
};
use super::exit::{ensure_hooks, interpreter_exit};
use super::interp::interp_record;
use super::{set_up_process, PyObj, CBREG_PY_UNRAISABLE};
use crate::ffi::{self, RegistryHandle, CBREG_ONCE, CBREG_PROMPT};
use crate::{Status, Value};

/// Writes `value` to `*out`.
///
/// # Safety
/// `out` is valid for writes and aligned (an export's out pointer, checked
/// non-null).
pub(super) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: as the caller promises.
    unsafe { out.write(value) };
}

/// Converts the Python objects `items[0..nargs]` (GIL held) to a value
/// vector for `cbreg_invoke`: None, bool, int (64-bit), float, str (UTF-8),
/// bytes, and lists of ints (an i64 array) or of numbers with a float among
/// them (an f64 array). Writes the vector's address to `*out_values`; it
/// stays valid, borrowing the objects' str and bytes buffers (keep the
/// objects alive), until `cbreg_py_args_free` of the returned pointer.
/// NULL with a Python exception set (TypeError, OverflowError, ...) on
/// failure, or with more than `CBREG_MAX_ARGS` items.
///
/// # Safety
/// The GIL is held; `items` points to `nargs` live Python objects;
/// `out_values` is NULL or valid for writes.
// Boundary: none; `extern "C"`: no callback runs here, and a panic
// aborts; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_args_new(
    items: *const *mut c_void,
    nargs: usize,
    out_values: *mut *const Value,
) -> *mut c_void {
    if out_values.is_null() || (nargs > 0 && items.is_null()) {
        return std::ptr::null_mut();
    }
    if nargs > ffi::CBREG_MAX_ARGS {
        // SAFETY: the GIL is held.
        unsafe { set_error(Status::InvalidArgument) };
        return std::ptr::null_mut();
    }
    let mut args = Box::new(PyArgs {
        values: Vec::with_capacity(nargs),
        lists: Lists::default(),
    });
    for i in 0..nargs {
        // SAFETY: the GIL is held; `items[i]` is a live object (i < nargs),
        // which the caller keeps alive while the values are used.
        if unsafe { args.push(*items.add(i) as PyObj) }.is_none() {
            return std::ptr::null_mut();
        }
    }
    // SAFETY: `out_values` is checked non-null; the caller made it valid.
    unsafe { write_out(out_values, args.values.as_ptr()) };
    Box::into_raw(args).cast()
}

/// Invokes entry `id` of `reg` on this thread from Python (GIL held) with
/// the Python objects `items[0..nargs]` as its arguments, converted as by
/// `cbreg_py_args_new`, and returns the callback's return value as a new
/// Python object (as by `cbreg_py_value_to_object`), or NULL with a Python
/// exception set: the callback's own when it raised (registered with
/// `CBREG_PY_UNRAISABLE`: `cbreg.CallbackFailed`), or the one for the
/// failing status (`cbreg_py_set_error`). No value vector is allocated.
///
/// A Python callback of the calling interpreter gets each argument that
/// would convert back to an equal object of its very type (None, bool, an
/// int, float, str or bytes that is not of a subclass) as that object, and
/// such a result comes back as itself: the same values as through a
/// `cbreg_value`, without making them again.
///
/// # Safety
/// The GIL is held; `items` points to `nargs` live Python objects.
// Boundary: none on purpose (`C-unwind`): CPython may end this thread with
// a forced unwind that must pass; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_py_invoke(
    reg: RegistryHandle,
    id: u64,
    items: *const *mut c_void,
    nargs: usize,
) -> *mut c_void {
    if (nargs > 0 && items.is_null()) || nargs > ffi::CBREG_MAX_ARGS {
        // SAFETY: the GIL is held.
        unsafe { set_error(Status::InvalidArgument) };
        return null_mut();
    }
    let items = items.cast::<PyObj>();
    let mut values = [std::mem::MaybeUninit::<Value>::uninit(); ffi::CBREG_MAX_ARGS];
    let mut lists = Lists::default();
    let mut as_is = 0u64;
    for (i, value) in values.iter_mut().enumerate().take(nargs) {
        // SAFETY: the GIL is held; `items[i]` is a live object (i < nargs),
        // alive for this call, which is as long as the value is used.
        let Some((v, same)) = (unsafe { arg_value(*items.add(i), &mut lists) }) else {
            return null_mut();
        };
        value.write(v);
        as_is |= u64::from(same) << i;
    }
    // The first `nargs` are written.
    let values = values.as_ptr().cast::<Value>();
    let mut ret = Value::none();
    let call = PyCall {
        values,
        nargs,
        ret: &ret,
        items,
        as_is,
        result: Cell::new(null_mut()),
    };
    let status = {
        let _scope = PyCallScope::enter(&call);
        // SAFETY: `values` holds `nargs` values, written above; `ret` is ours.
        unsafe { ffi::cbreg_invoke(reg, id, values, nargs, &mut ret) }
    };
    let result = call.result.take();
    // SAFETY: the GIL is held (this function's contract); the result
    // object, when set, is a new reference handed back or released once;
    // `ret` is a value the entry filled, dropped once.
    unsafe {
        let failed = status != Status::Ok || !py::PyErr_Occurred().is_null();
        let out = if failed {
            set_error(if status == Status::Ok {
                Status::CallbackFailed
            } else {
                status
            });
            null_mut()
        } else if !result.is_null() {
            return result.cast();
        } else {
            match to_python(&ret) {
                Ok(obj) => obj,
                Err(e) => {
                    set_error(e);
                    null_mut()
                }
            }
        };
        if !result.is_null() {
            py::Py_DecRef(result);
        }
        ret.drop_owned();
        out.cast()
    }
}

/// Frees what `cbreg_py_args_new` returned (NULL is ignored).
///
/// # Safety
/// `args` came from `cbreg_py_args_new` and is freed once.
// Boundary: none; `extern "C"`: no callback runs here, and a panic
// aborts; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_args_free(args: *mut c_void) {
    if !args.is_null() {
        // SAFETY: made by `cbreg_py_args_new` with Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(args.cast::<PyArgs>()) });
    }
}

/// A new Python object for `*value` (GIL held): None, bool, int, float,
/// str, bytes, a list for an array, an int for a pointer. NULL with a
/// Python exception set on failure (a bad tag, invalid UTF-8).
///
/// # Safety
/// The GIL is held; `value` is NULL or a valid value.
// Boundary: none; `extern "C"`: no callback runs here, and a panic
// aborts; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_value_to_object(value: *const Value) -> *mut c_void {
    // SAFETY: the GIL is held; `value` is NULL or valid (the caller's
    // promise).
    unsafe {
        let Some(value) = value.as_ref() else {
            set_error(Status::InvalidArgument);
            return std::ptr::null_mut();
        };
        match to_python(value) {
            Ok(obj) => obj.cast(),
            Err(status) => {
                set_error(status);
                std::ptr::null_mut()
            }
        }
    }
}

/// Sets the Python exception for `status` (GIL held), unless one is
/// already pending: the `cbreg` package's class (cbreg.NotFound,
/// cbreg.Closed, ...) when it is importable, RuntimeError otherwise.
///
/// # Safety
/// The GIL is held.
// Boundary: none; `extern "C"`: no callback runs here, and a panic
// aborts; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_set_error(status: u32) {
    let status = crate::status::ALL_STATUSES
        .get(status as usize)
        .copied()
        .unwrap_or(Status::Internal);
    // SAFETY: the GIL is held (the caller's promise).
    unsafe { set_error(status) };
}

/// Registers the Python callable `callable` (a `PyObject *`) in `reg` and
/// writes its id to `*out_id`. The caller holds the GIL. `flags`: 0,
/// `CBREG_ONCE`, `CBREG_PY_UNRAISABLE`, or both.
///
/// The entry belongs to the calling interpreter: it is only ever called in
/// that interpreter (a native thread gets a thread state there for the
/// call), and it is released when that interpreter exits. The entry takes a
/// strong reference, dropped in that interpreter on release; if it is
/// finalizing or gone by then, the reference is deliberately leaked and
/// counted in `cbreg_stats.leaked`.
///
/// Invoking it from any thread: when the interpreter is finalizing or its
/// exit hook has run (and the caller is not already running Python there)
/// it returns `CLOSED` without touching Python; otherwise it attaches,
/// converts the arguments (invalid UTF-8 in a string: `CALLBACK_FAILED`
/// with callback code `INVALID_ARGUMENT`, nothing called) and calls. A
/// returned None, bool, int (64-bit), float, str or bytes fills `ret` (str
/// and bytes own the Python object: release them with `cbreg_value_drop`);
/// other results leave it none.
///
/// If the callback raises, the caller gets `CALLBACK_FAILED` and:
/// - on a thread that holds the GIL in the entry's interpreter (fired from
///   Python, or from native code that Python called): without
///   `CBREG_PY_UNRAISABLE` the exception is left set, and that caller must
///   hand it on (return NULL to Python, or throw `nanobind::python_error`);
///   with it, the exception goes to `sys.unraisablehook` and none is left
///   set;
/// - on any other thread: it goes to `sys.unraisablehook`.
///
/// With an exception already set on the calling thread, the callback is not
/// called: `CALLBACK_FAILED`, the pending exception left as it was.
///
/// `CLOSED` after the calling interpreter's exit hook has run. From a
/// subinterpreter on a CPython where that cannot be made safe (other than
/// 3.11, whose subinterpreters share one GIL) it refuses with
/// `INVALID_ARGUMENT` and sets a Python `RuntimeError` saying so.
///
/// # Safety
/// The GIL is held; `callable` is NULL or a live Python object; `out_id`
/// is NULL or valid for writes.
// Boundary: none on purpose (`C-unwind`): CPython may end this thread with
// a forced unwind that must pass; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_py_register(
    reg: RegistryHandle,
    callable: *mut c_void,
    flags: u32,
    out_id: *mut u64,
) -> Status {
    if callable.is_null() || out_id.is_null() || flags & !(CBREG_ONCE | CBREG_PY_UNRAISABLE) != 0 {
        return Status::InvalidArgument;
    }
    if !interpreter_alive() {
        return Status::Closed;
    }
    // SAFETY: the caller holds the GIL, so the current interpreter is alive;
    // `callable` is a live object and `out_id` valid (both checked non-null),
    // and the reference taken is given to the entry or back.
    unsafe {
        set_up_process();
        let interp = match interp_record(py::PyInterpreterState_Get()) {
            Ok(i) => i,
            Err(e) => return e,
        };
        if !interp.main.load(Relaxed) && !subinterpreters_supported() {
            py::PyErr_SetString(
                py::PyExc_RuntimeError,
                b"cbreg: Python callbacks cannot be registered from a subinterpreter on this \
                  CPython (supported on 3.11, whose subinterpreters share the GIL)\0"
                    .as_ptr()
                    .cast(),
            );
            return Status::InvalidArgument;
        }
        if interp.closed.load(SeqCst) {
            return Status::Closed;
        }
        if let Err(e) = ensure_hooks(interp) {
            return e;
        }
        py::Py_IncRef(callable as PyObj);
        interp.entries.fetch_add(1, SeqCst);
        let entry = new_entry(callable as PyObj, interp, flags);
        let ctx = entry as *const PyEntry as *mut c_void;
        // Through the C ABI, so the entry lands in the process's registries
        // whichever copy of cbreg owns them.
        let mut id = 0;
        match ffi::cbreg_register(
            reg,
            Some(call_python),
            ctx,
            Some(release_python),
            flags & CBREG_ONCE | CBREG_PROMPT,
            &mut id,
        ) {
            Status::Ok => {
                write_out(out_id, id);
                Status::Ok
            }
            e => {
                // Not registered: the reference is still ours.
                py::Py_DecRef(callable as PyObj);
                interp.entries.fetch_sub(1, SeqCst);
                free_entry(entry);
                e
            }
        }
    }
}

/// The exit hook of the calling interpreter (GIL held there). In the main
/// interpreter it is the process's exit: it closes Python registration
/// everywhere (later `cbreg_py_register` calls get `CLOSED`), stops native
/// threads from entering any interpreter (waiting, GIL released, well under
/// a second in all for those already inside; those still inside then are
/// left to CPython's finalization), and releases the Python entries of every
/// registry while the interpreters are still whole. Native entries stay
/// live. In a subinterpreter it does the same for that interpreter only
/// (waiting for native threads inside its callbacks to return: CPython
/// cannot end an interpreter with another thread state in it).
/// `cbreg_py_install_atexit` arranges for it to run. Idempotent.
// Boundary: none on purpose (`C-unwind`): CPython may end this thread with
// a forced unwind that must pass; see the `python` module doc.
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_atexit_clear() -> Status {
    // SAFETY: callable without the GIL.
    if unsafe { py::Py_IsInitialized() } == 0 {
        return Status::Ok;
    }
    // SAFETY: initialized; the GIL is checked before Python is touched.
    unsafe {
        if gil_holder().is_none() {
            return Status::InvalidArgument;
        }
        match interp_record(py::PyInterpreterState_Get()) {
            Ok(interp) => {
                interpreter_exit(interp);
                Status::Ok
            }
            Err(e) => e,
        }
    }
}

/// Registers `cbreg_py_atexit_clear` with the calling interpreter's
/// `atexit` (once per interpreter, however many extension modules call it;
/// a first call in a subinterpreter also installs the main interpreter's).
/// Call it with the GIL held, typically from module init.
///
/// # Safety
/// The GIL is held.
// Boundary: none on purpose (`C-unwind`): CPython may end this thread with
// a forced unwind that must pass; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_py_install_atexit() -> Status {
    if !interpreter_alive() {
        return Status::Closed;
    }
    // SAFETY: the caller holds the GIL.
    unsafe {
        set_up_process();
        match interp_record(py::PyInterpreterState_Get()) {
            Ok(interp) => ensure_hooks(interp).err().unwrap_or(Status::Ok),
            Err(e) => e,
        }
    }
}

/// Whether Python registration is closed in the calling interpreter (its
/// exit hook ran). Call it with the GIL held.
// Boundary: none on purpose (`C-unwind`): it only reads, and a panic
// unwinds to the caller; see the `python` module doc.
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_is_closed() -> bool {
    // SAFETY: callable without the GIL; the interpreter is read with it.
    unsafe {
        if py::Py_IsInitialized() == 0 || gil_holder().is_none() {
            return true;
        }
        interp_record(py::PyInterpreterState_Get()).map_or(true, |i| i.closed.load(SeqCst))
    }
}
