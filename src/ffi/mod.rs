//! The C ABI: every exported function, and the one boundary they share.
//!
//! Each export states its boundary policy where it is declared, as the
//! first and only statement of its body:
//! - `boundary! { forward f(args); status { .. } }`: a copy of cbreg that
//!   does not own the process's registries passes the call to the copy that
//!   does (`forward!`, see `rendezvous`); otherwise the body runs with a
//!   panic caught, and a panic becomes `CBREG_STATUS_INTERNAL`. `value`
//!   instead of `status` for a body that returns its result directly: a
//!   panic becomes that type's `Fallback` (as rustls-ffi's `PanicOrDefault`);
//!   `local` instead of `forward ..` for a function that touches nothing a
//!   copy owns.
//! - `unwinds_through! { "why", { .. } }`: the two invoke exports only. A
//!   callback may end its thread with a forced unwind (`pthread_exit`, as
//!   CPython does to a thread that takes the GIL back during finalization),
//!   which must pass through invoke: `catch_unwind` would turn it into an
//!   abort. So these two are `extern "C-unwind"` and hold no catch frame;
//!   nothing on their path panics (the lookups return statuses, callbacks
//!   made by the Rust API catch their own panics), and guards undo what the
//!   unwind passes (docs/protocol.md, section 2).
//!
//! Every other export is `extern "C"`: nothing unwinds out of it. Argument
//! checks go through the helpers of `boundary.rs` (`required`, `put`, and
//! `value::checked_args`), then a call into the safe core.
//!
//! The doc comments here are the C reference: cbindgen copies them into
//! `include/cbreg.h`.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};

use crate::registry::{self, CallFn, Pinned, ReleaseFn, Stats};
use crate::{Status, Value};

pub(crate) mod boundary;
mod invoke;

pub(crate) use boundary::{boundary, Fallback};
use boundary::{core_of, put, required};
pub use invoke::{cbreg_invoke, cbreg_site_invoke, cbreg_site_resolve, Site};

pub use crate::status::CBREG_STATUS_COUNT;
pub use crate::value::CBREG_MAX_ARGS;

pub use crate::signal::ffi::*;
pub use crate::signal::EmitReport;

/// A registry handle. Handles are values, not pointers: a handle whose
/// registry was destroyed is detected and gets `CBREG_STATUS_INVALID_REGISTRY`.
/// `handle` 0 is never valid (a zeroed handle means "no registry").
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryHandle {
    pub handle: u64,
}

/// `flags` for `cbreg_register`: the entry runs at most once, then
/// unregisters itself (racing invokers that lose get `NOT_FOUND`).
pub const CBREG_ONCE: u32 = 1;
/// `flags` for `cbreg_register`: when the entry is unregistered, its release
/// runs before `cbreg_unregister` returns (unless an invocation is in
/// flight, or the thread is real-time), at the cost of a heavy barrier (a
/// system call) per unregister while other threads are alive. Without it,
/// such releases are batched: see `cbreg_unregister`. The Python adapter
/// registers with it, so a callable's reference count is back at once.
pub const CBREG_PROMPT: u32 = 4;
const KNOWN_FLAGS: u32 = CBREG_ONCE | CBREG_PROMPT;

/// A static, NUL-terminated description of `status` ("unknown status" for
/// codes cbreg does not define).
#[no_mangle]
pub extern "C" fn cbreg_status_str(status: u32) -> *const c_char {
    boundary! { local; value {
        match crate::status::ALL_STATUSES.get(status as usize) {
            Some(s) => s.message_ptr(),
            None => "unknown status\0".as_ptr().cast(),
        }
    }}
}

/// The process-wide default registry, shared by every library and language
/// in the process. It is never destroyed.
#[no_mangle]
pub extern "C" fn cbreg_default() -> RegistryHandle {
    // Local: the handle is the same in every copy; the owner makes the
    // registry itself at its first use.
    boundary! { local; value {
        if crate::rendezvous::remote().is_none() {
            registry::default_core();
        }
        RegistryHandle {
            handle: registry::DEFAULT_HANDLE,
        }
    }}
}

/// Creates a registry of its own and writes its handle to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn cbreg_registry_new(out: *mut RegistryHandle) -> Status {
    boundary! { forward registry_new(out); status {
        // SAFETY: `out` is NULL or storage for a handle (the caller's promise).
        let out = unsafe { required(out) }?;
        let handle = registry::create()?;
        *out = RegistryHandle { handle };
        Ok(())
    }}
}

/// Destroys a registry made by `cbreg_registry_new`: closes it, waits for
/// invocations in flight, runs every release, then invalidates the handle.
/// `WOULD_DEADLOCK` from inside one of its own callbacks;
/// `INVALID_ARGUMENT` for the default registry.
#[no_mangle]
pub extern "C" fn cbreg_registry_free(reg: RegistryHandle) -> Status {
    boundary! { forward registry_free(reg); status {
        registry::destroy(reg.handle).ok()
    }}
}

/// Registers an entry and writes its id (nonzero, never reused) to `*out_id`.
///
/// `call(ctx, args, nargs, ret)` runs on every invoke, from any thread.
/// `release(ctx)` (may be NULL) runs exactly once after the entry is
/// unregistered and no invocation of it is running; never under a cbreg
/// lock, never on a thread marked real-time. `flags`: 0, or `CBREG_ONCE`
/// and/or `CBREG_PROMPT`.
/// On failure nothing is kept: `ctx` still belongs to the caller.
///
/// # Safety
/// `out_id` is NULL or points to storage for an id; `call` and
/// `release` are sound to call with `ctx` from any thread.
#[no_mangle]
pub unsafe extern "C" fn cbreg_register(
    reg: RegistryHandle,
    call: CallFn,
    ctx: *mut c_void,
    release: ReleaseFn,
    flags: u32,
    out_id: *mut u64,
) -> Status {
    boundary! { forward register(reg, call, ctx, release, flags, out_id); status {
        let core = core_of(reg)?;
        // SAFETY: `out_id` is NULL or storage for an id (the caller's promise).
        let out_id = unsafe { required(out_id) }?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Status::InvalidArgument);
        }
        *out_id = core.register(
            call,
            ctx,
            release,
            flags & CBREG_ONCE != 0,
            flags & CBREG_PROMPT != 0,
        )?;
        Ok(())
    }}
}

/// Unregisters `id` and returns at once: no invocation starts after it
/// returns. The release runs here if no invocation is in flight and no
/// other thread has invoked (or the entry is `CBREG_PROMPT`); otherwise
/// when the last invocation returns, or with a batch: by the next collect,
/// by the unregister that fills a batch of 64, or by cbreg's reclaimer
/// thread within about 10 ms. Batching saves a system call per unregister
/// while other threads are alive. `cbreg_unregister_wait` returns only
/// after the release.
#[no_mangle]
pub extern "C" fn cbreg_unregister(reg: RegistryHandle, id: u64) -> Status {
    boundary! { forward unregister(reg, id); status {
        core_of(reg)?.unregister(id).ok()
    }}
}

/// Unregisters `id`, waits until invocations in flight have returned, and
/// runs the release before returning (unless this thread is real-time).
/// From inside a callback of `id` itself it returns `WOULD_DEADLOCK` and
/// changes nothing.
#[no_mangle]
pub extern "C" fn cbreg_unregister_wait(reg: RegistryHandle, id: u64) -> Status {
    boundary! { forward unregister_wait(reg, id); status {
        core_of(reg)?.unregister_wait(id).ok()
    }}
}

/// Unregisters every entry; writes how many to `*out_count` (may be NULL).
///
/// # Safety
/// `out_count` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C" fn cbreg_clear(reg: RegistryHandle, out_count: *mut usize) -> Status {
    boundary! { forward clear(reg, out_count); status {
        let count = core_of(reg)?.clear();
        // SAFETY: NULL or storage for a count (the caller's promise).
        unsafe { put(out_count, count) };
        Ok(())
    }}
}

/// Clears, then refuses new registrations with `CLOSED`. Invoking what is
/// left gets `NOT_FOUND`. `*out_count` (may be NULL): entries cleared.
///
/// # Safety
/// `out_count` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C" fn cbreg_close(reg: RegistryHandle, out_count: *mut usize) -> Status {
    boundary! { forward close(reg, out_count); status {
        let count = core_of(reg)?.close();
        // SAFETY: NULL or storage for a count (the caller's promise).
        unsafe { put(out_count, count) };
        Ok(())
    }}
}

/// Writes whether the registry is closed (`cbreg_close` ran) to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for a bool.
#[no_mangle]
pub unsafe extern "C" fn cbreg_registry_is_closed(reg: RegistryHandle, out: *mut bool) -> Status {
    boundary! { forward registry_is_closed(reg, out); status {
        let core = core_of(reg)?;
        // SAFETY: NULL or storage for a bool (the caller's promise).
        *unsafe { required(out) }? = core.is_closed();
        Ok(())
    }}
}

/// Runs deferred releases whose invocations have all returned (batched
/// ones included); writes how many this call ran to `*out_released` (may
/// be NULL). If another thread is collecting the registry, waits until it
/// has run the round this call asked for (except from inside a callback,
/// release or collection, which returns at once). Does nothing on a
/// real-time thread.
///
/// # Safety
/// `out_released` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C" fn cbreg_collect(reg: RegistryHandle, out_released: *mut usize) -> Status {
    boundary! { forward collect(reg, out_released); status {
        let core = core_of(reg)?;
        let (released, led) = core.collect_leading();
        let core: &'static registry::Core = Pinned::into_core(core);
        if !led {
            // Another thread's collection was running: wait for the round
            // this call asked for (unless this thread is inside cbreg, where
            // that collection may be waiting for it).
            core.wait_for_collector();
        }
        // SAFETY: NULL or storage for a count (the caller's promise).
        unsafe { put(out_released, released) };
        Ok(())
    }}
}

/// Writes the registry's counters to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for the stats.
#[no_mangle]
pub unsafe extern "C" fn cbreg_stats_get(reg: RegistryHandle, out: *mut Stats) -> Status {
    boundary! { forward stats_get(reg, out); status {
        let core = core_of(reg)?;
        // SAFETY: NULL or storage for the stats (the caller's promise).
        *unsafe { required(out) }? = core.stats();
        Ok(())
    }}
}

/// The code returned by the last callback that failed on this thread (the
/// code behind a `CBREG_STATUS_CALLBACK_FAILED`); 0 if none has failed.
#[no_mangle]
pub extern "C" fn cbreg_last_callback_code() -> u32 {
    boundary! { forward last_callback_code(); value {
        crate::status::last_callback_code_here()
    }}
}

/// Marks the calling thread real-time (`on` true) or not. cbreg never runs
/// a release on a real-time thread; such releases wait for the next collect
/// on another thread. Either way the thread's record is claimed now, so its
/// first invoke takes the fast path (call it when an audio thread starts).
#[no_mangle]
pub extern "C" fn cbreg_thread_set_realtime(on: bool) -> Status {
    boundary! { forward thread_set_realtime(on); status {
        crate::registry::set_thread_realtime(on);
        Ok(())
    }}
}

/// Whether the calling thread is marked real-time.
#[no_mangle]
pub extern "C" fn cbreg_thread_is_realtime() -> bool {
    boundary! { forward thread_is_realtime(); value {
        crate::hazard::is_realtime()
    }}
}

/// For release functions of foreign runtimes: call it from inside a release
/// that deliberately did not free its context because the runtime is
/// finalizing. The entry is then counted as leaked instead of released.
#[no_mangle]
pub extern "C" fn cbreg_release_mark_leaked() {
    boundary! { forward release_mark_leaked(); value {
        registry::mark_release_leaked();
    }}
}

/// Frees what a returned value owns (calls its `drop` with its `owner`, if
/// set) and resets it to none. NULL is ignored.
///
/// # Safety
/// `value` is NULL or points to a value whose `drop` and `owner` are what
/// the callback that produced it set.
#[no_mangle]
pub unsafe extern "C" fn cbreg_value_drop(value: *mut Value) {
    // Local: the value's own `drop` frees it, whichever copy made it.
    boundary! { local; value {
        // SAFETY: `value` is NULL or points to a value (the caller's promise).
        if let Some(v) = unsafe { value.as_mut() } {
            // SAFETY: its `drop` and `owner` are what its producer set (the
            // caller's promise).
            unsafe { v.drop_owned() };
        }
    }}
}
