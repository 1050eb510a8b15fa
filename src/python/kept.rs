//! Thread states kept for native threads in the main interpreter.
//!
//! A native thread (one CPython did not make) that calls into the main
//! interpreter makes a thread state there once and keeps it, as JNI's
//! AttachCurrentThread does: later calls only take and give back the GIL
//! (`PyEval_RestoreThread` / `PyEval_SaveThread`). `PyThreadState_New` makes
//! it the thread's `PyGILState` state too (CPython binds the first state a
//! thread makes, and from 3.12 on every state a thread activates), so other
//! code on the thread that calls `PyGILState_Ensure`, inside a callback or
//! between calls, uses it as well.
//!
//! Only its own thread ever deletes it, with the GIL: CPython unbinds a
//! state's `PyGILState` slot on the thread that deletes it, so a state
//! deleted from another thread would leave its owner's slot pointing at
//! freed memory (and on 3.12+ clear the deleting thread's own slot). It is
//! deleted when its thread exits while the main interpreter's gate is open
//! (the pthread key's destructor), or when the thread next calls while the
//! exit hook is draining. The exit hook does not delete the states of
//! threads still alive: once it shuts the gate no thread uses its kept
//! state again, and finalization frees the states still there, as it frees
//! those of Python's own daemon threads. Subinterpreters get a state per
//! call: a kept one would make the interpreter look busy to
//! `_xxsubinterpreters.destroy`, and CPython aborts in `Py_EndInterpreter`
//! while another thread state is left in it.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};

use pyo3_ffi as py;

use super::attach::delete_current;
use super::cpython::{current_tstate, gil_holder, interpreter_alive, AttachPermit};
use super::gate::OwnCount;
use super::interp::Interp;
use super::pass::GatePass;
use super::TState;

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
pub(super) struct KeptRecord {
    /// Passes its thread holds (0 while free).
    pub(super) inside: OwnCount,
    /// The thread state kept (null while free). Written and read by its
    /// thread alone (and by a forked child's one thread), as is `interp`.
    pub(super) state: AtomicPtr<py::PyThreadState>,
    /// The interpreter record it belongs to (the main one).
    pub(super) interp: AtomicPtr<Interp>,
    /// In use by a thread.
    pub(super) taken: AtomicBool,
    pub(super) next: AtomicPtr<KeptRecord>,
}

/// Every `KeptRecord` ever made (a push-only list).
pub(super) static KEPT_RECORDS: AtomicPtr<KeptRecord> = AtomicPtr::new(null_mut());

pub(super) fn kept_records() -> impl Iterator<Item = &'static KeptRecord> {
    let mut next = KEPT_RECORDS.load(Acquire);
    std::iter::from_fn(move || {
        // SAFETY: records are leaked, never freed.
        let record = unsafe { next.as_ref()? };
        next = record.next.load(Acquire);
        Some(record)
    })
}

/// A free record, taken for this thread (allocated if none is free).
pub(super) fn take_kept_record() -> &'static KeptRecord {
    if let Some(free) = kept_records().find(|r| {
        r.taken
            .compare_exchange(false, true, SeqCst, Relaxed)
            .is_ok()
    }) {
        return free;
    }
    let record: &'static KeptRecord = Box::leak(Box::new(KeptRecord {
        inside: OwnCount::new(),
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
pub(super) fn kept_inside() -> usize {
    kept_records().map(|r| r.inside.seen()).sum()
}

impl KeptRecord {
    /// This thread's record, when it keeps a state in `interp`.
    #[inline(always)]
    pub(super) fn of_this_thread(interp: &Interp) -> Option<&'static KeptRecord> {
        // SAFETY: records are leaked, never freed.
        let record = unsafe { kept_record().as_ref()? };
        std::ptr::eq(record.interp.load(Relaxed), interp).then_some(record)
    }
}

/// This thread's `KeptRecord` while it keeps a state (else null), in a
/// thread-local word of the adapter's own (`tls_word::python_word`): read
/// without a call to `__tls_get_addr` on x86-64 Linux.
#[inline(always)]
pub(super) fn kept_record() -> *const KeptRecord {
    crate::tls_word::python_word::get() as *const KeptRecord
}

pub(super) fn set_kept_record(record: *const KeptRecord) {
    crate::tls_word::python_word::set(record as usize);
}

/// Kept thread states alive (counted for `cbreg_py_thread_states`).
pub(super) static KEPT_LIVE: AtomicUsize = AtomicUsize::new(0);

/// The pthread key whose destructor detaches a thread's kept state when
/// the thread exits; `KEY_MISSING` until made (or if it could not be:
/// then nothing is kept).
/// (`pthread_key_t` is 32 bits on Linux, 64 on macOS.)
pub(super) static KEPT_KEY: AtomicU64 = AtomicU64::new(KEY_MISSING);
pub(super) const KEY_MISSING: u64 = u64::MAX;

/// The key, if made.
pub(super) fn kept_key() -> Option<libc::pthread_key_t> {
    libc::pthread_key_t::try_from(KEPT_KEY.load(Relaxed)).ok()
}

/// Makes the key (once per process, GIL held).
pub(super) fn make_kept_key() {
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

/// Keeps `made` as this thread's state in `interp`; false when it cannot
/// be kept (no key).
///
/// # Safety
/// `made` is current on this thread, the GIL held, in `interp`.
pub(super) unsafe fn keep(made: TState, interp: &'static Interp) -> bool {
    let Some(key) = kept_key() else {
        return false;
    };
    // SAFETY: a key of ours; the value is only compared, never freed by it.
    if unsafe { libc::pthread_setspecific(key, made.cast()) } != 0 {
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
pub(super) fn forget_kept() {
    let record = kept_record();
    set_kept_record(std::ptr::null());
    // SAFETY: a leaked record. One that a pass still counts on (a forked
    // child's thread inside a call) is left taken, never reused.
    if let Some(record) = unsafe { record.as_ref() } {
        record.state.store(null_mut(), Relaxed);
        record.interp.store(null_mut(), Relaxed);
        if record.inside.held() == 0 {
            record.taken.store(false, Release);
        }
    }
    if let Some(key) = kept_key() {
        // SAFETY: a key of ours; no value to free.
        unsafe { libc::pthread_setspecific(key, std::ptr::null()) };
    }
    let _ = KEPT_LIVE.fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
}

/// Deletes this thread's kept state in `interp` now, if it has one and the
/// gate lets it through (open, or the exit hook draining). Returns whether
/// it did.
///
/// # Safety
/// `holder` is `gil_holder()` on this thread, just read.
pub(super) unsafe fn detach_kept(interp: &'static Interp, holder: Option<TState>) -> bool {
    let Some(record) = KeptRecord::of_this_thread(interp) else {
        return false;
    };
    let kept = record.state.load(Relaxed);
    if record.inside.held() != 0 {
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
            let Some(_permit) = AttachPermit::take(interp.view.load(Acquire)) else {
                return false;
            };
            // SAFETY: this thread's own kept state, detached (no GIL held);
            // the pass and the permit are held, so the interpreter is alive.
            unsafe { py::PyEval_RestoreThread(kept) };
        }
    }
    forget_kept();
    // SAFETY: `kept` is current on this thread, the GIL held.
    unsafe { delete_current(kept) };
    true
}

/// The kept state's key destructor: its thread is exiting.
///
/// # Safety
/// Called by the C library for the key made by `make_kept_key`, on the
/// exiting thread.
pub(super) unsafe extern "C-unwind" fn kept_state_at_thread_exit(value: *mut c_void) {
    // SAFETY: records are leaked, never freed.
    let Some(record) = (unsafe { kept_record().as_ref() }) else {
        return;
    };
    let (kept, interp) = (record.state.load(Relaxed), record.interp.load(Relaxed));
    if value.is_null() || interp.is_null() || kept != value.cast() {
        return;
    }
    // SAFETY: interpreter records are leaked, never freed.
    let interp = unsafe { &*interp };
    // Once the exit hook has begun the state is left to CPython: taking the
    // GIL then could meet finalization, which ends the thread (here, inside
    // its own exit).
    if interp.gate.is_open()
        // SAFETY: callable at any time.
        && unsafe { py::Py_IsInitialized() } != 0
        // SAFETY: `gil_holder()` just read on this thread.
        && unsafe { detach_kept(interp, gil_holder()) }
    {
        return;
    }
    forget_kept();
}

/// After a fork, in the child: the states other threads kept are CPython's
/// to free (they are gone with their threads); this thread keeps its own
/// only if it is the current one (the one CPython keeps in the child).
pub(super) fn kept_after_fork_in_child() {
    // SAFETY: a leaked record.
    let kept = unsafe { kept_record().as_ref() }.map_or(null_mut(), |r| r.state.load(Relaxed));
    let mine = !kept.is_null() && current_tstate() == kept;
    if !kept.is_null() && !mine {
        forget_kept();
    }
    KEPT_LIVE.store(usize::from(mine), SeqCst);
    let own = kept_record();
    for record in kept_records().filter(|r| !std::ptr::eq(*r, own)) {
        record.inside.reset();
        record.state.store(null_mut(), Relaxed);
        record.interp.store(null_mut(), Relaxed);
        record.taken.store(false, SeqCst);
    }
}
