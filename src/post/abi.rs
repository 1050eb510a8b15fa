//! The C ABI of post: `cbreg_post`, the targets (the dispatcher, pumps)
//! and their counters. The same shape as `ffi`: each export states its
//! boundary where it is declared (`boundary!`: forwarding to the copy that
//! owns the registries, a panic caught, argument checks, then the core).
//! `cbreg_post` itself has a fast path for one scalar argument with no
//! catch frame (`no_catch_frame!`: nothing on it panics).
//!
//! The doc comments are the C reference (cbindgen copies them into
//! `include/cbreg.h`).

use std::ffi::c_int;

use super::push;
use super::target::{self, PostConfig, PostStats};
use crate::ffi::boundary::{boundary, core_of, no_catch_frame, put, required, unwinds_through};
use crate::ffi::RegistryHandle;
use crate::registry;
use crate::{value, Status, Value};

/// `flags` for `cbreg_post`: make no system call at all, not even the one
/// wake of a consumer that is going to sleep; the consumer finds the event
/// when its period ends (`cbreg_post_config.period_us`, 1 ms by default).
pub const CBREG_POST_NO_WAKE: u32 = 1;
/// `flags` for `cbreg_post`: of this sender's pending coalescing events for
/// the entry, only the newest is delivered; the others are skipped and
/// counted as coalesced (level meters, playhead positions).
pub const CBREG_POST_COALESCE: u32 = 2;
const KNOWN_POST_FLAGS: u32 = CBREG_POST_NO_WAKE | CBREG_POST_COALESCE;

/// Where posted events go and who delivers them. `handle` 0 is cbreg's
/// native dispatcher thread, every entry's target until
/// `cbreg_entry_set_target` says otherwise; other handles name pumps
/// (`cbreg_pump_new`). A freed pump's handle never works again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetHandle {
    pub handle: u32,
}

/// Posts an event for entry `id`: copies the `nargs` values at `args`
/// (strings, bytes and arrays included) into the calling thread's queue to
/// the entry's target and returns at once. The target's consumer later
/// invokes the entry with them, as `cbreg_invoke` would; an entry gone by
/// then is not called (the event is dropped and counted), never another.
/// Events one thread posts to one target are delivered in order.
///
/// No lock, no allocation, no wait; no system call except at most one wake
/// of a consumer that is going to sleep (none with `CBREG_POST_NO_WAKE`).
/// A thread's first post to a target claims a queue made in advance; on a
/// thread marked real-time that finds none free it is `FULL` (call
/// `cbreg_post_reserve` first). `flags`: 0, `CBREG_POST_NO_WAKE`,
/// `CBREG_POST_COALESCE`.
///
/// Returns `OK` (queued), `FULL` (no room: nothing queued, counted),
/// `NOT_FOUND` (not a live entry), `CLOSED` (the registry is closed, or
/// the entry's pump was freed), `INVALID_REGISTRY`, or `INVALID_ARGUMENT`
/// (bad flags, tags, BOOL bytes or nargs, as for `cbreg_invoke`).
///
/// # Safety
/// `args` points to `nargs` values (or `nargs` is 0), and the memory of
/// each string, bytes or array value is valid for the call (it is copied).
#[no_mangle]
pub unsafe extern "C" fn cbreg_post(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    flags: u32,
) -> Status {
    no_catch_frame! { "the fast path returns statuses and never panics", {
        // SAFETY: our caller's promises, passed on.
        unsafe { push::post(reg, id, args, nargs, flags) }
    }}
}

/// `cbreg_post` for everything its fast path does not settle: forwarding,
/// flags, other arguments, a first post to a target, a full ring, and
/// every status but `OK`.
///
/// # Safety
/// `cbreg_post`'s contract for `args` and `nargs`.
#[inline(never)]
pub(super) unsafe fn post_checked(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    flags: u32,
) -> Status {
    boundary! { forward post(reg, id, args, nargs, flags); status {
        if flags & !KNOWN_POST_FLAGS != 0 {
            return Err(Status::InvalidArgument);
        }
        // SAFETY: `args` points to `nargs` values, or `nargs` is 0 (our
        // caller's promise; NULL with a nonzero count is reported).
        let args = unsafe { value::checked_args(args, nargs) }?;
        let core = registry::lookup(reg.handle)?;
        let target = core.post_target(reg.handle, id)?;
        push::post_values(reg.handle, id, target, flags, args).ok()
    }}
}

/// Makes sure the calling thread has its queue to `target` (and, for the
/// dispatcher, that its thread runs), so that its posts there allocate
/// nothing and make no system call but a wake, even on a thread marked
/// real-time. Call it from each sending thread before it goes real-time.
/// `CLOSED` for a freed pump; `NO_MEMORY` when the target serves its
/// most threads (256) already.
#[no_mangle]
pub extern "C" fn cbreg_post_reserve(target: TargetHandle) -> Status {
    boundary! { forward post_reserve(target); status {
        push::reserve(target.handle)
    }}
}

/// Sets where entry `id`'s events go (`{0}`: the native dispatcher, the
/// default). Set it right after registering, before the id is shared:
/// events already queued keep the target they were posted to.
/// `NOT_FOUND` for an id that is not live, `CLOSED` for a freed pump.
#[no_mangle]
pub extern "C" fn cbreg_entry_set_target(
    reg: RegistryHandle,
    id: u64,
    target: TargetHandle,
) -> Status {
    boundary! { forward entry_set_target(reg, id, target); status {
        let core = core_of(reg)?;
        target::lookup(target.handle)?;
        core.set_post_target(id, target.handle).ok()
    }}
}

/// Sets the native dispatcher's queue sizes (used when it starts: later,
/// other sizes are `INVALID_ARGUMENT`) and its period (at any time).
/// `config` NULL is `INVALID_ARGUMENT`; zero fields take the defaults.
///
/// # Safety
/// `config` is NULL or points to a config.
#[no_mangle]
pub unsafe extern "C" fn cbreg_dispatcher_configure(config: *const PostConfig) -> Status {
    boundary! { forward dispatcher_configure(config); status {
        // SAFETY: NULL or a config (the caller's promise).
        let config = unsafe { config.as_ref() }.ok_or(Status::InvalidArgument)?;
        target::configure_dispatcher(*config)
    }}
}

/// Makes a pump: a target the host drains from its own loop (a GUI or
/// message thread). Poll `cbreg_pump_fd` for reading and call
/// `cbreg_pump_drain` when it is readable. `config` NULL: the defaults.
///
/// # Safety
/// `config` is NULL or points to a config; `out` is NULL
/// (`INVALID_ARGUMENT`) or points to storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn cbreg_pump_new(
    config: *const PostConfig,
    out: *mut TargetHandle,
) -> Status {
    boundary! { forward pump_new(config, out); status {
        // SAFETY: NULL or storage for a handle (the caller's promise).
        let out = unsafe { required(out) }?;
        // SAFETY: NULL or a config (the caller's promise).
        let config = unsafe { config.as_ref() }.copied().unwrap_or_default();
        *out = TargetHandle {
            handle: target::create(config)?,
        };
        Ok(())
    }}
}

/// Frees a pump: posts to its entries get `CLOSED` from then on, posts in
/// flight finish first, a drain running on another thread finishes first,
/// and events still queued are dropped and counted as closed.
/// `WOULD_DEADLOCK` (nothing done) from inside a callback its own drain
/// delivers; `INVALID_ARGUMENT` for the dispatcher or a handle that is not
/// a live pump.
#[no_mangle]
pub extern "C" fn cbreg_pump_free(pump: TargetHandle) -> Status {
    boundary! { forward pump_free(pump); status {
        target::destroy(pump.handle).ok()
    }}
}

/// Writes the pump's file descriptor to `*out`: readable when events wait
/// (poll it for reading; never read or close it). -1 on systems without
/// one, where the host drains on a timer. A forked child gets a new
/// descriptor: ask again there.
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for an int.
#[no_mangle]
pub unsafe extern "C" fn cbreg_pump_fd(pump: TargetHandle, out: *mut c_int) -> Status {
    boundary! { forward pump_fd(pump, out); status {
        // SAFETY: NULL or storage for an int (the caller's promise).
        let out = unsafe { required(out) }?;
        *out = live_pump(pump)?.wake.fd();
        Ok(())
    }}
}

/// Delivers up to `max` of the pump's events on the calling thread;
/// writes how many it took (delivered, dropped or skipped) to `*out_count`
/// (may be NULL). A drain that took events leaves the descriptor readable,
/// so the host's loop comes back; the drain that takes none arms the wake,
/// and the descriptor becomes readable at the next post. One
/// drain at a time: a drain from inside a callback it delivers, or while
/// another thread drains, takes nothing. With `CBREG_POST_NO_WAKE` posts
/// the host also drains on its own period.
///
/// # Safety
/// `out_count` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_pump_drain(
    pump: TargetHandle,
    max: usize,
    out_count: *mut usize,
) -> Status {
    unwinds_through! { "a callback it delivers may end its thread with a forced unwind", {
        crate::ffi::boundary::forward!(pump_drain(pump, max, out_count));
        let t = match live_pump(pump) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let count = super::pump_drain(t, max);
        // SAFETY: NULL or storage for a count (the caller's promise).
        unsafe { put(out_count, count) };
        Status::Ok
    }}
}

fn live_pump(pump: TargetHandle) -> Result<&'static target::Target, Status> {
    if pump.handle == target::DISPATCHER {
        return Err(Status::InvalidArgument);
    }
    target::lookup(pump.handle).map_err(|_| Status::InvalidArgument)
}

/// Writes a target's post counters to `*out` (the dispatcher's for `{0}`).
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for the stats.
#[no_mangle]
pub unsafe extern "C" fn cbreg_post_stats_get(target: TargetHandle, out: *mut PostStats) -> Status {
    boundary! { forward post_stats_get(target, out); status {
        // SAFETY: NULL or storage for the stats (the caller's promise).
        let out = unsafe { required(out) }?;
        *out = target::lookup(target.handle)?.stats();
        Ok(())
    }}
}

/// Writes the post counters of every target this process has made, summed
/// (the high-water mark is the largest), to `*out`.
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for the stats.
#[no_mangle]
pub unsafe extern "C" fn cbreg_post_stats_total(out: *mut PostStats) -> Status {
    boundary! { forward post_stats_total(out); status {
        // SAFETY: NULL or storage for the stats (the caller's promise).
        let out = unsafe { required(out) }?;
        *out = super::stats::total_stats();
        Ok(())
    }}
}
