//! Retirement: the one CAS that takes an entry out of LIVE (its winner owns
//! the release), what the owner does next (finish at once, or defer), and
//! the pending list that deferred and batched slots wait on, a chain
//! through the slots' own links. Also the look for invokers inside a slot
//! or a registry, after a heavy barrier.

use super::{BACKLOG, BATCH};
use crate::hazard::{self, Hazards};
use crate::registry::slots::{key, split, Slot, LIVE, RETIRED};
use crate::registry::{reclaimer, Core};
use crate::sync::Ordering;
use crate::Status;

/// Back-off rounds (spins, then yields: no sleep) an unregister gives a
/// full backlog before it pays its own barrier.
const BACKLOG_PATIENCE: u32 = 64;

impl Core {
    /// The one way an entry stops being live: a CAS from its live `state`
    /// to RETIRED. The one thread that wins owns the release and is noted
    /// as its holder (`owner`, for a forked child).
    pub(in crate::registry) fn take(slot: &Slot, state: u64, owner: u32) -> bool {
        let won = slot
            .state
            .compare_exchange(
                state,
                state & !LIVE | RETIRED,
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok();
        if won {
            slot.owner.store(owner, Ordering::Relaxed);
        }
        won
    }

    /// Moves `id`'s slot from LIVE to RETIRED; the caller then owns it.
    pub(in crate::registry) fn claim(&self, id: u64) -> Result<&Slot, Status> {
        let (want, index) = split(id).ok_or(Status::NotFound)?;
        let slot = self.segments.slot(index).ok_or(Status::NotFound)?;
        loop {
            let state = slot.state.load(Ordering::Acquire);
            if key(state) != want || state & LIVE == 0 {
                return Err(Status::NotFound);
            }
            if Self::take(slot, state, hazard::token()) {
                self.counters.retired.fetch_add(1, Ordering::SeqCst);
                return Ok(slot);
            }
        }
    }

    pub(super) fn in_flight(slot: &Slot) -> bool {
        slot.inflight.load(Ordering::SeqCst) != 0 || hazard::is_hazarded(slot.addr())
    }

    /// Releases a slot this thread owns: now if nothing is inside it and
    /// this thread may run releases, else through the pending list (in a
    /// batch, when a heavy barrier would be a system call now).
    pub(in crate::registry) fn retire(&self, slot: &Slot) {
        if hazard::is_realtime() {
            self.push_pending(slot);
            reclaimer::wake();
            return;
        }
        if hazard::heavy_barrier_is_costly()
            && !slot.prompt.load(Ordering::Relaxed)
            && self.room_in_backlog()
        {
            self.push_batched(slot);
            return;
        }
        hazard::heavy_barrier();
        if Self::in_flight(slot) {
            self.push_pending(slot);
            self.collect();
        } else {
            self.finish(slot);
        }
    }

    /// Whether the backlog has room for one more batched entry. When it is
    /// full (a storm), this thread collects if no one is, and otherwise
    /// gives the collection a moment to take the list before it pays a
    /// barrier of its own: every thread paying its own would queue on the
    /// system call. The moment is bounded and waits for nothing in
    /// particular, so it cannot close a cycle.
    fn room_in_backlog(&self) -> bool {
        if self.batched.load(Ordering::Relaxed) < BACKLOG {
            return true;
        }
        self.collect();
        (0..BACKLOG_PATIENCE).any(|round| {
            crate::sync::backoff(round);
            self.batched.load(Ordering::Relaxed) < BACKLOG
        })
    }

    /// Puts a slot no barrier has looked at on the pending list; collects
    /// when the batch is full, else leaves it to the reclaimer (or an
    /// earlier collect).
    fn push_batched(&self, slot: &Slot) {
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        // Counted before it is on the list, so the round that takes it
        // never subtracts it first.
        let batched = self.batched.fetch_add(1, Ordering::Relaxed) + 1;
        self.push_pending_again(slot);
        if batched >= BATCH {
            self.collect();
        } else {
            reclaimer::ensure_started();
            reclaimer::wake();
        }
    }

    /// Puts a slot on the pending list that must wait: a barrier found an
    /// invocation in flight, or this thread may not run releases.
    pub(in crate::registry) fn push_pending(&self, slot: &Slot) {
        self.note_waited(slot);
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        self.push_pending_again(slot);
    }

    /// Counts a release that has to wait, once per entry.
    pub(super) fn note_waited(&self, slot: &Slot) {
        if !slot.waited.swap(true, Ordering::Relaxed) {
            self.counters.deferred.fetch_add(1, Ordering::Relaxed);
            self.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A finished (or recycled) slot no longer waits. Only its finisher
    /// touches it now: a load, and a store only when it waited.
    pub(super) fn unnote_waited(&self, slot: &Slot) {
        if slot.waited.load(Ordering::Relaxed) {
            slot.waited.store(false, Ordering::Relaxed);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(super) fn push_pending_again(&self, slot: &Slot) {
        slot.owner.store(0, Ordering::Relaxed);
        let index1 = slot.index + 1;
        let mut head = self.pending_head.load(Ordering::Acquire);
        loop {
            slot.next.store(head, Ordering::Relaxed);
            match self.pending_head.compare_exchange(
                head,
                index1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// In a forked child: a retired slot goes (back) on the pending list.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(in crate::registry) fn requeue_after_fork(&self, slot: &Slot) {
        self.push_pending_again(slot);
    }

    /// Calls `f` on every slot of the chain starting at `index1`, reading
    /// each link before `f` may reuse it.
    pub(super) fn walk<'a>(&'a self, mut index1: u32, mut f: impl FnMut(&'a Slot)) {
        while let Some(slot) = index1
            .checked_sub(1)
            .and_then(|i| self.segments.slot(i as usize))
        {
            index1 = slot.next.load(Ordering::Relaxed);
            f(slot);
        }
    }

    /// Whether any invocation of this registry is running (after a heavy
    /// barrier): a hazard on one of its slots or a slot counter above 0.
    pub(in crate::registry) fn any_in_flight(&self) -> bool {
        hazard::heavy_barrier();
        let mut counted = false;
        self.for_each_used_slot(|slot| counted |= slot.inflight.load(Ordering::SeqCst) != 0);
        counted || Hazards::snapshot().any(|a| self.segments.owns(a))
    }
}
