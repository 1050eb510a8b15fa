//! One registry table per process image, however many copies of cbreg it
//! holds.
//!
//! A process can hold several copies of this library: the Python package's
//! `libcbreg.so`, a renamed copy a wheel repair tool vendored, the crate
//! linked statically into a Rust extension, C plugins each linking
//! `libcbreg.a` and loaded with `RTLD_LOCAL`. Each copy has its own statics,
//! so left alone each would own a table of registries of its own.
//!
//! Instead, the first copy to decide *owns* the table, and every other copy
//! forwards each C ABI call to the owner's table of functions (`Api`).
//!
//! # The forwarding table, declared once
//!
//! `abi_table!` below is the one list of what a copy forwards: each line
//! names a field, its signature, and this copy's function for it. From that
//! list come the `Api` struct (`#[repr(C)]`, append-only: a copy checks
//! `size` before it uses the owner's table), this copy's own table, and the
//! table of stubs a copy uses when the owner is too old for it (each stub
//! returns its type's refusal, `ffi::Fallback`: `CBREG_STATUS_INTERNAL` for
//! a status). Every export of `ffi` that reaches the registries is a
//! line, and so is each service the Python adapter asks of the owner
//! (`retire_matching`, `set_blocking_hook`, `collect_all`).
//!
//! Adding an export (say `cbreg_post`) is one line at the end of the list,
//! `post: "C" fn(RegistryHandle, ...) -> Status = ffi::cbreg_post;`, and
//! `forward!(post(...))` (or `boundary! { forward post(...); ... }`) in
//! the export's body. The compiler checks the line against the export's
//! signature. Only append: fields already published must keep their place.
//!
//! # The anchor (`anchor.rs`): how copies meet, and why it survives fork
//!
//! Copies loaded `RTLD_LOCAL` cannot see each other's symbols, so they meet
//! at an address. Every copy computes the same few candidate addresses from
//! the 16 random bytes the kernel gives each program image (`AT_RANDOM`).
//! The owner maps one read-only page at the first free candidate, holding a
//! magic pair derived from those bytes and the address of its `Api`. The
//! page is filled before it is mapped there (it is a private mapping of a
//! memory file written beforehand), so it appears whole or not at all; and
//! it is mapped with `MAP_FIXED_NOREPLACE`, so of two copies racing, exactly
//! one maps it and the other finds it. A copy reads a candidate through a
//! pipe first (a `write` from an unreadable address fails instead of
//! faulting), so a foreign mapping that happens to sit on a candidate is
//! recognised as foreign and skipped.
//!
//! The anchor is process memory, so it belongs to exactly one process
//! image, and the argument for each hazard is the same: what a process sees
//! is its own memory.
//! - Fork: the child's memory is a copy of the parent's, the page and the
//!   owner's code and statics included, so the child has the same owner,
//!   alive in the child; a later copy the child loads finds it. Whatever the
//!   child does changes its own copy only: the parent's view never changes,
//!   and a child that is the first to use cbreg (and ends with `_exit`)
//!   leaves the parent nothing to adopt.
//! - Exit: nothing outside the process names the owner, so nothing is
//!   removed at exit and nothing stale is left behind.
//! - Privilege drops: no file, so no permission is ever checked.
//! - Exec: a new image has new memory and new random bytes.
//! - A decision has no in-between state a fork could freeze: electing is
//!   idempotent (every thread that races to decide maps or finds the same
//!   page, and all store the same answer), so a child forked while another
//!   thread was deciding simply decides again.
//!
//! # When copies decide
//!
//! Each copy decides in a library constructor (`.init_array`), at load,
//! on the thread that loads it: a copy's first call (say `cbreg_invoke` on
//! a real-time thread) then finds its answer in one word, with no system
//! call, no allocation and no lock. A copy whose constructor did not run
//! decides at its first call. The owner pins itself in memory
//! (`RTLD_NODELETE`) as soon as it has mapped the page, so forwarding copies
//! never call into an unloaded library.
//!
//! A copy that meets an owner whose table is shorter than its own fails
//! every call with `CBREG_STATUS_INTERNAL` and says why on stderr once:
//! never a silent second registry. With `CBREG_PRIVATE=1` in the environment
//! (for tests) a copy keeps a table of its own. Where no candidate can be
//! mapped (an address space laid out by a sanitizer, say), a copy says so on
//! stderr and keeps a table of its own.
//!
//! Limits: copies of cbreg older than this anchor met through a shared
//! memory object in /dev/shm; they do not find the page, nor it them.
//!
//! No fork handler is needed: nothing here has a state that a fork leaves
//! half done.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::ffi::{self, EmitReport, Fallback, RegistryHandle, SignalHandle, Site};
use crate::post::abi::{self as post, TargetHandle};
use crate::post::{PostConfig, PostStats};
use crate::registry::{CallFn, ReleaseFn, Stats};
use crate::{Status, Value};

const MAGIC: u64 = u64::from_le_bytes(*b"cbregApi");
/// Version of the `Api` layout; fields are only ever appended.
const VERSION: u32 = 4;

/// What a copy that cannot use the owner's table returns from a call.
fn refused<R: Fallback>() -> R {
    R::FALLBACK
}

/// Generates, from one list, the `Api` struct, this copy's table (`OWN`)
/// and the table of refusing stubs (`INCOMPATIBLE`). Every field is an
/// `unsafe` function pointer: a safe export coerces to one, and the caller
/// (`ffi::forward!`) passes its own caller's promises on.
macro_rules! abi_table {
    ($(
        $(#[$meta:meta])*
        $field:ident: $abi:literal fn($($arg:ty),*) $(-> $ret:ty)? = $own:expr;
    )*) => {
        /// The C ABI of the owning copy. `#[repr(C)]`, append-only: a copy
        /// checks `size` before it uses a field.
        #[repr(C)]
        pub struct Api {
            magic: u64,
            version: u32,
            size: u32,
            $( $(#[$meta])* pub(crate) $field: unsafe extern $abi fn($($arg),*) $(-> $ret)?, )*
        }

        static OWN: Api = Api {
            magic: MAGIC,
            version: VERSION,
            size: std::mem::size_of::<Api>() as u32,
            $( $field: $own, )*
        };

        /// What a copy that cannot use the owner's table calls instead:
        /// every call is refused, loudly (see `incompatible`). A stub only
        /// returns a constant, so it needs no panic boundary.
        mod refuse {
            #[allow(unused_imports)]
            use super::*;
            $(
                pub(super) extern $abi fn $field($(_: $arg),*) $(-> $ret)? {
                    refused()
                }
            )*
        }

        static INCOMPATIBLE: Api = Api {
            magic: MAGIC,
            version: VERSION,
            size: std::mem::size_of::<Api>() as u32,
            $( $field: refuse::$field, )*
        };
    };
}

abi_table! {
    registry_new: "C" fn(*mut RegistryHandle) -> Status = ffi::cbreg_registry_new;
    registry_free: "C" fn(RegistryHandle) -> Status = ffi::cbreg_registry_free;
    register: "C" fn(RegistryHandle, CallFn, *mut c_void, ReleaseFn, u32, *mut u64) -> Status
        = ffi::cbreg_register;
    /// `C-unwind`: a forced unwind from a callback passes (see `ffi::cbreg_invoke`).
    invoke: "C-unwind" fn(RegistryHandle, u64, *const Value, usize, *mut Value) -> Status
        = ffi::cbreg_invoke;
    unregister: "C" fn(RegistryHandle, u64) -> Status = ffi::cbreg_unregister;
    unregister_wait: "C" fn(RegistryHandle, u64) -> Status = ffi::cbreg_unregister_wait;
    clear: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_clear;
    close: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_close;
    collect: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_collect;
    stats_get: "C" fn(RegistryHandle, *mut Stats) -> Status = ffi::cbreg_stats_get;
    registry_is_closed: "C" fn(RegistryHandle, *mut bool) -> Status
        = ffi::cbreg_registry_is_closed;
    last_callback_code: "C" fn() -> u32 = ffi::cbreg_last_callback_code;
    thread_set_realtime: "C" fn(bool) -> Status = ffi::cbreg_thread_set_realtime;
    thread_is_realtime: "C" fn() -> bool = ffi::cbreg_thread_is_realtime;
    release_mark_leaked: "C" fn() = ffi::cbreg_release_mark_leaked;
    retire_matching: "C" fn(ReleaseFn, MatchFn, *mut c_void) -> usize = retire_matching_local;
    set_blocking_hook: "C" fn(BlockingBefore, BlockingAfter) -> bool = set_blocking_hook_local;
    collect_all: "C" fn() -> usize = collect_all_local;
    // Version 2.
    site_resolve: "C" fn(RegistryHandle, u64, *mut Site) -> Status = ffi::cbreg_site_resolve;
    /// `C-unwind`: as `invoke`.
    site_invoke: "C-unwind" fn(*const Site, *const Value, usize, *mut Value) -> Status
        = ffi::cbreg_site_invoke;
    // Version 3.
    post: "C" fn(RegistryHandle, u64, *const Value, usize, u32) -> Status = post::cbreg_post;
    post_reserve: "C" fn(TargetHandle) -> Status = post::cbreg_post_reserve;
    entry_set_target: "C" fn(RegistryHandle, u64, TargetHandle) -> Status
        = post::cbreg_entry_set_target;
    dispatcher_configure: "C" fn(*const PostConfig) -> Status = post::cbreg_dispatcher_configure;
    pump_new: "C" fn(*const PostConfig, *mut TargetHandle) -> Status = post::cbreg_pump_new;
    pump_free: "C" fn(TargetHandle) -> Status = post::cbreg_pump_free;
    pump_fd: "C" fn(TargetHandle, *mut std::ffi::c_int) -> Status = post::cbreg_pump_fd;
    /// `C-unwind`: the callbacks it delivers may end the thread, as for `invoke`.
    pump_drain: "C-unwind" fn(TargetHandle, usize, *mut usize) -> Status = post::cbreg_pump_drain;
    post_stats_get: "C" fn(TargetHandle, *mut PostStats) -> Status = post::cbreg_post_stats_get;
    post_stats_total: "C" fn(*mut PostStats) -> Status = post::cbreg_post_stats_total;
    // Version 4.
    signal_new: "C" fn(RegistryHandle, *mut SignalHandle) -> Status = ffi::cbreg_signal_new;
    signal_free: "C" fn(SignalHandle) -> Status = ffi::cbreg_signal_free;
    signal_subscribe: "C" fn(SignalHandle, u64) -> Status = ffi::cbreg_signal_subscribe;
    signal_unsubscribe: "C" fn(SignalHandle, u64) -> Status = ffi::cbreg_signal_unsubscribe;
    signal_count: "C" fn(SignalHandle, *mut usize) -> Status = ffi::cbreg_signal_count;
    /// `C-unwind`: as `invoke`.
    signal_emit: "C-unwind" fn(SignalHandle, *const Value, usize, *mut EmitReport) -> Status
        = ffi::cbreg_signal_emit;
}

/// `retire_matching`'s predicate: `matches(ctx, user)`.
pub(crate) type MatchFn = extern "C" fn(*mut c_void, *mut c_void) -> bool;
/// The blocking hook's pair (`wait::BlockingHook`).
pub(crate) type BlockingBefore = unsafe extern "C" fn() -> *mut c_void;
pub(crate) type BlockingAfter = unsafe extern "C" fn(*mut c_void);

/// Where this copy's calls go: null until decided, `&OWN` when this copy
/// owns the table, the owner's `Api` otherwise.
static ROUTE: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());

/// The owner's `Api` when calls must be forwarded; `None` when this copy is
/// the owner. One load and a compare once decided.
#[inline(always)]
pub(crate) fn remote() -> Option<&'static Api> {
    let route = ROUTE.load(Ordering::Acquire);
    if std::ptr::eq(route, own()) {
        None
    } else {
        remote_slow(route)
    }
}

/// The owner's table when this copy has already found that it forwards;
/// `None` when it owns the registries or has not decided yet (`remote`
/// decides). A load and two compares, for paths that every call of a
/// forwarding copy takes.
#[inline(always)]
pub(crate) fn forwarding() -> Option<&'static Api> {
    let route = ROUTE.load(Ordering::Acquire);
    if route.is_null() || std::ptr::eq(route, own()) {
        None
    } else {
        // SAFETY: a non-null route other than ours is an owner's `Api`, in
        // a copy pinned in memory for the life of the process (`elect`).
        Some(unsafe { &*route })
    }
}

#[cold]
fn remote_slow(route: *mut Api) -> Option<&'static Api> {
    let route = if route.is_null() { decide() } else { route };
    if std::ptr::eq(route, own()) {
        None
    } else {
        // SAFETY: as in `forwarding`.
        Some(unsafe { &*route })
    }
}

/// Decides who owns the table. Idempotent, with no in-between state:
/// threads that race here all elect the same owner, and a child forked
/// while one of them was here decides again (see the module doc).
fn decide() -> *mut Api {
    let route = elect();
    match ROUTE.compare_exchange(
        std::ptr::null_mut(),
        route,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => route,
        Err(decided) => decided,
    }
}

/// Decides at load, on the loading thread, so that no first call of this
/// copy has anything left to decide.
#[cfg(all(unix, not(loom)))]
extern "C" fn decide_at_load() {
    ffi::boundary! { local; value {
        remote();
    }}
}

#[cfg(all(unix, not(loom), not(target_vendor = "apple")))]
#[used]
#[link_section = ".init_array"]
static DECIDE_AT_LOAD: extern "C" fn() = decide_at_load;

#[cfg(all(not(loom), target_vendor = "apple"))]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static DECIDE_AT_LOAD: extern "C" fn() = decide_at_load;

/// What a call site records of the copy that resolved it (this copy's
/// table's address): a site is used directly only by that copy.
#[inline(always)]
pub(crate) fn own_marker() -> *const c_void {
    &OWN as *const Api as *const c_void
}

fn own() -> *mut Api {
    &OWN as *const Api as *mut Api
}

#[cfg(any(loom, not(unix)))]
fn elect() -> *mut Api {
    own()
}

#[cfg(all(unix, not(loom)))]
fn elect() -> *mut Api {
    // SAFETY: a NUL-terminated name; the result is read at once, before
    // this thread calls anything that could change the environment.
    let private = unsafe { libc::getenv(b"CBREG_PRIVATE\0".as_ptr().cast()) };
    // SAFETY: getenv returned a NUL-terminated string or NULL.
    if !private.is_null() && unsafe { std::ffi::CStr::from_ptr(private) }.to_bytes() == b"1" {
        return own();
    }
    match anchor::find_or_publish(own()) {
        Ok(owner) if std::ptr::eq(owner, own()) => {
            anchor::pin_this_copy();
            own()
        }
        Ok(owner) => match check(owner) {
            Ok(()) => owner as *mut Api,
            Err(why) => incompatible(why),
        },
        Err(why) => {
            eprintln!(
                "cbreg: no process-wide rendezvous ({why}); this copy keeps its own registries"
            );
            own()
        }
    }
}

/// Whether `owner` serves every call this copy makes.
#[cfg(all(unix, not(loom)))]
fn check(owner: *const Api) -> Result<(), String> {
    // SAFETY: the anchor holds the address of a live copy's `Api`, pinned
    // for the life of the process; its header is the same in every version.
    let api = unsafe { &*owner };
    if api.magic != MAGIC {
        return Err("the published table is not cbreg's".into());
    }
    if (api.size as usize) < std::mem::size_of::<Api>() {
        return Err(format!(
            "the process's first copy of cbreg serves table version {} ({} bytes); this copy needs version {VERSION} ({} bytes)",
            api.version,
            api.size,
            std::mem::size_of::<Api>()
        ));
    }
    Ok(())
}

#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
fn incompatible(why: String) -> *mut Api {
    eprintln!("cbreg: {why}; every cbreg call of this copy fails with CBREG_STATUS_INTERNAL");
    &INCOMPATIBLE as *const Api as *mut Api
}

// ---- what the adapters need from the owner ----

extern "C" fn retire_matching_local(
    release: ReleaseFn,
    matches: MatchFn,
    user: *mut c_void,
) -> usize {
    crate::ffi::boundary! { local; value {
        crate::registry::retire_matching_everywhere(release, &|ctx: *mut c_void| matches(ctx, user))
    }}
}

extern "C" fn set_blocking_hook_local(before: BlockingBefore, after: BlockingAfter) -> bool {
    crate::ffi::boundary! { local; value {
        crate::wait::set_blocking_hook(crate::wait::BlockingHook { before, after })
    }}
}

extern "C" fn collect_all_local() -> usize {
    crate::ffi::boundary! { local; value {
        let mut n = 0;
        crate::registry::for_each_core(|core| n += core.collect());
        n
    }}
}

/// Runs the deferred releases that are ready in every registry of the
/// process; returns how many ran.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn collect_all() -> usize {
    match remote() {
        // SAFETY: the owner's function for the same service; no arguments.
        Some(api) => unsafe { (api.collect_all)() },
        None => collect_all_local(),
    }
}

/// Unregisters every live entry, in every registry of the process, whose
/// release is `release` and whose context `matches(ctx, user)` approves.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn retire_matching(release: ReleaseFn, matches: MatchFn, user: *mut c_void) -> usize {
    match remote() {
        // SAFETY: the owner's function for the same service, with the same
        // arguments; `matches` is sound to call with `user` (our caller's
        // promise, as for the local path).
        Some(api) => unsafe { (api.retire_matching)(release, matches, user) },
        None => retire_matching_local(release, matches, user),
    }
}

/// Installs the process's blocking hook in the owner (the first one wins).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn set_blocking_hook(before: BlockingBefore, after: BlockingAfter) -> bool {
    match remote() {
        // SAFETY: the owner's function for the same service, with the same
        // arguments.
        Some(api) => unsafe { (api.set_blocking_hook)(before, after) },
        None => set_blocking_hook_local(before, after),
    }
}

#[cfg(all(unix, not(loom)))]
mod anchor;
