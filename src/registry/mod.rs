//! The registry core. One `Core` is one registry; the files beside this one
//! each own one concern:
//!
//! - `slots.rs`: slot storage, the state word and the free list;
//! - `invoke.rs`: the invoke protocol (the hot path);
//! - `held.rs`: an entry held across many calls (a signal's subscriber
//!   list), and call sites invoked meanwhile;
//! - `reclaim/`: retirement, the pending list, the collector, `clear` and
//!   the one wait (`unregister_wait`), a file each;
//! - `table.rs`: the table of registries that handles name, their lifecycle
//!   word, pins and `free`;
//! - `stats.rs`: counters;
//! - `reclaimer.rs`: the thread that runs deferred and batched releases;
//! - `fork.rs`: the state a forked child starts from.
//!
//! Why the protocol is correct (which barrier pairs with which, why invoke
//! needs no read-modify-write) is argued in `docs/protocol.md`.

use std::ffi::c_void;

use crate::hazard;
use crate::sync::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::value::Value;
use crate::Status;

#[cfg(test)]
mod core_tests;
mod fork;
mod held;
mod invoke;
mod reclaim;
mod reclaimer;
mod slots;
mod stats;
mod table;

pub(crate) use held::{Held, HeldSite};
pub(crate) use invoke::invoke_site;
pub(crate) use reclaimer::set_thread_realtime;
use slots::{key, FreeList, Segments, Slot, LIVE, ONCE};
use stats::Counters;
pub use stats::Stats;
#[cfg_attr(not(feature = "python"), allow(unused_imports))]
pub(crate) use table::{
    create, default_core, destroy, for_each_core, installed, lookup, pin,
    retire_matching_everywhere, Pinned, DEFAULT_HANDLE,
};

/// A callback: `ctx` as registered, the argument vector, an optional return
/// slot. Returns 0 on success; any other code is a failure, reported as
/// `CBREG_STATUS_CALLBACK_FAILED` (the code itself through
/// `cbreg_last_callback_code`), except `CBREG_STATUS_CLOSED`, which a
/// callback returns when its runtime is finalizing.
pub type CallFn = Option<
    unsafe extern "C-unwind" fn(
        ctx: *mut c_void,
        args: *const Value,
        nargs: usize,
        ret: *mut Value,
    ) -> u32,
>;
/// Frees an entry's `ctx`; runs exactly once, never during an invocation.
/// May be NULL where nothing needs freeing.
pub type ReleaseFn = Option<unsafe extern "C-unwind" fn(ctx: *mut c_void)>;

/// Bytes of registry storage per entry (one slot).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Slot>();

/// The lifecycle word's low half while `free` runs (or `create` has not yet
/// finished): set on top of the table index, so no handle equals the word.
/// The low half is the table index + 1 while the registry is alive (the word
/// then equals the handle) and 0 while the table entry is free.
const DYING: u64 = 1 << 31;

const COLLECTOR_IDLE: u32 = 0;
const COLLECTOR_RUNNING: u32 = 1;
const COLLECTOR_REQUESTED: u32 = 2;

/// Aligns the field after it to a new pair of cache lines.
#[derive(Default)]
#[repr(align(128))]
struct LineBreak;

#[repr(C)]
pub(crate) struct Core {
    // Read by every invoke, written rarely.
    segments: Segments,
    /// `generation << 32 | index + 1` while alive: equal to the handle
    /// (see `table.rs`).
    life: AtomicU64,
    /// This core's table index: its per-thread invocation counters.
    index: usize,
    closed: AtomicBool,
    _writers: LineBreak,
    // Written by register, unregister and collect.
    /// Operations in progress through a handle (see `table::pin`).
    pins: AtomicU64,
    free: FreeList,
    /// Head of the pending list (index + 1; 0 = empty).
    pending_head: AtomicU32,
    /// About how many entries on the pending list no heavy barrier has
    /// looked at yet (unregistered in a batch: `reclaim/retire.rs`).
    batched: AtomicU32,
    /// Entries on the pending list that wait for invokers or were retired
    /// on a real-time thread (`Slot::waited`).
    waiting: AtomicU32,
    /// `COLLECTOR_IDLE`, `_RUNNING`, or `_REQUESTED` (run another round).
    collector: AtomicU32,
    counters: Counters,
}

crate::sync::thread_cell! { static RELEASE_LEAKED: bool = false; }

/// Where this copy of the library starts slot generations: random, so ids
/// of another copy or process are not expected to match (fixed under loom).
fn first_generation() -> u64 {
    #[cfg(loom)]
    return 1;
    #[cfg(not(loom))]
    {
        static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *FIRST.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id() as u64);
            // Below half the generation range, never 0.
            (h.finish() & ((1 << 26) - 1)) | 1
        })
    }
}

/// Called by a release function that deliberately skipped freeing its
/// context (its runtime is finalizing): the entry counts as leaked.
pub(crate) fn mark_release_leaked() {
    RELEASE_LEAKED.with(|c| c.set(true));
}

impl Core {
    /// A core for table entry `tag` with lifecycle word `life`.
    fn new(tag: usize, life: u64) -> Self {
        hazard::init();
        crate::fork::set_child_step(
            crate::fork::ChildStep::Registries,
            fork::after_fork_in_child,
        );
        Core {
            segments: Segments::new(slots::fresh_state(tag, first_generation())),
            life: AtomicU64::new(life),
            index: tag,
            closed: AtomicBool::new(false),
            _writers: LineBreak,
            pins: AtomicU64::new(0),
            free: FreeList::new(),
            pending_head: AtomicU32::new(0),
            batched: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            collector: AtomicU32::new(COLLECTOR_IDLE),
            counters: Counters::new(),
        }
    }

    fn addr(&self) -> usize {
        self as *const Core as usize
    }

    /// Calls `f` with every slot that may hold an entry.
    fn for_each_used_slot(&self, mut f: impl FnMut(&Slot)) {
        for index in 0..self.free.used() {
            if let Some(slot) = self.segments.slot(index) {
                f(slot);
            }
        }
    }

    // ---- registration ----

    pub(crate) fn register(
        &self,
        call: CallFn,
        ctx: *mut c_void,
        release: ReleaseFn,
        once: bool,
        prompt: bool,
    ) -> Result<u64, Status> {
        let call = call.ok_or(Status::InvalidArgument)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Status::Closed);
        }
        self.drain_if_pending();
        let slot = self.free.alloc(&self.segments)?;
        let fresh = slot.state.load(Ordering::Relaxed);
        slot.call.store(call as *mut (), Ordering::Relaxed);
        slot.ctx.store(ctx, Ordering::Relaxed);
        slot.release.store(
            release.map_or(std::ptr::null_mut(), |f| f as *mut ()),
            Ordering::Relaxed,
        );
        slot.prompt.store(prompt, Ordering::Relaxed);
        slot.target.store(0, Ordering::Relaxed);
        let state = slots::key(fresh) | LIVE | if once { ONCE } else { 0 };
        self.counters.registered.fetch_add(1, Ordering::Relaxed);
        // Store, fence, load pairs with `close` (store, fence, clear's
        // loads): either close's clear sees this entry, or this sees
        // `closed` and takes the entry back.
        slot.state.store(state, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            if let Ok(slot) = self.claim(slot.id(state)) {
                // Never handed out: the caller keeps ownership of ctx, but
                // the slot still waits out invokers that guessed its id.
                slot.release.store(std::ptr::null_mut(), Ordering::Relaxed);
                self.retire(slot);
                return Err(Status::Closed);
            }
        }
        Ok(slot.id(state))
    }

    // ---- the public operations ----

    pub(crate) fn unregister(&self, id: u64) -> Status {
        match self.claim(id) {
            Ok(slot) => {
                self.retire(slot);
                Status::Ok
            }
            Err(e) => e,
        }
    }

    /// Unregisters every live entry whose `release` is `release` and whose
    /// context `matches`; returns how many this call retired. The releases
    /// run as for `unregister` (deferred while an invocation is in flight).
    pub(crate) fn retire_matching(
        &self,
        release: ReleaseFn,
        matches: &dyn Fn(*mut c_void) -> bool,
    ) -> usize {
        let want = release.map_or(std::ptr::null_mut(), |f| f as *mut ());
        let mut count = 0;
        self.for_each_used_slot(|slot| {
            let state = slot.state.load(Ordering::SeqCst);
            if state & LIVE != 0
                && slot.release.load(Ordering::Relaxed) == want
                && matches(slot.ctx.load(Ordering::Relaxed))
                && self.claim(slot.id(state)).is_ok()
            {
                self.retire(slot);
                count += 1;
            }
        });
        count
    }

    pub(crate) fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.clear()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(self.index)
    }

    // ---- post (`post/`): an entry's target ----

    /// The target of live entry `id`, read by `cbreg_post` before it queues
    /// an event. `NotFound` unless the entry is live now, `Closed` after
    /// close, `InvalidRegistry` unless `handle` names this registry.
    #[inline(always)]
    pub(crate) fn post_target(&self, handle: u64, id: u64) -> Result<u32, Status> {
        self.post_slot(handle, id).map(|(slot, _)| slot.target())
    }

    /// For a sender that keeps the entry it last posted to (`post/push.rs`):
    /// live entry `id`'s slot and state, as `post_target` checks them. The
    /// slot stays at its address while the core exists (for ever), and
    /// while the entry is live its state is exactly this; `close` and
    /// `free` retire every entry first, so a later post that finds the
    /// same state finds a live entry of a live registry.
    #[inline(always)]
    pub(crate) fn post_slot(&self, handle: u64, id: u64) -> Result<(PostSlot, u64), Status> {
        let (entry, offset) = self.segments.locate_id(id);
        if entry != 0 {
            // SAFETY: a nonzero entry from `locate_id`.
            let slot = unsafe { Segments::at(entry, offset) };
            let state = slot.state.load(Ordering::Acquire);
            if state & !ONCE == key(id) | LIVE && self.life.load(Ordering::Relaxed) == handle {
                return Ok((PostSlot(slot), state));
            }
        }
        Err(self.post_refused(handle))
    }

    #[cold]
    fn post_refused(&self, handle: u64) -> Status {
        if self.life.load(Ordering::Acquire) != handle {
            Status::InvalidRegistry
        } else if self.is_closed() {
            Status::Closed
        } else {
            Status::NotFound
        }
    }

    /// Sets the target of live entry `id` (`cbreg_entry_set_target`).
    pub(crate) fn set_post_target(&self, id: u64, target: u32) -> Status {
        match self.segments.slot_of_id(id) {
            Some(slot) if slot.state.load(Ordering::Acquire) & !ONCE == key(id) | LIVE => {
                slot.target.store(target, Ordering::Relaxed);
                Status::Ok
            }
            _ => Status::NotFound,
        }
    }
}

/// An entry's slot as `post` keeps it: its state and target, one load each.
#[derive(Clone, Copy)]
pub(crate) struct PostSlot(&'static Slot);

impl PostSlot {
    #[inline(always)]
    pub(crate) fn state(self) -> u64 {
        self.0.state.load(Ordering::Acquire)
    }

    #[inline(always)]
    pub(crate) fn target(self) -> u32 {
        self.0.target.load(Ordering::Relaxed)
    }

    pub(crate) fn addr(self) -> usize {
        self.0 as *const Slot as usize
    }

    /// # Safety
    /// `addr` is `addr()` of a `PostSlot`.
    #[inline(always)]
    pub(crate) unsafe fn from_addr(addr: usize) -> PostSlot {
        // SAFETY: the caller's promise; slots are never freed.
        PostSlot(unsafe { &*(addr as *const Slot) })
    }
}
