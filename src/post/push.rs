//! The sender's side: `cbreg_post`'s queueing, after the entry was
//! checked. A sender finds its ring through one thread-local word (the ring
//! it last posted through, `tls_word::post_word`), checked against the
//! ring's `bound`; a thread's first post to a target claims a ring
//! (`target.rs`) and remembers it. The ring also keeps the entry its
//! thread last posted one scalar to (`Ring::kept`), so the next post to it
//! checks the entry with one load of its slot (`post`).

use super::abi::post_checked;
use super::kept::{no_ring_word, Kept, KeptEntry};
use super::ring::Ring;
use super::stats::{COALESCE, NO_WAKE};
use super::target::{lookup, Target, DISPATCHER};
use crate::ffi::RegistryHandle;
use crate::registry::{self, PostSlot};
use crate::sync::{barrier, Ordering};
use crate::value::{self, Value};
use crate::Status;

/// The ring this thread last posted through (its `bound` says to which
/// target), if any.
#[inline(always)]
fn this_threads_ring() -> Option<&'static Ring> {
    let word = crate::tls_word::post_word::get();
    if word == no_ring_word() {
        return None;
    }
    // SAFETY: a ring this thread claimed; rings are never freed.
    Some(unsafe { &*(word as *const Ring) })
}

/// `cbreg_post`: the fast path, for one scalar without flags to the entry
/// this thread last posted one to through its ring (`Ring::kept`). The
/// entry is checked by one load of its slot's state, which must be what
/// it was then: live, and the same entry (a state is never live twice).
/// Everything else, and every refusal, leaves by a tail call with the
/// caller's arguments, so this path keeps nothing in saved registers.
///
/// # Safety
/// `cbreg_post`'s: `args` points to `nargs` values (or `nargs` is 0).
#[inline(always)]
pub(crate) unsafe fn post(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    flags: u32,
) -> Status {
    if nargs != 1 || flags != 0 || args.is_null() {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_scalar(reg, id, args, nargs, flags) };
    }
    // The word is a ring this thread claimed (never freed), or `NO_RING`;
    // both start with a kept entry, and `NO_RING`'s matches no post.
    let word = crate::tls_word::post_word::get();
    // SAFETY: one value at `args` (the caller's promise); the word's
    // kept entry is this thread's to read.
    let (arg, kept) = unsafe { (&*args, (*(word as *const Kept)).get()) };
    // Read once: the stores below may alias `args` as far as the
    // compiler knows.
    // SAFETY: every member of the payload is 8 bytes of plain data.
    let (tag, payload) = (arg.tag, unsafe { arg.r#as.i64 } as u64);
    // The tag first: nothing else is kept while it is `NO_TAG`.
    if tag as u64 != kept.tag || reg.handle != kept.reg || id != kept.id {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_scalar(reg, id, args, nargs, flags) };
    }
    // SAFETY: kept by `keep`, from a `PostSlot`.
    let slot = unsafe { PostSlot::from_addr(kept.slot) };
    if slot.state() != kept.state {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_scalar(reg, id, args, nargs, flags) };
    }
    // SAFETY: something was kept: the word is a ring.
    let ring = unsafe { &*(word as *const Ring) };
    ring.busy.store(1, Ordering::Relaxed);
    // A ring keeps an entry only where the light barrier is a compiler
    // fence (`keep`).
    barrier::light_unfenced();
    if ring.bound.load(Ordering::Relaxed) != slot.target()
        || !ring.try_push_scalar(reg.handle, id, tag, payload)
    {
        ring.busy.store(0, Ordering::Release);
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_scalar(reg, id, args, nargs, flags) };
    }
    ring.busy.store(0, Ordering::Release);
    let wake = ring.wake();
    if wake.must_signal_unfenced() {
        return signal_and_ok(wake);
    }
    Status::Ok
}

/// The wake of a consumer that is going to sleep, out of line: the fast
/// path ends in tail calls only.
#[cold]
#[inline(never)]
extern "C" fn signal_and_ok(wake: &super::wake::Wake) -> Status {
    wake.signal_if_sleeping();
    Status::Ok
}

/// One scalar without flags to any entry, on this thread's ring: the
/// registry and entry checked as invoke checks them. The entry is then
/// kept for the next post; `post_checked` serves every other case.
/// `extern "C"`, as the callers' tail calls need: nothing here unwinds,
/// and a Rust function's call would be wrapped for an unwind.
///
/// # Safety
/// `cbreg_post`'s contract for `args` and `nargs`.
#[inline(never)]
unsafe extern "C" fn post_scalar(
    reg: RegistryHandle,
    id: u64,
    args: *const Value,
    nargs: usize,
    flags: u32,
) -> Status {
    let Some(core) = registry::installed(reg.handle) else {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    };
    if (nargs ^ 1) | flags as usize != 0 || args.is_null() {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    }
    // SAFETY: the caller's promise for `args`: one value.
    let arg = unsafe { &*args };
    if !value::plainly_acceptable(arg) {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    }
    let Ok((slot, state)) = core.post_slot(reg.handle, id) else {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    };
    let Some(ring) = this_threads_ring() else {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    };
    // Both barriers of this path are the same kind: decided once.
    let fenced = !barrier::light_is_compiler_only();
    ring.busy.store(1, Ordering::Relaxed);
    barrier::light_if(fenced);
    // SAFETY: every member of the payload is 8 bytes of plain data.
    let payload = unsafe { arg.r#as.i64 } as u64;
    let pushed = ring.bound.load(Ordering::Relaxed) == slot.target()
        && ring.try_push_scalar(reg.handle, id, arg.tag, payload);
    ring.busy.store(0, Ordering::Release);
    if !pushed {
        // SAFETY: our caller's promises, passed on.
        return unsafe { post_checked(reg, id, args, nargs, flags) };
    }
    ring.wake().after_publish_fenced(fenced);
    if !fenced {
        keep(ring, reg.handle, id, slot, state, arg.tag);
    }
    Status::Ok
}

/// Remembers in this thread's ring the entry it just posted to.
fn keep(ring: &Ring, reg: u64, id: u64, slot: PostSlot, state: u64, tag: u32) {
    let entry = KeptEntry {
        reg,
        id,
        slot: slot.addr(),
        state,
        tag: tag as u64,
    };
    // SAFETY: this thread owns the ring.
    unsafe { ring.kept.set(entry) };
}

#[inline(always)]
fn finish(ring: &Ring, pushed: Result<u64, super::ring::Full>, id: u64, flags: u32) -> Status {
    match pushed {
        Ok(seq) => {
            if flags & COALESCE != 0 {
                ring.coalesce(id, seq);
            }
            ring.wake().after_publish(flags & NO_WAKE != 0);
            Status::Ok
        }
        Err(_) => Status::Full,
    }
}

/// Queues an event with any arguments (checked by the caller).
pub(crate) fn post_values(reg: u64, id: u64, target: u32, flags: u32, args: &[Value]) -> Status {
    this_threads_ring()
        .and_then(|ring| push_on(ring, reg, id, target, flags, args))
        .unwrap_or_else(|| post_slow(reg, id, target, flags, args))
}

/// Pushes on this thread's ring if it still serves `target`.
pub(crate) fn push_on(
    ring: &Ring,
    reg: u64,
    id: u64,
    target: u32,
    flags: u32,
    args: &[Value],
) -> Option<Status> {
    ring.busy.store(1, Ordering::Relaxed);
    barrier::light();
    if ring.bound.load(Ordering::Relaxed) != target {
        ring.busy.store(0, Ordering::Release);
        return None;
    }
    let pushed = ring.push(reg, id, flags, args);
    ring.busy.store(0, Ordering::Release);
    Some(finish(ring, pushed, id, flags))
}

/// A thread's first post to `target` (or its first since it last posted
/// to another): find the target, start the dispatcher if it is the one,
/// claim a ring, remember it, post.
#[cold]
#[inline(never)]
fn post_slow(reg: u64, id: u64, target: u32, flags: u32, args: &[Value]) -> Status {
    let t = match lookup(target) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let ring = match reserve_on(t, target) {
        Ok(r) => r,
        Err(e) => return e,
    };
    push_on(ring, reg, id, target, flags, args).unwrap_or(Status::Closed)
}

/// Claims this thread's ring on `t` (alive as `handle`) and remembers it.
fn reserve_on(t: &'static Target, handle: u32) -> Result<&'static Ring, Status> {
    if handle == DISPATCHER && !crate::hazard::is_realtime() {
        super::dispatcher::ensure_started(t);
    }
    let ring = t.claim_ring(handle)?;
    crate::tls_word::post_word::set(ring as *const Ring as usize);
    Ok(ring)
}

/// `cbreg_post_reserve`: makes sure this thread has a ring on `handle`'s
/// target (and the dispatcher runs, for it), so its next posts there
/// allocate nothing and make no system call but a wake.
pub(crate) fn reserve(handle: u32) -> Result<(), Status> {
    let t = lookup(handle)?;
    reserve_on(t, handle).map(|_| ())
}
