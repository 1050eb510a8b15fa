//! The C ABI of signals, in the shape of `src/ffi/` and with its helpers:
//! forwarding to the owning copy, the boundary each export states
//! (`boundary!`, `unwinds_through!`), argument checks, then the safe core. The doc comments are the C
//! reference (cbindgen copies them into `include/cbreg.h`).

use crate::ffi::boundary::{boundary, forward, required, unwinds_through};
use crate::ffi::RegistryHandle;
use crate::{Status, Value};

use super::EmitReport;

/// A signal handle: generation-checked like a registry handle, so a handle
/// whose signal was freed gets `CBREG_STATUS_INVALID_SIGNAL`, never a newer
/// signal. `handle` 0 is never valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalHandle {
    pub handle: u64,
}

/// Creates a signal whose subscribers are entries of registry `reg`, and
/// writes its handle to `*out`. `INVALID_REGISTRY` for a bad `reg`;
/// `NO_MEMORY` when the table of signals is full.
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn cbreg_signal_new(reg: RegistryHandle, out: *mut SignalHandle) -> Status {
    boundary! { forward signal_new(reg, out); status {
        // SAFETY: `out` is NULL or storage for a handle (the caller's promise).
        let out = unsafe { required(out) }?;
        *out = SignalHandle {
            handle: super::create(reg.handle)?,
        };
        Ok(())
    }}
}

/// Frees a signal: every later call with the handle gets `INVALID_SIGNAL`,
/// and every subscriber is unregistered (each release runs exactly once, as
/// for `cbreg_unregister`). Returns at once: an emit already running on
/// another thread may still finish its calls, as an invocation in flight
/// finishes after `cbreg_unregister`; `cbreg_unregister_wait` on an id
/// waits for that.
#[no_mangle]
pub extern "C" fn cbreg_signal_free(sig: SignalHandle) -> Status {
    boundary! { forward signal_free(sig); status { super::destroy(sig.handle) }}
}

/// Subscribes entry `id` of the signal's registry: every emit from then on
/// calls it, after the subscribers before it. The subscription is the
/// entry: `cbreg_signal_unsubscribe` unregisters it, and once it is
/// unregistered any other way (a one-shot that ran, `cbreg_unregister`,
/// `cbreg_clear`) it is no longer called. If this fails the entry stays
/// registered and the caller still owns it. `NOT_FOUND` unless the entry
/// is live; `INVALID_ARGUMENT` if it is a subscriber already;
/// `INVALID_SIGNAL`, `INVALID_REGISTRY` (the registry was freed),
/// `NO_MEMORY`.
#[no_mangle]
pub extern "C" fn cbreg_signal_subscribe(sig: SignalHandle, id: u64) -> Status {
    boundary! { forward signal_subscribe(sig, id); status { super::subscribe(sig.handle, id) }}
}

/// Ends subscription `id`: takes it off the list and unregisters the
/// entry; no emit calls it after this returns, one running on another
/// thread included (the entry's release runs as for `cbreg_unregister`).
/// Safe from inside any callback, the subscriber's own included.
/// `NOT_FOUND` if `id` is not a live subscriber of the signal.
#[no_mangle]
pub extern "C" fn cbreg_signal_unsubscribe(sig: SignalHandle, id: u64) -> Status {
    boundary! { forward signal_unsubscribe(sig, id); status { super::unsubscribe(sig.handle, id) }}
}

/// Writes the number of live subscribers to `*out`.
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for a size.
#[no_mangle]
pub unsafe extern "C" fn cbreg_signal_count(sig: SignalHandle, out: *mut usize) -> Status {
    boundary! { forward signal_count(sig, out); status {
        // SAFETY: `out` is NULL or storage for a size (the caller's promise).
        let out = unsafe { required(out) }?;
        *out = super::count(sig.handle)?;
        Ok(())
    }}
}

/// Invokes every live subscriber once with the same arguments, in
/// subscription order, from any thread (real-time ones included): no lock,
/// no allocation. A subscriber added during the emit (by a callback or
/// another thread) is not called by it; one unsubscribed during it is not
/// called after the unsubscribe returns. A failing subscriber does not stop
/// the others: the result is `CBREG_STATUS_OK` if none failed, otherwise
/// the first failure's status, and `*report` (if not NULL) gets how many
/// were called, how many failed and the first failure's own code. Return
/// values are discarded. Arguments are checked as for `cbreg_invoke`.
///
/// # Safety
/// `args` points to `nargs` values (or `nargs` is 0), valid for the call as
/// for `cbreg_invoke`; `report` is NULL or points to storage for a report.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_signal_emit(
    sig: SignalHandle,
    args: *const Value,
    nargs: usize,
    report: *mut EmitReport,
) -> Status {
    unwinds_through! { "a subscriber may end its thread with a forced unwind, as for cbreg_invoke; nothing on this path panics", {
        // A copy that forwards never made a signal: it takes the cold path.
        if super::snapshots().is_none() {
            // SAFETY: our caller's promises.
            return unsafe { emit_elsewhere(sig, args, nargs, report) };
        }
        // SAFETY: the caller's promise, `nargs` values at `args`.
        let one_plain = nargs == 1
            && !args.is_null()
            && crate::value::plainly_acceptable(unsafe { &*args });
        let args = if one_plain {
            // SAFETY: one value at `args`, checked non-null above.
            unsafe { std::slice::from_raw_parts(args, 1) }
        } else {
            // SAFETY: the caller's promise, `nargs` values at `args`.
            match unsafe { crate::value::checked_args(args, nargs) } {
                Ok(args) => args,
                Err(e) => return e,
            }
        };
        // SAFETY: the arguments checked; `report` as the caller promises.
        unsafe { super::emit(sig.handle, args.as_ptr(), args.len(), report) }
    }}
}

/// `cbreg_signal_emit` in a copy with no signal of its own: the owning
/// copy's, when this copy forwards; otherwise no signal exists.
///
/// # Safety
/// As for `cbreg_signal_emit`.
#[cold]
#[inline(never)]
unsafe fn emit_elsewhere(
    sig: SignalHandle,
    args: *const Value,
    nargs: usize,
    report: *mut EmitReport,
) -> Status {
    forward!(signal_emit(sig, args, nargs, report));
    Status::InvalidSignal
}
