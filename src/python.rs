//! The Python adapter: entries that own a Python callable (feature `python`).
//!
//! Built with pyo3-ffi's `extension-module` feature, so this library never
//! links libpython: the symbols come from the interpreter that loads the
//! extension module that loads us. Only exported CPython functions are used:
//! no inline refcount macros, and no type checks that read an object's
//! header (`kind_of`), which differs between the GIL and free-threaded
//! builds. What differs between CPython versions is looked up at run time.
//! The one layout this file reads is 3.11's thread state, to serve 3.11
//! subinterpreters (`probe_thread_id_offset`, checked at start-up). The
//! rules that turn values into Python objects and back live here alone; the
//! C++ adapters reach them through `cbreg_py_args_new` and
//! `cbreg_py_value_to_object`.
//!
//! Every Python entry belongs to the interpreter that registered it and is
//! only ever called or released in that interpreter. Each interpreter has a
//! *gate*: threads that must attach to it (native threads, or a thread of
//! another interpreter) count themselves in before touching Python; its exit
//! hook shuts the gate and, with the GIL released, waits a bounded time for
//! those inside. A thread that already holds the GIL in the entry's own
//! interpreter is Python's own business and is not counted, so it never
//! holds the hook up. A native thread keeps the thread state it makes in
//! the main interpreter across calls, and only that thread deletes it.
//! `docs/python.md` has the argument.
//!
//! No `catch_unwind` frame lies on any path that calls CPython: CPython ends
//! a thread that takes the GIL back during finalization with a forced unwind
//! (`pthread_exit`), which must pass through these frames (a callback that
//! let the GIL go, and takes it back through CPython's own functions). Where
//! the adapter itself takes the GIL, through pyo3-ffi's `PyEval_RestoreThread`
//! and `PyGILState_Ensure`, pyo3-ffi parks such a thread for ever instead,
//! before CPython 3.14 (3.14 parks it itself): `docs/python.md`, "A thread
//! parked at exit", says what that leaves. What runs while
//! unwinding (the gate's `Drop`, an attach permit's) touches no Python; the
//! thread-state guards undo themselves only for a Rust panic, never for a
//! forced unwind (the thread does not hold the GIL then). The code between
//! is written not to panic.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_ulong, c_void};
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use pyo3_ffi as py;

use crate::ffi::{self, RegistryHandle, CBREG_ONCE, CBREG_PROMPT};
use crate::{Status, Tag, Value};

type PyObj = *mut py::PyObject;
type TState = *mut py::PyThreadState;
type InterpState = *mut py::PyInterpreterState;

/// `flags` for `cbreg_py_register`: when the callback raises on a thread
/// that holds the GIL (it was fired from Python, or from native code that
/// Python called), the exception goes to `sys.unraisablehook` and no
/// exception is left set; the caller gets `CALLBACK_FAILED`. Without it the
/// exception is left set for the caller to raise (see `cbreg_py_register`).
pub const CBREG_PY_UNRAISABLE: u32 = 2;

/// How long a process exit hook waits, in all, for threads inside Python
/// callbacks before it lets finalization go on without them.
const EXIT_DRAIN: Duration = Duration::from_millis(400);

// ---- which CPython ----

/// The running CPython's minor version (3.x), read once.
fn py_minor() -> u32 {
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
fn lookup<F: Copy>(cell: &'static OnceLock<Option<F>>, names: &[&[u8]]) -> Option<F> {
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
fn free_threaded_build() -> bool {
    type DecRefShared = unsafe extern "C" fn(PyObj);
    static DECREF_SHARED: OnceLock<Option<DecRefShared>> = OnceLock::new();
    lookup(&DECREF_SHARED, &[b"_Py_DecRefShared\0"]).is_some()
}

type VectorcallFn = unsafe extern "C" fn(PyObj, *const PyObj, usize, PyObj) -> PyObj;

/// The CPython functions a call uses whose names differ between versions,
/// looked up together once. Where the running CPython has none of the
/// names, a stand-in gives the answer the old code gave.
struct Api {
    /// `PyThreadState_GetUnchecked` (3.13+) or `_PyThreadState_UncheckedGet`.
    current_tstate: unsafe extern "C" fn() -> TState,
    /// Whether `current_tstate` answers for the calling thread (3.12+).
    current_per_thread: bool,
    /// `Py_IsFinalizing` (3.13+) or `_Py_IsFinalizing`.
    is_finalizing: unsafe extern "C" fn() -> c_int,
    /// `PyObject_Vectorcall` (exported from 3.11 on; no keywords), else
    /// `PyObject_VectorcallDict` with no dict.
    vectorcall: VectorcallFn,
}

#[inline]
fn api() -> &'static Api {
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
fn is_finalizing() -> bool {
    // SAFETY: callable without the GIL.
    unsafe { (api().is_finalizing)() != 0 }
}

/// Python may be entered: initialized and not finalizing.
#[inline]
fn interpreter_alive() -> bool {
    // SAFETY: callable without the GIL, before and after initialization.
    (unsafe { py::Py_IsInitialized() != 0 }) && !is_finalizing()
}

// ---- interpreter guards (PEP 788, CPython 3.15+) ----

type View = *mut c_void;
type Guard = *mut c_void;

/// PEP 788's views and guards, when the running CPython exports them. The
/// pointer types are opaque; every draft of the PEP made them pointer-sized
/// with null for failure.
struct GuardApi {
    /// `PyInterpreterView_FromCurrent`: attached; null (exception set) on
    /// failure.
    view_from_current: unsafe extern "C" fn() -> View,
    /// `PyInterpreterGuard_FromView`: no attached state needed; null when
    /// the interpreter is finalizing or gone.
    guard_from_view: unsafe extern "C" fn(View) -> Guard,
    /// `PyInterpreterGuard_Close`: cannot fail, no attached state needed.
    guard_close: unsafe extern "C" fn(Guard),
}

/// The guard API, switched on by the one lookup of
/// `PyInterpreterGuard_FromView`.
fn guard_api() -> Option<&'static GuardApi> {
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

/// A view of the current interpreter (GIL held), null without the API.
unsafe fn current_view() -> View {
    let Some(api) = guard_api() else {
        return null_mut();
    };
    let view = (api.view_from_current)();
    if view.is_null() {
        py::PyErr_Clear();
    }
    view
}

/// Permission to attach to an interpreter from a thread not attached there.
/// With PEP 788 it is an interpreter guard, taken from the interpreter's
/// view: taking it fails once the interpreter has begun finalizing, and
/// while it is held the interpreter cannot begin, so "not finalizing" and
/// the attach are one step. It is dropped (closed) as soon as the thread is
/// attached: held across the callback it would hold finalization up for as
/// long as a callback runs. Without the API it is a look at whether the
/// interpreter is finalizing, and the gate's exit drain covers the moment
/// between that look and the attach.
struct AttachPermit(Guard);

impl AttachPermit {
    #[inline(always)]
    fn take(interp: &Interp) -> Option<AttachPermit> {
        let view = interp.view.load(Acquire);
        if view.is_null() {
            return interpreter_alive().then_some(AttachPermit(null_mut()));
        }
        let api = guard_api()?; // a view is only ever made with it
                                // SAFETY: a view of this interpreter, never closed.
        let guard = unsafe { (api.guard_from_view)(view) };
        (!guard.is_null()).then_some(AttachPermit(guard))
    }
}

impl Drop for AttachPermit {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        if let Some(api) = guard_api() {
            // SAFETY: a guard taken by `take`, closed once; no Python is
            // touched (it needs no attached state and cannot fail).
            unsafe { (api.guard_close)(self.0) };
        }
    }
}

/// Where CPython 3.11 keeps `PyThreadState.thread_id`, once checked against
/// a live thread state (0: not known, so never read).
static THREAD_ID_OFFSET: AtomicUsize = AtomicUsize::new(0);
const THREAD_ID_OFFSET_3_11: usize = 152;

/// Checks the 3.11 layout on the caller's own thread state (GIL held).
unsafe fn probe_thread_id_offset() {
    if py_minor() != 11 {
        return;
    }
    let tstate = py::PyThreadState_Get();
    let base = tstate as *const u8;
    // SAFETY: a live thread state is larger than both offsets.
    let interp = base.add(16).cast::<InterpState>().read();
    let thread_id = base.add(THREAD_ID_OFFSET_3_11).cast::<c_ulong>().read();
    if interp == py::PyInterpreterState_Get() && thread_id == libc::pthread_self() as c_ulong {
        THREAD_ID_OFFSET.store(THREAD_ID_OFFSET_3_11, Relaxed);
    }
}

/// CPython's current thread state, unchecked: this thread's on 3.12+, the
/// process's on 3.11 (null when none; see `gil_holder`).
#[inline]
unsafe fn current_tstate() -> TState {
    (api().current_tstate)()
}

/// The thread state this thread holds the GIL with, if it holds it.
///
/// `PyGILState_Check` cannot answer this: CPython 3.11 makes it return 1
/// for every thread once a subinterpreter has been created. On 3.12+ the
/// current thread state is per thread; on 3.11 it is process-wide, so it is
/// ours only if it was made on this thread (`thread_id`, layout checked at
/// start-up) or it is this thread's own `PyGILState` thread state.
#[inline]
unsafe fn gil_holder() -> Option<TState> {
    let api = api();
    let tstate = (api.current_tstate)();
    if tstate.is_null() {
        return None;
    }
    if api.current_per_thread {
        return Some(tstate);
    }
    let offset = THREAD_ID_OFFSET.load(Relaxed);
    if offset != 0 {
        // Another thread may free `tstate` as we read it: a stale word of a
        // heap block at worst, and never equal to our own thread's id.
        let thread_id = (tstate as *const u8)
            .add(offset)
            .cast::<c_ulong>()
            .read_volatile();
        return (thread_id == libc::pthread_self() as c_ulong).then_some(tstate);
    }
    (tstate == py::PyGILState_GetThisThreadState()).then_some(tstate)
}

// ---- interpreters and their gates ----

const GATE_OPEN: u8 = 0;
/// The exit hook is draining: no new calls, releases still allowed.
const GATE_DRAINING: u8 = 1;
const GATE_CLOSED: u8 = 2;

/// One interpreter that registered Python entries. Records are never
/// freed: the record of an ended interpreter is reused for a new one once
/// nothing can reach it any more (see `Interp::reusable`), so at most
/// `MAX_INTERPRETERS` interpreters can use cbreg at once.
struct Interp {
    /// The interpreter; null once it has ended.
    state: AtomicPtr<py::PyInterpreterState>,
    /// Its PEP 788 view (null without the API; never closed).
    view: AtomicPtr<c_void>,
    id: AtomicI64,
    main: AtomicBool,
    gate: AtomicU8,
    /// Threads counted in through the gate.
    inside: AtomicUsize,
    /// Its Python entries not yet released (or deliberately leaked).
    entries: AtomicUsize,
    /// Python registration refused from now on (its exit hook ran).
    closed: AtomicBool,
    /// Its exit hook is registered with its `atexit`.
    hook_installed: AtomicBool,
    exit_done: AtomicBool,
}

const MAX_INTERPRETERS: usize = 64;
static INTERPS: [AtomicPtr<Interp>; MAX_INTERPRETERS] =
    [const { AtomicPtr::new(null_mut()) }; MAX_INTERPRETERS];
/// Serializes adding to `INTERPS`; readers need no lock.
static INTERPS_GROW: Mutex<()> = Mutex::new(());

fn interps() -> impl Iterator<Item = &'static Interp> {
    INTERPS
        .iter()
        .map(|p| p.load(Acquire))
        .take_while(|p| !p.is_null())
        // SAFETY: records are leaked, never freed.
        .map(|p| unsafe { &*p })
}

/// The record of `state` (GIL held, so `state` is alive), added if new.
unsafe fn interp_record(state: InterpState) -> Result<&'static Interp, Status> {
    let id = py::PyInterpreterState_GetID(state);
    // An ended interpreter's record still answers for it (its exit hook
    // may be called again: by the start-up hook, then by its own).
    let find = || {
        interps().find(|i| {
            i.id.load(Relaxed) == id
                && (!i.state.load(Acquire).is_null() || i.exit_done.load(SeqCst))
        })
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    let _grow = INTERPS_GROW.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = find() {
        return Ok(found);
    }
    let view = if state == py::PyInterpreterState_Get() {
        current_view()
    } else {
        null_mut()
    };
    let main = state == py::PyInterpreterState_Main();
    if let Some(ended) = interps().find(|i| i.reusable()) {
        ended.begin(state, view, id, main);
        return Ok(ended);
    }
    let slot = INTERPS
        .iter()
        .find(|p| p.load(Acquire).is_null())
        .ok_or(Status::NoMemory)?;
    let record: &'static Interp = Box::leak(Box::new(Interp {
        state: AtomicPtr::new(null_mut()),
        view: AtomicPtr::new(null_mut()),
        id: AtomicI64::new(-1),
        main: AtomicBool::new(false),
        gate: AtomicU8::new(GATE_OPEN),
        inside: AtomicUsize::new(0),
        entries: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        hook_installed: AtomicBool::new(false),
        exit_done: AtomicBool::new(false),
    }));
    record.begin(state, view, id, main);
    slot.store(record as *const Interp as *mut Interp, Release);
    Ok(record)
}

impl Interp {
    /// Whether this record's interpreter has ended and nothing can reach
    /// the record any more: its exit hook finished (the last thing it does
    /// is clear `state`), every entry of it was released (a thread calling
    /// or releasing one holds the entry, so it counts in `entries`), and no
    /// thread holds a pass. Only kept states (main interpreter, never
    /// ended this way) and entries lead threads to a record. Under
    /// `INTERPS_GROW`.
    fn reusable(&self) -> bool {
        self.state.load(Acquire).is_null()
            && self.exit_done.load(SeqCst)
            && self.entries.load(SeqCst) == 0
            && self.inside.load(SeqCst) == 0
    }

    /// Makes this record the one of interpreter `state` (new, or ended and
    /// `reusable`). Under `INTERPS_GROW`; `state` last, as lookups read it
    /// first.
    fn begin(&self, state: InterpState, view: *mut c_void, id: i64, main: bool) {
        self.view.store(view, Release);
        self.id.store(id, Relaxed);
        self.main.store(main, Relaxed);
        self.gate.store(GATE_OPEN, SeqCst);
        self.closed.store(false, SeqCst);
        self.hook_installed.store(false, SeqCst);
        self.exit_done.store(false, SeqCst);
        self.state.store(state, Release);
    }
}

thread_local! {
    /// This thread is running an exit hook (its own releases may pass).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    /// The gates this thread holds passes of, innermost last (for fork).
    static HELD: [Cell<*const Interp>; HELD_TRACKED] =
        const { [const { Cell::new(std::ptr::null()) }; HELD_TRACKED] };
    static HELD_DEPTH: Cell<usize> = const { Cell::new(0) };
}
const HELD_TRACKED: usize = 16;

/// A pass through one interpreter's gate, taken before attaching to it;
/// leaving on drop (also when CPython ends the thread with a forced unwind).
struct GatePass(&'static Interp);

impl GatePass {
    /// Counts in first, then looks at the state (SeqCst both): the hook
    /// either sees us counted or we see its new state.
    fn enter(interp: &'static Interp, for_release: bool) -> Option<GatePass> {
        interp.inside.fetch_add(1, SeqCst);
        let state = interp.gate.load(SeqCst);
        if state == GATE_OPEN || (state == GATE_DRAINING && for_release) || IN_HOOK.with(Cell::get)
        {
            let depth = HELD_DEPTH.with(Cell::get);
            if depth < HELD_TRACKED {
                HELD.with(|h| h[depth].set(interp));
            }
            HELD_DEPTH.with(|d| d.set(depth + 1));
            Some(GatePass(interp))
        } else {
            interp.inside.fetch_sub(1, SeqCst);
            None
        }
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        HELD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        // Saturating: a forked child recounts what this thread holds.
        let _ = self
            .0
            .inside
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// What a thread that keeps a state in the main interpreter has: the
/// state, the interpreter's record, and its own counter of passes through
/// that interpreter's gate. The thread reaches it through one thread-local
/// word (`kept_record`), the one thread-local a call on the kept state reads.
///
/// The counter is written by its thread alone. Counting in is a plain
/// store, a compiler fence (`barrier::light`) and a load of the gate; the
/// exit hook pays instead, with `barrier::heavy` (membarrier) after it
/// shuts the gate and before it reads the counters, so either the hook sees
/// the count or the thread sees the gate shut (docs/protocol.md, section 2,
/// has the same pairing for hazards). Records are never freed: a thread
/// that stops keeping a state gives its record back for reuse. Each has its
/// own cache lines: threads write only their own.
#[repr(align(128))]
struct KeptRecord {
    /// Passes its thread holds (0 while free).
    inside: AtomicUsize,
    /// The thread state kept (null while free). Written and read by its
    /// thread alone (and by a forked child's one thread), as is `interp`.
    state: AtomicPtr<py::PyThreadState>,
    /// The interpreter record it belongs to (the main one).
    interp: AtomicPtr<Interp>,
    /// In use by a thread.
    taken: AtomicBool,
    next: AtomicPtr<KeptRecord>,
}

/// Every `KeptRecord` ever made (a push-only list).
static KEPT_RECORDS: AtomicPtr<KeptRecord> = AtomicPtr::new(null_mut());

fn kept_records() -> impl Iterator<Item = &'static KeptRecord> {
    let mut next = KEPT_RECORDS.load(Acquire);
    std::iter::from_fn(move || {
        // SAFETY: records are leaked, never freed.
        let record = unsafe { next.as_ref()? };
        next = record.next.load(Acquire);
        Some(record)
    })
}

/// A free record, taken for this thread (allocated if none is free).
fn take_kept_record() -> &'static KeptRecord {
    if let Some(free) = kept_records().find(|r| {
        r.taken
            .compare_exchange(false, true, SeqCst, Relaxed)
            .is_ok()
    }) {
        return free;
    }
    let record: &'static KeptRecord = Box::leak(Box::new(KeptRecord {
        inside: AtomicUsize::new(0),
        state: AtomicPtr::new(null_mut()),
        interp: AtomicPtr::new(null_mut()),
        taken: AtomicBool::new(true),
        next: AtomicPtr::new(null_mut()),
    }));
    let mut head = KEPT_RECORDS.load(Acquire);
    loop {
        record.next.store(head, Relaxed);
        match KEPT_RECORDS.compare_exchange_weak(
            head,
            record as *const _ as *mut _,
            AcqRel,
            Acquire,
        ) {
            Ok(_) => return record,
            Err(now) => head = now,
        }
    }
}

/// Passes held through kept-state counters (the main interpreter's).
fn kept_inside() -> usize {
    kept_records().map(|r| r.inside.load(Acquire)).sum()
}

impl KeptRecord {
    /// This thread's record, when it keeps a state in `interp`.
    #[inline(always)]
    fn of_this_thread(interp: &Interp) -> Option<&'static KeptRecord> {
        // SAFETY: records are leaked, never freed.
        let record = unsafe { kept_record().as_ref()? };
        std::ptr::eq(record.interp.load(Relaxed), interp).then_some(record)
    }
}

/// A pass through the main interpreter's gate on a kept-state thread's own
/// counter; leaving on drop (also on a forced unwind).
struct KeptPass(&'static KeptRecord);

impl KeptPass {
    /// Counts in on this thread's own `record`, then looks at the gate.
    #[inline(always)]
    fn enter(record: &'static KeptRecord, interp: &Interp, for_release: bool) -> Option<KeptPass> {
        let count = &record.inside;
        count.store(count.load(Relaxed) + 1, Relaxed);
        let pass = KeptPass(record);
        crate::sync::barrier::light();
        let state = interp.gate.load(SeqCst);
        // Otherwise dropped: counted out.
        (state == GATE_OPEN || (state == GATE_DRAINING && for_release)).then_some(pass)
    }
}

impl Drop for KeptPass {
    fn drop(&mut self) {
        let count = &self.0.inside;
        count.store(count.load(Relaxed).saturating_sub(1), Release);
    }
}

/// Waits (GIL released by the caller) until no thread is inside any of
/// `gates`, or until `deadline`.
fn drain(gates: &[&'static Interp], deadline: Option<Instant>) {
    let main = gates.iter().any(|g| g.main.load(Relaxed));
    let idle = || gates.iter().all(|g| g.inside.load(SeqCst) == 0) && (!main || kept_inside() == 0);
    while !idle() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// In a forked child only the forking thread exists: each gate counts the
/// passes that thread holds, nothing else.
extern "C" fn gates_after_fork_in_child() {
    MAKING_TSTATE.store(0, SeqCst);
    FORKING.store(false, SeqCst);
    kept_after_fork_in_child();
    let depth = HELD_DEPTH.with(Cell::get).min(HELD_TRACKED);
    for interp in interps() {
        let held = HELD.with(|h| {
            h[..depth]
                .iter()
                .filter(|c| std::ptr::eq(c.get(), interp))
                .count()
        });
        interp.inside.store(held, SeqCst);
    }
}

// ---- attaching to an interpreter ----

/// How this thread got into the entry's interpreter, to be undone after.
#[derive(Clone, Copy)]
enum Attached {
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
    /// pass of its gate unless it is `Already`. (A thread's kept state is
    /// attached by `with_kept_state`.)
    unsafe fn attach(
        interp: &'static Interp,
        state: InterpState,
        holder: Option<TState>,
    ) -> Option<Attached> {
        let main = interp.main.load(Relaxed);
        match holder {
            Some(t) if py::PyThreadState_GetInterpreter(t) == state => Some(Attached::Already),
            Some(_) => {
                let made = py::PyThreadState_New(state);
                (!made.is_null()).then(|| Attached::Swapped {
                    made,
                    previous: py::PyThreadState_Swap(made),
                })
            }
            None if !main => Self::carried(state),
            None => {
                let own = py::PyGILState_GetThisThreadState();
                if !own.is_null() && py::PyThreadState_GetInterpreter(own) == state {
                    return Some(Attached::Ensured(py::PyGILState_Ensure()));
                }
                let made = new_thread_state(state);
                if made.is_null() {
                    return None;
                }
                py::PyEval_RestoreThread(made);
                if interp.gate.load(SeqCst) == GATE_OPEN && keep(made, interp) {
                    return Some(Attached::Kept);
                }
                Some(Attached::Fresh(made))
            }
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
    unsafe fn carried(state: InterpState) -> Option<Attached> {
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

    /// # Safety
    /// On the thread that attached, still holding the GIL from `attach`.
    #[inline(always)]
    unsafe fn detach(self) {
        match self {
            Attached::Already => {}
            Attached::Ensured(gil) => py::PyGILState_Release(gil),
            Attached::Kept => {
                py::PyEval_SaveThread();
            }
            Attached::Fresh(made) => delete_current(made),
            Attached::Swapped { made, previous } => {
                py::PyThreadState_Clear(made);
                py::PyThreadState_Swap(previous);
                py::PyThreadState_Delete(made);
            }
            Attached::Carried { made, carrier } => {
                py::PyThreadState_Clear(made);
                py::PyThreadState_Swap(carrier);
                py::PyThreadState_Delete(made);
                delete_current(carrier);
            }
        }
    }
}

// ---- thread states kept for native threads ----
//
// A native thread (one CPython did not make) that calls into the main
// interpreter makes a thread state there once and keeps it, as JNI's
// AttachCurrentThread does: later calls only take and give back the GIL
// (`PyEval_RestoreThread` / `PyEval_SaveThread`). `PyThreadState_New` makes
// it the thread's `PyGILState` state too (CPython binds the first state a
// thread makes, and from 3.12 on every state a thread activates), so other
// code on the thread that calls `PyGILState_Ensure`, inside a callback or
// between calls, uses it as well.
//
// Only its own thread ever deletes it, with the GIL: CPython unbinds a
// state's `PyGILState` slot on the thread that deletes it, so a state
// deleted from another thread would leave its owner's slot pointing at
// freed memory (and on 3.12+ clear the deleting thread's own slot). It is
// deleted when its thread exits while the main interpreter's gate is open,
// or when the thread next calls while the exit hook is draining. The exit
// hook does not delete the states of threads still alive: once it shuts
// the gate no thread uses its kept state again, and finalization frees the
// states still there, as it frees those of Python's own daemon threads.
// Subinterpreters get a state per call: a kept one would make the
// interpreter look busy to `_xxsubinterpreters.destroy`, and CPython aborts
// in `Py_EndInterpreter` while another thread state is left in it.

/// This thread's `KeptRecord` while it keeps a state (else null), in a
/// thread-local word of the adapter's own (`tls_word::python_word`): read
/// without a call to `__tls_get_addr` on x86-64 Linux.
#[inline(always)]
fn kept_record() -> *const KeptRecord {
    crate::tls_word::python_word::get() as *const KeptRecord
}

fn set_kept_record(record: *const KeptRecord) {
    crate::tls_word::python_word::set(record as usize);
}

/// Kept thread states alive (counted for `cbreg_py_thread_states`).
static KEPT_LIVE: AtomicUsize = AtomicUsize::new(0);

/// The pthread key whose destructor detaches a thread's kept state when
/// the thread exits; `KEY_MISSING` until made (or if it could not be:
/// then nothing is kept).
/// (`pthread_key_t` is 32 bits on Linux, 64 on macOS.)
static KEPT_KEY: AtomicU64 = AtomicU64::new(KEY_MISSING);
const KEY_MISSING: u64 = u64::MAX;

/// The key, if made.
fn kept_key() -> Option<libc::pthread_key_t> {
    libc::pthread_key_t::try_from(KEPT_KEY.load(Relaxed)).ok()
}

/// Makes the key (once per process, GIL held).
fn make_kept_key() {
    let mut key: libc::pthread_key_t = 0;
    // The destructor is C-unwind: CPython may end the thread inside it.
    let destructor: unsafe extern "C-unwind" fn(*mut c_void) = kept_state_at_thread_exit;
    // SAFETY: the same ABI but for unwinding, which glibc's caller allows.
    let destructor = unsafe {
        std::mem::transmute::<
            unsafe extern "C-unwind" fn(*mut c_void),
            unsafe extern "C" fn(*mut c_void),
        >(destructor)
    };
    // SAFETY: a valid out pointer and destructor.
    if unsafe { libc::pthread_key_create(&mut key, Some(destructor)) } == 0 {
        KEPT_KEY.store(u64::from(key), SeqCst);
    }
}

/// Keeps `made` (current on this thread, GIL held) as this thread's state
/// in `interp`; false when it cannot be kept (no key).
unsafe fn keep(made: TState, interp: &'static Interp) -> bool {
    let Some(key) = kept_key() else {
        return false;
    };
    if libc::pthread_setspecific(key, made.cast()) != 0 {
        return false;
    }
    let record = take_kept_record();
    record.state.store(made, Relaxed);
    record
        .interp
        .store(interp as *const Interp as *mut Interp, Relaxed);
    set_kept_record(record);
    KEPT_LIVE.fetch_add(1, SeqCst);
    true
}

/// Forgets this thread's kept state (it is deleted, or left to CPython).
fn forget_kept() {
    let record = kept_record();
    set_kept_record(std::ptr::null());
    // SAFETY: a leaked record. One that a pass still counts on (a forked
    // child's thread inside a call) is left taken, never reused.
    if let Some(record) = unsafe { record.as_ref() } {
        record.state.store(null_mut(), Relaxed);
        record.interp.store(null_mut(), Relaxed);
        if record.inside.load(Relaxed) == 0 {
            record.taken.store(false, Release);
        }
    }
    if let Some(key) = kept_key() {
        // SAFETY: a key of ours; no value to free.
        unsafe { libc::pthread_setspecific(key, std::ptr::null()) };
    }
    let _ = KEPT_LIVE.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
}

/// Clears and deletes `tstate`, current on this thread with the GIL held
/// (CPython unbinds it from the thread's `PyGILState` slot and gives the
/// GIL back). It cannot be cut by a fork the way making a state can (see
/// `new_thread_state`): on 3.11 it holds the GIL, which the forking thread
/// holds; from 3.12 on CPython holds its thread-state lock across the fork.
unsafe fn delete_current(tstate: TState) {
    py::PyThreadState_Clear(tstate);
    py::PyThreadState_DeleteCurrent();
}

/// Deletes this thread's kept state in `interp` now, if it has one and the
/// gate lets it through (open, or the exit hook draining). Returns whether
/// it did.
unsafe fn detach_kept(interp: &'static Interp, holder: Option<TState>) -> bool {
    let Some(record) = KeptRecord::of_this_thread(interp) else {
        return false;
    };
    let kept = record.state.load(Relaxed);
    if record.inside.load(Relaxed) != 0 {
        return false; // a call further out on this thread still uses it
    }
    let Some(_pass) = GatePass::enter(interp, true) else {
        return false;
    };
    if interp.state.load(Acquire).is_null() {
        return false;
    }
    match holder {
        Some(t) if t == kept => {
            if !interpreter_alive() {
                return false;
            }
        }
        Some(_) => return false, // another state is current here: not now
        None => {
            let Some(_permit) = AttachPermit::take(interp) else {
                return false;
            };
            py::PyEval_RestoreThread(kept);
        }
    }
    forget_kept();
    delete_current(kept);
    true
}

/// The kept state's key destructor: its thread is exiting.
unsafe extern "C-unwind" fn kept_state_at_thread_exit(value: *mut c_void) {
    // SAFETY: a leaked record.
    let Some(record) = kept_record().as_ref() else {
        return;
    };
    let (kept, interp) = (record.state.load(Relaxed), record.interp.load(Relaxed));
    if value.is_null() || interp.is_null() || kept != value.cast() {
        return;
    }
    let interp = &*interp;
    // Once the exit hook has begun the state is left to CPython: taking the
    // GIL then could meet finalization, which ends the thread (here, inside
    // its own exit).
    if interp.gate.load(SeqCst) == GATE_OPEN
        && py::Py_IsInitialized() != 0
        && detach_kept(interp, gil_holder())
    {
        return;
    }
    forget_kept();
}

/// After a fork, in the child: the states other threads kept are CPython's
/// to free (they are gone with their threads); this thread keeps its own
/// only if it is the current one (the one CPython keeps in the child).
fn kept_after_fork_in_child() {
    // SAFETY: a leaked record.
    let kept = unsafe { kept_record().as_ref() }.map_or(null_mut(), |r| r.state.load(Relaxed));
    // SAFETY: a plain read of CPython's current thread state.
    let mine = !kept.is_null() && unsafe { current_tstate() } == kept;
    if !kept.is_null() && !mine {
        forget_kept();
    }
    KEPT_LIVE.store(usize::from(mine), SeqCst);
    let own = kept_record();
    for record in kept_records().filter(|r| !std::ptr::eq(*r, own)) {
        record.inside.store(0, SeqCst);
        record.state.store(null_mut(), Relaxed);
        record.interp.store(null_mut(), Relaxed);
        record.taken.store(false, SeqCst);
    }
    crate::sync::barrier::reinit_after_fork();
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
static MAKING_TSTATE: AtomicUsize = AtomicUsize::new(0);
static FORKING: AtomicBool = AtomicBool::new(false);

unsafe fn new_thread_state(state: InterpState) -> TState {
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
    let made = py::PyThreadState_New(state);
    MAKING_TSTATE.fetch_sub(1, SeqCst);
    made
}

extern "C" fn before_fork() {
    if py_minor() != 11 {
        return;
    }
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
}

extern "C" fn after_fork_in_parent() {
    FORKING.store(false, SeqCst);
}

/// The `before` hook of `os.fork` in the main interpreter of a free-threaded
/// build (see `MAKING_TSTATE`). It waits detached: a thread making a state
/// may be stopping the interpreter's world, which waits for every attached
/// thread, this one too, to park. Anything that thread waits for, CPython's
/// own stop-the-world for the fork would wait for as well.
unsafe extern "C" fn fork_before_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    let saved = py::PyEval_SaveThread();
    FORKING.store(true, SeqCst);
    while MAKING_TSTATE.load(SeqCst) != 0 {
        std::thread::yield_now();
    }
    py::PyEval_RestoreThread(saved);
    new_none()
}

/// The `after_in_parent` and `after_in_child` hooks of `os.fork` (the
/// `pthread_atfork` handlers have done the same already, for every fork).
unsafe extern "C" fn fork_done_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    FORKING.store(false, SeqCst);
    new_none()
}

/// Undoes an attachment if a Rust panic unwinds past it (it is forgotten
/// otherwise). A forced unwind (CPython ending the thread) leaves it alone:
/// the thread holds no GIL.
struct DetachOnPanic(Attached);

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
unsafe fn run_attached<R>(attached: Attached, f: impl FnOnce() -> R) -> R {
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
fn with_python<R>(
    interp: &'static Interp,
    for_release: bool,
    f: impl FnOnce(bool) -> R,
) -> Option<R> {
    // SAFETY: a plain read of CPython's current thread state.
    let holder = unsafe { gil_holder() };
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
fn with_kept_state<R>(
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
    let permit = AttachPermit::take(interp)?;
    // SAFETY: this thread's kept state, its pass held, Python alive.
    unsafe { py::PyEval_RestoreThread(record.state.load(Relaxed)) };
    drop(permit);
    // SAFETY: attached just above.
    Some(unsafe { run_attached(Attached::Kept, f) })
}

/// `with_python` on every other thread: one that holds the GIL (in `interp`
/// or another interpreter), or holds none and keeps no state in `interp`.
#[inline(never)]
fn with_other_state<R>(
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
        !state.is_null() && unsafe { py::PyThreadState_GetInterpreter(t) } == state
    });
    // A thread already inside Python there needs no pass; others count in
    // first, so the exit hook cannot end the interpreter behind them.
    let _pass = if same {
        if interp.gate.load(SeqCst) == GATE_CLOSED && !IN_HOOK.with(Cell::get) && !for_release {
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
        Some(AttachPermit::take(interp)?)
    };
    // SAFETY: alive, and (unless already attached) the pass is held.
    let attached = unsafe { Attached::attach(interp, state, holder)? };
    drop(permit);
    // SAFETY: attached just above.
    Some(unsafe { run_attached(attached, || f(same)) })
}

// ---- values <-> Python objects (GIL held) ----

/// A new reference for `v`, or `Err` (no Python error left set). Floats
/// and ints, an engine's usual arguments, are made here without a call.
#[inline]
unsafe fn to_python(v: &Value) -> Result<PyObj, Status> {
    let obj = if v.tag == Tag::F64 as u32 {
        py::PyFloat_FromDouble(v.r#as.f64)
    } else if v.tag == Tag::I64 as u32 {
        py::PyLong_FromLongLong(v.r#as.i64)
    } else {
        return any_to_python(v);
    };
    if obj.is_null() {
        py::PyErr_Clear();
        return Err(Status::NoMemory);
    }
    Ok(obj)
}

/// `to_python` for every tag.
#[inline(never)]
unsafe fn any_to_python(v: &Value) -> Result<PyObj, Status> {
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

/// What a Python object is, for conversion. Found through functions the
/// interpreter exports (`PyObject_Type`, `PyType_GetFlags`,
/// `PyType_IsSubtype`), never by reading an object's header, so the same
/// code is right for the GIL and the free-threaded object layouts (the
/// `Py*_Check` helpers of pyo3-ffi read `ob_type` at a fixed offset).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Other,
}

unsafe fn kind_of(obj: PyObj) -> Kind {
    kind_and_exact(obj).0
}

/// What `obj` is, and whether it is of that very type (not a subclass):
/// then converting it to a value and back gives an equal object of its
/// type (for an int that fits and a str with a UTF-8 form).
unsafe fn kind_and_exact(obj: PyObj) -> (Kind, bool) {
    if obj == py::Py_None() {
        return (Kind::None, true);
    }
    let ty = py::PyObject_Type(obj);
    if ty.is_null() {
        py::PyErr_Clear();
        return (Kind::Other, false);
    }
    let ty_ptr = ty.cast::<py::PyTypeObject>();
    let flags = py::PyType_GetFlags(ty_ptr);
    let exactly = |base: *mut py::PyTypeObject| ty_ptr == base;
    let is = |base: *mut py::PyTypeObject| exactly(base) || py::PyType_IsSubtype(ty_ptr, base) != 0;
    let found = if exactly(std::ptr::addr_of_mut!(py::PyBool_Type)) {
        (Kind::Bool, true)
    } else if flags & py::Py_TPFLAGS_LONG_SUBCLASS != 0 {
        (Kind::Int, exactly(std::ptr::addr_of_mut!(py::PyLong_Type)))
    } else if is(std::ptr::addr_of_mut!(py::PyFloat_Type)) {
        (
            Kind::Float,
            exactly(std::ptr::addr_of_mut!(py::PyFloat_Type)),
        )
    } else if flags & py::Py_TPFLAGS_UNICODE_SUBCLASS != 0 {
        (
            Kind::Str,
            exactly(std::ptr::addr_of_mut!(py::PyUnicode_Type)),
        )
    } else if flags & py::Py_TPFLAGS_BYTES_SUBCLASS != 0 {
        (
            Kind::Bytes,
            exactly(std::ptr::addr_of_mut!(py::PyBytes_Type)),
        )
    } else if flags & py::Py_TPFLAGS_LIST_SUBCLASS != 0 {
        (Kind::List, false)
    } else {
        (Kind::Other, false)
    };
    py::Py_DecRef(ty);
    found
}

/// Python objects converted to a value vector (`cbreg_py_args_new`):
/// borrows the objects' str and bytes buffers; owns the arrays made from
/// lists.
struct PyArgs {
    values: Vec<Value>,
    lists: Lists,
}

/// The arrays made from list arguments, owned while their values are used.
#[derive(Default)]
struct Lists {
    i64s: Vec<Vec<i64>>,
    f64s: Vec<Vec<f64>>,
}

/// The value for the argument `obj` (the one place these rules live), and
/// whether the value converts back to an object equal to `obj` of its very
/// type (`kind_and_exact`); `None` with a Python exception set.
unsafe fn arg_value(obj: PyObj, lists: &mut Lists) -> Option<(Value, bool)> {
    let (kind, exact) = kind_and_exact(obj);
    let v = match kind {
        Kind::None => Value::none(),
        Kind::Bool => Value::bool(obj == py::Py_True()),
        Kind::Int => {
            let x = py::PyLong_AsLongLong(obj);
            if x == -1 && !py::PyErr_Occurred().is_null() {
                return None;
            }
            Value::i64(x)
        }
        Kind::Float => {
            let x = py::PyFloat_AsDouble(obj);
            if x == -1.0 && !py::PyErr_Occurred().is_null() {
                return None;
            }
            Value::f64(x)
        }
        Kind::Str => {
            let mut len: py::Py_ssize_t = 0;
            let p = py::PyUnicode_AsUTF8AndSize(obj, &mut len);
            if p.is_null() {
                return None; // lone surrogates: UnicodeEncodeError set
            }
            // The UTF-8 buffer lives as long as the str object.
            Value::str(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                p.cast(),
                len as usize,
            )))
        }
        Kind::Bytes => {
            let mut p: *mut c_char = std::ptr::null_mut();
            let mut len: py::Py_ssize_t = 0;
            if py::PyBytes_AsStringAndSize(obj, &mut p, &mut len) != 0 {
                return None;
            }
            Value::bytes(std::slice::from_raw_parts(p.cast(), len as usize))
        }
        Kind::List => lists.list(obj)?,
        Kind::Other => return type_error(
            b"cbreg: arguments must be None, bool, int, float, str, bytes or a list of numbers\0",
        ),
    };
    Some((v, exact))
}

impl PyArgs {
    /// One argument; `None` with a Python exception set.
    unsafe fn push(&mut self, obj: PyObj) -> Option<()> {
        let (v, _) = arg_value(obj, &mut self.lists)?;
        self.values.push(v);
        Some(())
    }
}

impl Lists {
    /// A list of ints (an i64 array) or of numbers with a float among them
    /// (an f64 array), copied.
    unsafe fn list(&mut self, list: PyObj) -> Option<Value> {
        let n = py::PyList_Size(list).max(0) as usize;
        let item = |i: usize| py::PyList_GetItem(list, i as py::Py_ssize_t);
        let mut any_float = false;
        for i in 0..n {
            match kind_of(item(i)) {
                Kind::Float => any_float = true,
                Kind::Int => {}
                _ => return type_error(b"cbreg: a list argument must hold only ints or floats\0"),
            }
        }
        if any_float {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let x = py::PyFloat_AsDouble(item(i));
                if x == -1.0 && !py::PyErr_Occurred().is_null() {
                    return None;
                }
                v.push(x);
            }
            self.f64s.push(v);
            Some(Value::f64_array(self.f64s.last()?))
        } else {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let x = py::PyLong_AsLongLong(item(i));
                if x == -1 && !py::PyErr_Occurred().is_null() {
                    return None;
                }
                v.push(x);
            }
            self.i64s.push(v);
            Some(Value::i64_array(self.i64s.last()?))
        }
    }
}

unsafe fn type_error<T>(message: &[u8]) -> Option<T> {
    py::PyErr_SetString(py::PyExc_TypeError, message.as_ptr().cast());
    None
}

/// Sets the Python exception for `status` (GIL held) unless one is pending:
/// the `cbreg` package's class for it (cbreg.NotFound, ...) when that is
/// importable, RuntimeError otherwise.
unsafe fn set_error(status: Status) {
    if !py::PyErr_Occurred().is_null() {
        return;
    }
    let message = status.message().as_ptr().cast();
    let errors = py::PyImport_ImportModule(b"cbreg._errors\0".as_ptr().cast());
    let by_status = if errors.is_null() {
        std::ptr::null_mut()
    } else {
        let table = py::PyObject_GetAttrString(errors, b"BY_STATUS\0".as_ptr().cast());
        py::Py_DecRef(errors);
        table
    };
    if !by_status.is_null() {
        let class = py::PySequence_GetItem(by_status, status as u32 as py::Py_ssize_t);
        py::Py_DecRef(by_status);
        if !class.is_null() {
            py::PyErr_SetString(class, message);
            py::Py_DecRef(class);
            return;
        }
    }
    py::PyErr_Clear();
    py::PyErr_SetString(py::PyExc_RuntimeError, message);
}

/// The owner of a returned str/bytes: the object and its interpreter.
struct Returned {
    obj: PyObj,
    interp: &'static Interp,
}

/// Drops a returned str/bytes (`owner` is a `Returned`).
unsafe extern "C-unwind" fn drop_returned(owner: *mut c_void) {
    // SAFETY: made by `store_result` with Box::into_raw.
    let owner = Box::from_raw(owner.cast::<Returned>());
    let obj = owner.obj;
    // Finalizing or ended: the object is left to the interpreter.
    let _ = with_python(owner.interp, true, |_| py::Py_DecRef(obj));
}

/// Whether converting the callback's result `result` to a value and back
/// gives an equal object of its very type: then a Python caller
/// (`cbreg_py_invoke`) gets the object itself.
unsafe fn result_comes_back_as_is(result: PyObj) -> bool {
    match kind_and_exact(result) {
        (Kind::None | Kind::Bool | Kind::Float | Kind::Bytes, exact) => exact,
        (Kind::Int, true) => {
            let mut overflow = 0;
            let n = py::PyLong_AsLongLongAndOverflow(result, &mut overflow);
            let failed = n == -1 && !py::PyErr_Occurred().is_null();
            py::PyErr_Clear();
            overflow == 0 && !failed
        }
        (Kind::Str, true) => {
            let mut len: py::Py_ssize_t = 0;
            let utf8 = !py::PyUnicode_AsUTF8AndSize(result, &mut len).is_null();
            py::PyErr_Clear(); // lone surrogates: no UTF-8 form
            utf8
        }
        _ => false,
    }
}

/// Stores the callback's result in `*ret`; takes ownership of `result`.
/// Types with no `cbreg_value` form leave `*ret` none.
unsafe fn store_result(result: PyObj, ret: &mut Value, interp: &'static Interp) {
    let mut keep = false;
    match kind_of(result) {
        Kind::Bool => *ret = Value::bool(result == py::Py_True()),
        Kind::Int => {
            let mut overflow = 0;
            let n = py::PyLong_AsLongLongAndOverflow(result, &mut overflow);
            let failed = n == -1 && !py::PyErr_Occurred().is_null();
            if overflow == 0 && !failed {
                *ret = Value::i64(n);
            }
            py::PyErr_Clear();
        }
        Kind::Float => *ret = Value::f64(py::PyFloat_AsDouble(result)),
        Kind::Str => {
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
        }
        Kind::Bytes => {
            let mut p: *mut c_char = null_mut();
            let mut len: py::Py_ssize_t = 0;
            if py::PyBytes_AsStringAndSize(result, &mut p, &mut len) == 0 {
                *ret = Value::bytes(std::slice::from_raw_parts(p.cast(), len as usize));
                keep = true;
            } else {
                py::PyErr_Clear();
            }
        }
        // None, lists and other types have no return form: none.
        Kind::None | Kind::List | Kind::Other => {}
    }
    if keep {
        ret.drop = Some(drop_returned);
        ret.owner = Box::into_raw(Box::new(Returned {
            obj: result,
            interp,
        }))
        .cast();
    } else {
        py::Py_DecRef(result);
    }
}

// ---- the entry: call and release ----

/// A Python entry's context. Never freed, only reused (`FREE_ENTRIES`):
/// the exit hook reads `interp` of entries that another thread may be
/// releasing at that moment.
struct PyEntry {
    callable: AtomicPtr<py::PyObject>,
    interp: AtomicPtr<Interp>,
    flags: AtomicU32,
}

static FREE_ENTRIES: Mutex<Vec<&'static PyEntry>> = Mutex::new(Vec::new());

fn new_entry(callable: PyObj, interp: &'static Interp, flags: u32) -> &'static PyEntry {
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

fn free_entry(entry: &'static PyEntry) {
    entry.callable.store(null_mut(), Relaxed);
    entry.interp.store(null_mut(), Release);
    FREE_ENTRIES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
}

/// The interpreter of a Python entry's context (null: none, being reused).
fn interp_of(ctx: *mut c_void) -> *const Interp {
    // SAFETY: contexts with `release_python` are `PyEntry`s, never freed.
    unsafe { &*(ctx as *const PyEntry) }.interp.load(Acquire)
}

unsafe extern "C-unwind" fn call_python(
    ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> u32 {
    // SAFETY: the core passes the context we registered, alive while the
    // entry can be invoked.
    let entry = &*(ctx as *const PyEntry);
    let interp = &*entry.interp.load(Acquire);
    let callable = entry.callable.load(Relaxed);
    // `with_python`, its two ways spelled out so that the first, a native
    // thread on its kept state (an engine's usual call), is compiled for
    // that case alone: no Python caller, exceptions to the unraisable hook.
    // (Through `with_python` itself the call costs about 60 instructions
    // more: `make bench-python-instructions`, 1,245 against 1,186.)
    // SAFETY: a plain read of CPython's current thread state.
    let holder = gil_holder();
    if holder.is_none() {
        if let Some(record) = KeptRecord::of_this_thread(interp) {
            return with_kept_state(record, interp, false, || {
                // SAFETY: attached to the callable's interpreter; args and
                // ret come from invoke.
                call_attached(callable, args, nargs, ret, false, interp, None)
            })
            .unwrap_or(Status::Closed) as u32;
        }
    }
    let unraisable = entry.flags.load(Relaxed) & CBREG_PY_UNRAISABLE != 0;
    with_other_state(interp, false, holder, |held_gil| {
        // The Python caller on this thread, if this is its very call (its
        // objects are of this interpreter only when it held the GIL here).
        let caller = if held_gil {
            PY_CALL.with(Cell::get).as_ref().filter(|c| {
                // (With no arguments the core may pass no vector.)
                c.nargs == nargs && (nargs == 0 || c.values == args) && std::ptr::eq(c.ret, ret)
            })
        } else {
            None
        };
        // SAFETY: attached to the callable's interpreter; args and ret come
        // from invoke.
        call_attached(
            callable,
            args,
            nargs,
            ret,
            held_gil && !unraisable,
            interp,
            caller,
        )
    })
    .unwrap_or(Status::Closed) as u32
}

/// `nargsf` flag: the callee may use the slot before the first argument.
const VECTORCALL_ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// Calls with the GIL held in the callable's interpreter. `propagate`: a
/// raised exception is left set for the caller (which held the GIL there);
/// otherwise it goes to `sys.unraisablehook`. `caller`: the Python caller
/// whose objects the values were made from.
#[inline(always)]
unsafe fn call_attached(
    callable: PyObj,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
    propagate: bool,
    interp: &'static Interp,
    caller: Option<&PyCall>,
) -> Status {
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

/// A Python caller's invocation in progress on this thread
/// (`cbreg_py_invoke`): the objects its values were made from, so that the
/// entry called with exactly those values and `ret` passes the objects
/// that would convert back to equal ones straight through, and hands such
/// a result back as the object itself.
struct PyCall {
    values: *const Value,
    nargs: usize,
    ret: *const Value,
    items: *const PyObj,
    /// Bit i: `items[i]` converts back to an equal object of its type.
    as_is: u64,
    /// The result object handed back (a new reference), or null.
    result: Cell<PyObj>,
}

thread_local! {
    /// The innermost Python caller's invocation on this thread.
    static PY_CALL: Cell<*const PyCall> = const { Cell::new(std::ptr::null()) };
}

/// Publishes a `PyCall` for the duration of one invoke; the one it hides
/// comes back on drop (also when unwinding).
struct PyCallScope(*const PyCall);

impl PyCallScope {
    fn enter(call: &PyCall) -> PyCallScope {
        PyCallScope(PY_CALL.with(|c| c.replace(call)))
    }
}

impl Drop for PyCallScope {
    fn drop(&mut self) {
        PY_CALL.with(|c| c.set(self.0));
    }
}

unsafe extern "C-unwind" fn release_python(ctx: *mut c_void) {
    // SAFETY: our context; the core runs this once, nothing invokes it now.
    let entry: &'static PyEntry = &*(ctx as *const PyEntry);
    let callable = entry.callable.load(Relaxed);
    let interp = &*entry.interp.load(Acquire);
    // SAFETY: attached; we own this reference.
    let released = with_python(interp, true, |_| py::Py_DecRef(callable)).is_some();
    if !released {
        ffi::cbreg_release_mark_leaked();
    }
    let _ = interp
        .entries
        .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    free_entry(entry);
}

// ---- process set-up: blocking hook, fork ----

/// A cbreg wait (unregister_wait, registry free) on a thread that holds the
/// GIL gives it up while it waits.
unsafe extern "C" fn release_gil_while_waiting() -> *mut c_void {
    if py::Py_IsInitialized() == 0 || gil_holder().is_none() {
        return null_mut();
    }
    py::PyEval_SaveThread().cast()
}

unsafe extern "C" fn take_gil_back(token: *mut c_void) {
    if !token.is_null() {
        py::PyEval_RestoreThread(token.cast());
    }
}

/// Once per process, GIL held.
unsafe fn set_up_process() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, SeqCst) {
        return;
    }
    probe_thread_id_offset();
    api(); // looked up now: the fork handlers use it
    crate::sync::barrier::init(); // before any kept-state counter is used
    make_kept_key();
    // Installed in the copy of cbreg that owns the registries (the one
    // that waits), whichever copy this is.
    crate::rendezvous::set_blocking_hook(release_gil_while_waiting, take_gil_back);
    libc::pthread_atfork(
        Some(before_fork),
        Some(after_fork_in_parent),
        Some(gates_after_fork_in_child),
    );
}

/// Whether entries of a subinterpreter can be served safely on this
/// CPython: 3.11 (one shared GIL) with its thread-state layout checked.
fn subinterpreters_supported() -> bool {
    py_minor() == 11 && THREAD_ID_OFFSET.load(Relaxed) != 0
}

// ---- the exit hooks ----

unsafe extern "C" fn atexit_hook(_module: PyObj, _unused: PyObj) -> PyObj {
    cbreg_py_atexit_clear();
    new_none()
}

/// A new reference to `None`.
unsafe fn new_none() -> PyObj {
    let none = py::Py_None();
    py::Py_IncRef(none);
    none
}

struct HookDef(std::cell::UnsafeCell<py::PyMethodDef>);
// SAFETY: written only by CPython's own bookkeeping, under the GIL.
unsafe impl Sync for HookDef {}

impl HookDef {
    /// A hook taking no arguments; `name` and `doc` NUL-terminated.
    const fn new(
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

    /// A new function object for the hook (GIL held; null on failure, no
    /// exception left set).
    unsafe fn function(&'static self) -> PyObj {
        let func = py::PyCFunction_New(self.0.get(), null_mut());
        if func.is_null() {
            py::PyErr_Clear();
        }
        func
    }
}

static HOOK_DEF: HookDef = HookDef::new(
    b"cbreg_atexit_clear\0",
    atexit_hook,
    b"Releases cbreg's Python callbacks before the interpreter finalizes.\0",
);
static FORK_BEFORE_DEF: HookDef = HookDef::new(
    b"cbreg_before_fork\0",
    fork_before_hook,
    b"Waits until no native thread is making a thread state, and lets none begin until the fork is done.\0",
);
static FORK_DONE_DEF: HookDef = HookDef::new(
    b"cbreg_after_fork\0",
    fork_done_hook,
    b"Lets native threads make thread states again after a fork.\0",
);

/// Calls `module.name(*args, **kwargs)` (`args` a tuple, `kwargs` a dict or
/// null; GIL held); Ok when it returned, no exception left set.
unsafe fn call_in_module(
    module: &[u8],
    name: &[u8],
    args: PyObj,
    kwargs: PyObj,
) -> Result<(), Status> {
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

/// Registers the hook with the current interpreter's `atexit` (GIL held).
unsafe fn register_atexit() -> Result<(), Status> {
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

/// Registers the fork hooks with `os.register_at_fork` (the main
/// interpreter of a free-threaded build, GIL held; see `MAKING_TSTATE`).
unsafe fn register_fork_hooks() -> Result<(), Status> {
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

/// Makes sure `interp` (the current interpreter, GIL held) has its exit
/// hook, and the main interpreter its own: whichever interpreter imports
/// first, the process-wide exit is handled in the main one.
unsafe fn ensure_hooks(interp: &'static Interp) -> Result<(), Status> {
    if !interp.hook_installed.swap(true, SeqCst) {
        if let Err(e) = register_atexit() {
            interp.hook_installed.store(false, SeqCst);
            return Err(e);
        }
        // os.fork is the main interpreter's alone.
        if interp.main.load(Relaxed) && free_threaded_build() {
            register_fork_hooks()?;
        }
    }
    if interp.main.load(Relaxed) {
        return Ok(());
    }
    let main_state = py::PyInterpreterState_Main();
    let main = interp_record(main_state)?;
    if main.hook_installed.swap(true, SeqCst) {
        return Ok(());
    }
    // Into the main interpreter for the registration (shared GIL: 3.11).
    let made = py::PyThreadState_New(main_state);
    if made.is_null() {
        main.hook_installed.store(false, SeqCst);
        return Err(Status::NoMemory);
    }
    let previous = py::PyThreadState_Swap(made);
    let installed = register_atexit();
    py::PyThreadState_Clear(made);
    py::PyThreadState_Swap(previous);
    py::PyThreadState_Delete(made);
    if installed.is_err() {
        main.hook_installed.store(false, SeqCst);
    }
    installed
}

/// The exit of `this` interpreter (GIL held there). The main one's exit is
/// the process's: every interpreter's gate is shut and every Python entry
/// released. A subinterpreter's concerns only itself.
unsafe fn interpreter_exit(this: &'static Interp) {
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
    let drain_unlocked = |gates: &[&'static Interp]| {
        let saved = py::PyEval_SaveThread();
        drain(gates, deadline);
        py::PyEval_RestoreThread(saved);
    };

    IN_HOOK.with(|h| h.set(true));
    for g in gates {
        g.closed.store(true, SeqCst);
        g.gate.fetch_max(GATE_DRAINING, SeqCst); // no new calls
    }
    crate::sync::barrier::heavy(); // pairs with `KeptPass::enter`
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
    let saved = py::PyEval_SaveThread();
    loop {
        drain(gates, Some(release_deadline));
        crate::rendezvous::collect_all();
        let released = gates.iter().all(|g| g.entries.load(SeqCst) == 0);
        if released || Instant::now() >= release_deadline {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    py::PyEval_RestoreThread(saved);
    for g in gates {
        g.gate.fetch_max(GATE_CLOSED, SeqCst);
    }
    crate::sync::barrier::heavy();
    drain_unlocked(gates);
    IN_HOOK.with(|h| h.set(false));
    if !main {
        this.state.store(null_mut(), Release); // ended: its entries are gone
    }
}

// ---- the C ABI ----

fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: checked non-null by the caller; C passes a valid pointer.
    unsafe { out.write(value) };
}

// ---- conversions for the C++ adapters (the one place the rules live) ----

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
/// The GIL is held; `items` points to `nargs` live Python objects.
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
        set_error(Status::InvalidArgument);
        return std::ptr::null_mut();
    }
    let mut args = Box::new(PyArgs {
        values: Vec::with_capacity(nargs),
        lists: Lists::default(),
    });
    for i in 0..nargs {
        if args.push(*items.add(i) as PyObj).is_none() {
            return std::ptr::null_mut();
        }
    }
    *out_values = args.values.as_ptr();
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
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_py_invoke(
    reg: RegistryHandle,
    id: u64,
    items: *const *mut c_void,
    nargs: usize,
) -> *mut c_void {
    if (nargs > 0 && items.is_null()) || nargs > ffi::CBREG_MAX_ARGS {
        set_error(Status::InvalidArgument);
        return null_mut();
    }
    let items = items.cast::<PyObj>();
    let mut values = [std::mem::MaybeUninit::<Value>::uninit(); ffi::CBREG_MAX_ARGS];
    let mut lists = Lists::default();
    let mut as_is = 0u64;
    for (i, value) in values.iter_mut().enumerate().take(nargs) {
        let Some((v, same)) = arg_value(*items.add(i), &mut lists) else {
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
        ffi::cbreg_invoke(reg, id, values, nargs, &mut ret)
    };
    let result = call.result.take();
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

/// Frees what `cbreg_py_args_new` returned (NULL is ignored).
///
/// # Safety
/// `args` came from `cbreg_py_args_new` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_args_free(args: *mut c_void) {
    if !args.is_null() {
        drop(Box::from_raw(args.cast::<PyArgs>()));
    }
}

/// A new Python object for `*value` (GIL held): None, bool, int, float,
/// str, bytes, a list for an array, an int for a pointer. NULL with a
/// Python exception set on failure (a bad tag, invalid UTF-8).
///
/// # Safety
/// The GIL is held; `value` is NULL or a valid value.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_value_to_object(value: *const Value) -> *mut c_void {
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

/// Sets the Python exception for `status` (GIL held), unless one is
/// already pending: the `cbreg` package's class (cbreg.NotFound,
/// cbreg.Closed, ...) when it is importable, RuntimeError otherwise.
///
/// # Safety
/// The GIL is held.
#[no_mangle]
pub unsafe extern "C" fn cbreg_py_set_error(status: u32) {
    let status = crate::status::ALL_STATUSES
        .get(status as usize)
        .copied()
        .unwrap_or(Status::Internal);
    set_error(status);
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
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_register(
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
    // SAFETY: the caller holds the GIL, so the current interpreter is alive.
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
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_install_atexit() -> Status {
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

/// Diagnostics, for tests: writes to `*kept` how many thread states this
/// copy of the adapter keeps for native threads right now (one per native
/// thread that called into the main interpreter and has not exited), and
/// to `*in_interpreter` how many thread states the calling interpreter has
/// (its Python threads' and those made for native threads). Either may be
/// NULL. Call it with the GIL held, while no other thread makes or ends a
/// thread state (CPython's list is walked without its lock);
/// `INVALID_ARGUMENT` without the GIL.
#[no_mangle]
pub extern "C-unwind" fn cbreg_py_thread_states(
    kept: *mut usize,
    in_interpreter: *mut usize,
) -> Status {
    // SAFETY: callable without the GIL; the list is read with it.
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

/// Whether Python registration is closed in the calling interpreter (its
/// exit hook ran). Call it with the GIL held.
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
