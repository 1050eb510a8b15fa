//! Retirement and release: who owns a retired entry, where its release
//! runs, the pending list and its collector, `clear`, and the one wait
//! (`unregister_wait`).
//!
//! Whoever moves a slot from LIVE to RETIRED with one CAS (unregister,
//! clear, close, or the invoker of a one-shot) owns its release. The owner
//! runs a heavy barrier and looks for invokers inside: if there are none it
//! finishes the entry at once, otherwise the slot goes on the pending list
//! and the last invoker to leave (or the next drain point, or the
//! reclaimer thread for real-time threads) finishes it. Finishing runs the
//! release, then moves the slot to its next generation and frees it.
//!
//! Batches. While other threads hold records, the heavy barrier is a system
//! call (`membarrier`), too dear to pay per unregister. An unregister then
//! puts the slot on the pending list without one (unless the entry was
//! registered `CBREG_PROMPT`): the barrier is paid once per batch, by the
//! collect that finds `BATCH` entries waiting, by any explicit collect, by
//! the last invoker of an entry retired under it, or by the reclaimer
//! thread, which runs within `reclaimer::PERIOD`. Nothing else changes: a
//! slot is finished only after a heavy barrier and a look at every hazard,
//! as before.
//!
//! Bounds. The entries left for batches are counted (`batched`) until a
//! round takes them; past `BACKLOG` an unregister pays its own barrier,
//! and one collection runs at most `MAX_ROUNDS` rounds for others, so the
//! pending list, the memory its slots hold and the releases one call runs
//! for others are all bounded whatever the number of threads
//! (`docs/protocol.md` section 3 states the figures).
//!
//! Waiters finish what they wait for. Beginning a release is one CAS
//! (FINISHING), by the slot's holder or by a waiter of that entry
//! (`unregister_wait`), which takes it over once its own barrier finds no
//! invoker inside (`steal`): a waiter waits for its entry's invocations and
//! release only, never for a neighbour in the same batch. The holder and
//! the waiter then agree with one CAS each which of them recycles the slot
//! (RAN, HANDED).

use std::ffi::c_void;

use super::slots::{
    key, split, Slot, EXHAUSTED, FINISHING, HANDED, LIVE, RAN, RETIRED, STOLEN,
};
use super::{Core, COLLECTOR_IDLE, COLLECTOR_REQUESTED, COLLECTOR_RUNNING, RELEASE_LEAKED};
use crate::hazard::{self, Frame, Hazards, FRAME_COLLECT};
use crate::sync::Ordering;
use crate::wait::{self, Step};
use crate::Status;

/// Entries an unregister leaves for a batch before it collects them itself.
pub(crate) const BATCH: u32 = 64;

/// Entries left for batches that no collection has taken yet, past which
/// an unregister pays its own barrier instead (see "Bounds").
pub(crate) const BACKLOG: u32 = 16 * BATCH;

/// Back-off rounds (spins, then yields: no sleep) an unregister gives a
/// full backlog before it pays its own barrier.
const BACKLOG_PATIENCE: u32 = 64;

/// Rounds one collection runs for others who asked before it leaves the
/// rest to the reclaimer (see "Bounds").
const MAX_ROUNDS: u32 = 4;

/// Entries `clear` retires before it releases them: 256 KB of slots, which
/// stay in the cache between the two passes.
const CLEAR_CHUNK: u32 = 4096;

/// A chain of slots `clear` retired (index + 1 of the first; 0 = none).
#[derive(Default)]
struct Chunk {
    head: u32,
    len: u32,
}

impl Core {
    /// The one way an entry stops being live: a CAS from its live `state`
    /// to RETIRED. The one thread that wins owns the release and is noted
    /// as its holder (`owner`, for a forked child).
    pub(super) fn take(slot: &Slot, state: u64, owner: u32) -> bool {
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
    pub(super) fn claim(&self, id: u64) -> Result<&Slot, Status> {
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

    fn in_flight(slot: &Slot) -> bool {
        slot.inflight.load(Ordering::SeqCst) != 0 || hazard::is_hazarded(slot.addr())
    }

    /// Releases a slot this thread owns: now if nothing is inside it and
    /// this thread may run releases, else through the pending list (in a
    /// batch, when a heavy barrier would be a system call now).
    pub(super) fn retire(&self, slot: &Slot) {
        if hazard::is_realtime() {
            self.push_pending(slot);
            super::reclaimer::wake();
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
            super::reclaimer::ensure_started();
            super::reclaimer::wake();
        }
    }

    /// Puts a slot on the pending list that must wait: a barrier found an
    /// invocation in flight, or this thread may not run releases.
    pub(super) fn push_pending(&self, slot: &Slot) {
        self.note_waited(slot);
        self.counters.pending.fetch_add(1, Ordering::Relaxed);
        self.push_pending_again(slot);
    }

    /// Counts a release that has to wait, once per entry.
    fn note_waited(&self, slot: &Slot) {
        if !slot.waited.swap(true, Ordering::Relaxed) {
            self.counters.deferred.fetch_add(1, Ordering::Relaxed);
            self.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A finished (or recycled) slot no longer waits. Only its finisher
    /// touches it now: a load, and a store only when it waited.
    fn unnote_waited(&self, slot: &Slot) {
        if slot.waited.load(Ordering::Relaxed) {
            slot.waited.store(false, Ordering::Relaxed);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn push_pending_again(&self, slot: &Slot) {
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

    /// Runs the release (if any) and recycles the slot. No lock is held.
    /// False when a waiter had taken the release over (`steal`): the slot
    /// is let go of, and the release may still be running on the waiter.
    fn finish(&self, slot: &Slot) -> bool {
        let Some(state) = self.begin_finish(slot) else {
            self.let_go_of_stolen(slot);
            return false;
        };
        let leaked = self.run_release(slot, state, false);
        self.count_finished(leaked);
        self.recycle(slot, state);
        true
    }

    /// Counts a release step that finished. Release: whoever sees the count
    /// (a `free` waiting for it) sees the release's effects.
    fn count_finished(&self, leaked: bool) {
        let count = if leaked {
            &self.counters.leaked
        } else {
            &self.counters.released
        };
        count.fetch_add(1, Ordering::Release);
    }

    /// `finish` for one of many (a batch): the counting and the freeing
    /// are left to `done`, which hands them over when dropped (also if a
    /// release unwinds). Until then a waiter may see the entry gone before
    /// the counts do.
    fn finish_into<'a>(&'a self, slot: &'a Slot, done: &mut Finished<'a>) {
        let Some(state) = self.begin_finish(slot) else {
            self.let_go_of_stolen(slot);
            return;
        };
        if self.run_release(slot, state, false) {
            done.leaked += 1;
        } else {
            done.released += 1;
        }
        slot.owner.store(0, Ordering::Relaxed);
        self.unnote_waited(slot);
        // Release: a waiter that sees the next generation sees the release.
        slot.state
            .store(Slot::next_free_state(state), Ordering::Release);
        done.free(slot);
    }

    /// The holder's claim on a retired slot's release: FINISHING, by CAS,
    /// so that a waiter cannot take it at the same time. Returns the state
    /// before, or `None` when a waiter took it first.
    fn begin_finish(&self, slot: &Slot) -> Option<u64> {
        let mut seen = slot.state.load(Ordering::Acquire);
        loop {
            if seen & STOLEN != 0 {
                return None;
            }
            debug_assert!(seen & RETIRED != 0 && seen & FINISHING == 0);
            match slot.state.compare_exchange(
                seen,
                seen | FINISHING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(seen),
                Err(now) => seen = now,
            }
        }
    }

    /// A waiter runs the release of the retired entry whose state it saw
    /// as `seen`, whoever holds the slot (a batch, a collection, the
    /// pending list, a clear), once its own barrier found no invoker
    /// inside. The holder recycles the slot afterwards, or hands that to
    /// the waiter if it gets there first. False if the state moved on
    /// (the holder began, or another waiter did).
    fn steal(&self, slot: &Slot, seen: u64) -> bool {
        let running = seen | FINISHING | STOLEN;
        if slot
            .state
            .compare_exchange(seen, running, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let leaked = self.run_release(slot, running, true);
        self.count_finished(leaked);
        self.hand_back(slot, running);
        true
    }

    /// A waiter whose release of a stolen slot has finished: the holder
    /// recycles it (RAN), unless it has let go already (HANDED).
    fn hand_back(&self, slot: &Slot, running: u64) {
        if slot
            .state
            .compare_exchange(running, running | RAN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.recycle(slot, running);
        }
    }

    /// A holder that meets a slot a waiter took: recycles it if the
    /// waiter's release has finished, else leaves that to the waiter.
    fn let_go_of_stolen(&self, slot: &Slot) {
        let mut seen = slot.state.load(Ordering::Acquire);
        loop {
            debug_assert!(seen & STOLEN != 0);
            if seen & RAN != 0 {
                self.recycle(slot, seen);
                return;
            }
            match slot.state.compare_exchange(
                seen,
                seen | HANDED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => seen = now,
            }
        }
    }

    /// Runs a retired slot's release, its FINISHING already set (the state
    /// is `state`); returns whether the release left its context leaked on
    /// purpose. `stolen`: run by a waiter (`steal`).
    fn run_release(&self, slot: &Slot, state: u64, stolen: bool) -> bool {
        // Read by this thread, and by a forked child (after the fork).
        slot.owner.store(hazard::token(), Ordering::Relaxed);
        // Plain loads and stores: the slot's release is this thread's alone
        // (no invoker reads them once the state is not LIVE).
        let release = slot.release.load(Ordering::Relaxed);
        let ctx = slot.ctx.load(Ordering::Relaxed);
        slot.release.store(std::ptr::null_mut(), Ordering::Relaxed);
        slot.ctx.store(std::ptr::null_mut(), Ordering::Relaxed);
        slot.call.store(std::ptr::null_mut(), Ordering::Relaxed);
        // A release may re-enter and finish another entry: keep the marks apart.
        let outer_mark = RELEASE_LEAKED.with(|c| c.replace(false));
        // A release that ends its thread (forced unwind) counts as leaked.
        struct Unwinding<'a>(&'a Core, &'a Slot, u64, bool, bool);
        impl Drop for Unwinding<'_> {
            fn drop(&mut self) {
                if self.3 {
                    self.0.counters.leaked.fetch_add(1, Ordering::SeqCst);
                    if self.4 {
                        self.0.hand_back(self.1, self.2);
                    } else {
                        self.0.recycle(self.1, self.2 & !FINISHING);
                    }
                }
            }
        }
        let mut unwinding = Unwinding(self, slot, state, true, stolen);
        if !release.is_null() {
            // SAFETY: stored from a `ReleaseFn`, a function pointer of this
            // very type.
            let release: unsafe extern "C-unwind" fn(*mut c_void) =
                unsafe { std::mem::transmute(release) };
            // SAFETY: the entry is retired, its release is this thread's
            // (FINISHING), and no invoker is inside: the release's contract.
            unsafe { release(ctx) };
        }
        unwinding.3 = false;
        RELEASE_LEAKED.with(|c| c.replace(outer_mark))
    }

    /// After the release step was counted: the next generation, then free.
    fn recycle(&self, slot: &Slot, state: u64) {
        slot.owner.store(0, Ordering::Relaxed);
        self.unnote_waited(slot);
        // Release: a waiter that sees the next generation sees the release.
        slot.state
            .store(Slot::next_free_state(state), Ordering::Release);
        self.free.free(slot);
    }

    /// In a forked child: a retired slot goes (back) on the pending list.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) fn requeue_after_fork(&self, slot: &Slot) {
        self.push_pending_again(slot);
    }

    /// In a forked child: a slot whose release died with its thread.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) fn recycle_after_fork(&self, slot: &Slot, state: u64) {
        self.recycle(slot, state & !FINISHING);
    }

    /// A drain point (register, unregister, clear): collects when the
    /// pending list holds entries that wait (for invokers, or because a
    /// real-time thread retired them), a full batch, or when a heavy barrier
    /// costs nothing now.
    pub(super) fn drain_if_pending(&self) {
        if self.pending_head.load(Ordering::Relaxed) != 0
            && !hazard::is_realtime()
            && self.worth_collecting()
        {
            self.collect();
        }
    }

    /// Waits until no collection of this registry runs: a collection
    /// another thread was running when this thread asked for one has then
    /// run the round asked for. Not from inside cbreg (a callback, a
    /// release, a collection, another operation), where that collection
    /// could be waiting for this thread.
    pub(crate) fn wait_for_collector(&self) {
        if hazard::inside_anything() || hazard::is_realtime() {
            return;
        }
        let _ = wait::until(0, || {
            if self.collector.load(Ordering::Acquire) == COLLECTOR_IDLE {
                Step::Done
            } else {
                Step::Again
            }
        });
        // A collection that ran `MAX_ROUNDS` may have left the round asked
        // for to the reclaimer: run it here.
        if self.pending_head.load(Ordering::Acquire) != 0 {
            self.collect();
        }
    }

    /// The reclaimer's round: collect if anything is pending (`asked`: a
    /// thread raised the flag, so collect anyway).
    pub(crate) fn collect_from_reclaimer(&self, asked: bool) {
        if asked || self.pending_head.load(Ordering::Acquire) != 0 {
            self.collect();
        }
    }

    fn worth_collecting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) != 0
            || self.batched.load(Ordering::Relaxed) >= BATCH
            || !hazard::heavy_barrier_is_costly()
    }

    /// Runs every deferred release whose invocations have all returned.
    /// Returns how many this call finished. Never runs on a real-time thread.
    ///
    /// Not a lock: a thread that finds a collection running leaves a request
    /// in the same word (so the collector runs another round that sees what
    /// this thread did before) and returns at once.
    pub(crate) fn collect(&self) -> usize {
        self.collect_leading().0
    }

    /// `collect`; also says whether this call ran the collection (false:
    /// another thread's was running, and will run the round asked for).
    pub(crate) fn collect_leading(&self) -> (usize, bool) {
        if hazard::is_realtime() {
            super::reclaimer::wake();
            return (0, true);
        }
        let mut seen = self.collector.load(Ordering::Acquire);
        loop {
            let (next, leader) = match seen {
                COLLECTOR_IDLE => (COLLECTOR_RUNNING, true),
                COLLECTOR_RUNNING => (COLLECTOR_REQUESTED, false),
                _ => return (0, false),
            };
            match self
                .collector
                .compare_exchange(seen, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if leader => break,
                Ok(_) => return (0, false),
                Err(s) => seen = s,
            }
        }
        // Stays idle-able however the rounds end (a release may unwind).
        struct Idle<'a>(&'a Core);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.collector.store(COLLECTOR_IDLE, Ordering::Release);
            }
        }
        let frame = Frame::new(FRAME_COLLECT, self.addr());
        frame.scope(|| {
            let idle = Idle(self);
            let mut finished = 0;
            for round in 1.. {
                finished += self.collect_round();
                if self
                    .collector
                    .compare_exchange(
                        COLLECTOR_RUNNING,
                        COLLECTOR_IDLE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    // Idle already: another collection may be running now.
                    std::mem::forget(idle);
                    return (finished, true);
                }
                if round == MAX_ROUNDS {
                    // Others keep asking (a storm): the reclaimer runs
                    // their rounds within a period; `idle` lets go.
                    super::reclaimer::ensure_started();
                    super::reclaimer::wake();
                    break;
                }
                self.collector.store(COLLECTOR_RUNNING, Ordering::Release);
            }
            (finished, true)
        })
    }

    fn collect_round(&self) -> usize {
        let head = self.pending_head.swap(0, Ordering::SeqCst);
        if head == 0 {
            return 0;
        }
        // The batch is this thread's now: say so, for a forked child. The
        // entries left for a batch (the ones that never waited) leave the
        // backlog's count.
        let me = hazard::token();
        let mut taken = 0;
        self.walk(head, |slot| {
            slot.owner.store(me, Ordering::Relaxed);
            taken += u32::from(!slot.waited.load(Ordering::Relaxed));
        });
        let _ = self
            .batched
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(taken))
            });
        hazard::heavy_barrier();
        let hazards = Hazards::snapshot();
        // First pass: what an invocation is still inside goes back on the
        // pending list; the rest is chained for the second, which runs the
        // releases. A waiter may take any of them over meanwhile (`steal`).
        let mut ready = 0;
        self.walk(head, |slot| {
            if slot.state.load(Ordering::Acquire) & STOLEN != 0 {
                self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                self.let_go_of_stolen(slot);
            } else if slot.inflight.load(Ordering::SeqCst) != 0 || hazards.contains(slot.addr()) {
                self.note_waited(slot);
                self.push_pending_again(slot);
            } else {
                slot.next.store(ready, Ordering::Relaxed);
                ready = slot.index + 1;
            }
        });
        let mut done = Finished::new(self);
        self.finish_ready(ready, true, &mut done)
    }

    /// Runs the releases of a chain of slots a barrier found no invoker in
    /// (the second pass of a collection round or of a clear's chunk),
    /// handing counts and freed slots to `done`; returns how many it ran.
    /// `counted`: the slots are counted as pending (a collection's).
    ///
    /// A release may mark this thread real-time: from then on the rest go
    /// to the pending list, for the reclaimer. Slots a waiter took over
    /// are let go of.
    fn finish_ready<'a>(&'a self, head: u32, counted: bool, done: &mut Finished<'a>) -> usize {
        let mut finished = 0;
        self.walk(head, |slot| {
            let stolen = slot.state.load(Ordering::Acquire) & STOLEN != 0;
            if hazard::is_realtime() && !stolen {
                if counted {
                    self.note_waited(slot);
                    self.push_pending_again(slot);
                } else {
                    self.push_pending(slot);
                }
                super::reclaimer::wake();
                return;
            }
            if counted {
                self.counters.pending.fetch_sub(1, Ordering::Relaxed);
            }
            let before = done.released + done.leaked;
            self.finish_into(slot, done);
            finished += (done.released + done.leaked - before) as usize;
        });
        finished
    }

    /// Calls `f` on every slot of the chain starting at `index1`, reading
    /// each link before `f` may reuse it.
    fn walk<'a>(&'a self, mut index1: u32, mut f: impl FnMut(&'a Slot)) {
        while let Some(slot) = index1
            .checked_sub(1)
            .and_then(|i| self.segments.slot(i as usize))
        {
            index1 = slot.next.load(Ordering::Relaxed);
            f(slot);
        }
    }

    /// Unregisters every live entry; returns how many this call retired.
    /// Allocates nothing: the retired slots are chained through their own
    /// links, a chunk at a time (so the second pass over a chunk finds it
    /// in the cache), with one barrier and one hazard snapshot per chunk.
    pub(crate) fn clear(&self) -> usize {
        let me = hazard::token();
        let mut chunk = Chunk::default();
        let mut count = 0;
        let mut deferred = false;
        self.for_each_used_slot(|slot| {
            let state = slot.state.load(Ordering::SeqCst);
            if state & LIVE != 0 && Self::take(slot, state, me) {
                slot.next.store(chunk.head, Ordering::Relaxed);
                chunk.head = slot.index + 1;
                chunk.len += 1;
                count += 1;
                if chunk.len == CLEAR_CHUNK {
                    deferred |= self.release_cleared(std::mem::take(&mut chunk));
                }
            }
        });
        deferred |= self.release_cleared(chunk);
        if deferred {
            self.collect();
        }
        self.drain_if_pending();
        count
    }

    /// Releases a chunk of entries `clear` retired: those no invocation is
    /// inside now, the rest through the pending list. True if any waits.
    fn release_cleared(&self, chunk: Chunk) -> bool {
        if chunk.len == 0 {
            return false;
        }
        self.counters
            .retired
            .fetch_add(u64::from(chunk.len), Ordering::SeqCst);
        if hazard::is_realtime() {
            self.walk(chunk.head, |slot| self.push_pending(slot));
            super::reclaimer::wake();
            return false;
        }
        hazard::heavy_barrier();
        let hazards = Hazards::snapshot();
        let mut deferred = false;
        let mut ready = 0;
        self.walk(chunk.head, |slot| {
            if slot.state.load(Ordering::Acquire) & STOLEN != 0 {
                self.let_go_of_stolen(slot);
            } else if slot.inflight.load(Ordering::SeqCst) != 0 || hazards.contains(slot.addr()) {
                self.push_pending(slot);
                deferred = true;
            } else {
                slot.next.store(ready, Ordering::Relaxed);
                ready = slot.index + 1;
            }
        });
        let mut done = Finished::new(self);
        self.finish_ready(ready, false, &mut done);
        deferred
    }

    /// Unregisters `id` (if it is still live) and returns once no
    /// invocation of it runs anywhere and its release has finished, whoever
    /// retired it. `Ok` if this call unregistered it, `NotFound` if it was
    /// already unregistered (or never existed), `WouldDeadlock` if the wait
    /// would wait for this thread itself or closes a cycle of waiters.
    pub(crate) fn unregister_wait(&self, id: u64) -> Status {
        let Some((want, index)) = split(id) else {
            return Status::NotFound;
        };
        let Some(slot) = self.segments.slot(index) else {
            return Status::NotFound;
        };
        let state = slot.state.load(Ordering::Acquire);
        if key(state) != want || state & (LIVE | RETIRED) == 0 {
            return Status::NotFound;
        }
        if hazard::inside_slot(slot.addr()) {
            return Status::WouldDeadlock;
        }
        // If this call unregisters the entry, it waits for the invokers to
        // leave and finishes the entry itself; otherwise (or on a real-time
        // thread) it waits for whoever finishes it.
        let claimed = self.claim(id).is_ok();
        let mine = std::cell::Cell::new(claimed);
        let me = hazard::token();
        let waited = wait::until(slot.addr(), || {
            if hazard::wait_would_cycle(slot.addr()) {
                return Step::Deadlock;
            }
            if mine.get() {
                hazard::heavy_barrier();
                if Self::in_flight(slot) {
                    return Step::Again;
                }
                // Nobody passed the state check after our claim: finish.
                mine.set(false);
                if !hazard::is_realtime() {
                    if self.finish(slot) {
                        return Step::Done;
                    }
                } else {
                    self.push_pending(slot);
                    super::reclaimer::wake();
                }
            }
            let now = slot.state.load(Ordering::Acquire);
            if key(now) != want || now & (EXHAUSTED | RAN) != 0 {
                return Step::Done;
            }
            if now & FINISHING != 0 {
                // Running on this very thread, further out, it cannot end
                // while this thread waits.
                if slot.owner.load(Ordering::Relaxed) == me {
                    return Step::Deadlock;
                }
                return Step::Again;
            }
            // Retired, its release not begun, wherever the slot is held:
            // once the entry's own invokers are out, this thread runs the
            // release itself, so it waits for nothing else.
            if hazard::is_realtime() {
                self.collect();
                return Step::Again;
            }
            hazard::heavy_barrier();
            if !Self::in_flight(slot) && self.steal(slot, now) {
                return Step::Done;
            }
            Step::Again
        });
        if mine.get() {
            // A cycle: the release waits for the invokers on the pending
            // list, like any unregister's.
            self.push_pending(slot);
        }
        match (waited, claimed) {
            (Status::Ok, true) => Status::Ok,
            (Status::Ok, false) => Status::NotFound,
            (other, _) => other,
        }
    }

    /// Whether any invocation of this registry is running (after a heavy
    /// barrier): a hazard on one of its slots or a slot counter above 0.
    pub(super) fn any_in_flight(&self) -> bool {
        hazard::heavy_barrier();
        let mut counted = false;
        self.for_each_used_slot(|slot| counted |= slot.inflight.load(Ordering::SeqCst) != 0);
        counted || Hazards::snapshot().any(|a| self.segments.owns(a))
    }
}

/// What a run of `finish`es owes the core: its counts, and the slots to
/// free, chained through their links. Handed over in one update each when
/// dropped (also when a release unwinds), so finishing many entries (a
/// clear) costs no shared write per entry.
struct Finished<'a> {
    core: &'a Core,
    released: u64,
    leaked: u64,
    /// First and last slot of the chain to free.
    chain: Option<(&'a Slot, &'a Slot)>,
}

impl<'a> Finished<'a> {
    fn new(core: &'a Core) -> Self {
        Finished {
            core,
            released: 0,
            leaked: 0,
            chain: None,
        }
    }

    fn free(&mut self, slot: &'a Slot) {
        if !self.core.free.can_free(slot) {
            return;
        }
        self.chain = Some(match self.chain {
            None => (slot, slot),
            Some((first, last)) => {
                slot.next.store(first.index + 1, Ordering::Relaxed);
                (slot, last)
            }
        });
    }
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        // Release: whoever sees a count (a `free` waiting for it) sees the
        // releases' effects.
        if self.released != 0 {
            self.core
                .counters
                .released
                .fetch_add(self.released, Ordering::Release);
        }
        if self.leaked != 0 {
            self.core
                .counters
                .leaked
                .fetch_add(self.leaked, Ordering::Release);
        }
        if let Some((first, last)) = self.chain {
            self.core.free.free_chain(first, last);
        }
    }
}
