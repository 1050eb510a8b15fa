//! Emit: hold the signal's current snapshot, invoke every subscriber in it
//! through its call site, report what happened. No lock, no allocation,
//! no read-modify-write on the way (a hold and each call write only this
//! thread's hazard cells).

use super::{moved_on, record_of, snapshots, Snapshot};
use crate::registry::Held;
use crate::status::last_callback_code_here;
use crate::sync::Ordering;
use crate::value::Value;
use crate::Status;

/// What one emit did (`cbreg_emit_report`): how many subscribers were
/// called, how many of those failed, and the first failure.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitReport {
    /// Subscribers whose callback ran (failed ones included).
    pub called: usize,
    /// Callbacks that reported failure.
    pub failed: usize,
    /// The first failure's status (`CBREG_STATUS_CALLBACK_FAILED`, or
    /// `CBREG_STATUS_CLOSED` from a finalizing runtime); `CBREG_STATUS_OK`
    /// when none failed.
    pub first_status: u32,
    /// The code the first failing callback returned (0 when none failed).
    pub first_code: u32,
}

/// Emits on signal `handle`: every live subscriber once, in subscription
/// order, with the same arguments. Returns `Ok`, or the first failure's
/// status; `report` (if not NULL) gets the counts.
///
/// # Safety
/// `args` holds `nargs` well-formed values (checked by the caller) valid
/// for the call; `report` is NULL or valid.
#[inline(always)]
pub(crate) unsafe fn emit(
    handle: u64,
    args: *const Value,
    nargs: usize,
    report: *mut EmitReport,
) -> Status {
    let (Some(record), Some(core)) = (record_of(handle), snapshots()) else {
        return Status::InvalidSignal;
    };
    let mut id = record.current.load(Ordering::Acquire);
    loop {
        if id == 0 {
            return Status::InvalidSignal;
        }
        let done = core.hold(id, |held| {
            // SAFETY: a live snapshot entry's ctx, held: its release waits.
            let snapshot = unsafe { &*(held.ctx() as *const Snapshot) };
            if snapshot.signal != handle {
                return Status::InvalidSignal;
            }
            // SAFETY: the caller's promises.
            unsafe { call_each(held, snapshot, args, nargs, report) }
        });
        if let Some(status) = done {
            return status;
        }
        // Replaced meanwhile (a change retires the old snapshot only after
        // `current` names the new one): read it again.
        if let Err(e) = moved_on(record, id) {
            return e;
        }
        id = record.current.load(Ordering::Acquire);
    }
}

/// The emit loop proper.
///
/// # Safety
/// As for `emit`.
#[inline(always)]
unsafe fn call_each(
    held: &Held<'_>,
    snapshot: &Snapshot,
    args: *const Value,
    nargs: usize,
    report: *mut EmitReport,
) -> Status {
    let mut failures = Failures {
        count: 0,
        first: Status::Ok,
        first_code: 0,
    };
    // SAFETY: the sites are `resolve`'s, of the snapshot's registry; the
    // caller's promises for the arguments.
    let called = unsafe {
        held.invoke_each(
            &snapshot.sites,
            snapshot.index,
            snapshot.registry,
            args,
            nargs,
            |status| failures.note(status),
        )
    };
    if !report.is_null() {
        // SAFETY: the caller's promise: NULL or valid.
        unsafe {
            report.write(EmitReport {
                called,
                failed: failures.count,
                first_status: failures.first as u32,
                first_code: failures.first_code,
            })
        };
    }
    failures.first
}

struct Failures {
    count: usize,
    first: Status,
    first_code: u32,
}

impl Failures {
    #[cold]
    fn note(&mut self, status: Status) {
        if self.count == 0 {
            self.first = status;
            self.first_code = last_callback_code_here();
        }
        self.count += 1;
    }
}
