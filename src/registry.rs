//! The registry core: slots, the invoke protocol, retirement and release.
//!
//! Protocol (see DESIGN.md 4.3, 7):
//! - A slot's `state` word holds its generation (high 32 bits) and the LIVE
//!   and ONCE bits. An id is `generation << 32 | (slot index + 1)`.
//! - Invoke publishes the slot in this thread's hazard cell, light barrier,
//!   loads `state`, checks generation and LIVE, calls, retracts the cell.
//! - Whoever moves a slot from LIVE to retired with one CAS (unregister,
//!   clear, close, or the invoker of a one-shot) owns its release. The owner
//!   runs a heavy barrier and scans hazards: if no invoker is inside, it
//!   releases at once; otherwise the slot goes on `pending` and the last
//!   invoker to leave (or the next drain point) releases it.
//! - A slot returns to the free list only after its release, so a stale id
//!   never reaches a newer entry: its generation no longer matches.

use std::ffi::c_void;

use crate::hazard::{self, CELLS, COUNTED_REGISTRIES};
use crate::sync::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::value::Value;
use crate::Status;

/// A callback: `ctx` as registered, the argument vector, an optional return
/// slot. Returns a status code (`CBREG_STATUS_OK` on success).
pub type CallFn = Option<
    unsafe extern "C-unwind" fn(
        ctx: *mut c_void,
        args: *const Value,
        nargs: usize,
        ret: *mut Value,
    ) -> u32,
>;
/// Frees an entry's `ctx`; runs exactly once, never during an invocation.
/// May be NULL where nothing needs freeing.
pub type ReleaseFn = Option<unsafe extern "C-unwind" fn(ctx: *mut c_void)>;

const LIVE: u64 = 1;
const ONCE: u64 = 2;
const MAX_GENERATION: u64 = u32::MAX as u64;

#[cfg(not(loom))]
const FIRST_SHIFT: u32 = 6;
#[cfg(not(loom))]
const SEGMENTS: usize = 26;
#[cfg(loom)]
const FIRST_SHIFT: u32 = 1;
#[cfg(loom)]
const SEGMENTS: usize = 3;
const FIRST: usize = 1 << FIRST_SHIFT;
/// Slots a registry can hold: segment k has `FIRST << k` slots.
pub(crate) const CAPACITY: usize = FIRST * ((1 << SEGMENTS) - 1);

/// Bytes of registry storage per entry (one slot).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Slot>();

/// One entry: exactly one cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    state: AtomicU64,
    call: AtomicUsize,
    ctx: AtomicPtr<c_void>,
    release: AtomicUsize,
    /// Invokers that could not use a hazard cell (pool full, deep nesting).
    inflight: AtomicU32,
    /// Link in the free list or the pending list (index + 1; 0 ends it).
    next: AtomicU32,
    index: u32,
}

impl Slot {
    fn new(index: usize) -> Self {
        Slot {
            index: index as u32,
            state: AtomicU64::new(0),
            call: AtomicUsize::new(0),
            ctx: AtomicPtr::new(std::ptr::null_mut()),
            release: AtomicUsize::new(0),
            inflight: AtomicU32::new(0),
            next: AtomicU32::new(0),
        }
    }
    fn addr(&self) -> usize {
        self as *const Slot as usize
    }
}

#[inline(always)]
fn generation(state: u64) -> u64 {
    state >> 32
}

/// Splits an id into (generation, slot index); `None` for id 0 or index 0.
#[inline(always)]
fn split(id: u64) -> Option<(u64, usize)> {
    let index1 = id as u32;
    (index1 != 0 && generation(id) != 0).then(|| (generation(id), index1 as usize - 1))
}

#[inline(always)]
fn locate(index: usize) -> (usize, usize) {
    let v = index + FIRST;
    let seg = (usize::BITS - 1 - v.leading_zeros() - FIRST_SHIFT) as usize;
    (seg, v - (FIRST << seg))
}

/// Counters reported by `stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries registered and not yet unregistered.
    pub live: u64,
    /// Entries ever registered.
    pub registered: u64,
    /// Callbacks started.
    pub invoked: u64,
    /// Entries whose release step finished (release ran, or there was none).
    pub released: u64,
    /// Releases that had to wait for an invocation in flight.
    pub deferred: u64,
    /// Retired entries still waiting for their release.
    pub pending: u64,
    /// Releases deliberately skipped because their runtime was finalizing.
    pub leaked: u64,
}

const NO_COUNTER: usize = usize::MAX;
const COLLECTOR_IDLE: u32 = 0;
const COLLECTOR_RUNNING: u32 = 1;
const COLLECTOR_REQUESTED: u32 = 2;

/// Aligns the field after it to a new pair of cache lines.
#[derive(Default)]
#[repr(align(128))]
struct LineBreak;

#[repr(C)]
pub(crate) struct Core {
    // Read by every invoke, written rarely.
    segments: [AtomicPtr<Slot>; SEGMENTS],
    /// Per-thread invocation counter index, or `NO_COUNTER`.
    counter: AtomicUsize,
    /// Handle generation << 1 | alive (only for registries in the table).
    handle_state: AtomicU64,
    closed: AtomicBool,
    _writers: LineBreak,
    // Written by register, unregister and collect.
    next_unused: AtomicUsize,
    /// Tagged head of the free list: tag << 32 | (index + 1).
    free_head: AtomicU64,
    /// Head of the pending list (index + 1; 0 = empty).
    pending_head: AtomicU32,
    /// `COLLECTOR_IDLE`, `_RUNNING`, or `_REQUESTED` (run another round).
    collector: AtomicU32,
    invoked_base: AtomicU64,
    shared_invoked: AtomicU64,
    registered: AtomicU64,
    retired: AtomicU64,
    released: AtomicU64,
    deferred: AtomicU64,
    pending: AtomicU64,
    leaked: AtomicU64,
}

thread_cell! { static RELEASE_LEAKED: bool = false; }
use crate::sync::thread_cell;

/// Called by a release function that deliberately skipped freeing its
/// context (its runtime is finalizing): the entry counts as leaked.
pub(crate) fn mark_release_leaked() {
    RELEASE_LEAKED.with(|c| c.set(true));
}

impl Core {
    pub(crate) fn new() -> Self {
        hazard::init();
        Core {
            segments: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            next_unused: AtomicUsize::new(0),
            free_head: AtomicU64::new(0),
            pending_head: AtomicU32::new(0),
            collector: AtomicU32::new(COLLECTOR_IDLE),
            closed: AtomicBool::new(false),
            counter: AtomicUsize::new(NO_COUNTER),
            invoked_base: AtomicU64::new(0),
            shared_invoked: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            released: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            leaked: AtomicU64::new(0),
            handle_state: AtomicU64::new(0),
            _writers: LineBreak,
        }
    }

    #[inline(always)]
    fn slot(&self, index: usize) -> Option<&Slot> {
        u32::try_from(index + 1)
            .ok()
            .and_then(|index1| self.slot_of_id(index1 as u64))
    }

    /// The slot an id (or any value whose low 32 bits are index + 1) names,
    /// if its segment exists.
    #[inline(always)]
    fn slot_of_id(&self, id: u64) -> Option<&Slot> {
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

    fn owns(&self, addr: usize) -> bool {
        (0..SEGMENTS).any(|seg| {
            let base = self.segments[seg].load(Ordering::Acquire) as usize;
            base != 0 && addr >= base && addr < base + (FIRST << seg) * std::mem::size_of::<Slot>()
        })
    }

    fn ensure_segment(&self, seg: usize) -> Result<(), Status> {
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

    fn alloc_slot(&self) -> Result<&Slot, Status> {
        loop {
            let head = self.free_head.load(Ordering::Acquire);
            let index1 = head as u32;
            if index1 == 0 {
                break;
            }
            let slot = self.slot(index1 as usize - 1).expect("free slot exists");
            let next = slot.next.load(Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | next as u64;
            if self
                .free_head
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
        self.ensure_segment(locate(index).0)?;
        Ok(self.slot(index).expect("segment just ensured"))
    }

    fn free_slot(&self, slot: &Slot) {
        if generation(slot.state.load(Ordering::Relaxed)) >= MAX_GENERATION {
            return; // its ids would wrap: the slot retires for good
        }
        let index1 = slot.index + 1;
        let mut head = self.free_head.load(Ordering::Acquire);
        loop {
            slot.next.store(head as u32, Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | index1 as u64;
            match self
                .free_head
                .compare_exchange(head, tagged, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    // ---- registration ----

    pub(crate) fn register(
        &self,
        call: CallFn,
        ctx: *mut c_void,
        release: ReleaseFn,
        once: bool,
    ) -> Result<u64, Status> {
        let call = call.ok_or(Status::InvalidArgument)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Status::Closed);
        }
        self.drain_if_pending();
        let slot = self.alloc_slot()?;
        let gen = generation(slot.state.load(Ordering::Relaxed)) + 1;
        slot.call.store(call as usize, Ordering::Relaxed);
        slot.ctx.store(ctx, Ordering::Relaxed);
        slot.release
            .store(release.map_or(0, |f| f as usize), Ordering::Relaxed);
        let state = gen << 32 | LIVE | if once { ONCE } else { 0 };
        self.registered.fetch_add(1, Ordering::Relaxed);
        // SeqCst store/load pairs with `close`: either close's clear sees
        // this entry, or this sees `closed` and takes the entry back.
        slot.state.store(state, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst)
            && slot
                .state
                .compare_exchange(state, gen << 32, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            // Never handed out: the caller keeps ownership of ctx, but the
            // slot still waits out invokers that guessed its id.
            slot.release.store(0, Ordering::Relaxed);
            self.retired.fetch_add(1, Ordering::Relaxed);
            self.retire(slot);
            return Err(Status::Closed);
        }
        Ok(gen << 32 | (slot.index as u64 + 1))
    }

    // ---- invoke: the hot path ----

    /// The fast path: a persistent live entry, invoked by a thread with a
    /// record (claimed on first use) and a free hazard cell. Everything else takes
    /// `invoke_general`, which implements the same protocol for every case.
    #[inline]
    pub(crate) fn invoke(&self, id: u64, args: &[Value], ret: *mut Value) -> Status {
        // Generation 0 never matches a live state.
        let Some(slot) = self.slot_of_id(id) else {
            return Status::NotFound;
        };
        let Some(record) = hazard::record().filter(|r| r.depth() < CELLS) else {
            return self.invoke_general(slot, id, args, ret);
        };
        let depth = record.depth();
        record.enter(depth, slot.addr());
        crate::sync::barrier::light();
        let state = slot.state.load(Ordering::Acquire);
        if state != (id >> 32) << 32 | LIVE {
            record.leave(depth);
            return self.invoke_general(slot, id, args, ret);
        }
        match record.invoked(self.counter_index()) {
            Some(count) => hazard::ThreadRecord::bump(count),
            None => self.count_shared(),
        }
        // SAFETY: `call` was stored from a `CallFn` before the state store we
        // acquired, and the hazard keeps ctx alive.
        let call: unsafe extern "C-unwind" fn(*mut c_void, *const Value, usize, *mut Value) -> u32 =
            unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
        let code = unsafe {
            call(
                slot.ctx.load(Ordering::Relaxed),
                args.as_ptr(),
                args.len(),
                ret,
            )
        };
        record.leave(depth);
        // See `invoke_general`: drain if the entry was retired meanwhile.
        crate::sync::barrier::light();
        if slot.state.load(Ordering::Relaxed) != state {
            self.after_retired_invoke();
        }
        Status::from_callback_code(code)
    }

    #[cold]
    fn count_shared(&self) {
        self.shared_invoked.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn after_retired_invoke(&self) {
        if !hazard::is_realtime() {
            self.collect();
        }
    }

    /// Every case of invoke: nesting past the hazard cells or a full pool
    /// (slot counter), one-shot entries, and ids that are not live.
    #[cold]
    #[inline(never)]
    fn invoke_general(&self, slot: &Slot, id: u64, args: &[Value], ret: *mut Value) -> Status {
        let record = hazard::record().filter(|r| r.depth() < CELLS);
        let depth = record.map_or(0, |r| r.depth());
        match record {
            Some(r) => r.enter(depth, slot.addr()),
            None => {
                slot.inflight.fetch_add(1, Ordering::SeqCst);
            }
        }
        crate::sync::barrier::light();

        let state = slot.state.load(Ordering::Acquire);
        let live = state & !ONCE == (id >> 32) << 32 | LIVE;
        let claimed_once = live
            && state & ONCE != 0
            && slot
                .state
                .compare_exchange(state, state & !LIVE, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
        let status = if live && (claimed_once || state & ONCE == 0) {
            match record.and_then(|r| r.invoked(self.counter_index())) {
                Some(count) => hazard::ThreadRecord::bump(count),
                None => self.count_shared(),
            }
            // SAFETY: `call` was stored from a `CallFn` before the state
            // store we acquired, and the hazard keeps ctx alive.
            let call: unsafe extern "C-unwind" fn(
                *mut c_void,
                *const Value,
                usize,
                *mut Value,
            ) -> u32 = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
            let ctx = slot.ctx.load(Ordering::Relaxed);
            Status::from_callback_code(unsafe { call(ctx, args.as_ptr(), args.len(), ret) })
        } else {
            Status::NotFound
        };

        match record {
            Some(r) => r.leave(depth),
            None => {
                slot.inflight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if claimed_once {
            self.retired.fetch_add(1, Ordering::Relaxed);
            self.retire(slot);
        } else {
            // A writer that saw our hazard deferred a release of this slot:
            // we may be its last use, so drain now rather than later. The
            // barrier pairs with the writer's heavy one (either it saw our
            // cell cleared, or we see its state change).
            crate::sync::barrier::light();
            let now = slot.state.load(Ordering::Relaxed);
            if now != state || now & LIVE == 0 {
                self.after_retired_invoke();
            }
        }
        status
    }

    #[inline(always)]
    fn counter_index(&self) -> usize {
        self.counter.load(Ordering::Relaxed)
    }

    // ---- retirement ----

    /// Moves `id`'s slot from LIVE to retired; the caller then owns it.
    fn claim(&self, id: u64) -> Result<&Slot, Status> {
        let (gen, index) = split(id).ok_or(Status::NotFound)?;
        let slot = self.slot(index).ok_or(Status::NotFound)?;
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            if generation(state) != gen || state & LIVE == 0 {
                return Err(Status::NotFound);
            }
            match slot.state.compare_exchange(
                state,
                state & !LIVE,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.retired.fetch_add(1, Ordering::Relaxed);
                    return Ok(slot);
                }
                Err(s) => state = s,
            }
        }
    }

    fn in_flight(slot: &Slot) -> bool {
        slot.inflight.load(Ordering::SeqCst) != 0 || hazard::is_hazarded(slot.addr())
    }

    /// Releases a slot this thread owns, now if nothing is inside it and this
    /// thread may run releases, else through the pending list.
    fn retire(&self, slot: &Slot) {
        if hazard::is_realtime() {
            self.push_pending(slot);
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

    fn push_pending(&self, slot: &Slot) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.push_pending_again(slot);
    }

    fn push_pending_again(&self, slot: &Slot) {
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
    fn finish(&self, slot: &Slot) {
        let release = slot.release.swap(0, Ordering::Relaxed);
        let ctx = slot.ctx.swap(std::ptr::null_mut(), Ordering::Relaxed);
        slot.call.store(0, Ordering::Relaxed);
        // A release may re-enter and finish another entry: keep the marks apart.
        let outer_mark = RELEASE_LEAKED.with(|c| c.replace(false));
        if release != 0 {
            // SAFETY: stored from a `ReleaseFn`; we own the retired entry and
            // no invoker is inside it.
            let release: unsafe extern "C-unwind" fn(*mut c_void) =
                unsafe { std::mem::transmute(release) };
            unsafe { release(ctx) };
        }
        if RELEASE_LEAKED.with(|c| c.replace(outer_mark)) {
            self.leaked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.released.fetch_add(1, Ordering::Relaxed);
        }
        self.free_slot(slot);
    }

    fn drain_if_pending(&self) {
        if self.pending_head.load(Ordering::Relaxed) != 0 && !hazard::is_realtime() {
            self.collect();
        }
    }

    /// Runs every deferred release whose invocations have all returned.
    /// Returns how many this call finished. Never runs on a real-time thread.
    ///
    /// Not a lock: a thread that finds a collection running leaves a request
    /// in the same word (so the collector runs another round that sees what
    /// this thread did before) and returns at once.
    pub(crate) fn collect(&self) -> usize {
        if hazard::is_realtime() {
            return 0;
        }
        let mut seen = self.collector.load(Ordering::Acquire);
        loop {
            let (next, leader) = match seen {
                COLLECTOR_IDLE => (COLLECTOR_RUNNING, true),
                COLLECTOR_RUNNING => (COLLECTOR_REQUESTED, false),
                _ => return 0,
            };
            match self
                .collector
                .compare_exchange(seen, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if leader => break,
                Ok(_) => return 0,
                Err(s) => seen = s,
            }
        }
        let mut finished = 0;
        loop {
            finished += self.collect_round();
            match self.collector.compare_exchange(
                COLLECTOR_RUNNING,
                COLLECTOR_IDLE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return finished,
                Err(_) => self.collector.store(COLLECTOR_RUNNING, Ordering::Release),
            }
        }
    }

    fn collect_round(&self) -> usize {
        let mut index1 = self.pending_head.swap(0, Ordering::SeqCst);
        if index1 == 0 {
            return 0;
        }
        hazard::heavy_barrier();
        let mut finished = 0;
        while index1 != 0 {
            let slot = self.slot(index1 as usize - 1).expect("pending slot exists");
            index1 = slot.next.load(Ordering::Relaxed);
            if Self::in_flight(slot) {
                self.push_pending_again(slot);
            } else {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.finish(slot);
                finished += 1;
            }
        }
        finished
    }

    // ---- the public operations ----

    pub(crate) fn unregister(&self, id: u64) -> Status {
        match self.claim(id) {
            Ok(slot) => {
                self.retire(slot);
                Status::Ok
            }
            Err(e) => e,
        }
    }

    pub(crate) fn unregister_wait(&self, id: u64) -> Status {
        if let Some((_, index)) = split(id) {
            if let Some(slot) = self.slot(index) {
                if self.inside_on_this_thread(|addr| addr == slot.addr()) {
                    return Status::WouldDeadlock;
                }
            }
        }
        let slot = match self.claim(id) {
            Ok(s) => s,
            Err(e) => return e,
        };
        crate::wait::blocking(|| {
            let mut round = 0;
            loop {
                hazard::heavy_barrier();
                if !Self::in_flight(slot) {
                    break;
                }
                crate::sync::backoff(round);
                round += 1;
            }
        });
        if hazard::is_realtime() {
            self.push_pending(slot);
        } else {
            self.finish(slot);
        }
        Status::Ok
    }

    fn inside_on_this_thread(&self, matches: impl Fn(usize) -> bool) -> bool {
        match hazard::record() {
            Some(r) => (0..r.depth()).any(|d| r.cell(d).map_or(false, &matches)),
            None => false,
        }
    }

    /// Unregisters every live entry; returns how many this call retired.
    pub(crate) fn clear(&self) -> usize {
        let mut won: Vec<&Slot> = Vec::new();
        let used = self.next_unused.load(Ordering::Acquire).min(CAPACITY);
        for index in 0..used {
            let Some(slot) = self.slot(index) else {
                continue;
            };
            let state = slot.state.load(Ordering::SeqCst);
            if state & LIVE != 0
                && slot
                    .state
                    .compare_exchange(state, state & !LIVE, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                won.push(slot);
            }
        }
        self.retired.fetch_add(won.len() as u64, Ordering::Relaxed);
        let count = won.len();
        if hazard::is_realtime() {
            won.into_iter().for_each(|s| self.push_pending(s));
            return count;
        }
        if !won.is_empty() {
            hazard::heavy_barrier();
            let mut hazards: Vec<usize> = Vec::new();
            hazard::for_each_hazard(|a| hazards.push(a));
            let mut deferred = false;
            for slot in won {
                if hazards.contains(&slot.addr()) || slot.inflight.load(Ordering::SeqCst) != 0 {
                    self.push_pending(slot);
                    deferred = true;
                } else {
                    self.finish(slot);
                }
            }
            if deferred {
                self.collect();
            }
        }
        self.drain_if_pending();
        count
    }

    /// Unregisters every live entry whose `release` is `release` and whose
    /// context `matches`; returns how many this call retired. The releases
    /// run as for `unregister` (deferred while an invocation is in flight).
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    pub(crate) fn retire_matching(
        &self,
        release: ReleaseFn,
        matches: &dyn Fn(*mut c_void) -> bool,
    ) -> usize {
        let want = release.map_or(0, |f| f as usize);
        let used = self.next_unused.load(Ordering::Acquire).min(CAPACITY);
        let mut count = 0;
        for index in 0..used {
            let Some(slot) = self.slot(index) else {
                continue;
            };
            let state = slot.state.load(Ordering::SeqCst);
            if state & LIVE == 0
                || slot.release.load(Ordering::Relaxed) != want
                || !matches(slot.ctx.load(Ordering::Relaxed))
            {
                continue;
            }
            if slot
                .state
                .compare_exchange(state, state & !LIVE, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.retired.fetch_add(1, Ordering::Relaxed);
                self.retire(slot);
                count += 1;
            }
        }
        count
    }

    pub(crate) fn close(&self) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.clear()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> Stats {
        let counter = self.counter_index();
        let per_thread = if counter == NO_COUNTER {
            0
        } else {
            hazard::invoked_total(counter).wrapping_sub(self.invoked_base.load(Ordering::Relaxed))
        };
        let registered = self.registered.load(Ordering::Relaxed);
        Stats {
            live: registered.saturating_sub(self.retired.load(Ordering::Relaxed)),
            registered,
            invoked: per_thread.wrapping_add(self.shared_invoked.load(Ordering::Relaxed)),
            released: self.released.load(Ordering::Relaxed),
            deferred: self.deferred.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            leaked: self.leaked.load(Ordering::Relaxed),
        }
    }

    /// Closes, waits for every invocation in flight and releases everything.
    /// Refused from inside one of this registry's own callbacks.
    pub(crate) fn shut_down(&self) -> Status {
        if self.inside_on_this_thread(|addr| self.owns(addr)) {
            return Status::WouldDeadlock;
        }
        self.close();
        crate::wait::blocking(|| {
            let mut round = 0;
            while self.pending_head.load(Ordering::Acquire) != 0
                || self.collector.load(Ordering::Acquire) != COLLECTOR_IDLE
            {
                self.collect();
                crate::sync::backoff(round);
                round += 1;
            }
        });
        Status::Ok
    }

    /// Makes a shut-down core ready to serve as a new registry.
    fn reset_for_reuse(&self) {
        for c in [
            &self.shared_invoked,
            &self.registered,
            &self.retired,
            &self.released,
            &self.deferred,
            &self.pending,
            &self.leaked,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.closed.store(false, Ordering::Release);
    }

    fn set_counter(&self, counter: usize) {
        if counter != NO_COUNTER {
            self.invoked_base
                .store(hazard::invoked_total(counter), Ordering::Relaxed);
        }
        self.counter.store(counter, Ordering::Relaxed);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        for seg in 0..SEGMENTS {
            let raw = self.segments[seg].load(Ordering::Acquire);
            if !raw.is_null() {
                // SAFETY: allocated in `ensure_segment` with this length.
                drop(unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, FIRST << seg))
                });
            }
        }
    }
}

// ---- the table of registries that handles name ----

#[cfg(not(loom))]
const MAX_REGISTRIES: usize = 4096;
#[cfg(loom)]
const MAX_REGISTRIES: usize = 2;

struct Table {
    /// Registries by handle index; a core, once installed, is never freed.
    cores: [AtomicPtr<Core>; MAX_REGISTRIES],
    counters_in_use: AtomicU32,
}

#[cfg(not(loom))]
impl Table {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: AtomicPtr<Core> = AtomicPtr::new(std::ptr::null_mut());
        Table {
            cores: [EMPTY; MAX_REGISTRIES],
            counters_in_use: AtomicU32::new(1), // counter 0 is the default registry's
        }
    }
}

#[cfg(loom)]
use crate::sync::global;

#[cfg(not(loom))]
static TABLE: Table = Table::new();

#[inline(always)]
fn table() -> &'static Table {
    #[cfg(not(loom))]
    return &TABLE;
    #[cfg(loom)]
    {
        global! {
            static TABLE: Table = Table {
                cores: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
                counters_in_use: AtomicU32::new(1),
            };
        }
        &*TABLE
    }
}

/// Handle of the process-wide default registry (index 0, generation 1).
pub(crate) const DEFAULT_HANDLE: u64 = 1 << 32 | 1;

fn core_at(index: usize) -> Option<&'static Core> {
    let p = table().cores.get(index)?.load(Ordering::Acquire);
    // SAFETY: cores in the table are never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn install(index: usize) -> Result<&'static Core, Status> {
    let fresh = Box::into_raw(Box::new(Core::new()));
    match table().cores[index].compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(unsafe { &*fresh }),
        Err(_) => {
            // SAFETY: `fresh` was never published.
            drop(unsafe { Box::from_raw(fresh) });
            Err(Status::Internal)
        }
    }
}

/// The default registry, created on first use; never destroyed.
pub(crate) fn default_core() -> &'static Core {
    if let Some(core) = core_at(0) {
        return core;
    }
    match install(0) {
        Ok(core) => {
            core.set_counter(0);
            core.handle_state.store(1 << 1 | 1, Ordering::Release);
            core
        }
        Err(_) => {
            let core = core_at(0).expect("default registry installed");
            while core.handle_state.load(Ordering::Acquire) == 0 {
                crate::sync::backoff(0);
            }
            core
        }
    }
}

/// The registry a handle names, if it is alive.
#[inline(always)]
pub(crate) fn lookup(handle: u64) -> Result<&'static Core, Status> {
    let index = (handle as u32 as usize).wrapping_sub(1);
    if let Some(cell) = table().cores.get(index) {
        let p = cell.load(Ordering::Acquire);
        // SAFETY: cores in the table are never freed.
        if let Some(core) = unsafe { p.as_ref() } {
            // Alive with the handle's generation (generations start at 1, so
            // a handle with generation 0 never matches).
            if core.handle_state.load(Ordering::Acquire) == (handle >> 32) << 1 | 1 {
                return Ok(core);
            }
        }
    }
    lookup_slow(handle)
}

#[cold]
fn lookup_slow(handle: u64) -> Result<&'static Core, Status> {
    if handle == DEFAULT_HANDLE {
        Ok(default_core()) // first use: create it
    } else {
        Err(Status::InvalidRegistry)
    }
}

/// Creates a registry and returns its handle.
pub(crate) fn create() -> Result<(u64, &'static Core), Status> {
    default_core();
    for index in 1..MAX_REGISTRIES {
        let core = match core_at(index) {
            Some(c) => c,
            None => match install(index) {
                Ok(c) => {
                    c.handle_state.store(1 << 1, Ordering::Release); // generation 1, dead
                    c
                }
                Err(_) => continue,
            },
        };
        let hs = core.handle_state.load(Ordering::Acquire);
        // A dead core with generation > 0 is free; claim it by reviving it.
        let Some(gen) = (hs & 1 == 0 && hs >> 1 > 0).then_some(hs >> 1) else {
            continue;
        };
        if gen >= MAX_GENERATION {
            continue;
        }
        if core
            .handle_state
            .compare_exchange(hs, (gen + 1) << 1 | 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            core.reset_for_reuse();
            core.set_counter(take_counter());
            return Ok(((gen + 1) << 32 | (index as u64 + 1), core));
        }
    }
    Err(Status::NoMemory)
}

fn take_counter() -> usize {
    let t = table();
    let mut used = t.counters_in_use.load(Ordering::Acquire);
    loop {
        let free = (!used).trailing_zeros() as usize;
        if free >= COUNTED_REGISTRIES {
            return NO_COUNTER;
        }
        match t.counters_in_use.compare_exchange(
            used,
            used | 1 << free,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return free,
            Err(u) => used = u,
        }
    }
}

/// Destroys the registry a handle names: close, wait, release everything,
/// then invalidate the handle.
pub(crate) fn destroy(handle: u64) -> Status {
    if handle == DEFAULT_HANDLE {
        return Status::InvalidArgument;
    }
    let core = match lookup(handle) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let status = core.shut_down();
    if status != Status::Ok {
        return status;
    }
    let hs = core.handle_state.load(Ordering::Acquire);
    if hs & 1 == 0
        || core
            .handle_state
            .compare_exchange(hs, hs & !1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return Status::InvalidRegistry; // destroyed concurrently
    }
    let counter = core.counter.swap(NO_COUNTER, Ordering::AcqRel);
    if counter != NO_COUNTER {
        table()
            .counters_in_use
            .fetch_and(!(1 << counter), Ordering::AcqRel);
    }
    Status::Ok
}

/// `Core::retire_matching` on every live registry, the default one included;
/// returns how many entries were retired.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn retire_matching_everywhere(
    release: ReleaseFn,
    matches: &dyn Fn(*mut c_void) -> bool,
) -> usize {
    (0..MAX_REGISTRIES)
        .filter_map(core_at)
        .filter(|core| core.handle_state.load(Ordering::Acquire) & 1 == 1)
        .map(|core| core.retire_matching(release, matches))
        .sum()
}

/// In a forked child, a collector that was running in a thread that no
/// longer exists must not block collection forever.
#[cfg(not(loom))]
pub(crate) fn after_fork_in_child() {
    {
        for cell in &table().cores {
            let p = cell.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: cores in the table are never freed.
                let core = unsafe { &*p };
                core.collector.store(COLLECTOR_IDLE, Ordering::SeqCst);
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
}
