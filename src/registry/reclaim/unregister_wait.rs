//! `unregister_wait`, the one wait: unregisters an entry and returns once
//! no invocation of it runs and its release has finished, running the
//! release itself where it can ("Waiters finish what they wait for" in
//! `mod.rs`), and refusing a wait on itself or a cycle of waiters.

use crate::hazard;
use crate::registry::slots::{key, split, EXHAUSTED, FINISHING, LIVE, RAN, RETIRED};
use crate::registry::{reclaimer, Core};
use crate::sync::Ordering;
use crate::wait::{self, Step};
use crate::Status;

impl Core {
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
                    reclaimer::wake();
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
}
