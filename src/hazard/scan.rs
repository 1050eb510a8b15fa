//! What a writer sees of other threads: the heavy barrier that pairs with
//! an invoker's light one, the scan of every record's hazard cells after
//! it (`docs/protocol.md`), and the wait marks that let a waiter see a cycle
//! of threads waiting for one another.

use super::pool::{has_record, pool, record};
use super::record::{BLOCKED, CELLS, RECORDS};
use super::this_thread::inside_slot;
use crate::sync::{barrier, Ordering};

/// Whether `heavy_barrier` would be a system call now: the process has the
/// asymmetric pair, and another thread holds a record.
pub(crate) fn heavy_barrier_is_costly() -> bool {
    barrier::light_is_compiler_only()
        && pool().claimed.load(Ordering::Relaxed) > usize::from(has_record())
}

/// The writer's barrier, skipped when no other thread holds a record (then
/// no other thread can be between its hazard store and its state load).
pub(crate) fn heavy_barrier() {
    crate::sync::fence(Ordering::SeqCst);
    if pool().claimed.load(Ordering::SeqCst) > usize::from(has_record()) {
        barrier::heavy();
    }
}

/// True if any thread has published `slot` (call after `heavy_barrier`).
pub(crate) fn is_hazarded(slot: usize) -> bool {
    pool().in_use().iter().any(|r| r.holds(slot))
}

/// Every slot address published in a hazard cell, sorted: one scan of the
/// records serves any number of lookups, with no allocation.
pub(crate) struct Hazards {
    addrs: [usize; RECORDS * CELLS],
    len: usize,
}

impl Hazards {
    /// Call after `heavy_barrier`.
    pub(crate) fn snapshot() -> Self {
        let mut h = Hazards {
            addrs: [0; RECORDS * CELLS],
            len: 0,
        };
        for rec in pool().in_use() {
            for c in &rec.cells {
                let v = c.load(Ordering::Acquire);
                if v > BLOCKED {
                    h.addrs[h.len] = v;
                    h.len += 1;
                }
            }
        }
        h.addrs[..h.len].sort_unstable();
        h
    }

    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.addrs[..self.len].binary_search(&addr).is_ok()
    }

    pub(crate) fn any(&self, f: impl Fn(usize) -> bool) -> bool {
        self.addrs[..self.len].iter().any(|&a| f(a))
    }
}

// ---- waiting: cycles between threads ----

/// Marks this thread as waiting for the slot at `slot` (0: done waiting).
pub(crate) fn set_waiting_for(slot: usize) {
    if let Some(r) = has_record().then(record).flatten() {
        r.waiting_for.store(slot, Ordering::SeqCst);
        // Pairs with the same fence of another waiter: of two threads that
        // publish and then look, at least one sees the other.
        crate::sync::fence(Ordering::SeqCst);
    }
}

/// Whether waiting for `slot` closes a cycle: a thread inside `slot` waits
/// for a slot that this thread is inside, directly or through a chain of
/// waiting threads. Sees threads with records (hazard cells); see
/// `docs/protocol.md` for what it cannot see.
pub(crate) fn wait_would_cycle(slot: usize) -> bool {
    let mut target = slot;
    for _ in 0..RECORDS {
        let mut next = 0;
        for rec in pool().in_use() {
            if rec.owner.load(Ordering::SeqCst) == 0 || !rec.holds(target) {
                continue;
            }
            let waits_for = rec.waiting_for.load(Ordering::SeqCst);
            if waits_for == 0 {
                continue;
            }
            if inside_slot(waits_for) {
                return true;
            }
            next = waits_for;
        }
        if next == 0 || next == slot {
            return false;
        }
        target = next;
    }
    false
}
