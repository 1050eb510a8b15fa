//! A thread record: the hazard cells its owner publishes the slots it is
//! invoking in, the slot it waits for, and its invocation counters. Only the
//! owner writes a record (the pool hands it out and takes it back: `pool.rs`,
//! `exit.rs`); writers read it after a heavy barrier (`scan.rs`). The invoke
//! fast path writes only its first cell and one counter, so the methods it
//! calls are here, inlined.

use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Hazard cells per thread: nesting depth served without shared writes.
#[cfg(not(loom))]
pub(crate) const CELLS: usize = 6;
#[cfg(loom)]
pub(crate) const CELLS: usize = 2;
/// Threads served by records at once; more fall back to slot counters.
#[cfg(not(loom))]
pub(crate) const RECORDS: usize = 256;
#[cfg(loom)]
pub(crate) const RECORDS: usize = 3;
/// Invocation counters per record: one for each registry the table can
/// hold, so every registry counts per thread (no shared write on invoke).
/// The pool is allocated zeroed, so a record's counters take memory only
/// where its thread has counted.
#[cfg(not(loom))]
pub(crate) const COUNTED_REGISTRIES: usize = 4096;
#[cfg(loom)]
pub(crate) const COUNTED_REGISTRIES: usize = 2;

#[repr(C, align(128))]
pub(crate) struct ThreadRecord {
    /// Slot addresses this thread is invoking, innermost last; 0 = empty.
    /// The first cell is the invoke fast path's (see `fast_record`), and
    /// holds `BLOCKED` for good when the thread must fence. First, so the
    /// record word addresses it.
    pub(super) cells: [AtomicUsize; CELLS],
    /// Cells in use by the general path (owner-only; beyond `CELLS`
    /// nesting uses slot counters). The fast path, which takes only the
    /// first cell and only while it is empty, leaves it alone: see
    /// `free_cell`.
    pub(super) depth: AtomicUsize,
    /// The slot whose end this thread waits for (0 = not waiting): lets
    /// another waiter see a cycle.
    pub(super) waiting_for: AtomicUsize,
    /// The owner's thread token; 0 while the record is free.
    pub(super) owner: AtomicU32,
    /// The owner's kernel thread id, to tell whether it still exists.
    pub(super) tid: AtomicU32,
    /// Invocations per registry (by table index), written only by the
    /// owner. Never reset: a record's next owner counts on, so totals never
    /// go back.
    pub(super) invoked: [AtomicU64; COUNTED_REGISTRIES],
}

impl ThreadRecord {
    #[cfg(loom)]
    pub(super) fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| AtomicUsize::new(0)),
            depth: AtomicUsize::new(0),
            waiting_for: AtomicUsize::new(0),
            owner: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            invoked: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The next free cell's depth, if there is one. Cells are used as a
    /// stack, so an empty first cell means none is in use. Otherwise the
    /// general path's count says how many are: when the first cell is the
    /// fast path's, that count is 0 or 1 (the last general entry nested in
    /// a fast one left 1), and the next free cell is 1.
    #[inline(always)]
    pub(crate) fn free_cell(&self) -> Option<usize> {
        if self.cells[0].load(Ordering::Relaxed) == 0 {
            return Some(0);
        }
        let depth = self.depth.load(Ordering::Relaxed).max(1);
        (depth < CELLS).then_some(depth)
    }

    /// Publishes `slot` in cell `depth` (the one `free_cell` gave).
    #[inline(always)]
    pub(crate) fn enter(&self, depth: usize, slot: usize) {
        debug_assert!(depth < CELLS);
        // The caller checked depth < CELLS; `min` lets the compiler drop
        // the bounds check.
        self.cells[depth.min(CELLS - 1)].store(slot, Ordering::Relaxed);
        self.depth.store(depth + 1, Ordering::Relaxed);
    }

    /// Clears cell `depth` again.
    #[inline(always)]
    pub(crate) fn leave(&self, depth: usize) {
        self.cells[depth.min(CELLS - 1)].store(0, Ordering::Release);
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// The fast path's `enter`: publishes `slot` in the first cell, which
    /// `fast_record` found empty. The depth is not written (`free_cell`).
    #[inline(always)]
    pub(crate) fn enter_first(&self, slot: usize) {
        self.cells[0].store(slot, Ordering::Relaxed);
    }

    /// The slot address the first cell holds, as a slot (the caller
    /// published it there with `enter_first` and has not cleared it).
    #[inline(always)]
    pub(crate) fn first_slot<'a, T>(&self) -> &'a T {
        let addr = self.cells[0].load(Ordering::Relaxed);
        // SAFETY: the caller's own publication, still in place: the hazard
        // keeps the slot alive (slots are never freed anyway).
        unsafe { &*(addr as *const T) }
    }

    /// The fast path's `leave`: clears the first cell.
    #[inline(always)]
    pub(crate) fn leave_first(&self) {
        self.cells[0].store(0, Ordering::Release);
    }

    /// The slot addresses this thread has published, outermost first.
    pub(super) fn published(&self) -> impl Iterator<Item = usize> + '_ {
        self.cells
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|&v| v > BLOCKED)
    }

    /// This thread's invocation counter for the registry at table index
    /// `index` (masked: every index is below `COUNTED_REGISTRIES`).
    #[inline(always)]
    pub(crate) fn invoked(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < COUNTED_REGISTRIES);
        // SAFETY: table indices are below `MAX_REGISTRIES`, which is
        // `COUNTED_REGISTRIES` (asserted in `table.rs`).
        unsafe { self.invoked.get_unchecked(index) }
    }

    /// Owner-only increment: a plain load and store, no read-modify-write.
    #[inline(always)]
    pub(crate) fn bump(count: &AtomicU64) {
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub(super) fn holds(&self, slot: usize) -> bool {
        // A slot's address is never `BLOCKED`.
        self.cells.iter().any(|c| c.load(Ordering::SeqCst) == slot)
    }
}

/// What a first cell holds to keep the fast path away: never a slot's
/// address (slots are cache-line aligned) and never 0 (empty). The record
/// word's first placeholder (`tls_word::NONE_YET`) holds it too.
pub(super) const BLOCKED: usize = crate::tls_word::BLOCKED;
