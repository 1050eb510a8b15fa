//! The safe Rust API: closures as callbacks, RAII subscriptions.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi::{self, RegistryHandle, CBREG_ONCE};
use crate::registry::{CallFn, ReleaseFn, Stats};
use crate::{Arg, Status, Value};

/// An entry id: nonzero, never reused for the life of the registry.
pub type Id = u64;

/// A registry: the process-wide default one, or one of your own that is
/// closed, drained and invalidated when dropped.
///
/// Every method goes through the C ABI with the handle, so a crate that
/// links cbreg statically shares the process's registries with every other
/// copy (see `rendezvous`), and a registry freed behind this value's back
/// is never confused with a newer one: methods then report
/// `InvalidRegistry` (or 0 / empty stats).
pub struct Registry {
    handle: RegistryHandle,
    owned: bool,
}

/// The callback signature of the Rust API: arguments in, read safely for
/// the call, whichever language invoked; an optional return value out (it
/// starts as `Value::none()`).
///
/// The return value is a raw [`Value`]: a string, bytes or array put there
/// must outlive the caller's use of it (a callback that allocates sets
/// `drop` and `owner`), so reading one back from [`Registry::invoke`] is
/// `unsafe` (`Value::as_str` and the like).
pub trait Callback:
    Fn(&[Arg<'_>], &mut Value) -> Result<(), Status> + Send + Sync + 'static
{
}
impl<F: Fn(&[Arg<'_>], &mut Value) -> Result<(), Status> + Send + Sync + 'static> Callback for F {}

impl Registry {
    /// The process-wide default registry that C, C++ and Python also reach.
    pub fn global() -> Registry {
        Registry {
            handle: ffi::cbreg_default(),
            owned: false,
        }
    }

    /// A new registry of its own.
    pub fn new() -> Result<Registry, Status> {
        let mut handle = RegistryHandle { handle: 0 };
        // SAFETY: a valid out-pointer.
        unsafe { ffi::cbreg_registry_new(&mut handle) }.ok()?;
        Ok(Registry {
            handle,
            owned: true,
        })
    }

    /// The registry `handle` names, not freed when dropped.
    pub(crate) fn borrowed(handle: u64) -> Registry {
        Registry {
            handle: RegistryHandle { handle },
            owned: false,
        }
    }

    /// The handle C code uses for this registry (`cbreg_registry.handle`).
    pub fn handle(&self) -> u64 {
        self.handle.handle
    }

    /// Registers a persistent closure.
    pub fn register<F: Callback>(&self, f: F) -> Result<Subscription, Status> {
        self.register_boxed(Box::new(f), false)
    }

    /// Registers a closure that runs at most once, then unregisters itself.
    /// Its captures are dropped by the release, like any entry's.
    pub fn register_once<F: Callback>(&self, f: F) -> Result<Subscription, Status> {
        self.register_boxed(Box::new(f), true)
    }

    fn register_boxed(&self, f: Box<dyn Callback>, once: bool) -> Result<Subscription, Status> {
        let ctx = Box::into_raw(Box::new(f)) as *mut c_void;
        // SAFETY: call_closure and drop_closure are the pair for this ctx.
        match unsafe { self.register_raw(Some(call_closure), ctx, Some(drop_closure), once) } {
            Ok(id) => Ok(Subscription {
                handle: self.handle,
                id,
            }),
            Err(e) => {
                // SAFETY: not registered, so still ours.
                drop(unsafe { Box::from_raw(ctx as *mut Box<dyn Callback>) });
                Err(e)
            }
        }
    }

    /// Registers a raw C-style entry (what the C ABI does).
    ///
    /// # Safety
    /// `call` and `release` must be safe to call with `ctx` from any thread,
    /// `release` exactly once after the last call.
    pub unsafe fn register_raw(
        &self,
        call: CallFn,
        ctx: *mut c_void,
        release: ReleaseFn,
        once: bool,
    ) -> Result<Id, Status> {
        let mut id = 0;
        let flags = if once { CBREG_ONCE } else { 0 };
        // SAFETY: a valid out-pointer; `call` and `release` with `ctx` are
        // our caller's promise.
        unsafe { ffi::cbreg_register(self.handle, call, ctx, release, flags, &mut id) }.ok()?;
        Ok(id)
    }

    /// Invokes entry `id`; returns the callback's return value.
    /// `InvalidArgument` for more than `CBREG_MAX_ARGS` arguments.
    #[inline]
    pub fn invoke(&self, id: Id, args: &[Arg<'_>]) -> Result<Value, Status> {
        // SAFETY: every `Arg` borrows its memory for at least this call.
        unsafe { self.invoke_raw(id, Arg::as_values(args)) }
    }

    /// Invokes entry `id` with raw values (what the C ABI does).
    /// `InvalidArgument` for more than `CBREG_MAX_ARGS` values or one that
    /// is not well formed (a bad tag, a null pointer with a nonzero `len`,
    /// a BOOL byte other than 0 or 1).
    ///
    /// # Safety
    /// The memory each value points to (string, bytes, array) is valid for
    /// the call: callbacks read it as [`Arg`]s.
    #[inline]
    pub unsafe fn invoke_raw(&self, id: Id, args: &[Value]) -> Result<Value, Status> {
        let mut ret = Value::none();
        // SAFETY: a slice's pointer and length, whose memory is valid for
        // the call (our caller's promise); a valid out-pointer.
        unsafe { ffi::cbreg_invoke(self.handle, id, args.as_ptr(), args.len(), &mut ret) }
            .ok()
            .map(|_| ret)
    }

    /// Invokes entry `id`, discarding any return value.
    #[inline]
    pub fn call(&self, id: Id, args: &[Arg<'_>]) -> Status {
        // SAFETY: every `Arg` borrows its memory for at least this call; no
        // return value is asked for.
        unsafe {
            ffi::cbreg_invoke(
                self.handle,
                id,
                Arg::as_values(args).as_ptr(),
                args.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// Resolves entry `id` to a call site: invoking through it is the same
    /// as invoking `id` here, with less work per call. `NotFound` unless the
    /// entry is live now.
    pub fn site(&self, id: Id) -> Result<Site, Status> {
        let mut raw = ffi::Site::NONE;
        // SAFETY: a valid out-pointer.
        unsafe { ffi::cbreg_site_resolve(self.handle, id, &mut raw) }.ok()?;
        Ok(Site { raw })
    }

    /// Unregisters `id`; no invocation starts after this returns.
    pub fn unregister(&self, id: Id) -> Status {
        ffi::cbreg_unregister(self.handle, id)
    }

    /// Unregisters `id` and returns once no invocation of it runs anywhere
    /// and its release has finished, whoever unregistered it: `Ok` if this
    /// call did, `NotFound` if it was already gone. `WouldDeadlock` (nothing
    /// done) from inside `id`, at any depth; also when the wait would close
    /// a cycle of threads waiting on each other.
    pub fn unregister_wait(&self, id: Id) -> Status {
        ffi::cbreg_unregister_wait(self.handle, id)
    }

    /// Unregisters every entry; returns how many.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { ffi::cbreg_clear(self.handle, &mut n) };
        n
    }

    /// Clears, then refuses new registrations with `Closed`.
    pub fn close(&self) -> usize {
        let mut n = 0;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { ffi::cbreg_close(self.handle, &mut n) };
        n
    }

    /// Whether the registry is closed (true as well for a freed handle).
    pub fn is_closed(&self) -> bool {
        let mut closed = true;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { ffi::cbreg_registry_is_closed(self.handle, &mut closed) };
        closed
    }

    /// Runs deferred releases that are ready; returns how many ran.
    pub fn collect(&self) -> usize {
        let mut n = 0;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { ffi::cbreg_collect(self.handle, &mut n) };
        n
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        // SAFETY: a valid out-pointer.
        let _ = unsafe { ffi::cbreg_stats_get(self.handle, &mut stats) };
        stats
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.owned {
            let _ = ffi::cbreg_registry_free(self.handle);
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({:#x})", self.handle.handle)
    }
}

/// The entry function of every closure: `C-unwind` as every `CallFn` is.
/// A panic of the closure is caught here and reported as the callback's
/// failure (`CALLBACK_FAILED`), never carried into the caller's frames.
unsafe extern "C-unwind" fn call_closure(
    ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> u32 {
    // SAFETY: ctx is the Box<dyn Callback> made in `register_boxed`; args and
    // ret come from invoke (a valid slice, an optional out-value).
    let f = unsafe { &*(ctx as *const Box<dyn Callback>) };
    // SAFETY: invoke passes `nargs` values at `args` (non-null unless
    // `nargs` is 0), unchanged for the call.
    let args = unsafe { crate::value::args_unchecked(args, nargs) };
    // SAFETY: `cbreg_invoke`, the only way in, checked that every value is
    // well formed before any callback ran (`value::checked_args`), and its caller
    // promises the memory is valid for the call: `Arg`'s invariant.
    let args = unsafe { Arg::from_values(args) };
    let mut scratch = Value::none();
    // SAFETY: invoke passes NULL or its caller's storage for a value,
    // which nothing else touches during the call.
    let out = match unsafe { ret.as_mut() } {
        Some(out) => out,
        None => &mut scratch,
    };
    match catch_unwind(AssertUnwindSafe(|| f(args, out))) {
        Ok(Ok(())) => Status::Ok as u32,
        Ok(Err(e)) => e as u32,
        Err(_) => Status::CallbackFailed as u32,
    }
}

/// The release of every closure: `C-unwind` as every `ReleaseFn` is; a
/// panic while dropping the captures is caught and dropped.
unsafe extern "C-unwind" fn drop_closure(ctx: *mut c_void) {
    // SAFETY: runs once, after the last call (the registry's guarantee).
    let f = unsafe { Box::from_raw(ctx as *mut Box<dyn Callback>) };
    #[cfg(loom)]
    drop(f); // loom reports a failed model by panicking: let it through
    #[cfg(not(loom))]
    let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
}

/// Marks the calling thread real-time (or not): cbreg never runs a release
/// on it; releases it would have run wait for the next collect elsewhere.
pub fn set_thread_realtime(on: bool) {
    let _ = ffi::cbreg_thread_set_realtime(on);
}

/// A resolved call site (`Registry::site`): one entry, invoked again and
/// again. Once the entry is unregistered (or its registry freed), calls
/// through it return `NotFound` (`InvalidRegistry`), never another entry.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    raw: ffi::Site,
}

impl Site {
    /// Invokes the entry; returns the callback's return value.
    #[inline]
    pub fn invoke(&self, args: &[Arg<'_>]) -> Result<Value, Status> {
        let mut ret = Value::none();
        let values = Arg::as_values(args);
        // SAFETY: a site `cbreg_site_resolve` wrote; every `Arg` borrows its
        // memory for at least this call; a valid out-pointer.
        unsafe { ffi::cbreg_site_invoke(&self.raw, values.as_ptr(), values.len(), &mut ret) }
            .ok()
            .map(|_| ret)
    }

    /// Invokes the entry, discarding any return value.
    #[inline]
    pub fn call(&self, args: &[Arg<'_>]) -> Status {
        let values = Arg::as_values(args);
        // SAFETY: as in `invoke`; no return value is asked for.
        unsafe {
            ffi::cbreg_site_invoke(
                &self.raw,
                values.as_ptr(),
                values.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// The C site (`cbreg_site`), for passing to C code.
    pub fn raw(&self) -> ffi::Site {
        self.raw
    }
}

/// An entry that unregisters itself when dropped.
#[must_use = "dropping a Subscription unregisters the callback"]
#[derive(Debug)]
pub struct Subscription {
    handle: RegistryHandle,
    id: Id,
}

impl Subscription {
    pub fn id(&self) -> Id {
        self.id
    }

    /// Unregisters now; `NotFound` if it already went (one-shot ran, cleared).
    pub fn unregister(mut self) -> Status {
        let id = std::mem::take(&mut self.id);
        unregister_by_handle(self.handle, id)
    }

    /// Keeps the entry registered past this value's life; returns its id.
    pub fn detach(mut self) -> Id {
        std::mem::take(&mut self.id)
    }
}

fn unregister_by_handle(handle: RegistryHandle, id: Id) -> Status {
    ffi::cbreg_unregister(handle, id)
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.id != 0 {
            let _ = unregister_by_handle(self.handle, self.id);
        }
    }
}
