//! The C ABI: every exported function, and the one boundary they share.
//!
//! Each export states its boundary policy where it is declared, as the
//! first and only statement of its body:
//! - `boundary! { forward f(args); status { .. } }`: a copy of cbreg that
//!   does not own the process's registries passes the call to the copy that
//!   does (`forward!`, see `rendezvous.rs`); otherwise the body runs with a
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
//! checks go through the helpers below (`required`, `put`, and
//! `value::checked_args`), then a call into the safe core.
//!
//! The doc comments here are the C reference: cbindgen copies them into
//! `include/cbreg.h`.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::registry::{self, CallFn, Pinned, ReleaseFn, Stats};
use crate::{value, Status, Value};

pub use crate::status::CBREG_STATUS_COUNT;
pub use crate::value::CBREG_MAX_ARGS;

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

/// What an export returns when its body panicked (or, in `rendezvous.rs`,
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
        $crate::ffi::forward!($f($($a),*));
        $crate::ffi::boundary!(local; $kind $body)
    }};
    (local; status $body:block) => {
        $crate::ffi::catch_status(|| $body)
    };
    (local; value $body:block) => {
        $crate::ffi::catch_value(|| $body)
    };
}
pub(crate) use boundary;

/// The invoke exports' policy: no catch frame, for the reason given.
macro_rules! unwinds_through {
    ($why:literal, $body:block) => {
        $body
    };
}

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
unsafe fn put<T>(out: *mut T, value: T) {
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
unsafe fn required<'a, T>(out: *mut T) -> Result<&'a mut T, Status> {
    // SAFETY: non-null pointers are valid and unaliased (the caller's
    // promise); `as_mut` turns NULL into `None`.
    unsafe { out.as_mut() }.ok_or(Status::InvalidArgument)
}

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

/// Invokes entry `id` with `nargs` values at `args` (NULL when `nargs` is 0).
/// If `ret` is not NULL it is first set to none (whatever the outcome), then
/// the callback may fill it.
/// Lock-free and allocation-free; safe from any thread, including real-time
/// ones. Returns the callback's status, or `NOT_FOUND` for an id that is not
/// live (no invocation starts after `cbreg_unregister` returns).
///
/// # Safety
/// `args` points to `nargs` values (or `nargs` is 0), and the memory of
/// each string, bytes or array value is valid for the call; `ret` is NULL
/// or points to storage for a value.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_invoke(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    unwinds_through! { "a callback may end its thread with a forced unwind", {
        // SAFETY: `ret` is NULL or storage for a value (the caller's promise).
        unsafe { put(ret, Value::none()) };
        // A copy that forwards has no core installed: it takes the checked path.
        let Some(core) = registry::installed(reg.handle) else {
            // SAFETY: our caller's promises, passed on.
            return unsafe { invoke_checked(reg, id, args, nargs, ret) };
        };
        if nargs != 1 {
            // SAFETY: our caller's promises, passed on.
            return unsafe { invoke_several(core, reg, id, args, nargs, ret) };
        }
        if args.is_null() {
            return Status::InvalidArgument;
        }
        // SAFETY: non-null, and the caller promises one value there.
        if !value::plainly_acceptable(unsafe { &*args }) {
            // SAFETY: our caller's promises, passed on.
            return unsafe { invoke_several(core, reg, id, args, nargs, ret) };
        }
        // SAFETY: one value, checked just now; `ret` as promised. Each other
        // case leaves by a tail call, so this path saves only what lives
        // across the callback.
        unsafe { core.invoke(reg.handle, id, args, nargs, ret) }
    }}
}

/// `cbreg_invoke` with other than one scalar argument.
///
/// # Safety
/// `cbreg_invoke`'s contract for `args`, `nargs` and `ret`.
#[inline(never)]
unsafe fn invoke_several(
    core: &registry::Core,
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: `args` points to `nargs` values (our caller's promise).
    if unsafe { value::args_plainly_acceptable(args, nargs) } {
        // SAFETY: the arguments checked just now; `ret` as promised.
        unsafe { core.invoke(reg.handle, id, args, nargs, ret) }
    } else {
        // SAFETY: our caller's promises, passed on.
        unsafe { invoke_checked(reg, id, args, nargs, ret) }
    }
}

/// `cbreg_invoke` for everything its first test does not settle:
/// forwarding, the default registry's first use, a bad handle, and argument
/// vectors that need the full check.
///
/// # Safety
/// `cbreg_invoke`'s contract for `args`, `nargs` and `ret`.
#[cold]
#[inline(never)]
unsafe fn invoke_checked(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // A copy that forwards gets here on every call: a tail call, no frame.
    if let Some(api) = crate::rendezvous::forwarding() {
        // SAFETY: the owner's `cbreg_invoke`, with our caller's arguments
        // (and so its promises).
        return unsafe { (api.invoke)(reg, id, args, nargs, ret) };
    }
    // SAFETY: our caller's promises, passed on.
    unsafe { invoke_here_checked(reg, id, args, nargs, ret) }
}

/// `invoke_checked` once forwarding is ruled out, or not yet decided.
///
/// # Safety
/// `cbreg_invoke`'s contract for `args`, `nargs` and `ret`.
#[inline(never)]
unsafe fn invoke_here_checked(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    forward!(invoke(reg, id, args, nargs, ret));
    let core = match registry::lookup(reg.handle) {
        Ok(core) => core,
        Err(e) => return e,
    };
    // SAFETY: `args` points to `nargs` values, or `nargs` is 0 (our
    // caller's promise; NULL with a nonzero count is reported).
    match unsafe { value::checked_args(args, nargs) } {
        // SAFETY: checked in full; `ret` as promised.
        Ok(args) => unsafe { core.invoke(reg.handle, id, args.as_ptr(), args.len(), ret) },
        Err(e) => e,
    }
}

/// A resolved call site: what `cbreg_site_resolve` makes of a registry and
/// an id, for invoking the same entry again and again with less work (an
/// audio thread keeps one per event). Plain data: copy it freely, share it
/// between threads; read none of its fields. A site never outlives its
/// meaning: once the entry is unregistered (or its registry freed), invoking
/// through the site returns `NOT_FOUND` (`INVALID_REGISTRY`), never another
/// entry. A zeroed site is invalid (`INVALID_ARGUMENT`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Site {
    slot: *const c_void,
    live: u64,
    handle: u64,
    index: usize,
    owner: *const c_void,
}

// SAFETY: a site names a slot, which is never freed, and every use checks
// its state: any thread may use it.
unsafe impl Send for Site {}
// SAFETY: as for `Send`; a site is never written through.
unsafe impl Sync for Site {}

impl Site {
    /// The zeroed (unresolved) site.
    pub const NONE: Site = Site {
        slot: std::ptr::null(),
        live: 0,
        handle: 0,
        index: 0,
        owner: std::ptr::null(),
    };
}

/// Resolves entry `id` of registry `reg` to a call site (`*out`), for
/// `cbreg_site_invoke`. `NOT_FOUND` if the entry is not live (a one-shot
/// resolves, and its site works until it has run); `INVALID_REGISTRY` for
/// a bad handle.
///
/// # Safety
/// `out` is NULL (`INVALID_ARGUMENT`) or points to storage for a site.
#[no_mangle]
pub unsafe extern "C" fn cbreg_site_resolve(
    reg: RegistryHandle,
    id: u64,
    out: *mut Site,
) -> Status {
    boundary! { forward site_resolve(reg, id, out); status {
        // SAFETY: `out` is NULL or storage for a site (the caller's promise).
        let out = unsafe { required(out) }?;
        let core = core_of(reg)?;
        let (slot, live, index) = core.resolve(id)?;
        *out = Site {
            slot,
            live,
            handle: reg.handle,
            index,
            owner: crate::rendezvous::own_marker(),
        };
        Ok(())
    }}
}

/// Invokes the entry a call site names, as `cbreg_invoke` would: the same
/// arguments, statuses and guarantees, without looking the entry up again.
///
/// # Safety
/// `site` is NULL (`INVALID_ARGUMENT`) or points to a site that
/// `cbreg_site_resolve` wrote (or a copy of one, or a zeroed one); `args`
/// and `ret` as for `cbreg_invoke`.
#[no_mangle]
pub unsafe extern "C-unwind" fn cbreg_site_invoke(
    site: *const Site,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    unwinds_through! { "a callback may end its thread with a forced unwind", {
        // Every path sets `*ret` to none before anything else can return:
        // here just before the call, so the checks keep the argument
        // registers where the callback wants them.
        // SAFETY: `site` is NULL or points to a site (the caller's promise).
        let s = match unsafe { site.as_ref() } {
            // A site this copy resolved (so its slot is ours): anything else
            // (NULL, a zeroed site, or this copy forwards) takes the checked path.
            Some(s) if s.owner == crate::rendezvous::own_marker() => s,
            // SAFETY: our caller's promises, passed on.
            _ => return unsafe { site_invoke_checked(site, args, nargs, ret) },
        };
        // Three tests, not one: a combined condition takes a register the
        // callback's arguments are in.
        if nargs != 1 {
            // SAFETY: our caller's promises, passed on.
            return unsafe { site_invoke_several(s, args, nargs, ret) };
        }
        if args.is_null() {
            // SAFETY: our caller's promises, passed on.
            return unsafe { site_invoke_several(s, args, nargs, ret) };
        }
        // SAFETY: non-null, and the caller promises one value there.
        if !value::plainly_acceptable(unsafe { &*args }) {
            // SAFETY: our caller's promises, passed on.
            return unsafe { site_invoke_several(s, args, nargs, ret) };
        }
        // SAFETY: `ret` is NULL or storage for a value (the caller's promise).
        unsafe { put(ret, Value::none()) };
        // SAFETY: resolved by this copy; the arguments checked just now.
        unsafe { invoke_through(s, args, nargs, ret) }
    }}
}

/// Invokes through a site this copy resolved.
///
/// # Safety
/// `site.owner` is this copy's marker; `args` checked; `ret` as for
/// `cbreg_invoke`.
#[inline(always)]
unsafe fn invoke_through(site: &Site, args: *const Value, nargs: usize, ret: *mut Value) -> Status {
    // SAFETY: the caller's promises; the fields are `resolve`'s.
    unsafe {
        registry::invoke_site(
            site.slot,
            site.live,
            site.index,
            || site.handle,
            args,
            nargs,
            ret,
        )
    }
}

/// `cbreg_site_invoke` with other than one scalar argument.
///
/// # Safety
/// `site` was resolved by this copy; `cbreg_invoke`'s contract for `args`,
/// `nargs` and `ret`.
#[inline(never)]
unsafe fn site_invoke_several(
    site: &Site,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: `ret` is NULL or storage for a value (our caller's promise).
    unsafe { put(ret, Value::none()) };
    // SAFETY: `args` points to `nargs` values, or `nargs` is 0 (our
    // caller's promise).
    let plain = unsafe { value::args_plainly_acceptable(args, nargs) };
    let args = if plain {
        // SAFETY: as above, and `args` is non-null when `nargs` is not 0
        // (checked just now).
        unsafe { value::args_unchecked(args, nargs) }
    } else {
        // SAFETY: as above; NULL with a nonzero count is reported.
        match unsafe { value::checked_args(args, nargs) } {
            Ok(args) => args,
            Err(e) => return e,
        }
    };
    // SAFETY: this copy's site; the arguments checked.
    unsafe { invoke_through(site, args.as_ptr(), args.len(), ret) }
}

/// `cbreg_site_invoke` for a site this copy did not resolve.
///
/// # Safety
/// `cbreg_site_invoke`'s contract.
#[cold]
#[inline(never)]
unsafe fn site_invoke_checked(
    site: *const Site,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: `ret` is NULL or storage for a value (our caller's promise).
    unsafe { put(ret, Value::none()) };
    if site.is_null() {
        return Status::InvalidArgument;
    }
    forward!(site_invoke(site, args, nargs, ret));
    Status::InvalidArgument // zeroed, or made by hand
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
        crate::hazard::set_realtime(on);
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
