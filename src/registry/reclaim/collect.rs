//! The collector: runs the releases on the pending list whose invokers
//! have all left, one barrier and one hazard snapshot per round. Not a
//! lock: the collector word takes requests from threads that find a
//! collection running, and one collection runs a bounded number of rounds
//! for them ("Bounds" in `mod.rs`). The drain points, the reclaimer and a
//! waiter for the collector come in here.

use super::finish::Finished;
use super::BATCH;
use crate::hazard::{self, Frame, Hazards, FRAME_COLLECT};
use crate::registry::slots::STOLEN;
use crate::registry::{reclaimer, Core, COLLECTOR_IDLE, COLLECTOR_REQUESTED, COLLECTOR_RUNNING};
use crate::sync::Ordering;
use crate::wait::{self, Step};

/// Rounds one collection runs for others who asked before it leaves the
/// rest to the reclaimer (see "Bounds" in `mod.rs`).
const MAX_ROUNDS: u32 = 4;

impl Core {
    /// A drain point (register, unregister, clear): collects when the
    /// pending list holds entries that wait (for invokers, or because a
    /// real-time thread retired them), a full batch, or when a heavy barrier
    /// costs nothing now.
    pub(in crate::registry) fn drain_if_pending(&self) {
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
            reclaimer::wake();
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
                    reclaimer::ensure_started();
                    reclaimer::wake();
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
    pub(super) fn finish_ready<'a>(
        &'a self,
        head: u32,
        counted: bool,
        done: &mut Finished<'a>,
    ) -> usize {
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
                reclaimer::wake();
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
}
