//! Targets: where posted events wait and who takes them.
//!
//! A target is a set of rings, one per sending thread (`ring.rs`), a wake
//! descriptor (`wake.rs`) and the consumer's counters (`stats.rs`). Target
//! 0 is the native dispatcher (`dispatcher.rs`); the others are pumps a
//! host drains from its own loop, and the Python adapter's dispatchers. A
//! handle is `generation << 6 | index`; the table holds each `Target` for
//! ever (its memory is reused by the next target at that index), so a
//! stale handle can be detected, never followed into freed memory.
//!
//! This file owns the table (lookup, create, free) and the rings of a
//! target: a thread's first post to a target claims a free ring (made in
//! advance: `PREALLOCATED_RINGS` per target, more by `cbreg_post_reserve`),
//! takes over the empty ring of a thread that has exited, or, on a thread
//! not marked real-time, makes a new one. A real-time thread never
//! allocates: with no ring to claim its post is `FULL` and counted. The
//! sender's side is `push.rs`, the consumer's `drain.rs`, fork `fork.rs`.
//!
//! Freeing a pump: its handle stops working at once (`life`), each ring's
//! `bound` is taken away, a heavy barrier, then the free waits for posts
//! still inside a ring (`busy`, the same barrier pairing as the wake), and
//! drops what they left, counted as closed.

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

use super::fork::after_fork_handler;
use super::ring::{Ring, UNBOUND};
use super::wake::Wake;
use crate::sync::{barrier, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use crate::Status;

pub(crate) use super::drain::{BatchScope, Plain};
pub(crate) use super::stats::{PostConfig, PostStats};

/// Targets at once (the dispatcher included).
#[cfg(not(loom))]
pub(crate) const MAX_TARGETS: usize = 64;
#[cfg(loom)]
pub(crate) const MAX_TARGETS: usize = 2;
const INDEX_BITS: u32 = 6;
const _: () = assert!(MAX_TARGETS <= 1 << INDEX_BITS);
/// Rings per target: sending threads served at once.
#[cfg(not(loom))]
pub(crate) const MAX_RINGS: usize = 256;
#[cfg(loom)]
pub(crate) const MAX_RINGS: usize = 2;
/// Rings a target makes when it is created, so that the first post of a
/// new thread can claim one without allocating.
#[cfg(not(loom))]
const PREALLOCATED_RINGS: usize = 4;
#[cfg(loom)]
const PREALLOCATED_RINGS: usize = 1;

/// The native dispatcher's handle: what an entry's target is until set.
pub(crate) const DISPATCHER: u32 = 0;
/// `life` of a table entry with no target.
const FREE: u32 = UNBOUND;

pub(crate) struct Target {
    /// The handle while the target is alive, `FREE` otherwise.
    pub(super) life: AtomicU32,
    /// The generation the next target at this index gets.
    pub(super) generation: AtomicU32,
    pub(super) rings: [AtomicPtr<Ring>; MAX_RINGS],
    /// Rings made so far (`rings[..made]` are set).
    pub(super) made: AtomicUsize,
    pub(super) ring_events: usize,
    pub(super) ring_bytes: usize,
    pub(super) period_us: AtomicU32,
    pub(crate) wake: Wake,
    pub(super) draining: AtomicBool,
    /// The token of the thread draining (0 when none): a free from inside
    /// one of the drain's callbacks must not wait for that drain.
    pub(super) drainer: AtomicU32,
    // Consumer counters (one consumer at a time writes them).
    pub(super) delivered: StdAtomicU64,
    pub(super) stale: StdAtomicU64,
    pub(super) closed: StdAtomicU64,
    pub(super) forked: StdAtomicU64,
    pub(super) coalesced: StdAtomicU64,
    pub(super) high_water: StdAtomicU64,
    /// Real-time posts refused for want of a ring.
    pub(super) no_ring: StdAtomicU64,
    /// Ring totals when this target was created (counts of earlier targets
    /// at this index).
    pub(super) base_posted: StdAtomicU64,
    pub(super) base_full: StdAtomicU64,
}

// ---- the table ----

struct Table {
    targets: [AtomicPtr<Target>; MAX_TARGETS],
}

#[cfg(not(loom))]
static TABLE: Table = Table {
    targets: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_TARGETS],
};

fn table() -> &'static Table {
    #[cfg(not(loom))]
    return &TABLE;
    #[cfg(loom)]
    {
        crate::sync::global! {
            static TABLE: Table = Table {
                targets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            };
        }
        &TABLE
    }
}

/// The dispatcher's sizes, until it is made.
static DISPATCHER_CONFIG: std::sync::Mutex<PostConfig> = std::sync::Mutex::new(PostConfig::DEFAULT);

fn at(index: usize) -> Option<&'static Target> {
    let p = table().targets.get(index)?.load(Ordering::Acquire);
    // SAFETY: targets in the table are never freed.
    unsafe { p.as_ref() }
}

/// The live target `handle` names.
pub(crate) fn lookup(handle: u32) -> Result<&'static Target, Status> {
    match at((handle & ((1 << INDEX_BITS) - 1)) as usize) {
        Some(t) if t.life.load(Ordering::Acquire) == handle => Ok(t),
        _ if handle == DISPATCHER => dispatcher_target(),
        _ => Err(Status::Closed),
    }
}

/// Calls `f` on every target ever made.
pub(super) fn for_each(mut f: impl FnMut(&'static Target)) {
    (0..MAX_TARGETS).filter_map(at).for_each(&mut f)
}

/// The dispatcher's target, made on first use (not on a real-time thread:
/// making it allocates).
pub(crate) fn dispatcher_target() -> Result<&'static Target, Status> {
    if let Some(t) = at(0) {
        return Ok(t);
    }
    if crate::hazard::is_realtime() {
        return Err(Status::Full);
    }
    let config = *DISPATCHER_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    install(0, DISPATCHER, config)
}

/// Sets the dispatcher's sizes (before it is made) and its period.
pub(crate) fn configure_dispatcher(config: PostConfig) -> Result<(), Status> {
    let config = config.normalized()?;
    let mut current = DISPATCHER_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = at(0) {
        if t.ring_events != config.ring_events as usize
            || t.ring_bytes != config.ring_bytes as usize
        {
            return Err(Status::InvalidArgument);
        }
        t.period_us.store(config.period_us, Ordering::Relaxed);
    }
    *current = config;
    Ok(())
}

/// Puts a target at `index` (unless one is there), alive as `handle`.
fn install(index: usize, handle: u32, config: PostConfig) -> Result<&'static Target, Status> {
    after_fork_handler();
    let fresh = Box::into_raw(Box::new(Target::new(handle, config)?));
    // Rings point at the target's wake: made once it has its address.
    for _ in 0..PREALLOCATED_RINGS {
        // SAFETY: not yet published; ours.
        if let Err(e) = unsafe { &*fresh }.make_ring(handle) {
            // SAFETY: never published (its rings are freed with it).
            drop(unsafe { Box::from_raw(fresh) });
            return Err(e);
        }
    }
    match table().targets[index].compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just published; targets are never freed.
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(existing) => {
            // SAFETY: `fresh` was never published, so this is its only owner.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: `existing` was published by another thread; targets
            // are never freed.
            Ok(unsafe { &*existing })
        }
    }
}

/// Makes a pump target; returns its handle.
pub(crate) fn create(config: PostConfig) -> Result<u32, Status> {
    let config = config.normalized()?;
    for index in 1..MAX_TARGETS {
        let target = match at(index) {
            Some(t) => t,
            None => {
                // A fresh index: made free, then claimed below like any.
                install(index, FREE, config)?
            }
        };
        // An index keeps its rings' sizes for ever (rings are never freed).
        if target.ring_events != config.ring_events as usize
            || target.ring_bytes != config.ring_bytes as usize
        {
            continue;
        }
        let gen = target.generation.load(Ordering::Acquire);
        let handle = gen << INDEX_BITS | index as u32;
        if target
            .life
            .compare_exchange(FREE, FREE - 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        // Ours (FREE - 1 is no handle): start it afresh.
        target.generation.store(gen + 1, Ordering::Relaxed);
        target.period_us.store(config.period_us, Ordering::Relaxed);
        target.reset_counters();
        for ring in target.made_rings() {
            ring.bound.store(handle, Ordering::Release);
        }
        target.life.store(handle, Ordering::Release);
        return Ok(handle);
    }
    Err(Status::NoMemory)
}

/// Frees a pump: its handle stops working, posts in flight finish, what is
/// pending is dropped and counted as closed.
pub(crate) fn destroy(handle: u32) -> Status {
    if handle == DISPATCHER {
        return Status::InvalidArgument;
    }
    let Ok(target) = lookup(handle) else {
        return Status::InvalidArgument;
    };
    if target.drainer.load(Ordering::Acquire) == crate::hazard::token() {
        return Status::WouldDeadlock; // from inside its own drain
    }
    if target
        .life
        .compare_exchange(handle, FREE - 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Status::InvalidArgument;
    }
    for ring in target.made_rings() {
        ring.bound.store(UNBOUND, Ordering::SeqCst);
    }
    // Pairs with the light barrier between a post's `busy` and its look at
    // `bound`: every post either sees UNBOUND or is seen busy here.
    barrier::heavy();
    for ring in target.made_rings() {
        let mut round = 0;
        while ring.busy.load(Ordering::Acquire) != 0 {
            crate::sync::backoff(round);
            round += 1;
        }
    }
    // A drain in progress (a host thread) finishes first.
    let mut round = 0;
    while target.draining.swap(true, Ordering::Acquire) {
        crate::sync::backoff(round);
        round += 1;
    }
    // Rings stay with their threads (a thread's word may still name its
    // ring; only an exited thread's ring changes hands): the next target at
    // this index binds them again.
    for ring in target.made_rings() {
        let dropped = ring.discard_all();
        target
            .closed
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
    }
    target.draining.store(false, Ordering::Release);
    target.life.store(FREE, Ordering::Release);
    Status::Ok
}

impl Target {
    fn new(handle: u32, config: PostConfig) -> Result<Target, Status> {
        let config = config.normalized()?;
        Ok(Target {
            life: AtomicU32::new(handle),
            generation: AtomicU32::new(1),
            rings: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            made: AtomicUsize::new(0),
            ring_events: config.ring_events as usize,
            ring_bytes: config.ring_bytes as usize,
            period_us: AtomicU32::new(config.period_us),
            wake: Wake::new(),
            draining: AtomicBool::new(false),
            drainer: AtomicU32::new(0),
            delivered: StdAtomicU64::new(0),
            stale: StdAtomicU64::new(0),
            closed: StdAtomicU64::new(0),
            forked: StdAtomicU64::new(0),
            coalesced: StdAtomicU64::new(0),
            high_water: StdAtomicU64::new(0),
            no_ring: StdAtomicU64::new(0),
            base_posted: StdAtomicU64::new(0),
            base_full: StdAtomicU64::new(0),
        })
    }

    pub(super) fn made_rings(&self) -> impl Iterator<Item = &Ring> {
        let made = self.made.load(Ordering::Acquire).min(MAX_RINGS);
        self.rings[..made].iter().filter_map(|r| {
            // SAFETY: rings, once published, are never freed.
            unsafe { r.load(Ordering::Acquire).as_ref() }
        })
    }

    /// Adds a ring (unowned); `NoMemory` when the target has its most.
    fn make_ring(&self, bound: u32) -> Result<&Ring, Status> {
        let ring = Box::into_raw(Ring::new(
            self.ring_events,
            self.ring_bytes,
            bound,
            &self.wake,
        ));
        loop {
            let made = self.made.load(Ordering::Acquire);
            if made >= MAX_RINGS {
                // SAFETY: never published.
                drop(unsafe { Box::from_raw(ring) });
                return Err(Status::NoMemory);
            }
            if self.rings[made]
                .compare_exchange(
                    std::ptr::null_mut(),
                    ring,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                self.made.store(made + 1, Ordering::Release);
                // SAFETY: just published, never freed.
                return Ok(unsafe { &*ring });
            }
            // Another thread is publishing at `made`: wait for its count.
            while self.made.load(Ordering::Acquire) == made {
                crate::sync::backoff(0);
            }
        }
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn period(&self) -> Option<Duration> {
        match self.period_us.load(Ordering::Relaxed) {
            u32::MAX => None,
            us => Some(Duration::from_micros(us as u64)),
        }
    }

    /// This thread's ring on this target: its own, a free one, the empty
    /// ring of an exited thread, or (not on a real-time thread) a new one.
    pub(super) fn claim_ring(&self, handle: u32) -> Result<&Ring, Status> {
        let me = crate::hazard::token();
        if let Some(ring) = self
            .made_rings()
            .find(|r| r.owner.load(Ordering::Acquire) == me)
        {
            return Ok(ring);
        }
        let take = |ring: &Ring, from: u32| {
            if ring
                .owner
                .compare_exchange(from, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return false;
            }
            ring.tid
                .store(crate::hazard::current_tid(), Ordering::Release);
            ring.forget_memo();
            true
        };
        if let Some(ring) = self.made_rings().find(|r| take(r, 0)) {
            return Ok(ring);
        }
        if let Some(ring) = self.made_rings().find(|r| {
            let owner = r.owner.load(Ordering::Acquire);
            let tid = r.tid.load(Ordering::Acquire);
            owner != 0
                && tid != 0
                && r.pending() == 0
                && !crate::hazard::thread_exists(tid)
                && take(r, owner)
        }) {
            return Ok(ring);
        }
        if crate::hazard::is_realtime() {
            self.no_ring
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Status::Full);
        }
        let ring = self.make_ring(handle)?;
        if take(ring, 0) {
            Ok(ring)
        } else {
            self.claim_ring(handle)
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Only a target that lost the race to be installed is dropped: no
        // thread has seen its rings.
        for r in &self.rings {
            let p = r.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: made by `make_ring`, never published beyond us.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}
