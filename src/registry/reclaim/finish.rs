//! Finishing a retired entry: running its release exactly once and moving
//! its slot to the next generation, one at a time or for a batch
//! (`Finished`), and the hand-over when a waiter takes a release over
//! (FINISHING, STOLEN, then RAN or HANDED; "Waiters finish what they wait
//! for" in `mod.rs`).

use std::ffi::c_void;

use crate::hazard;
use crate::registry::slots::{Slot, FINISHING, HANDED, RAN, RETIRED, STOLEN};
use crate::registry::{Core, RELEASE_LEAKED};
use crate::sync::Ordering;

impl Core {
    /// Runs the release (if any) and recycles the slot. No lock is held.
    /// False when a waiter had taken the release over (`steal`): the slot
    /// is let go of, and the release may still be running on the waiter.
    pub(super) fn finish(&self, slot: &Slot) -> bool {
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
    pub(super) fn finish_into<'a>(&'a self, slot: &'a Slot, done: &mut Finished<'a>) {
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
    pub(super) fn steal(&self, slot: &Slot, seen: u64) -> bool {
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
    pub(super) fn let_go_of_stolen(&self, slot: &Slot) {
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

    /// In a forked child: a slot whose release died with its thread.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(in crate::registry) fn recycle_after_fork(&self, slot: &Slot, state: u64) {
        self.recycle(slot, state & !FINISHING);
    }
}

/// What a run of `finish`es owes the core: its counts, and the slots to
/// free, chained through their links. Handed over in one update each when
/// dropped (also when a release unwinds), so finishing many entries (a
/// clear) costs no shared write per entry.
pub(super) struct Finished<'a> {
    core: &'a Core,
    pub(super) released: u64,
    pub(super) leaked: u64,
    /// First and last slot of the chain to free.
    chain: Option<(&'a Slot, &'a Slot)>,
}

impl<'a> Finished<'a> {
    pub(super) fn new(core: &'a Core) -> Self {
        Finished {
            core,
            released: 0,
            leaked: 0,
            chain: None,
        }
    }

    pub(super) fn free(&mut self, slot: &'a Slot) {
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
