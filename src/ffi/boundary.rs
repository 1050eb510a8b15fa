//! The boundary every export shares: what a panic becomes (`Fallback`),
//! the `boundary!` and `unwinds_through!` macros that state each export's
//! policy where it is declared, the forwarding to the owning copy
//! (`forward!`), and the helpers that read and write through the caller's
//! pointers.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::RegistryHandle;
use crate::registry::{self, Pinned};
use crate::Status;

/// What an export returns when its body panicked (or, in `rendezvous`,
/// when a copy refuses a call it cannot forward): the answer that promises
/// least.
pub(crate) trait Fallback {
    const FALLBACK: Self;
}

impl Fallback for Status {
    const FALLBACK: Status = Status::Internal;
}
impl Fallback for bool {
    const FALLBACK: bool = false;
}
impl Fallback for u32 {
    const FALLBACK: u32 = 0;
}
impl Fallback for usize {
    const FALLBACK: usize = 0;
}
impl Fallback for () {
    const FALLBACK: () = ();
}
impl Fallback for *const c_char {
    const FALLBACK: *const c_char = b"internal error\0".as_ptr().cast();
}
/// The default registry's handle: a registry it could not make now is made
/// by the next call that uses it.
impl Fallback for RegistryHandle {
    const FALLBACK: RegistryHandle = RegistryHandle {
        handle: registry::DEFAULT_HANDLE,
    };
}

/// Passes the call to the owning copy's `Api` when this copy is not it.
macro_rules! forward {
    ($f:ident($($a:expr),*)) => {
        if let Some(api) = $crate::rendezvous::remote() {
            // SAFETY: the owner's function for this very export (the table
            // is generated from one list, checked against these
            // signatures), with this call's arguments, so with the promises
            // our caller made for them.
            return unsafe { (api.$f)($($a),*) };
        }
    };
}
pub(crate) use forward;

/// The boundary of every export but the two invokes (see the module doc).
macro_rules! boundary {
    (forward $f:ident($($a:expr),*); $kind:ident $body:block) => {{
        $crate::ffi::boundary::forward!($f($($a),*));
        $crate::ffi::boundary::boundary!(local; $kind $body)
    }};
    (local; status $body:block) => {
        $crate::ffi::boundary::catch_status(|| $body)
    };
    (local; value $body:block) => {
        $crate::ffi::boundary::catch_value(|| $body)
    };
}
pub(crate) use boundary;

/// The invoke exports' policy: no catch frame, for the reason given.
macro_rules! unwinds_through {
    ($why:literal, $body:block) => {
        $body
    };
}
pub(crate) use unwinds_through;

/// An `extern "C"` fast path with no catch frame, for the reason given
/// (`cbreg_post`'s: it only returns statuses): a panic there would abort,
/// as out of any `extern "C"` function, and its slow path has a boundary.
macro_rules! no_catch_frame {
    ($why:literal, $body:block) => {
        $body
    };
}
pub(crate) use no_catch_frame;

/// Runs `body` with a panic caught: `Ok` is `CBREG_STATUS_OK`, an error
/// its status, a panic `CBREG_STATUS_INTERNAL`.
#[inline(always)]
pub(crate) fn catch_status(body: impl FnOnce() -> Result<(), Status>) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Status::Ok,
        Ok(Err(e)) => e,
        Err(_) => Status::FALLBACK,
    }
}

/// Runs `body` with a panic caught; a panic gives `R`'s fallback.
#[inline(always)]
pub(crate) fn catch_value<R: Fallback>(body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(R::FALLBACK)
}

/// The registry a handle names, pinned for the duration of the call (a
/// concurrent `cbreg_registry_free` waits for it; a freed handle is
/// `INVALID_REGISTRY`).
#[inline(always)]
pub(crate) fn core_of(reg: RegistryHandle) -> Result<Pinned, Status> {
    registry::pin(reg.handle)
}

/// Writes through an optional out-pointer.
///
/// # Safety
/// `out` is NULL or valid for a write of a `T`.
#[inline(always)]
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null, so valid for the write (the caller's promise).
        unsafe { out.write(value) };
    }
}

/// A required out-pointer: `INVALID_ARGUMENT` for NULL.
///
/// # Safety
/// `out` is NULL or points to a `T` that nothing else reads or writes for
/// `'a`.
pub(crate) unsafe fn required<'a, T>(out: *mut T) -> Result<&'a mut T, Status> {
    // SAFETY: non-null pointers are valid and unaliased (the caller's
    // promise); `as_mut` turns NULL into `None`.
    unsafe { out.as_mut() }.ok_or(Status::InvalidArgument)
}
