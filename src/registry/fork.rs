//! The state a forked child starts from.
//!
//! In the child only the forking thread exists. Whatever the others were
//! doing (invoking at any depth, collecting, owning a retired entry, in the
//! middle of a release) must not leave anything the child would wait for:
//! their hazard records are returned by `hazard/exit.rs` (the step before this
//! one, `fork.rs` at the crate root has the order); here every registry's
//! slot counters, pins and collector are set to what the forking thread
//! itself holds, and the pending list is rebuilt from the slots, so that
//! what the parent left retired is released in the child.
#![cfg_attr(not(unix), allow(dead_code))] // fork exists on Unix alone

use super::slots::{is_retired, FINISHING, RAN};
use super::{Core, COLLECTOR_IDLE, COLLECTOR_RUNNING};
use crate::hazard::{self, FRAME_COLLECT, FRAME_INVOKE};
use crate::sync::Ordering;

/// The fork child's `Registries` step (`crate::fork`).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn after_fork_in_child() {
    super::for_each_core(reset_core);
}

fn reset_core(core: &'static Core) {
    let me = hazard::token();
    let mut collecting = false;
    hazard::for_each_frame(|kind, addr| collecting |= kind == FRAME_COLLECT && addr == core.addr());
    core.pins
        .store(hazard::my_pins(core.addr()) as u64, Ordering::SeqCst);
    core.collector.store(
        if collecting {
            COLLECTOR_RUNNING
        } else {
            COLLECTOR_IDLE
        },
        Ordering::SeqCst,
    );
    // The pending list is rebuilt from scratch: what was on it, and what
    // dead threads held privately, goes back on it; what this thread holds
    // stays with it.
    core.pending_head.store(0, Ordering::SeqCst);
    core.batched.store(0, Ordering::Relaxed);
    let (mut pending, mut waiting, mut held) = (0, 0, 0);
    core.for_each_used_slot(|slot| {
        let mut mine = 0;
        hazard::for_each_frame(|kind, addr| {
            mine += u32::from(kind == FRAME_INVOKE && addr == slot.addr())
        });
        slot.inflight.store(mine, Ordering::SeqCst);
        let state = slot.state.load(Ordering::SeqCst);
        if !is_retired(state) {
            return;
        }
        if slot.owner.load(Ordering::Relaxed) == me {
            held += 1;
            return;
        }
        if state & RAN != 0 {
            // A waiter ran its release; whoever held the slot is gone.
            core.recycle_after_fork(slot, state);
            return;
        }
        if state & FINISHING != 0 {
            // Its release was running on a thread the child does not have:
            // it cannot be run again, nor finished; count it as leaked.
            core.counters.leaked.fetch_add(1, Ordering::SeqCst);
            core.recycle_after_fork(slot, state);
            return;
        }
        core.requeue_after_fork(slot);
        pending += 1;
        waiting += u32::from(slot.waited.load(Ordering::Relaxed));
    });
    core.counters.pending.store(pending, Ordering::SeqCst);
    // Set after the loop: the recycling above took back its own counts.
    core.waiting.store(waiting, Ordering::Relaxed);
    // Every retired entry is now finished, pending, or this thread's. A
    // thread of the parent may have retired one and not yet counted it, or
    // finished some and not yet counted them (a clear hands its counts
    // over after its chunk): the count `free` waits to see agree is set to
    // what is, so it agrees once the child has released the rest.
    core.counters
        .retired
        .store(core.counters.finished() + pending + held, Ordering::SeqCst);
}
