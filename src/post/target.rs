//! Targets: where posted events wait and who takes them.
//!
//! A target is a set of rings, one per sending thread (`ring.rs`), a wake
//! descriptor (`wake.rs`) and the consumer's counters. Target 0 is the
//! native dispatcher (`dispatcher.rs`); the others are pumps a host drains
//! from its own loop, and, later, the Python adapter's dispatchers. A
//! handle is `generation << 6 | index`; the table holds each `Target` for
//! ever (its memory is reused by the next target at that index), so a
//! stale handle can be detected, never followed into freed memory.
//!
//! A sender finds its ring through one thread-local word (the ring it last
//! posted through, `tls_word::post_word`), checked against the ring's
//! `bound`: a ring stays with its thread until the thread exits, whichever
//! target its index serves. A thread's first post to a
//! target claims a free ring (made in advance: `PREALLOCATED_RINGS` per
//! target, more by `cbreg_post_reserve`), takes over the empty ring of a
//! thread that has exited, or, on a thread not marked real-time, makes a
//! new one. A real-time thread never allocates: with no ring to claim its
//! post is `FULL` and counted.
//!
//! The consumer drains one target at a time (`draining`), delivering each
//! event through the ordinary invoke path: a stale id is dropped and
//! counted, a one-shot runs once, `unregister_wait` waits for a delivery
//! like for any invoke.
//!
//! Freeing a pump: its handle stops working at once (`life`), each ring's
//! `bound` is taken away, a heavy barrier, then the free waits for posts
//! still inside a ring (`busy`, the same barrier pairing as the wake), and
//! drops what they left, counted as closed.

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

use super::ring::{Ring, Taken, UNBOUND};
use super::wake::Wake;
use crate::ffi::RegistryHandle;
use crate::sync::{barrier, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use crate::value::Value;
use crate::Status;

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

/// The flags `cbreg_post` knows.
pub(crate) const NO_WAKE: u32 = 1;
pub(crate) const COALESCE: u32 = 2;

/// Sizes and period of a target (`cbreg_post_config`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostConfig {
    /// Events each sender's ring holds (rounded up to a power of two;
    /// 0: the default, 1024).
    pub ring_events: u32,
    /// Bytes of each sender's arena for strings, bytes, arrays and
    /// arguments past the second (rounded up to a power of two; 0: the
    /// default, 16384).
    pub ring_bytes: u32,
    /// The longest the consumer sleeps without a wake, in microseconds
    /// (0: the default, 1000). What bounds the delay of a
    /// `CBREG_POST_NO_WAKE` event.
    pub period_us: u32,
}

impl PostConfig {
    pub(crate) const DEFAULT: PostConfig = PostConfig {
        ring_events: 1024,
        ring_bytes: 16384,
        period_us: 1000,
    };

    /// Zeros replaced by defaults, sizes rounded up to powers of two.
    pub(crate) fn normalized(self) -> Result<PostConfig, Status> {
        let pick = |v: u32, d: u32| if v == 0 { d } else { v };
        let events = pick(self.ring_events, Self::DEFAULT.ring_events);
        let bytes = pick(self.ring_bytes, Self::DEFAULT.ring_bytes);
        if events > 1 << 24 || bytes > 1 << 30 {
            return Err(Status::InvalidArgument);
        }
        Ok(PostConfig {
            ring_events: events.next_power_of_two(),
            ring_bytes: bytes.next_power_of_two().max(8),
            period_us: pick(self.period_us, Self::DEFAULT.period_us),
        })
    }
}

impl Default for PostConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of one target (`cbreg_post_stats`). At rest (nothing pending)
/// `posted` equals `delivered` plus every `dropped_*` plus `coalesced`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostStats {
    /// Posts that reached this target (queued or refused as full).
    pub posted: u64,
    /// Events delivered (the callback ran, whatever it returned).
    pub delivered: u64,
    /// Posts refused with `CBREG_STATUS_FULL`.
    pub dropped_full: u64,
    /// Events whose entry was gone by delivery (unregistered, cleared, a
    /// one-shot that already ran, its registry freed).
    pub dropped_stale: u64,
    /// Events whose registry was closed by delivery, or left when the
    /// target was freed.
    pub dropped_closed: u64,
    /// Events pending in the parent when this process was forked (the
    /// parent delivers them, the child drops them).
    pub dropped_fork: u64,
    /// Coalescing events skipped because a newer one for the same entry
    /// from the same sender followed.
    pub coalesced: u64,
    /// Events queued and not yet taken.
    pub pending: u64,
    /// The most events a drain found waiting in one ring.
    pub high_water: u64,
    /// Configured events per ring and arena bytes per ring.
    pub ring_events: u64,
    pub ring_bytes: u64,
    /// Rings made (sending threads served at once).
    pub rings: u64,
    /// Wakes sent by senders (system calls).
    pub wakes: u64,
}

/// How a consumer runs a batch of deliveries: the seam where a Python
/// dispatcher attaches to its interpreter once per batch. The native
/// targets run it as is.
pub(crate) trait BatchScope {
    fn run(&self, batch: &mut dyn FnMut());
}

/// A batch with nothing around it.
pub(crate) struct Plain;

impl BatchScope for Plain {
    fn run(&self, batch: &mut dyn FnMut()) {
        batch()
    }
}

pub(crate) struct Target {
    /// The handle while the target is alive, `FREE` otherwise.
    life: AtomicU32,
    /// The generation the next target at this index gets.
    generation: AtomicU32,
    rings: [AtomicPtr<Ring>; MAX_RINGS],
    /// Rings made so far (`rings[..made]` are set).
    made: AtomicUsize,
    ring_events: usize,
    ring_bytes: usize,
    period_us: AtomicU32,
    pub(crate) wake: Wake,
    draining: AtomicBool,
    /// The token of the thread draining (0 when none): a free from inside
    /// one of the drain's callbacks must not wait for that drain.
    drainer: AtomicU32,
    // Consumer counters (one consumer at a time writes them).
    delivered: StdAtomicU64,
    stale: StdAtomicU64,
    closed: StdAtomicU64,
    forked: StdAtomicU64,
    coalesced: StdAtomicU64,
    high_water: StdAtomicU64,
    /// Real-time posts refused for want of a ring.
    no_ring: StdAtomicU64,
    /// Ring totals when this target was created (counts of earlier targets
    /// at this index).
    base_posted: StdAtomicU64,
    base_full: StdAtomicU64,
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
fn for_each(mut f: impl FnMut(&'static Target)) {
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
        if t.ring_events != config.ring_events as usize || t.ring_bytes != config.ring_bytes as usize {
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
            // SAFETY: never published; `existing` is never freed.
            drop(unsafe { Box::from_raw(fresh) });
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
        target.closed.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
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

    fn made_rings(&self) -> impl Iterator<Item = &Ring> {
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
                .compare_exchange(std::ptr::null_mut(), ring, Ordering::AcqRel, Ordering::Acquire)
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

    fn reset_counters(&self) {
        for c in [
            &self.delivered,
            &self.stale,
            &self.closed,
            &self.forked,
            &self.coalesced,
            &self.high_water,
            &self.no_ring,
        ] {
            c.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let (mut posted, mut full) = (0, 0);
        for ring in self.made_rings() {
            posted += ring.posted();
            full += ring.refused();
        }
        self.base_posted.store(posted, std::sync::atomic::Ordering::Relaxed);
        self.base_full.store(full, std::sync::atomic::Ordering::Relaxed);
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
    fn claim_ring(&self, handle: u32) -> Result<&Ring, Status> {
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
            ring.tid.store(crate::hazard::current_tid(), Ordering::Release);
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
            self.no_ring.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Status::Full);
        }
        let ring = self.make_ring(handle)?;
        if take(ring, 0) {
            Ok(ring)
        } else {
            self.claim_ring(handle)
        }
    }

    // ---- consumer ----

    /// Whether any ring holds an event.
    pub(crate) fn any_pending(&self) -> bool {
        self.made_rings().any(|r| r.pending() != 0)
    }

    /// Delivers up to `max` events, round-robin over the rings, inside
    /// `scope`; returns how many it took (delivered, dropped or skipped).
    /// One consumer at a time: a drain that finds another running (or is
    /// nested in one, from a callback) returns 0 at once.
    pub(crate) fn drain(&self, max: usize, scope: &dyn BatchScope) -> usize {
        if max == 0 || self.draining.swap(true, Ordering::Acquire) {
            return 0;
        }
        self.drainer.store(crate::hazard::token(), Ordering::Release);
        struct Release<'a>(&'a Target);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.drainer.store(0, Ordering::Relaxed);
                self.0.draining.store(false, Ordering::Release);
            }
        }
        let _release = Release(self);
        let mut taken = 0;
        let forks = FORKS.load(std::sync::atomic::Ordering::Acquire);
        scope.run(&mut || loop {
            let before = taken;
            for ring in self.made_rings() {
                let pending = ring.pending();
                if pending > self.high_water.load(std::sync::atomic::Ordering::Relaxed) {
                    self.high_water
                        .store(pending, std::sync::atomic::Ordering::Relaxed);
                }
                // A share per ring per round, so one busy sender does not
                // hold the others back.
                let share = (max - taken).min(ROUND_SHARE);
                for _ in 0..share {
                    if ring.pop(|event| self.deliver(event)).is_none() {
                        break;
                    }
                    taken += 1;
                    if FORKS.load(std::sync::atomic::Ordering::Relaxed) != forks {
                        return; // this is a forked child: its rings were reset
                    }
                }
                if taken >= max {
                    return;
                }
            }
            if taken == before {
                return;
            }
        });
        taken
    }

    fn deliver(&self, event: Taken<'_>) {
        let count = |c: &StdAtomicU64| c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if event.superseded {
            count(&self.coalesced);
            return;
        }
        let reg = RegistryHandle { handle: event.reg };
        let args: &[Value] = event.args;
        // SAFETY: the values were well formed when posted and point into
        // the arena, which holds their copies until `pop` returns.
        let status = unsafe {
            crate::ffi::cbreg_invoke(reg, event.id, args.as_ptr(), args.len(), std::ptr::null_mut())
        };
        match status {
            Status::NotFound => {
                let mut closed = false;
                // SAFETY: a valid out-pointer.
                let _ = unsafe { crate::ffi::cbreg_registry_is_closed(reg, &mut closed) };
                count(if closed { &self.closed } else { &self.stale })
            }
            Status::InvalidRegistry | Status::InvalidArgument => count(&self.stale),
            _ => count(&self.delivered),
        };
    }

    pub(crate) fn stats(&self) -> PostStats {
        let load = |c: &StdAtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let (mut posted, mut full, mut pending, mut rings) = (0, 0, 0, 0);
        for ring in self.made_rings() {
            posted += ring.posted();
            full += ring.refused();
            pending += ring.pending();
            rings += 1;
        }
        let no_ring = load(&self.no_ring);
        PostStats {
            posted: posted - load(&self.base_posted) + no_ring,
            delivered: load(&self.delivered),
            dropped_full: full - load(&self.base_full) + no_ring,
            dropped_stale: load(&self.stale),
            dropped_closed: load(&self.closed),
            dropped_fork: load(&self.forked),
            coalesced: load(&self.coalesced),
            pending,
            high_water: load(&self.high_water),
            ring_events: self.ring_events as u64,
            ring_bytes: self.ring_bytes as u64,
            rings,
            wakes: self.wake.signals.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    #[cfg_attr(any(loom, not(unix)), allow(dead_code))]
    fn after_fork_in_child(&self, me: u32) {
        let mut dropped = 0;
        for ring in self.made_rings() {
            if ring.owner.load(Ordering::Relaxed) != me {
                ring.owner.store(0, Ordering::Relaxed);
                ring.tid.store(0, Ordering::Relaxed);
            } else {
                ring.tid.store(crate::hazard::current_tid(), Ordering::Relaxed);
            }
            ring.busy.store(0, Ordering::Relaxed);
            dropped += ring.discard_all();
        }
        self.forked
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        self.drainer.store(0, Ordering::Relaxed);
        self.draining.store(false, Ordering::Release);
        self.wake.after_fork_in_child();
    }
}

/// Events one ring gives per round of a drain.
const ROUND_SHARE: usize = 64;

/// Forks this process has been through (in the child): a drain that was
/// running in the forking thread stops taking from rings that were reset.
static FORKS: StdAtomicU64 = StdAtomicU64::new(0);

// ---- the sender's side ----

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

/// Every target's counters summed (`cbreg_post_stats` of no target).
pub(crate) fn total_stats() -> PostStats {
    let mut sum = PostStats::default();
    for_each(|t| {
        let s = t.stats();
        sum.posted += s.posted;
        sum.delivered += s.delivered;
        sum.dropped_full += s.dropped_full;
        sum.dropped_stale += s.dropped_stale;
        sum.dropped_closed += s.dropped_closed;
        sum.dropped_fork += s.dropped_fork;
        sum.coalesced += s.coalesced;
        sum.pending += s.pending;
        sum.high_water = sum.high_water.max(s.high_water);
        sum.rings += s.rings;
        sum.wakes += s.wakes;
    });
    sum
}

// ---- fork ----

#[cfg(all(unix, not(loom)))]
fn after_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers an `extern "C"` handler; no other precondition.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

#[cfg(any(loom, not(unix)))]
fn after_fork_handler() {}

/// The child of a fork: only the forking thread exists. Every ring of
/// another thread is free again, every event pending is dropped (the parent
/// delivers it; delivering it here too would run it twice) and counted,
/// each target gets a new wake descriptor, and the dispatcher starts again
/// when next needed.
#[cfg(all(unix, not(loom)))]
extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let me = crate::hazard::token();
    for_each(|t| t.after_fork_in_child(me));
    super::dispatcher::after_fork_in_child();
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
