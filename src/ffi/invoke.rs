//! Invoke, by id and through a resolved call site: the two exports with
//! no catch frame (see `unwinds_through!`), written so that the common case
//! (one scalar argument, a registry this copy owns) is a short straight
//! path to the core and every other case leaves by a tail call.

use std::ffi::c_void;

use super::boundary::{boundary, core_of, forward, put, required, unwinds_through};
use super::RegistryHandle;
use crate::registry;
use crate::{value, Status, Value};

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
