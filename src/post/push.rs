//! The sender's side: `cbreg_post`'s queueing, after the entry was
//! checked. A sender finds its ring through one thread-local word (the ring
//! it last posted through, `tls_word::post_word`), checked against the
//! ring's `bound`; a thread's first post to a target claims a ring
//! (`target.rs`) and remembers it.

use super::ring::Ring;
use super::stats::{COALESCE, NO_WAKE};
use super::target::{lookup, Target, DISPATCHER};
use crate::sync::{barrier, Ordering};
use crate::value::Value;
use crate::Status;

/// The ring this thread last posted through (its `bound` says to which
/// target), if any.
#[inline(always)]
fn this_threads_ring() -> Option<&'static Ring> {
    let word = crate::tls_word::post_word::get();
    // SAFETY: 0 or a ring this thread claimed; rings are never freed.
    unsafe { (word as *const Ring).as_ref() }
}

/// The fast path of `cbreg_post`: queues an event whose only argument is
/// a scalar, without flags, on this thread's ring to `target`. False,
/// with nothing queued and nothing counted, when the thread has no ring
/// there yet, the ring no longer serves `target`, or it is full: the
/// caller then takes `post_values`, which settles and counts each case.
#[inline(always)]
pub(crate) fn try_post_scalar(reg: u64, id: u64, target: u32, arg: &Value) -> bool {
    let Some(ring) = this_threads_ring() else {
        return false;
    };
    // Both barriers of this path are the same kind: decided once.
    let fenced = !barrier::light_is_compiler_only();
    ring.busy.store(1, Ordering::Relaxed);
    barrier::light_if(fenced);
    let pushed = ring.bound.load(Ordering::Relaxed) == target && ring.try_push_scalar(reg, id, arg);
    ring.busy.store(0, Ordering::Release);
    if pushed {
        ring.wake().after_publish_fenced(fenced);
    }
    pushed
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
pub(crate) fn push_on(ring: &Ring, reg: u64, id: u64, target: u32, flags: u32, args: &[Value]) -> Option<Status> {
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
