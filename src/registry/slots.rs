//! Slot storage: one cache line per entry, in segments that never move and
//! are never freed while the registry table lives, and the free list that
//! recycles them.
//!
//! An id is `generation << 36 | registry tag << 24 | (slot index + 1)`; a
//! slot's `state` word is the same *key* (generation and registry tag, the
//! bits above 24) with lifecycle bits below. The generation moves on when
//! an entry is finished, so an id names one entry for ever: a stale id never
//! matches the state of a newer one. The registry tag is the registry's
//! table index, so an id presented to another registry never matches there
//! either; and each copy of the library starts its generations at a random
//! point, so an id from another copy or process is not expected to match.

use std::ffi::c_void;

use crate::sync::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
/// A waiter runs this retired entry's release in place of whoever holds
/// the slot (set with FINISHING; `reclaim/mod.rs`, "waiters finish what they
/// wait for").
pub(crate) const STOLEN: u64 = 32;
/// The waiter's release has finished: the holder recycles the slot.
pub(crate) const RAN: u64 = 64;
/// The holder has let go of a stolen slot: the waiter recycles it.
pub(crate) const HANDED: u64 = 128;
/// Bits below the key: the slot index in an id, the flags in a state.
const KEY_SHIFT: u32 = 24;
const GEN_SHIFT: u32 = 36;
const KEY_MASK: u64 = !((1 << KEY_SHIFT) - 1);
const TAG_MASK: u64 = KEY_MASK & ((1 << GEN_SHIFT) - 1);
const MAX_GENERATION: u64 = (1 << (64 - GEN_SHIFT)) - 1;
/// Registries a table can tag (12 bits).
pub(crate) const MAX_TAGS: usize = 1 << (GEN_SHIFT - KEY_SHIFT);

#[cfg(not(loom))]
const FIRST_SHIFT: u32 = 6;
#[cfg(not(loom))]
pub(crate) const SEGMENTS: usize = 18;
#[cfg(loom)]
const FIRST_SHIFT: u32 = 1;
#[cfg(loom)]
pub(crate) const SEGMENTS: usize = 3;
const FIRST: usize = 1 << FIRST_SHIFT;
/// Slots a registry can hold: segment k has `FIRST << k` slots. Their
/// index + 1 fits below `KEY_SHIFT`.
pub(crate) const CAPACITY: usize = FIRST * ((1 << SEGMENTS) - 1);
const _: () = assert!(CAPACITY < 1 << KEY_SHIFT);

/// One entry: exactly one cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) state: AtomicU64,
    /// The callback, as a pointer (a pointer keeps its provenance, which
    /// Miri checks where the function is called).
    pub(crate) call: AtomicPtr<()>,
    pub(crate) ctx: AtomicPtr<c_void>,
    /// The release function, as a pointer; null for none.
    pub(crate) release: AtomicPtr<()>,
    /// Invokers that could not use a hazard cell (pool full, deep nesting).
    pub(crate) inflight: AtomicU32,
    /// Link in the free list, the pending list or a private batch
    /// (index + 1; 0 ends it).
    pub(crate) next: AtomicU32,
    /// Token of the thread that holds this retired slot privately; 0 while
    /// it is on the shared pending list (or not retired).
    pub(crate) owner: AtomicU32,
    pub(crate) index: u32,
    /// The entry's release must not wait for a batch (`CBREG_PROMPT`).
    pub(crate) prompt: AtomicBool,
    /// A heavy barrier found an invocation of this retired entry in flight
    /// (counted once in `deferred`).
    pub(crate) waited: AtomicBool,
    /// Where `cbreg_post` sends this entry's events (a target handle, 0 for
    /// the native dispatcher: `post/target.rs`). Set after registration.
    pub(crate) target: AtomicU32,
}

impl Slot {
    fn new(index: usize, fresh_state: u64) -> Self {
        Slot {
            index: index as u32,
            state: AtomicU64::new(fresh_state),
            call: AtomicPtr::new(std::ptr::null_mut()),
            ctx: AtomicPtr::new(std::ptr::null_mut()),
            release: AtomicPtr::new(std::ptr::null_mut()),
            inflight: AtomicU32::new(0),
            next: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            prompt: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            target: AtomicU32::new(0),
        }
    }

    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        self as *const Slot as usize
    }

    /// The id of the entry whose state (or key) is `state`.
    pub(crate) fn id(&self, state: u64) -> u64 {
        key(state) | (self.index as u64 + 1)
    }

    /// The state after this entry is finished: the next generation, free.
    pub(crate) fn next_free_state(state: u64) -> u64 {
        let gen = state >> GEN_SHIFT;
        if gen >= MAX_GENERATION {
            key(state) | EXHAUSTED
        } else {
            (gen + 1) << GEN_SHIFT | state & TAG_MASK
        }
    }
}

/// The generation and registry tag of an id or a state: what must match.
#[inline(always)]
pub(crate) fn key(id_or_state: u64) -> u64 {
    id_or_state & KEY_MASK
}

/// The table index of the registry whose ids or states carry this tag.
pub(crate) fn registry_index(id_or_state: u64) -> usize {
    ((id_or_state & TAG_MASK) >> KEY_SHIFT) as usize
}

/// The state of a fresh slot of the registry with table index `tag`:
/// generation `first_generation`, no entry.
pub(crate) fn fresh_state(tag: usize, first_generation: u64) -> u64 {
    debug_assert!(tag < MAX_TAGS && first_generation > 0 && first_generation < MAX_GENERATION / 2);
    first_generation << GEN_SHIFT | (tag as u64) << KEY_SHIFT
}

/// Retired and not yet finished (on a pending list, in a batch, or owned).
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn is_retired(state: u64) -> bool {
    state & RETIRED != 0
}

/// Splits an id into (key, slot index); `None` for id 0, index 0 or
/// generation 0.
#[inline(always)]
pub(crate) fn split(id: u64) -> Option<(u64, usize)> {
    let index1 = (id & !KEY_MASK) as usize;
    (index1 != 0 && id >> GEN_SHIFT != 0).then(|| (key(id), index1 - 1))
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
    /// Invoke's view of the segments, indexed by `log2(index + FIRST)`
    /// (which is `segment + FIRST_SHIFT` and never more than `KEY_SHIFT`,
    /// so no bounds check): the segment's address minus that of the slot
    /// `FIRST << segment` before its first; 0 where there is none (a
    /// segment whose entry would be 0 is never published: see `allocate`).
    /// The slot of `v = index + FIRST` is then at `entry + v * 64`.
    by_log2: [AtomicUsize; KEY_SHIFT as usize + 1],
    /// The state a new slot starts in (`fresh_state`).
    fresh_state: u64,
}

impl Segments {
    pub(crate) fn new(fresh_state: u64) -> Self {
        Segments {
            segments: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            by_log2: std::array::from_fn(|_| AtomicUsize::new(0)),
            fresh_state,
        }
    }

    #[inline(always)]
    pub(crate) fn slot(&self, index: usize) -> Option<&Slot> {
        u32::try_from(index + 1)
            .ok()
            .and_then(|index1| self.slot_of_id(index1 as u64))
    }

    /// The slot an id (or any value whose low 24 bits are index + 1) names,
    /// if its segment exists.
    #[inline(always)]
    pub(crate) fn slot_of_id(&self, id: u64) -> Option<&Slot> {
        match self.locate_id(id) {
            (0, _) => None,
            // SAFETY: `locate_id`'s promise.
            (entry, offset) => Some(unsafe { Self::at(entry, offset) }),
        }
    }

    /// Where the slot an id names is: `(entry, offset)`, entry 0 if its
    /// segment does not exist; otherwise `Self::at(entry, offset)` is the
    /// slot. Two parts, so the invoke path can branch on the first before
    /// it adds them.
    #[inline(always)]
    pub(crate) fn locate_id(&self, id: u64) -> (usize, usize) {
        let v = (id & !KEY_MASK) as usize + (FIRST - 1); // = index + FIRST
                                                         // v < 2^(KEY_SHIFT + 1): the log is in range. Index + 1 = 0 gives
                                                         // log2 FIRST - 1, an entry that is always 0.
        let log2 = (usize::BITS - 1 - v.leading_zeros()) as usize;
        let entry = self.by_log2[log2.min(KEY_SHIFT as usize)].load(Ordering::Acquire);
        (entry, v * std::mem::size_of::<Slot>())
    }

    /// The slot at `locate_id`'s nonzero `(entry, offset)`.
    ///
    /// # Safety
    /// `entry` is nonzero and both come from `locate_id` of this core.
    #[inline(always)]
    pub(crate) unsafe fn at<'a>(entry: usize, offset: usize) -> &'a Slot {
        // SAFETY: segments are never freed while the core exists, and the
        // segment that `entry` describes holds the slot at this offset.
        unsafe { &*(entry.wrapping_add(offset) as *const Slot) }
    }

    /// Whether `addr` is the address of one of these slots.
    pub(crate) fn owns(&self, addr: usize) -> bool {
        (0..SEGMENTS).any(|seg| {
            let base = self.segments[seg].load(Ordering::Acquire) as usize;
            base != 0 && addr >= base && addr < base + (FIRST << seg) * std::mem::size_of::<Slot>()
        })
    }

    fn ensure(&self, seg: usize) -> Result<(), Status> {
        if self.by_log2[seg + FIRST_SHIFT as usize].load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        let existing = self.segments[seg].load(Ordering::Acquire);
        let base = if existing.is_null() {
            self.allocate(seg)?
        } else {
            existing
        };
        // Winner and losers store the same entry, so whoever returns from
        // here has made the segment visible to invoke.
        self.by_log2[seg + FIRST_SHIFT as usize].store(Self::entry(seg, base), Ordering::Release);
        Ok(())
    }

    /// `by_log2`'s entry for segment `seg` at `base`.
    fn entry(seg: usize, base: *mut Slot) -> usize {
        (base as usize).wrapping_sub((FIRST << seg) * std::mem::size_of::<Slot>())
    }

    /// Segment `seg`'s slots, fresh, not yet published.
    fn fresh_segment(&self, seg: usize) -> Result<*mut Slot, Status> {
        let len = FIRST << seg;
        let mut fresh: Vec<Slot> = Vec::new();
        fresh.try_reserve_exact(len).map_err(|_| Status::NoMemory)?;
        let first = (FIRST << seg) - FIRST;
        fresh.extend((first..first + len).map(|i| Slot::new(i, self.fresh_state)));
        Ok(Box::into_raw(fresh.into_boxed_slice()) as *mut Slot)
    }

    /// Publishes segment `seg` (unless another thread did first); returns
    /// the published segment.
    fn allocate(&self, seg: usize) -> Result<*mut Slot, Status> {
        let len = FIRST << seg;
        let mut raw = self.fresh_segment(seg)?;
        if Self::entry(seg, raw) == 0 {
            // An entry of 0 means "no segment": take another address (the
            // first allocation is held until then, so it differs).
            let again = self.fresh_segment(seg);
            // SAFETY: made above, never published.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, len)) });
            raw = again?;
        }
        match self.segments[seg].compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(raw),
            Err(existing) => {
                // SAFETY: we made `raw` above and lost the race to publish it.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, len)) });
                Ok(existing)
            }
        }
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

    /// Whether a finished slot goes back to the free list (not when its
    /// ids are exhausted).
    pub(crate) fn can_free(&self, slot: &Slot) -> bool {
        slot.state.load(Ordering::Relaxed) & EXHAUSTED == 0
    }

    /// Returns a finished slot (its state already the next free one).
    pub(crate) fn free(&self, slot: &Slot) {
        if self.can_free(slot) {
            self.free_chain(slot, slot);
        }
    }

    /// Returns a chain of finished slots, linked from `first` to `last`
    /// through `next`, with one update of the head.
    pub(crate) fn free_chain(&self, first: &Slot, last: &Slot) {
        let index1 = first.index + 1;
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            last.next.store(head as u32, Ordering::Relaxed);
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
        let tag = 5 << KEY_SHIFT;
        assert_eq!(
            Slot::next_free_state(3 << GEN_SHIFT | tag | RETIRED | FINISHING),
            4 << GEN_SHIFT | tag
        );
        assert_eq!(
            Slot::next_free_state(MAX_GENERATION << GEN_SHIFT | tag | RETIRED),
            MAX_GENERATION << GEN_SHIFT | tag | EXHAUSTED
        );
    }

    #[test]
    fn ids_split_into_key_and_index() {
        let state = fresh_state(7, 9);
        let slot = Slot::new(41, state);
        let id = slot.id(state | LIVE);
        assert_eq!(split(id), Some((key(state), 41)));
        assert_eq!(split(0), None);
        assert_eq!(split(key(state)), None, "index 0");
        assert_eq!(split(42), None, "generation 0");
    }
}
