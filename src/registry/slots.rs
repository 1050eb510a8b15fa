//! Slot storage: one cache line per entry, in segments that never move and
//! are never freed while the registry table lives, and the free list that
//! recycles them.
//!
//! A slot's `state` word holds its generation (high 32 bits) and its
//! lifecycle bits. An id is `generation << 32 | (slot index + 1)`. The
//! generation moves on when an entry is finished, so an id names one entry
//! for ever: a stale id never matches the state of a newer one.

use std::ffi::c_void;

use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::Status;

/// The entry is registered and may be invoked.
pub(crate) const LIVE: u64 = 1;
/// The entry runs at most once.
pub(crate) const ONCE: u64 = 2;
/// Unregistered; its release has not finished yet. Whoever set this bit
/// owns the release (see `owner`).
pub(crate) const RETIRED: u64 = 4;
/// The release is running now.
pub(crate) const FINISHING: u64 = 8;
/// Its ids would wrap: the slot is never used again.
pub(crate) const EXHAUSTED: u64 = 16;
const MAX_GENERATION: u64 = u32::MAX as u64;

#[cfg(not(loom))]
const FIRST_SHIFT: u32 = 6;
#[cfg(not(loom))]
pub(crate) const SEGMENTS: usize = 26;
#[cfg(loom)]
const FIRST_SHIFT: u32 = 1;
#[cfg(loom)]
pub(crate) const SEGMENTS: usize = 3;
const FIRST: usize = 1 << FIRST_SHIFT;
/// Slots a registry can hold: segment k has `FIRST << k` slots.
pub(crate) const CAPACITY: usize = FIRST * ((1 << SEGMENTS) - 1);

/// One entry: exactly one cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) state: AtomicU64,
    pub(crate) call: AtomicUsize,
    pub(crate) ctx: AtomicPtr<c_void>,
    pub(crate) release: AtomicUsize,
    /// Invokers that could not use a hazard cell (pool full, deep nesting).
    pub(crate) inflight: AtomicU32,
    /// Link in the free list, the pending list or a private batch
    /// (index + 1; 0 ends it).
    pub(crate) next: AtomicU32,
    /// Token of the thread that holds this retired slot privately; 0 while
    /// it is on the shared pending list (or not retired).
    pub(crate) owner: AtomicU32,
    pub(crate) index: u32,
}

impl Slot {
    fn new(index: usize) -> Self {
        Slot {
            index: index as u32,
            state: AtomicU64::new(1 << 32),
            call: AtomicUsize::new(0),
            ctx: AtomicPtr::new(std::ptr::null_mut()),
            release: AtomicUsize::new(0),
            inflight: AtomicU32::new(0),
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
        }
    }

    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        self as *const Slot as usize
    }

    /// The id of the entry this slot holds in generation `gen`.
    pub(crate) fn id(&self, gen: u64) -> u64 {
        gen << 32 | (self.index as u64 + 1)
    }

    /// The state after this entry is finished: the next generation, free.
    pub(crate) fn next_free_state(state: u64) -> u64 {
        let gen = generation(state);
        if gen >= MAX_GENERATION {
            gen << 32 | EXHAUSTED
        } else {
            (gen + 1) << 32
        }
    }
}

#[inline(always)]
pub(crate) fn generation(state: u64) -> u64 {
    state >> 32
}

/// Retired and not yet finished (on a pending list, in a batch, or owned).
pub(crate) fn is_retired(state: u64) -> bool {
    state & RETIRED != 0
}

/// Splits an id into (generation, slot index); `None` for id 0 or index 0.
#[inline(always)]
pub(crate) fn split(id: u64) -> Option<(u64, usize)> {
    let index1 = id as u32;
    (index1 != 0 && generation(id) != 0).then(|| (generation(id), index1 as usize - 1))
}

#[inline(always)]
fn locate(index: usize) -> (usize, usize) {
    let v = index + FIRST;
    let seg = (usize::BITS - 1 - v.leading_zeros() - FIRST_SHIFT) as usize;
    (seg, v - (FIRST << seg))
}

/// The segments: read by every invoke, written when one is added.
pub(crate) struct Segments {
    segments: [AtomicPtr<Slot>; SEGMENTS],
}

impl Segments {
    pub(crate) fn new() -> Self {
        Segments {
            segments: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }

    #[inline(always)]
    pub(crate) fn slot(&self, index: usize) -> Option<&Slot> {
        u32::try_from(index + 1)
            .ok()
            .and_then(|index1| self.slot_of_id(index1 as u64))
    }

    /// The slot an id (or any value whose low 32 bits are index + 1) names,
    /// if its segment exists.
    #[inline(always)]
    pub(crate) fn slot_of_id(&self, id: u64) -> Option<&Slot> {
        let index1 = id as u32 as usize;
        if index1 == 0 {
            return None;
        }
        let v = index1 + (FIRST - 1); // = index + FIRST, no overflow
        let seg = (usize::BITS - 1 - v.leading_zeros() - FIRST_SHIFT) as usize;
        let base = self.segments.get(seg)?.load(Ordering::Acquire);
        // SAFETY: segments are never freed while the core exists, and
        // segment `seg` holds `FIRST << seg` slots, of which this is one.
        unsafe {
            base.as_ref()
                .map(|b| &*(b as *const Slot).add(v - (FIRST << seg)))
        }
    }

    /// Whether `addr` is the address of one of these slots.
    pub(crate) fn owns(&self, addr: usize) -> bool {
        (0..SEGMENTS).any(|seg| {
            let base = self.segments[seg].load(Ordering::Acquire) as usize;
            base != 0 && addr >= base && addr < base + (FIRST << seg) * std::mem::size_of::<Slot>()
        })
    }

    fn ensure(&self, seg: usize) -> Result<(), Status> {
        if !self.segments[seg].load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        let len = FIRST << seg;
        let mut fresh: Vec<Slot> = Vec::new();
        fresh.try_reserve_exact(len).map_err(|_| Status::NoMemory)?;
        let first = (FIRST << seg) - FIRST;
        fresh.extend((first..first + len).map(Slot::new));
        let raw = Box::into_raw(fresh.into_boxed_slice()) as *mut Slot;
        if self.segments[seg]
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: we made `raw` above and lost the race to publish it.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, len)) });
        }
        Ok(())
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        for seg in 0..SEGMENTS {
            let raw = self.segments[seg].load(Ordering::Acquire);
            if !raw.is_null() {
                // SAFETY: allocated in `ensure` with this length.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, FIRST << seg))
                });
            }
        }
    }
}

/// Which slots are free: a tagged lock-free stack, and a bump index for
/// slots never used.
pub(crate) struct FreeList {
    next_unused: AtomicUsize,
    /// Tagged head: tag << 32 | (index + 1).
    head: AtomicU64,
}

impl FreeList {
    pub(crate) fn new() -> Self {
        FreeList {
            next_unused: AtomicUsize::new(0),
            head: AtomicU64::new(0),
        }
    }

    /// Slots handed out at least once: indices below this may hold entries.
    pub(crate) fn used(&self) -> usize {
        self.next_unused.load(Ordering::Acquire).min(CAPACITY)
    }

    pub(crate) fn alloc<'a>(&self, segments: &'a Segments) -> Result<&'a Slot, Status> {
        loop {
            let head = self.head.load(Ordering::Acquire);
            let index1 = head as u32;
            if index1 == 0 {
                break;
            }
            let slot = segments.slot(index1 as usize - 1).ok_or(Status::Internal)?;
            let next = slot.next.load(Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | next as u64;
            if self
                .head
                .compare_exchange(head, tagged, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(slot);
            }
        }
        let index = self.next_unused.fetch_add(1, Ordering::AcqRel);
        if index >= CAPACITY {
            self.next_unused.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::NoMemory);
        }
        segments.ensure(locate(index).0)?;
        segments.slot(index).ok_or(Status::Internal)
    }

    /// Returns a finished slot (its state already the next free one).
    pub(crate) fn free(&self, slot: &Slot) {
        if slot.state.load(Ordering::Relaxed) & EXHAUSTED != 0 {
            return;
        }
        let index1 = slot.index + 1;
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            slot.next.store(head as u32, Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | index1 as u64;
            match self
                .head
                .compare_exchange(head, tagged, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_maps_indices_into_doubling_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST - 1), (0, FIRST - 1));
        assert_eq!(locate(FIRST), (1, 0));
        assert_eq!(locate(3 * FIRST - 1), (1, 2 * FIRST - 1));
        assert_eq!(locate(3 * FIRST), (2, 0));
        assert_eq!(locate(CAPACITY - 1).0, SEGMENTS - 1);
    }

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn a_finished_slot_moves_to_the_next_generation_or_retires() {
        assert_eq!(
            Slot::next_free_state(3 << 32 | RETIRED | FINISHING),
            4 << 32
        );
        assert_eq!(
            Slot::next_free_state(MAX_GENERATION << 32 | RETIRED),
            MAX_GENERATION << 32 | EXHAUSTED
        );
    }
}
