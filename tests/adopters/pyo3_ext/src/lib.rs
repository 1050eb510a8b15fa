//! An extension that adopts cbreg from Rust: Python callables go in through
//! cbreg's Python adapter, native code fires ids with the Rust API.
//!
//! The same source is built against the oldest, a middle and the newest
//! pyo3 that cbreg's `python` feature accepts (mk/adopters.mk makes the
//! copies, each its own module), so it uses only what all of them have.

use cbreg::{Arg, Registry, Status};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// `Ok`, or the exception cbreg left set, or one naming the status.
fn check(py: Python<'_>, status: Status) -> PyResult<()> {
    if status == Status::Ok {
        return Ok(());
    }
    Err(PyErr::take(py).unwrap_or_else(|| PyRuntimeError::new_err(format!("cbreg: {status:?}"))))
}

/// Registers `fn` in the default registry; returns its id.
#[pyfunction]
fn subscribe(callable: &Bound<'_, PyAny>) -> PyResult<u64> {
    let mut id = 0;
    let reg = cbreg::ffi::cbreg_default();
    // SAFETY: the GIL is held (`callable` is bound to it), `callable` is a
    // live object and `id` a valid place for the id.
    let status = unsafe { cbreg::python::cbreg_py_register(reg, callable.as_ptr().cast(), 0, &mut id) };
    check(callable.py(), status)?;
    Ok(id)
}

/// Invokes `id` with `(freq, name)` on this thread.
#[pyfunction]
fn invoke(py: Python<'_>, id: u64, freq: f64, name: &str) -> PyResult<()> {
    check(
        py,
        Registry::global().call(id, &[Arg::f64(freq), Arg::str(name)]),
    )
}

/// Invokes `id` with `(freq, name)` from a new native thread; returns the
/// status code.
#[pyfunction]
fn fire_on_thread(_py: Python<'_>, id: u64, freq: f64, name: String) -> u32 {
    // The GIL is let go while the thread runs (it calls into Python). Through
    // pyo3's ffi, which is the same in every pyo3 this project is built with
    // (the safe wrapper was renamed in 0.26).
    // SAFETY: this thread holds the GIL (the `Python` token); nothing here
    // touches Python objects until it is taken back.
    let saved = unsafe { pyo3::ffi::PyEval_SaveThread() };
    let status = std::thread::spawn(move || {
        Registry::global().call(id, &[Arg::f64(freq), Arg::str(&name)]) as u32
    })
    .join()
    .unwrap_or(u32::MAX);
    // SAFETY: `saved` is this thread's state, released just above.
    unsafe { pyo3::ffi::PyEval_RestoreThread(saved) };
    status
}

#[pyfunction]
fn unregister(id: u64) -> bool {
    Registry::global().unregister(id) == Status::Ok
}

#[pyfunction]
fn live() -> u64 {
    Registry::global().stats().live
}

#[pymodule]
fn pyo3_adopter(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: module init runs with the GIL held.
    check(m.py(), unsafe { cbreg::python::cbreg_py_install_atexit() })?;
    m.add_function(wrap_pyfunction!(subscribe, m)?)?;
    m.add_function(wrap_pyfunction!(invoke, m)?)?;
    m.add_function(wrap_pyfunction!(fire_on_thread, m)?)?;
    m.add_function(wrap_pyfunction!(unregister, m)?)?;
    m.add_function(wrap_pyfunction!(live, m)?)?;
    Ok(())
}
