//! Diagnostics that tests of the adapter call and no user needs: not part
//! of the API, and left out of `include/cbreg.h` (the C++ shim's
//! `cbreg_python.hpp` declares them for the Python package's `_core`).

use std::sync::atomic::Ordering::{Acquire, SeqCst};

use pyo3_ffi as py;

use super::abi::write_out;
use super::cpython::{gil_holder, guard_api};
use super::interp::interp_record;
use super::kept::KEPT_LIVE;
use crate::Status;

/// Diagnostics, for tests: writes to `*kept` how many thread states this
/// copy of the adapter keeps for native threads right now (one per native
/// thread that called into the main interpreter and has not exited), and
/// to `*in_interpreter` how many thread states the calling interpreter has
/// (its Python threads' and those made for native threads). Either may be
/// NULL. Call it with the GIL held, while no other thread makes or ends a
/// thread state (CPython's list is walked without its lock);
/// `INVALID_ARGUMENT` without the GIL.
///
/// # Safety
/// `kept` and `in_interpreter` are each NULL or valid for writes; no other
/// thread makes or ends a thread state meanwhile.
// Boundary: none on purpose (`C-unwind`): it only reads, and a panic
// unwinds to the caller; see the `python` module doc.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_py_thread_states(
    kept: *mut usize,
    in_interpreter: *mut usize,
) -> Status {
    // SAFETY: `Py_IsInitialized` is callable at any time; the list is read
    // with the GIL, unchanged meanwhile (the caller's promise); the out
    // pointers are checked non-null and otherwise valid.
    unsafe {
        if py::Py_IsInitialized() == 0 || gil_holder().is_none() {
            return Status::InvalidArgument;
        }
        if !kept.is_null() {
            write_out(kept, KEPT_LIVE.load(SeqCst));
        }
        if !in_interpreter.is_null() {
            let mut n = 0;
            let mut t = py::PyInterpreterState_ThreadHead(py::PyInterpreterState_Get());
            while !t.is_null() {
                n += 1;
                t = py::PyThreadState_Next(t);
            }
            write_out(in_interpreter, n);
        }
    }
    Status::Ok
}

/// Diagnostics, for tests: whether threads attach to the calling
/// interpreter under an interpreter guard (PEP 788, CPython 3.15+) rather
/// than after a look at whether it is finalizing. Call it with the GIL
/// held; false without it.
// Boundary: none on purpose (`C-unwind`): it only reads, and a panic
// unwinds to the caller; see the `python` module doc.
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_interpreter_guards() -> bool {
    // SAFETY: callable without the GIL; the interpreter is read with it.
    unsafe {
        if py::Py_IsInitialized() == 0 || gil_holder().is_none() {
            return false;
        }
        guard_api().is_some()
            && interp_record(py::PyInterpreterState_Get())
                .is_ok_and(|i| !i.view.load(Acquire).is_null())
    }
}
