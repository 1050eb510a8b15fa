//! The C ABI. Every exported function has one shape: `forward!` (a copy of
//! cbreg that does not own the process's registries passes the call to the
//! copy that does, see `rendezvous.rs`), `boundary` (a panic becomes
//! `CBREG_STATUS_INTERNAL`), argument checks through the helpers below,
//! then a call into the safe core. Nothing unwinds across the ABI but a
//! forced unwind that a callback starts (see `cbreg_invoke`).
//!
//! The doc comments here are the C reference: cbindgen copies them into
//! `include/cbreg.h`.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::registry::{self, CallFn, Pinned, ReleaseFn, Stats};
use crate::{value, Status, Value};

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

/// Passes the call to the owning copy's `Api` when this copy is not it.
macro_rules! forward {
    ($f:ident($($a:expr),*)) => {
        if let Some(api) = crate::rendezvous::remote() {
            // SAFETY: the owner's function for this one, with the arguments
            // (and so the promises) of our caller.
            #[allow(unused_unsafe)]
            return unsafe { (api.$f)($($a),*) };
        }
    };
}
pub(crate) use forward;

/// The panic boundary every exported function runs its body in.
#[inline(always)]
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), Status>) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Status::Ok,
        Ok(Err(e)) => e,
        Err(_) => Status::Internal,
    }
}

/// The registry a handle names, pinned for the duration of the call (a
/// concurrent `cbreg_registry_free` waits for it; a freed handle is
/// `INVALID_REGISTRY`).
#[inline(always)]
pub(crate) fn core_of(reg: RegistryHandle) -> Result<Pinned, Status> {
    registry::pin(reg.handle)
}

/// Writes through an optional out-pointer.
pub(crate) fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: the caller passed a valid pointer or NULL.
        unsafe { out.write(value) };
    }
}

/// A required out-pointer.
pub(crate) fn required<'a, T>(out: *mut T) -> Result<&'a mut T, Status> {
    // SAFETY: non-null pointers from C are taken to be valid and aligned.
    unsafe { out.as_mut() }.ok_or(Status::InvalidArgument)
}

/// The most arguments one invoke may carry; more is `INVALID_ARGUMENT`.
pub const CBREG_MAX_ARGS: usize = 64;

/// The argument vector, checked: NULL only when empty, at most
/// `CBREG_MAX_ARGS`, known tags, BOOL bytes 0 or 1.
#[inline(always)]
pub(crate) fn args_of<'a>(args: *const Value, nargs: usize) -> Result<&'a [Value], Status> {
    if nargs == 0 {
        return Ok(&[]);
    }
    if args.is_null() || nargs > CBREG_MAX_ARGS {
        return Err(Status::InvalidArgument);
    }
    // SAFETY: non-null, and the caller promises `nargs` values.
    let args = unsafe { std::slice::from_raw_parts(args, nargs) };
    if crate::value::args_acceptable(args) {
        Ok(args)
    } else {
        Err(Status::InvalidArgument)
    }
}

/// A static, NUL-terminated description of `status` ("unknown status" for
/// codes cbreg does not define).
#[no_mangle]
pub extern "C" fn cbreg_status_str(status: u32) -> *const c_char {
    match crate::status::ALL_STATUSES.get(status as usize) {
        Some(s) => s.message_ptr(),
        None => "unknown status\0".as_ptr().cast(),
    }
}

/// The process-wide default registry, shared by every library and language
/// in the process. It is never destroyed.
#[no_mangle]
pub extern "C" fn cbreg_default() -> RegistryHandle {
    if crate::rendezvous::remote().is_none() {
        let _ = catch_unwind(registry::default_core);
    }
    RegistryHandle {
        handle: registry::DEFAULT_HANDLE,
    }
}

/// Creates a registry of its own and writes its handle to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn cbreg_registry_new(out: *mut RegistryHandle) -> Status {
    forward!(registry_new(out));
    boundary(|| {
        let out = required(out)?;
        let handle = registry::create()?;
        *out = RegistryHandle { handle };
        Ok(())
    })
}

/// Destroys a registry made by `cbreg_registry_new`: closes it, waits for
/// invocations in flight, runs every release, then invalidates the handle.
/// `WOULD_DEADLOCK` from inside one of its own callbacks;
/// `INVALID_ARGUMENT` for the default registry.
#[no_mangle]
pub extern "C" fn cbreg_registry_free(reg: RegistryHandle) -> Status {
    forward!(registry_free(reg));
    boundary(|| registry::destroy(reg.handle).ok())
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
    forward!(register(reg, call, ctx, release, flags, out_id));
    boundary(|| {
        let core = core_of(reg)?;
        let out_id = required(out_id)?;
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
    })
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
    // No `catch_unwind` here: the callback must be able to end its thread
    // with a forced unwind (`pthread_exit`), which `catch_unwind` would
    // stop (an abort). Nothing on this path panics: the lookups return
    // statuses, and callbacks made by the Rust API catch their own panics.
    put(ret, Value::none());
    // A copy that forwards has no core installed: it takes the checked path.
    let Some(core) = registry::installed(reg.handle) else {
        return invoke_checked(reg, id, args, nargs, ret);
    };
    if nargs != 1 {
        return invoke_several(core, reg, id, args, nargs, ret);
    }
    if args.is_null() {
        return Status::InvalidArgument;
    }
    // SAFETY: the C caller's promise for `args`: one value.
    if !value::plainly_acceptable(unsafe { &*args }) {
        return invoke_several(core, reg, id, args, nargs, ret);
    }
    // SAFETY: checked just now. Each other case leaves by a tail call, so
    // this path saves only what lives across the callback.
    unsafe { core.invoke(reg.handle, id, args, nargs, ret) }
}

/// `cbreg_invoke` with other than one scalar argument.
#[inline(never)]
fn invoke_several(
    core: &registry::Core,
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: the C caller's promise for `args`.
    if unsafe { value::args_plainly_acceptable(args, nargs) } {
        // SAFETY: checked just now.
        unsafe { core.invoke(reg.handle, id, args, nargs, ret) }
    } else {
        invoke_checked(reg, id, args, nargs, ret)
    }
}

/// `cbreg_invoke` for everything its first test does not settle:
/// forwarding, the default registry's first use, a bad handle, and argument
/// vectors that need the full check.
#[cold]
#[inline(never)]
fn invoke_checked(
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
    invoke_here_checked(reg, id, args, nargs, ret)
}

/// `invoke_checked` once forwarding is ruled out, or not yet decided.
#[inline(never)]
fn invoke_here_checked(
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
    match args_of(args, nargs) {
        // SAFETY: checked in full.
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
// its state.
unsafe impl Send for Site {}
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
    forward!(site_resolve(reg, id, out));
    boundary(|| {
        let out = required(out)?;
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
    })
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
    // No `catch_unwind`: as for `cbreg_invoke`. Every path sets `*ret` to
    // none before anything else can return: here just before the call, so
    // the checks keep the argument registers where the callback wants them.
    // SAFETY: the caller's promise: NULL or a site.
    let s = match unsafe { site.as_ref() } {
        // A site this copy resolved (so its slot is ours): anything else
        // (NULL, a zeroed site, or this copy forwards) takes the checked path.
        Some(s) if s.owner == crate::rendezvous::own_marker() => s,
        _ => return site_invoke_checked(site, args, nargs, ret),
    };
    // Three tests, not one: a combined condition takes a register the
    // callback's arguments are in.
    if nargs != 1 {
        return site_invoke_several(s, args, nargs, ret);
    }
    if args.is_null() {
        return site_invoke_several(s, args, nargs, ret);
    }
    // SAFETY: the C caller's promise for `args`: one value.
    if !value::plainly_acceptable(unsafe { &*args }) {
        return site_invoke_several(s, args, nargs, ret);
    }
    put(ret, Value::none());
    // SAFETY: resolved by this copy; the arguments checked just now.
    unsafe { invoke_through(s, args, nargs, ret) }
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
#[inline(never)]
unsafe fn site_invoke_several(
    site: &Site,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    put(ret, Value::none());
    // SAFETY: the C caller's promise for `args`.
    let plain = unsafe { value::args_plainly_acceptable(args, nargs) };
    let args = if plain {
        // SAFETY: as above; `nargs` is in range.
        unsafe { std::slice::from_raw_parts(args, nargs) }
    } else {
        match args_of(args, nargs) {
            Ok(args) => args,
            Err(e) => return e,
        }
    };
    // SAFETY: this copy's site; the arguments checked.
    unsafe { invoke_through(site, args.as_ptr(), args.len(), ret) }
}

/// `cbreg_site_invoke` for a site this copy did not resolve.
#[cold]
#[inline(never)]
unsafe fn site_invoke_checked(
    site: *const Site,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    put(ret, Value::none());
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
    forward!(unregister(reg, id));
    boundary(|| core_of(reg)?.unregister(id).ok())
}

/// Unregisters `id`, waits until invocations in flight have returned, and
/// runs the release before returning (unless this thread is real-time).
/// From inside a callback of `id` itself it returns `WOULD_DEADLOCK` and
/// changes nothing.
#[no_mangle]
pub extern "C" fn cbreg_unregister_wait(reg: RegistryHandle, id: u64) -> Status {
    forward!(unregister_wait(reg, id));
    boundary(|| core_of(reg)?.unregister_wait(id).ok())
}

/// Unregisters every entry; writes how many to `*out_count` (may be NULL).
///
/// # Safety
/// `out_count` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C" fn cbreg_clear(reg: RegistryHandle, out_count: *mut usize) -> Status {
    forward!(clear(reg, out_count));
    boundary(|| {
        put(out_count, core_of(reg)?.clear());
        Ok(())
    })
}

/// Clears, then refuses new registrations with `CLOSED`. Invoking what is
/// left gets `NOT_FOUND`. `*out_count` (may be NULL): entries cleared.
///
/// # Safety
/// `out_count` is NULL or points to storage for a count.
#[no_mangle]
pub unsafe extern "C" fn cbreg_close(reg: RegistryHandle, out_count: *mut usize) -> Status {
    forward!(close(reg, out_count));
    boundary(|| {
        put(out_count, core_of(reg)?.close());
        Ok(())
    })
}

/// Writes whether the registry is closed (`cbreg_close` ran) to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for a bool.
#[no_mangle]
pub unsafe extern "C" fn cbreg_registry_is_closed(reg: RegistryHandle, out: *mut bool) -> Status {
    forward!(registry_is_closed(reg, out));
    boundary(|| {
        let core = core_of(reg)?;
        *required(out)? = core.is_closed();
        Ok(())
    })
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
    forward!(collect(reg, out_released));
    boundary(|| {
        let core = core_of(reg)?;
        let (released, led) = core.collect_leading();
        let core: &'static registry::Core = Pinned::into_core(core);
        if !led {
            // Another thread's collection was running: wait for the round
            // this call asked for (unless this thread is inside cbreg, where
            // that collection may be waiting for it).
            core.wait_for_collector();
        }
        put(out_released, released);
        Ok(())
    })
}

/// Writes the registry's counters to `*out`.
///
/// # Safety
/// `out` is NULL or points to storage for the stats.
#[no_mangle]
pub unsafe extern "C" fn cbreg_stats_get(reg: RegistryHandle, out: *mut Stats) -> Status {
    forward!(stats_get(reg, out));
    boundary(|| {
        let core = core_of(reg)?;
        *required(out)? = core.stats();
        Ok(())
    })
}

/// The code returned by the last callback that failed on this thread (the
/// code behind a `CBREG_STATUS_CALLBACK_FAILED`); 0 if none has failed.
#[no_mangle]
pub extern "C" fn cbreg_last_callback_code() -> u32 {
    forward!(last_callback_code());
    crate::status::last_callback_code_here()
}

/// Marks the calling thread real-time (`on` true) or not. cbreg never runs
/// a release on a real-time thread; such releases wait for the next collect
/// on another thread. Either way the thread's record is claimed now, so its
/// first invoke takes the fast path (call it when an audio thread starts).
#[no_mangle]
pub extern "C" fn cbreg_thread_set_realtime(on: bool) -> Status {
    forward!(thread_set_realtime(on));
    boundary(|| {
        crate::registry::set_thread_realtime(on);
        Ok(())
    })
}

/// Whether the calling thread is marked real-time.
#[no_mangle]
pub extern "C" fn cbreg_thread_is_realtime() -> bool {
    forward!(thread_is_realtime());
    crate::hazard::is_realtime()
}

/// For release functions of foreign runtimes: call it from inside a release
/// that deliberately did not free its context because the runtime is
/// finalizing. The entry is then counted as leaked instead of released.
#[no_mangle]
pub extern "C" fn cbreg_release_mark_leaked() {
    forward!(release_mark_leaked());
    registry::mark_release_leaked();
}

/// Frees what a returned value owns (calls its `drop` with its `owner`, if
/// set) and resets it to none. NULL is ignored.
///
/// # Safety
/// `value` is NULL or points to a value whose `drop` and `owner` are what
/// the callback that produced it set.
#[no_mangle]
pub unsafe extern "C" fn cbreg_value_drop(value: *mut Value) {
    // SAFETY: the caller passed a valid value or NULL, whose `drop` and
    // `owner` came from the callback that produced it.
    if let Some(v) = unsafe { value.as_mut() } {
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { v.drop_owned() }));
    }
}
