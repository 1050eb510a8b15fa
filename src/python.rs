//! The Python adapter: entries that own a Python callable (feature `python`).
//!
//! Built with pyo3-ffi's `extension-module` feature, so this library never
//! links libpython: the symbols come from the interpreter that loads the
//! extension module that loads us. Only exported CPython functions are used
//! (no inline refcount macros), so one build serves any CPython 3.x.
//!
//! Shutdown safety rests on one process-wide *gate*. Native threads count
//! themselves in before touching Python; the `atexit` hook shuts the gate
//! and, with the GIL released, waits for those inside to leave. After the
//! hook no cbreg thread ever takes the GIL, so none can be caught by
//! CPython's "exit the thread that wants the GIL during finalization".

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3_ffi as py;

use crate::ffi::{boundary, core_of, RegistryHandle, CBREG_ONCE};
use crate::registry::{self};
use crate::{Status, Tag, Value};

type PyObj = *mut py::PyObject;

// ---- the gate ----

const GATE_OPEN: u8 = 0;
/// The atexit hook is draining: no new calls, releases still allowed.
const GATE_DRAINING: u8 = 1;
const GATE_CLOSED: u8 = 2;

static GATE_STATE: AtomicU8 = AtomicU8::new(GATE_OPEN);
static GATE_INSIDE: AtomicUsize = AtomicUsize::new(0);
/// Set by `cbreg_py_atexit_clear`: `cbreg_py_register` answers `CLOSED`.
static REGISTRATION_CLOSED: AtomicBool = AtomicBool::new(false);
static ATEXIT_INSTALLED: AtomicBool = AtomicBool::new(false);
/// How long the atexit hook waits for native threads inside Python.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// This thread is running the atexit hook (its own releases may pass).
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A pass through the gate, taken before touching Python; leaving on drop.
struct GatePass;

impl GatePass {
    /// Counts in first, then looks at the state (SeqCst both): the hook
    /// either sees us counted or we see its new state.
    fn enter(for_release: bool) -> Option<GatePass> {
        GATE_INSIDE.fetch_add(1, SeqCst);
        let state = GATE_STATE.load(SeqCst);
        if state == GATE_OPEN
            || (state == GATE_DRAINING && for_release)
            || IN_HOOK.with(|h| h.get())
        {
            Some(GatePass)
        } else {
            GATE_INSIDE.fetch_sub(1, SeqCst);
            None
        }
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        GATE_INSIDE.fetch_sub(1, SeqCst);
    }
}

/// Moves the gate to `state` and waits (GIL released by the caller) until
/// every thread that entered under the old state has left.
fn gate_shut(state: u8) -> bool {
    GATE_STATE.fetch_max(state, SeqCst);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while GATE_INSIDE.load(SeqCst) != 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

// ---- interpreter liveness ----

/// `Py_IsFinalizing` (3.13+) or `_Py_IsFinalizing` (older), looked up once.
fn is_finalizing() -> bool {
    type Probe = unsafe extern "C" fn() -> c_int;
    static PROBE: OnceLock<Option<Probe>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        for name in [&b"Py_IsFinalizing\0"[..], &b"_Py_IsFinalizing\0"[..]] {
            // SAFETY: dlsym with a NUL-terminated name; the symbol, when
            // found, has this signature in every CPython that exports it.
            let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
            if !sym.is_null() {
                return Some(unsafe { std::mem::transmute::<*mut c_void, Probe>(sym) });
            }
        }
        None
    });
    // SAFETY: a CPython API function that may be called without the GIL.
    probe.is_some_and(|f| unsafe { f() } != 0)
}

/// Python may be entered: initialized and not finalizing.
fn interpreter_alive() -> bool {
    // SAFETY: both may be called without the GIL, before and after init.
    (unsafe { py::Py_IsInitialized() != 0 }) && !is_finalizing()
}

/// Holds the GIL for its lifetime (taken only if this thread lacked it).
struct Gil(Option<py::PyGILState_STATE>);

impl Gil {
    /// # Safety
    /// The interpreter is alive and a `GatePass` is held for as long as
    /// this value.
    unsafe fn ensure(have_it: bool) -> Gil {
        Gil((!have_it).then(|| py::PyGILState_Ensure()))
    }
}

impl Drop for Gil {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            // SAFETY: pairs with the Ensure above, on the same thread.
            unsafe { py::PyGILState_Release(state) };
        }
    }
}

/// Runs `f` with the GIL when Python may be entered from this thread;
/// otherwise returns `None` without touching Python.
///
/// The pass comes first, for every caller: while it is held the atexit
/// hook cannot finish, so finalization cannot have started behind our
/// back and `PyGILState_Check` (which answers 1 once its TSS key is gone
/// late in finalization) can be trusted.
fn with_python<R>(for_release: bool, f: impl FnOnce(bool) -> R) -> Option<R> {
    let _pass = GatePass::enter(for_release)?;
    if !interpreter_alive() {
        return None;
    }
    // SAFETY: the interpreter is initialized; callable without the GIL.
    let have_gil = unsafe { py::PyGILState_Check() } != 0;
    // SAFETY: alive, and the pass is held across the call.
    let _gil = unsafe { Gil::ensure(have_gil) };
    Some(f(have_gil))
}

// ---- values <-> Python objects (GIL held) ----

/// A new reference for `v`, or `Err` (no Python error left set).
unsafe fn to_python(v: &Value) -> Result<PyObj, Status> {
    let obj = match v.tag().ok_or(Status::InvalidArgument)? {
        Tag::None => {
            let none = py::Py_None();
            py::Py_IncRef(none);
            none
        }
        Tag::Bool => py::PyBool_FromLong(v.as_bool().ok_or(Status::InvalidArgument)? as _),
        Tag::I64 => py::PyLong_FromLongLong(v.r#as.i64),
        Tag::F64 => py::PyFloat_FromDouble(v.r#as.f64),
        Tag::Str => {
            let text = v.as_bytes().unwrap_or_default();
            if std::str::from_utf8(text).is_err() {
                return Err(Status::InvalidArgument);
            }
            py::PyUnicode_FromStringAndSize(text.as_ptr().cast(), text.len() as _)
        }
        Tag::Bytes => {
            let b = v.as_bytes().unwrap_or_default();
            py::PyBytes_FromStringAndSize(b.as_ptr().cast(), b.len() as _)
        }
        Tag::I64Array => list_of(v.as_i64s().unwrap_or_default(), |x| {
            py::PyLong_FromLongLong(*x)
        })?,
        Tag::F64Array => list_of(v.as_f64s().unwrap_or_default(), |x| {
            py::PyFloat_FromDouble(*x)
        })?,
        Tag::Ptr => py::PyLong_FromVoidPtr(v.r#as.ptr),
    };
    if obj.is_null() {
        py::PyErr_Clear();
        return Err(Status::NoMemory);
    }
    Ok(obj)
}

unsafe fn list_of<T>(items: &[T], make: impl Fn(&T) -> PyObj) -> Result<PyObj, Status> {
    let list = py::PyList_New(items.len() as _);
    if list.is_null() {
        py::PyErr_Clear();
        return Err(Status::NoMemory);
    }
    for (i, x) in items.iter().enumerate() {
        let item = make(x);
        if item.is_null() {
            py::PyErr_Clear();
            py::Py_DecRef(list);
            return Err(Status::NoMemory);
        }
        py::PyList_SetItem(list, i as _, item); // steals `item`
    }
    Ok(list)
}

/// Drops a returned str/bytes: its `owner` is the Python object.
unsafe extern "C-unwind" fn drop_returned(owner: *mut c_void) {
    let obj = owner as PyObj;
    // Finalizing: the object is left to the interpreter.
    let _ = with_python(true, |_| py::Py_DecRef(obj));
}

/// Stores the callback's result in `*ret`; takes ownership of `result`.
/// Types with no `cbreg_value` form leave `*ret` none.
unsafe fn store_result(result: PyObj, ret: &mut Value) {
    let mut keep = false;
    if result == py::Py_None() {
        // none already
    } else if py::PyBool_Check(result) != 0 {
        *ret = Value::bool(result == py::Py_True());
    } else if py::PyLong_Check(result) != 0 {
        let mut overflow = 0;
        let n = py::PyLong_AsLongLongAndOverflow(result, &mut overflow);
        let failed = n == -1 && !py::PyErr_Occurred().is_null();
        if overflow == 0 && !failed {
            *ret = Value::i64(n);
        }
        py::PyErr_Clear();
    } else if py::PyFloat_Check(result) != 0 {
        *ret = Value::f64(py::PyFloat_AsDouble(result));
    } else if py::PyUnicode_Check(result) != 0 {
        let mut len: py::Py_ssize_t = 0;
        let p = py::PyUnicode_AsUTF8AndSize(result, &mut len);
        if p.is_null() {
            py::PyErr_Clear(); // lone surrogates: no UTF-8 form
        } else {
            // The UTF-8 buffer lives as long as the str object.
            *ret = Value::str(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                p.cast(),
                len as usize,
            )));
            keep = true;
        }
    } else if py::PyBytes_Check(result) != 0 {
        let mut p: *mut c_char = std::ptr::null_mut();
        let mut len: py::Py_ssize_t = 0;
        if py::PyBytes_AsStringAndSize(result, &mut p, &mut len) == 0 {
            *ret = Value::bytes(std::slice::from_raw_parts(p.cast(), len as usize));
            keep = true;
        } else {
            py::PyErr_Clear();
        }
    }
    if keep {
        ret.drop = Some(drop_returned);
        ret.owner = result.cast();
    } else {
        py::Py_DecRef(result);
    }
}

// ---- the entry: call and release ----

unsafe extern "C-unwind" fn call_python(
    ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> u32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        with_python(false, |have_gil| {
            // SAFETY: GIL held; ctx is the callable we hold a reference to;
            // args and ret come from invoke.
            unsafe { call_with_gil(ctx as PyObj, args, nargs, ret, have_gil) }
        })
        .unwrap_or(Status::Closed)
    }));
    outcome.unwrap_or(Status::CallbackFailed) as u32
}

unsafe fn call_with_gil(
    callable: PyObj,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
    from_python: bool,
) -> Status {
    let args = if nargs == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(args, nargs)
    };
    let tuple = py::PyTuple_New(nargs as _);
    if tuple.is_null() {
        py::PyErr_Clear();
        return Status::NoMemory;
    }
    for (i, v) in args.iter().enumerate() {
        match to_python(v) {
            Ok(obj) => {
                py::PyTuple_SetItem(tuple, i as _, obj); // steals `obj`
            }
            Err(e) => {
                py::Py_DecRef(tuple);
                return e;
            }
        }
    }
    let result = py::PyObject_Call(callable, tuple, std::ptr::null_mut());
    py::Py_DecRef(tuple);
    if result.is_null() {
        // Fired from Python: leave the exception for the caller to raise.
        if !from_python {
            py::PyErr_WriteUnraisable(callable);
        }
        return Status::CallbackFailed;
    }
    match ret.as_mut() {
        Some(ret) => store_result(result, ret),
        None => py::Py_DecRef(result),
    }
    Status::Ok
}

unsafe extern "C-unwind" fn release_python(ctx: *mut c_void) {
    let callable = ctx as PyObj;
    let released = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: GIL held; we own this reference.
        with_python(true, |_| unsafe { py::Py_DecRef(callable) }).is_some()
    }));
    if !matches!(released, Ok(true)) {
        registry::mark_release_leaked();
    }
}

// ---- the atexit hook ----

unsafe extern "C" fn atexit_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    cbreg_py_atexit_clear();
    let none = py::Py_None();
    py::Py_IncRef(none);
    none
}

struct HookDef(std::cell::UnsafeCell<py::PyMethodDef>);
// SAFETY: written only by CPython's own bookkeeping, under the GIL.
unsafe impl Sync for HookDef {}

static HOOK_DEF: HookDef = HookDef(std::cell::UnsafeCell::new(py::PyMethodDef {
    ml_name: b"cbreg_atexit_clear\0".as_ptr().cast(),
    ml_meth: py::PyMethodDefPointer {
        PyCFunction: atexit_hook,
    },
    ml_flags: py::METH_NOARGS,
    ml_doc: b"Clears cbreg's Python callbacks before the interpreter finalizes.\0"
        .as_ptr()
        .cast(),
}));

unsafe fn install_hook() -> Result<(), Status> {
    let func = py::PyCFunction_New(HOOK_DEF.0.get(), std::ptr::null_mut());
    if func.is_null() {
        return Err(Status::NoMemory);
    }
    let atexit = py::PyImport_ImportModule(b"atexit\0".as_ptr().cast());
    if atexit.is_null() {
        py::Py_DecRef(func);
        return Err(Status::Internal);
    }
    let done = py::PyObject_CallMethod(
        atexit,
        b"register\0".as_ptr().cast(),
        b"(O)\0".as_ptr().cast(),
        func,
    );
    py::Py_DecRef(atexit);
    py::Py_DecRef(func);
    if done.is_null() {
        return Err(Status::Internal);
    }
    py::Py_DecRef(done);
    Ok(())
}

// ---- the C ABI ----

fn write_id(out_id: *mut u64, id: u64) {
    // SAFETY: checked non-null by the caller; C passes a valid pointer.
    unsafe { out_id.write(id) };
}

/// Registers the Python callable `callable` (a `PyObject *`) in `reg` and
/// writes its id to `*out_id`. The caller holds the GIL. `flags` is 0 or
/// `CBREG_ONCE`.
///
/// The entry takes a strong reference, dropped (GIL taken) on release; if
/// the interpreter is finalizing by then, the reference is deliberately
/// leaked and counted in `cbreg_stats.leaked`.
///
/// Invoking it from any thread: when the interpreter is finalizing (or the
/// atexit hook has run and the caller lacks the GIL) it returns `CLOSED`
/// without touching Python; otherwise it takes the GIL, converts the
/// arguments (invalid UTF-8 in a string: `INVALID_ARGUMENT`, nothing
/// called) and calls. A returned None, bool, int (64-bit), float, str or
/// bytes fills `ret` (str and bytes own the Python object: release them
/// with `cbreg_value_drop`); other results leave it none. If the callback
/// raises: a caller that held the GIL (fired from Python) gets
/// `CALLBACK_FAILED` with the exception still set, to re-raise; any other
/// caller gets `CALLBACK_FAILED` and the exception goes to
/// `sys.unraisablehook`.
///
/// `CLOSED` after `cbreg_py_atexit_clear` has run.
#[no_mangle]
pub extern "C" fn cbreg_py_register(
    reg: RegistryHandle,
    callable: *mut c_void,
    flags: u32,
    out_id: *mut u64,
) -> Status {
    boundary(|| {
        let core = core_of(reg)?;
        if callable.is_null() || out_id.is_null() || flags & !CBREG_ONCE != 0 {
            return Err(Status::InvalidArgument);
        }
        if REGISTRATION_CLOSED.load(SeqCst) || !interpreter_alive() {
            return Err(Status::Closed);
        }
        // SAFETY: the caller holds the GIL and passes a live object.
        unsafe { py::Py_IncRef(callable as PyObj) };
        let once = flags & CBREG_ONCE != 0;
        match core.register(Some(call_python), callable, Some(release_python), once) {
            Ok(id) => {
                write_id(out_id, id);
                Ok(())
            }
            Err(e) => {
                // SAFETY: not registered, so the reference is still ours.
                unsafe { py::Py_DecRef(callable as PyObj) };
                Err(e)
            }
        }
    })
}

/// The exit hook: closes Python registration process-wide (later
/// `cbreg_py_register` calls get `CLOSED`), stops native threads from
/// entering Python (waiting, GIL released, up to a few seconds for those
/// already inside), then clears the default registry and runs the
/// releases while the interpreter is still whole. Call it with the GIL
/// held; `cbreg_py_install_atexit` arranges that. Idempotent.
#[no_mangle]
pub extern "C" fn cbreg_py_atexit_clear() -> Status {
    boundary(|| {
        REGISTRATION_CLOSED.store(true, SeqCst);
        let core = registry::default_core();
        // SAFETY: the caller holds the GIL (checked); the save/restore pair
        // lets native threads inside Python finish while we wait.
        let have_gil = interpreter_alive() && unsafe { py::PyGILState_Check() } != 0;
        let drain = |state| {
            if have_gil {
                let saved = unsafe { py::PyEval_SaveThread() };
                gate_shut(state);
                unsafe { py::PyEval_RestoreThread(saved) };
            } else {
                gate_shut(state);
            }
        };
        IN_HOOK.with(|h| h.set(true));
        drain(GATE_DRAINING); // no new calls from native threads
        core.clear();
        drain(GATE_DRAINING); // releases deferred to invokers run there
        core.collect();
        drain(GATE_CLOSED);
        core.collect();
        IN_HOOK.with(|h| h.set(false));
        Ok(())
    })
}

/// Registers `cbreg_py_atexit_clear` with Python's `atexit` module, once
/// per process however many extension modules call it (the flag lives in
/// this library). Call it with the GIL held, typically from module init.
#[no_mangle]
pub extern "C" fn cbreg_py_install_atexit() -> Status {
    boundary(|| {
        if ATEXIT_INSTALLED.swap(true, SeqCst) {
            return Ok(());
        }
        // SAFETY: the caller holds the GIL.
        let installed = unsafe { install_hook() };
        if installed.is_err() {
            ATEXIT_INSTALLED.store(false, SeqCst);
        }
        installed
    })
}

/// Whether Python registration is closed (`cbreg_py_atexit_clear` ran).
#[no_mangle]
pub extern "C" fn cbreg_py_is_closed() -> bool {
    REGISTRATION_CLOSED.load(SeqCst)
}
