//! One sender's queue to one target: a single-producer, single-consumer
//! ring of fixed-size events, and a byte arena beside it for what does not
//! fit in an event (strings, bytes, arrays, arguments past the second).
//!
//! Both are allocated when the ring is made and never grow, so a post only
//! writes into memory reserved beforehand. The producer is the one thread
//! that owns the ring (`owner`), the consumer whoever holds the target's
//! drain (`target.rs`); each index is written by one side only, so a post
//! is a few plain stores and one release store, no read-modify-write.
//!
//! An event is one cache line of eight words, all atomics (stores and loads
//! of them are plain moves; being atomic lets loom check the ordering):
//!
//! | word | holds |
//! | --- | --- |
//! | 0 | registry handle |
//! | 1 | entry id |
//! | 2 | `meta`: nargs (8 bits), post flags (8 bits), `SUPERSEDED` (bit 16), arena bytes the event holds (high 32 bits) |
//! | 3 | arena position of the arguments past the second |
//! | 4, 5 | first argument: `tag | len << 32`, payload |
//! | 6, 7 | second argument |
//!
//! A scalar argument's payload is its bits; a string's, bytes' or array's
//! is the arena position its copy starts at. The arena is a ring of bytes
//! with monotonic positions: an event's bytes are contiguous, so one that
//! would straddle the end skips to the start, and the skipped bytes count
//! as the event's. A post that does not fit in either writes nothing.

use super::kept::Kept;
use super::wake::Wake;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::value::{Payload, Tag, Value};

/// Arguments carried inside the event itself.
const INLINE_ARGS: usize = 2;
/// Bytes one spilled argument takes in the arena (its two words).
const SPILLED_ARG_BYTES: usize = 16;
/// Set in `meta` by the producer when a newer coalescing event for the
/// same entry follows this one: the consumer skips it.
const SUPERSEDED: u64 = 1 << 16;
/// Producer-side memory of recent coalescing posts (entry id, sequence).
const MEMO: usize = 8;

/// One queued event: a cache line (see the module table).
#[repr(C, align(64))]
pub(crate) struct Event {
    words: [AtomicU64; 8],
}

impl Event {
    fn new() -> Self {
        Event {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Where a ring is full.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Padding that starts the next field on a cache line pair of its own.
#[derive(Default)]
#[repr(align(128))]
struct LineBreak;

#[repr(C)]
pub(crate) struct Ring {
    // ---- written by the producer ----
    /// The entry the owner last posted one scalar to through this ring
    /// (`push.rs`): registry handle, id, the entry's slot and its state
    /// then, and the argument's tag. A post that matches all of them, and
    /// finds the slot's state unchanged, needs no other check of them.
    /// First, so that a thread with no ring reads `NO_RING` in its place.
    pub(crate) kept: Kept,
    /// Events published (a sequence: event `s` sits at `s & mask`).
    tail: AtomicU64,
    /// Arena bytes handed out (monotonic position).
    arena_tail: AtomicU64,
    /// The producer's last view of `head` plus the capacity (the first
    /// sequence with no place), and of `arena_head`: it loads the
    /// consumer's words only when these say the ring may be full.
    limit: std::cell::Cell<u64>,
    cached_arena_head: AtomicU64,
    /// 1 while the owner is inside a post on this ring (from before it
    /// checks `bound` until after it publishes): a target's `free` waits
    /// for it to be 0 (`target.rs`).
    pub(crate) busy: AtomicU32,
    /// The target handle this ring serves, `UNBOUND` when none: a post
    /// checks it after raising `busy`.
    pub(crate) bound: AtomicU32,
    /// Posts refused for lack of room (counted by the producer).
    full: AtomicU64,
    /// Recent coalescing posts: entry id and its sequence, by id hash.
    memo: [(AtomicU64, AtomicU64); MEMO],
    _consumer: LineBreak,
    // ---- written by the consumer ----
    head: AtomicU64,
    arena_head: AtomicU64,
    /// The consumer's last view of `tail`: it loads the producer's word
    /// only when this says the ring is empty.
    cached_tail: AtomicU64,
    _owner: LineBreak,
    // ---- ownership (written when a thread claims or leaves the ring) ----
    /// The owning thread's token (`hazard::token`), 0 when free.
    pub(crate) owner: AtomicU32,
    /// The owning thread's kernel id, to tell whether it still exists.
    pub(crate) tid: AtomicU32,
    // ---- fixed at creation ----
    events: Box<[Event]>,
    mask: u64,
    arena: *mut u8,
    arena_len: usize,
    /// The wake of the target this ring belongs to (for ever: a target's
    /// memory is never freed).
    wake: *const Wake,
}

// SAFETY: the arena is plain bytes; who writes which part of it when is the
// protocol above (the producer writes only between `arena_tail` and the
// consumer's `arena_head`, which it read with acquire).
unsafe impl Send for Ring {}
// SAFETY: as for `Send`: one producer and one consumer, each touching its
// own part of the arena and its own indices, ordered by the protocol above.
unsafe impl Sync for Ring {}

/// A `bound` value no target handle has.
pub(crate) const UNBOUND: u32 = u32::MAX;

impl Ring {
    /// A ring of `events` events (a power of two) and `arena_bytes` bytes of
    /// arena (a power of two, or 0), unowned, serving `bound`.
    pub(crate) fn new(events: usize, arena_bytes: usize, bound: u32, wake: &Wake) -> Box<Ring> {
        debug_assert!(events.is_power_of_two());
        debug_assert!(arena_bytes == 0 || arena_bytes.is_power_of_two());
        let arena = Box::into_raw(vec![0u64; arena_bytes / 8].into_boxed_slice()) as *mut u8;
        Box::new(Ring {
            tail: AtomicU64::new(0),
            arena_tail: AtomicU64::new(0),
            limit: std::cell::Cell::new(events as u64),
            cached_arena_head: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            bound: AtomicU32::new(bound),
            full: AtomicU64::new(0),
            memo: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            kept: Kept::new(),
            _consumer: LineBreak,
            head: AtomicU64::new(0),
            arena_head: AtomicU64::new(0),
            cached_tail: AtomicU64::new(0),
            _owner: LineBreak,
            owner: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            events: (0..events).map(|_| Event::new()).collect(),
            mask: events as u64 - 1,
            arena,
            arena_len: arena_bytes,
            wake,
        })
    }

    #[inline(always)]
    pub(crate) fn wake(&self) -> &Wake {
        // SAFETY: the target that made this ring outlives it (never freed).
        unsafe { &*self.wake }
    }

    #[inline(always)]
    fn event(&self, seq: u64) -> &Event {
        let index = (seq & self.mask) as usize;
        debug_assert!(index < self.events.len());
        // SAFETY: `mask` is the length minus one (a power of two).
        unsafe { self.events.get_unchecked(index) }
    }

    // ---- producer ----

    /// Queues one event whose only argument is a scalar (none, i64, f64,
    /// pointer), without flags: the common case, with no arena. False when
    /// the ring is full (not counted: the caller's general path will be).
    /// The caller owns the ring.
    #[inline(always)]
    pub(crate) fn try_push_scalar(&self, reg: u64, id: u64, tag: u32, payload: u64) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        if !self.room_for_one(tail) {
            return false;
        }
        let e = self.event(tail);
        e.words[0].store(reg, Ordering::Relaxed);
        e.words[1].store(id, Ordering::Relaxed);
        e.words[2].store(1, Ordering::Relaxed);
        e.words[4].store(tag as u64, Ordering::Relaxed);
        e.words[5].store(payload, Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
        true
    }

    /// Queues one event with any well-formed arguments (at most
    /// `CBREG_MAX_ARGS`), copying what they point to into the arena; returns
    /// the event's sequence. Nothing is written when it does not fit.
    pub(crate) fn push(&self, reg: u64, id: u64, flags: u32, args: &[Value]) -> Result<u64, Full> {
        let tail = self.tail.load(Ordering::Relaxed);
        if !self.room_for_one(tail) {
            return Err(self.refuse());
        }
        // Arena bytes: spilled argument words, then each argument's memory,
        // every piece 8-aligned.
        let spilled = args.len().saturating_sub(INLINE_ARGS);
        let mut need = spilled * SPILLED_ARG_BYTES;
        for a in args {
            need += align8(memory_bytes(a));
        }
        let (start, taken) = match self.reserve_arena(need) {
            Some(r) => r,
            None => return Err(self.refuse()),
        };
        let mut cursor = start;
        let spill_at = start;
        cursor += (spilled * SPILLED_ARG_BYTES) as u64;
        let e = self.event(tail);
        for (i, a) in args.iter().enumerate() {
            let bytes = memory_bytes(a);
            let payload = if bytes == 0 {
                // SAFETY: every member of the payload is 8 bytes of data.
                unsafe { a.r#as.i64 as u64 }
            } else {
                // SAFETY: a well-formed value with memory points to `bytes`
                // readable bytes (the caller's promise); the arena range
                // from `cursor` is reserved for this event.
                unsafe { self.write_arena(cursor, a.r#as.bytes, bytes) };
                let at = cursor;
                cursor += align8(bytes) as u64;
                at
            };
            let word0 = a.tag as u64 | (a.len as u64) << 32;
            if i < INLINE_ARGS {
                e.words[4 + 2 * i].store(word0, Ordering::Relaxed);
                e.words[5 + 2 * i].store(payload, Ordering::Relaxed);
            } else {
                let at = spill_at + ((i - INLINE_ARGS) * SPILLED_ARG_BYTES) as u64;
                // SAFETY: reserved for this event; 16 bytes per spilled arg.
                unsafe {
                    self.write_arena(at, word0.to_ne_bytes().as_ptr(), 8);
                    self.write_arena(at + 8, payload.to_ne_bytes().as_ptr(), 8);
                }
            }
        }
        e.words[0].store(reg, Ordering::Relaxed);
        e.words[1].store(id, Ordering::Relaxed);
        e.words[2].store(
            args.len() as u64 | (flags as u64 & 0xff) << 8 | taken << 32,
            Ordering::Relaxed,
        );
        e.words[3].store(spill_at, Ordering::Relaxed);
        self.arena_tail
            .store(start + need as u64, Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
        Ok(tail)
    }

    /// Marks the previous coalescing event for `id` (if it is recent enough
    /// to be still in its place) as superseded, and remembers `seq` as the
    /// newest one. Called after event `seq` for `id` was published.
    pub(crate) fn coalesce(&self, id: u64, seq: u64) {
        let slot = &self.memo[(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61) as usize % MEMO];
        let (last_id, last_seq) = (
            slot.0.load(Ordering::Relaxed),
            slot.1.load(Ordering::Relaxed),
        );
        // An event's place is written again only by this producer, at
        // `seq + capacity`: until then marking it is harmless even when the
        // consumer has already taken it (it then simply was not pending).
        if last_id == id && last_seq < seq && seq - last_seq <= self.mask {
            let e = self.event(last_seq);
            let meta = e.words[2].load(Ordering::Relaxed);
            e.words[2].store(meta | SUPERSEDED, Ordering::Relaxed);
        }
        slot.0.store(id, Ordering::Relaxed);
        slot.1.store(seq, Ordering::Relaxed);
    }

    /// Whether event `tail` has a place: the cached head first, the
    /// consumer's word only when that says the ring is full.
    #[inline(always)]
    fn room_for_one(&self, tail: u64) -> bool {
        tail < self.limit.get() || self.refresh_head(tail)
    }

    #[cold]
    fn refresh_head(&self, tail: u64) -> bool {
        let limit = self.head.load(Ordering::Acquire) + self.mask + 1;
        self.limit.set(limit);
        tail < limit
    }

    #[cold]
    fn refuse(&self) -> Full {
        self.full
            .store(self.full.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Full
    }

    /// Reserves `need` contiguous arena bytes; returns where they start
    /// and how many bytes the event takes (with any skipped tail end).
    fn reserve_arena(&self, need: usize) -> Option<(u64, u64)> {
        if need == 0 {
            return Some((self.arena_tail.load(Ordering::Relaxed), 0));
        }
        if need > self.arena_len {
            return None;
        }
        let tail = self.arena_tail.load(Ordering::Relaxed);
        let at = tail as usize & (self.arena_len - 1);
        let skip = if at + need > self.arena_len {
            self.arena_len - at
        } else {
            0
        };
        let taken = (skip + need) as u64;
        let room = |head: u64| self.arena_len as u64 - tail.wrapping_sub(head) >= taken;
        if !room(self.cached_arena_head.load(Ordering::Relaxed)) {
            let head = self.arena_head.load(Ordering::Acquire);
            self.cached_arena_head.store(head, Ordering::Relaxed);
            if !room(head) {
                return None;
            }
        }
        // Bytes skipped at the end are part of the event: the consumer
        // frees `taken` bytes after delivering it.
        self.arena_tail.store(tail + skip as u64, Ordering::Relaxed);
        Some((tail + skip as u64, taken))
    }

    /// Copies `len` bytes from `src` to arena position `at`.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes; the range is reserved and does
    /// not wrap (`reserve_arena`).
    unsafe fn write_arena(&self, at: u64, src: *const u8, len: usize) {
        let offset = at as usize & (self.arena_len - 1);
        // SAFETY: the caller's promises; the arena holds `arena_len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, self.arena.add(offset), len) };
    }

    fn arena_ptr(&self, at: u64) -> *const u8 {
        if self.arena_len == 0 {
            return std::ptr::NonNull::<u64>::dangling().as_ptr() as *const u8;
        }
        // SAFETY: within the arena.
        unsafe { self.arena.add(at as usize & (self.arena_len - 1)) }
    }

    // ---- consumer ----

    /// Events published and not yet taken (as the consumer sees them).
    pub(crate) fn pending(&self) -> u64 {
        self.tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head.load(Ordering::Acquire))
    }

    /// Posts this ring has seen: published plus refused.
    pub(crate) fn posted(&self) -> u64 {
        self.tail.load(Ordering::Acquire) + self.full.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Takes the oldest event, if any: calls `f` with it (its arguments
    /// rebuilt as values pointing into the arena, valid during the call),
    /// then frees its place. The caller is the one consumer.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn pop<R>(&self, f: impl FnOnce(Taken<'_>) -> R) -> Option<R> {
        let mut f = Some(f);
        let mut out = None;
        self.pop_many(1, |e| {
            out = f.take().map(|f| f(e));
            false
        });
        out
    }

    /// Takes up to `max` of the oldest events, calling `f` with each in
    /// order (as `pop` does), and frees their places together after the
    /// last: one look at the producer's tail and one release of `head` per
    /// batch, not per event. `f` returning true stops the batch after that
    /// event, and then nothing is freed: the caller learnt that this is a
    /// forked child, whose rings were emptied under it. Returns how many
    /// events `f` was called with.
    #[inline]
    pub(crate) fn pop_many(&self, max: usize, mut f: impl FnMut(Taken<'_>) -> bool) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let mut tail = self.cached_tail.load(Ordering::Relaxed);
        if head == tail {
            tail = self.tail.load(Ordering::Acquire);
            self.cached_tail.store(tail, Ordering::Relaxed);
            if head == tail {
                return 0;
            }
        }
        let n = (tail - head).min(max as u64);
        let mut freed = 0;
        for seq in head..head + n {
            let e = self.event(seq);
            let meta = e.words[2].load(Ordering::Relaxed);
            let mut values = [std::mem::MaybeUninit::<Value>::uninit(); crate::ffi::CBREG_MAX_ARGS];
            let args = self.rebuild_args(e, meta, &mut values);
            let stop = f(Taken {
                reg: e.words[0].load(Ordering::Relaxed),
                id: e.words[1].load(Ordering::Relaxed),
                superseded: meta & SUPERSEDED != 0,
                args,
            });
            freed += meta >> 32;
            if stop {
                return (seq - head + 1) as usize;
            }
        }
        if freed != 0 {
            let arena_head = self.arena_head.load(Ordering::Relaxed);
            self.arena_head.store(arena_head + freed, Ordering::Release);
        }
        self.head.store(head + n, Ordering::Release);
        n as usize
    }

    /// An event's arguments as values (pointing into the arena), written
    /// to the first `nargs` of `values`.
    #[inline(always)]
    fn rebuild_args<'v>(
        &self,
        e: &Event,
        meta: u64,
        values: &'v mut [std::mem::MaybeUninit<Value>; crate::ffi::CBREG_MAX_ARGS],
    ) -> &'v [Value] {
        let nargs = ((meta & 0xff) as usize).min(values.len());
        if meta >> 32 == 0 && nargs <= INLINE_ARGS {
            // No arena bytes: scalars only, each its two words.
            for (i, v) in values.iter_mut().enumerate().take(nargs) {
                let word0 = e.words[4 + 2 * i].load(Ordering::Relaxed);
                let mut value = Value::none();
                value.tag = word0 as u32;
                value.len = (word0 >> 32) as usize;
                value.r#as = Payload {
                    i64: e.words[5 + 2 * i].load(Ordering::Relaxed) as i64,
                };
                v.write(value);
            }
        } else {
            let spill_at = e.words[3].load(Ordering::Relaxed);
            for (i, v) in values.iter_mut().enumerate().take(nargs) {
                let (word0, payload) = if i < INLINE_ARGS {
                    (
                        e.words[4 + 2 * i].load(Ordering::Relaxed),
                        e.words[5 + 2 * i].load(Ordering::Relaxed),
                    )
                } else {
                    let at = spill_at + ((i - INLINE_ARGS) * SPILLED_ARG_BYTES) as u64;
                    let p = self.arena_ptr(at) as *const u64;
                    // SAFETY: the producer wrote these 16 bytes before it
                    // published the event (acquire on `tail`).
                    unsafe { (p.read(), p.add(1).read()) }
                };
                v.write(rebuild(word0, payload, |at| self.arena_ptr(at)));
            }
        }
        // SAFETY: the first `nargs` were written just now.
        unsafe { &*(&values[..nargs] as *const [std::mem::MaybeUninit<Value>] as *const [Value]) }
    }

    /// Drops every pending event without delivering it; returns how many.
    /// For a consumer that will never deliver them (a freed target, a
    /// forked child), while no post can be running on this ring.
    pub(crate) fn discard_all(&self) -> u64 {
        let tail = self.tail.load(Ordering::Acquire);
        self.cached_tail.store(tail, Ordering::Relaxed);
        let dropped = tail.wrapping_sub(self.head.load(Ordering::Relaxed));
        self.arena_head
            .store(self.arena_tail.load(Ordering::Relaxed), Ordering::Release);
        self.head.store(tail, Ordering::Release);
        dropped
    }

    /// Forgets the previous owner's coalescing memory and kept entry (a
    /// new owner, or a forked child).
    pub(crate) fn forget_memo(&self) {
        for (id, _) in &self.memo {
            id.store(0, Ordering::Relaxed);
        }
        // SAFETY: a new owner's, before its first post.
        unsafe { self.kept.forget() };
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: made in `new` with this length (in 8-byte words).
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.arena as *mut u64,
                self.arena_len / 8,
            ))
        });
    }
}

/// One event as the consumer sees it.
pub(crate) struct Taken<'a> {
    pub(crate) reg: u64,
    pub(crate) id: u64,
    /// A newer coalescing event for the same entry follows.
    pub(crate) superseded: bool,
    pub(crate) args: &'a [Value],
}

/// The bytes a value points to (0 for scalars).
fn memory_bytes(v: &Value) -> usize {
    let elem = match Tag::from_raw(v.tag) {
        Some(Tag::Str | Tag::Bytes) => 1,
        Some(Tag::I64Array | Tag::F64Array) => 8,
        _ => return 0,
    };
    v.len * elem
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// A value from its two words; `arena` turns a position into an address.
fn rebuild(word0: u64, payload: u64, arena: impl Fn(u64) -> *const u8) -> Value {
    let tag = word0 as u32;
    let len = (word0 >> 32) as usize;
    let mut v = Value::none();
    v.tag = tag;
    v.len = len;
    v.r#as = if memory_bytes(&v) == 0 {
        Payload {
            i64: payload as i64,
        }
    } else {
        Payload {
            bytes: arena(payload),
        }
    };
    v
}
