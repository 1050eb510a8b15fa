//! Interpreter records: one per interpreter that registered Python
//! entries, found by its id, never freed and reused once nothing can reach
//! it. A record carries the interpreter's gate (see `gate.rs`), its count of
//! live entries, and the flags its exit hook sets; every other room reaches
//! an interpreter through its record.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicUsize};
use std::sync::{Mutex, PoisonError};

use pyo3_ffi as py;

use super::cpython::current_view;
use super::gate::Gate;
use super::InterpState;
use crate::Status;

/// One interpreter that registered Python entries. Records are never
/// freed: the record of an ended interpreter is reused for a new one once
/// nothing can reach it any more (see `Interp::reusable`), so at most
/// `MAX_INTERPRETERS` interpreters can use cbreg at once.
pub(super) struct Interp {
    /// The interpreter; null once it has ended.
    pub(super) state: AtomicPtr<py::PyInterpreterState>,
    /// Its PEP 788 view (null without the API; never closed).
    pub(super) view: AtomicPtr<c_void>,
    pub(super) id: AtomicI64,
    pub(super) main: AtomicBool,
    /// Its gate, and the threads counted in on its shared counter.
    pub(super) gate: Gate,
    /// Its Python entries not yet released (or deliberately leaked).
    pub(super) entries: AtomicUsize,
    /// Python registration refused from now on (its exit hook ran).
    pub(super) closed: AtomicBool,
    /// Its exit hook is registered with its `atexit`.
    pub(super) hook_installed: AtomicBool,
    pub(super) exit_done: AtomicBool,
}

pub(super) const MAX_INTERPRETERS: usize = 64;
pub(super) static INTERPS: [AtomicPtr<Interp>; MAX_INTERPRETERS] =
    [const { AtomicPtr::new(null_mut()) }; MAX_INTERPRETERS];
/// Serializes adding to `INTERPS`; readers need no lock.
pub(super) static INTERPS_GROW: Mutex<()> = Mutex::new(());

pub(super) fn interps() -> impl Iterator<Item = &'static Interp> {
    INTERPS
        .iter()
        .map(|p| p.load(Acquire))
        .take_while(|p| !p.is_null())
        // SAFETY: records are leaked, never freed.
        .map(|p| unsafe { &*p })
}

/// The record of `state`, added if new.
///
/// # Safety
/// The GIL is held, and `state` is alive (the current interpreter, or the
/// main one).
pub(super) unsafe fn interp_record(state: InterpState) -> Result<&'static Interp, Status> {
    // SAFETY: `state` is alive (the caller's promise).
    let id = unsafe { py::PyInterpreterState_GetID(state) };
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
    // SAFETY: the GIL is held, as these need.
    let (view, main) = unsafe {
        let view = if state == py::PyInterpreterState_Get() {
            current_view()
        } else {
            null_mut()
        };
        (view, state == py::PyInterpreterState_Main())
    };
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
        gate: Gate::new(),
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
    pub(super) fn reusable(&self) -> bool {
        self.state.load(Acquire).is_null()
            && self.exit_done.load(SeqCst)
            && self.entries.load(SeqCst) == 0
            && self.gate.inside() == 0
    }

    /// Makes this record the one of interpreter `state` (new, or ended and
    /// `reusable`). Under `INTERPS_GROW`; `state` last, as lookups read it
    /// first.
    pub(super) fn begin(&self, state: InterpState, view: *mut c_void, id: i64, main: bool) {
        self.view.store(view, Release);
        self.id.store(id, Relaxed);
        self.main.store(main, Relaxed);
        self.gate.reopen();
        self.closed.store(false, SeqCst);
        self.hook_installed.store(false, SeqCst);
        self.exit_done.store(false, SeqCst);
        self.state.store(state, Release);
    }
}
