//! Which CPython is running, and the one place that knows how CPythons
//! differ: functions looked up by name at run time (`lookup`, `api`), the
//! free-threaded build, PEP 788's interpreter guards (CPython 3.15+, behind
//! `AttachPermit`), and the one layout the adapter reads, 3.11's thread
//! state (`probe_thread_id_offset`, checked at start-up), which answers
//! `gil_holder` there. The other files ask questions here (`gil_holder`,
//! `interpreter_alive`, `subinterpreters_supported`) and never look at a
//! version themselves, so a new CPython means a change here alone.

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr::null_mut;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

use pyo3_ffi as py;

use super::fork::{close_published, take_published};
use super::{InterpState, PyObj, TState};

/// The running CPython's minor version (3.x), read once.
pub(super) fn py_minor() -> u32 {
    static MINOR: OnceLock<u32> = OnceLock::new();
    *MINOR.get_or_init(|| {
        // SAFETY: a static NUL-terminated string, callable at any time.
        let version = unsafe { std::ffi::CStr::from_ptr(py::Py_GetVersion()) };
        let text = version.to_str().unwrap_or("");
        text.split(|c: char| !c.is_ascii_digit())
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    })
}

/// A CPython function looked up by name (the first name that exists).
pub(super) fn lookup<F: Copy>(cell: &'static OnceLock<Option<F>>, names: &[&[u8]]) -> Option<F> {
    *cell.get_or_init(|| {
        names.iter().find_map(|name| {
            // SAFETY: dlsym with a NUL-terminated name.
            let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
            // SAFETY: F is a function pointer type of the symbol's signature.
            (!sym.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&sym) })
        })
    })
}

/// Whether the running CPython is a free-threaded build (3.13t and later):
/// only those export `_Py_DecRefShared`, which their `Py_DECREF` calls.
/// (Whether the GIL is on at run time is another question: such a build
/// stops the world for its collections either way.)
pub(super) fn free_threaded_build() -> bool {
    type DecRefShared = unsafe extern "C" fn(PyObj);
    static DECREF_SHARED: OnceLock<Option<DecRefShared>> = OnceLock::new();
    lookup(&DECREF_SHARED, &[b"_Py_DecRefShared\0"]).is_some()
}

pub(super) type VectorcallFn = unsafe extern "C" fn(PyObj, *const PyObj, usize, PyObj) -> PyObj;

/// The CPython functions a call uses whose names differ between versions,
/// looked up together once. Where the running CPython has none of the
/// names, a stand-in gives the answer the old code gave.
pub(super) struct Api {
    /// `PyThreadState_GetUnchecked` (3.13+) or `_PyThreadState_UncheckedGet`.
    pub(super) current_tstate: unsafe extern "C" fn() -> TState,
    /// Whether `current_tstate` answers for the calling thread (3.12+).
    pub(super) current_per_thread: bool,
    /// `Py_IsFinalizing` (3.13+) or `_Py_IsFinalizing`.
    pub(super) is_finalizing: unsafe extern "C" fn() -> c_int,
    /// `PyObject_Vectorcall` (exported from 3.11 on; no keywords), else
    /// `PyObject_VectorcallDict` with no dict.
    pub(super) vectorcall: VectorcallFn,
}

#[inline]
pub(super) fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        type Current = unsafe extern "C" fn() -> TState;
        type Probe = unsafe extern "C" fn() -> c_int;
        static CURRENT: OnceLock<Option<Current>> = OnceLock::new();
        static PROBE: OnceLock<Option<Probe>> = OnceLock::new();
        static VECTORCALL: OnceLock<Option<VectorcallFn>> = OnceLock::new();
        unsafe extern "C" fn no_tstate() -> TState {
            null_mut()
        }
        unsafe extern "C" fn not_finalizing() -> c_int {
            0
        }
        let current = &[
            b"PyThreadState_GetUnchecked\0" as &[u8],
            b"_PyThreadState_UncheckedGet\0",
        ];
        Api {
            current_tstate: lookup(&CURRENT, current).unwrap_or(no_tstate),
            current_per_thread: py_minor() >= 12,
            is_finalizing: lookup(&PROBE, &[b"Py_IsFinalizing\0", b"_Py_IsFinalizing\0"])
                .unwrap_or(not_finalizing),
            vectorcall: lookup(&VECTORCALL, &[b"PyObject_Vectorcall\0"])
                .unwrap_or(py::PyObject_VectorcallDict),
        }
    })
}

/// `Py_IsFinalizing` (3.13+) or `_Py_IsFinalizing` (older).
#[inline]
pub(super) fn is_finalizing() -> bool {
    // SAFETY: callable without the GIL.
    unsafe { (api().is_finalizing)() != 0 }
}

/// Python may be entered: initialized and not finalizing.
#[inline]
pub(super) fn interpreter_alive() -> bool {
    // SAFETY: callable without the GIL, before and after initialization.
    (unsafe { py::Py_IsInitialized() != 0 }) && !is_finalizing()
}

pub(super) type View = *mut c_void;
pub(super) type Guard = *mut c_void;

/// PEP 788's views and guards, when the running CPython exports them. The
/// pointer types are opaque; every draft of the PEP made them pointer-sized
/// with null for failure.
pub(super) struct GuardApi {
    /// `PyInterpreterView_FromCurrent`: attached; null (exception set) on
    /// failure.
    pub(super) view_from_current: unsafe extern "C" fn() -> View,
    /// `PyInterpreterGuard_FromView`: no attached state needed; null when
    /// the interpreter is finalizing or gone.
    pub(super) guard_from_view: unsafe extern "C" fn(View) -> Guard,
    /// `PyInterpreterGuard_Close`: cannot fail, no attached state needed.
    pub(super) guard_close: unsafe extern "C" fn(Guard),
}

/// The guard API, switched on by the one lookup of
/// `PyInterpreterGuard_FromView`.
pub(super) fn guard_api() -> Option<&'static GuardApi> {
    type FromView = unsafe extern "C" fn(View) -> Guard;
    static FROM_VIEW: OnceLock<Option<FromView>> = OnceLock::new();
    static API: OnceLock<Option<GuardApi>> = OnceLock::new();
    let guard_from_view = lookup(&FROM_VIEW, &[b"PyInterpreterGuard_FromView\0"])?;
    API.get_or_init(|| {
        type FromCurrent = unsafe extern "C" fn() -> View;
        type Close = unsafe extern "C" fn(Guard);
        static FROM_CURRENT: OnceLock<Option<FromCurrent>> = OnceLock::new();
        static CLOSE: OnceLock<Option<Close>> = OnceLock::new();
        Some(GuardApi {
            view_from_current: lookup(&FROM_CURRENT, &[b"PyInterpreterView_FromCurrent\0"])?,
            guard_from_view,
            guard_close: lookup(&CLOSE, &[b"PyInterpreterGuard_Close\0"])?,
        })
    })
    .as_ref()
}

/// A view of the current interpreter, null without the API.
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn current_view() -> View {
    let Some(api) = guard_api() else {
        return null_mut();
    };
    // SAFETY: attached (the GIL is held), as `PyInterpreterView_FromCurrent`
    // and `PyErr_Clear` need.
    unsafe {
        let view = (api.view_from_current)();
        if view.is_null() {
            py::PyErr_Clear();
        }
        view
    }
}

/// Permission to attach to an interpreter from a thread not attached there.
/// With PEP 788 it is an interpreter guard, taken from the interpreter's
/// view: taking it fails once the interpreter has begun finalizing, and
/// while it is held the interpreter cannot begin, so "not finalizing" and
/// the attach are one step. It is dropped (closed) as soon as the thread is
/// attached: held across the callback it would hold finalization up for as
/// long as a callback runs. Without the API it is a look at whether the
/// interpreter is finalizing, and the gate's exit drain covers the moment
/// between that look and the attach. A guard is held while its thread
/// waits for the GIL, so a fork can come while it is: it is published
/// until closed (`fork::take_published`), for the child to close.
pub(super) struct AttachPermit {
    guard: Guard,
    /// The guard's slot in the fork's table (unused without a guard).
    slot: usize,
}

impl AttachPermit {
    #[inline(always)]
    pub(super) fn take(view: View) -> Option<AttachPermit> {
        if view.is_null() {
            return interpreter_alive().then_some(AttachPermit {
                guard: null_mut(),
                slot: 0,
            });
        }
        // A view is only ever made with the API.
        let api = guard_api()?;
        // SAFETY: a view of this interpreter, never closed.
        let (guard, slot) = take_published(|| unsafe { (api.guard_from_view)(view) })?;
        Some(AttachPermit { guard, slot })
    }
}

impl Drop for AttachPermit {
    fn drop(&mut self) {
        if !self.guard.is_null() {
            close_published(self.guard, self.slot);
        }
    }
}

/// Closes an interpreter guard (taken with `PyInterpreterGuard_FromView`,
/// closed once by the caller's account).
pub(super) fn close_guard(guard: Guard) {
    if let Some(api) = guard_api() {
        // SAFETY: a guard, closed once; no Python is touched (it needs no
        // attached state and cannot fail).
        unsafe { (api.guard_close)(guard) };
    }
}

/// Whether this CPython has PEP 788's interpreter guards (3.15+).
pub(super) fn has_interpreter_guards() -> bool {
    guard_api().is_some()
}

/// Where CPython 3.11 keeps `PyThreadState.thread_id`, once checked against
/// a live thread state (0: not known, so never read).
pub(super) static THREAD_ID_OFFSET: AtomicUsize = AtomicUsize::new(0);
pub(super) const THREAD_ID_OFFSET_3_11: usize = 152;

/// Checks the 3.11 layout on the caller's own thread state.
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn probe_thread_id_offset() {
    if py_minor() != 11 {
        return;
    }
    // SAFETY: the GIL is held, so this thread has a live thread state and a
    // current interpreter; a 3.11 thread state is larger than both offsets
    // read. `pthread_self` is always safe to call.
    let matches = unsafe {
        let base = py::PyThreadState_Get() as *const u8;
        let interp = base.add(16).cast::<InterpState>().read();
        let thread_id = base.add(THREAD_ID_OFFSET_3_11).cast::<c_ulong>().read();
        interp == py::PyInterpreterState_Get() && thread_id == libc::pthread_self() as c_ulong
    };
    if matches {
        THREAD_ID_OFFSET.store(THREAD_ID_OFFSET_3_11, Relaxed);
    }
}

/// CPython's current thread state, unchecked: this thread's on 3.12+, the
/// process's on 3.11 (null when none; see `gil_holder`).
#[inline]
pub(super) fn current_tstate() -> TState {
    // SAFETY: a plain read, callable with or without the GIL.
    unsafe { (api().current_tstate)() }
}

/// The thread state this thread holds the GIL with, if it holds it.
///
/// `PyGILState_Check` cannot answer this: CPython 3.11 makes it return 1
/// for every thread once a subinterpreter has been created. On 3.12+ the
/// current thread state is per thread; on 3.11 it is process-wide, so it is
/// ours only if it was made on this thread (`thread_id`, layout checked at
/// start-up) or it is this thread's own `PyGILState` thread state.
#[inline]
pub(super) fn gil_holder() -> Option<TState> {
    let api = api();
    // SAFETY: a plain read, callable with or without the GIL.
    let tstate = unsafe { (api.current_tstate)() };
    if tstate.is_null() {
        return None;
    }
    if api.current_per_thread {
        return Some(tstate);
    }
    let offset = THREAD_ID_OFFSET.load(Relaxed);
    if offset != 0 {
        // SAFETY: `offset` lies inside a 3.11 thread state (checked at
        // start-up). Another thread may free `tstate` as we read it: a stale
        // word of a heap block at worst, and never equal to our own
        // thread's id. `pthread_self` is always safe to call.
        let ours = unsafe {
            let thread_id = (tstate as *const u8)
                .add(offset)
                .cast::<c_ulong>()
                .read_volatile();
            thread_id == libc::pthread_self() as c_ulong
        };
        return ours.then_some(tstate);
    }
    // SAFETY: callable with or without the GIL.
    (tstate == unsafe { py::PyGILState_GetThisThreadState() }).then_some(tstate)
}

/// Whether entries of a subinterpreter can be served safely on this
/// CPython: 3.11 (one shared GIL) with its thread-state layout checked.
pub(super) fn subinterpreters_supported() -> bool {
    py_minor() == 11 && THREAD_ID_OFFSET.load(Relaxed) != 0
}

/// A new reference to `None`.
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn new_none() -> PyObj {
    // SAFETY: the GIL is held; `None` is immortal or alive for ever.
    unsafe {
        let none = py::Py_None();
        py::Py_IncRef(none);
        none
    }
}
