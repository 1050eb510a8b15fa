//! Per-thread state: how a thread announces what it is inside, and how
//! other threads see it.
//!
//! Each thread that invokes claims one `ThreadRecord` from a fixed pool that
//! is allocated once, when the first registry is created, so the first
//! invoke on a new thread allocates nothing, not even in libc. A record holds
//! a few hazard cells (one per nesting level) written only by its owner;
//! writers scan every record after a heavy barrier before they release an
//! entry (`docs/protocol.md`). A thread that finds the pool empty, or nests
//! deeper than the cells allow, uses the slot's shared `inflight` counter.
//!
//! A record goes back to the pool when its thread exits, through a pthread
//! key's destructor, but only where setting the key's value cannot allocate
//! (glibc allocates for keys past the first 32: see `exit_key`). Otherwise,
//! and as a backstop, a record is claimed with the owner's kernel thread id
//! and a thread that needs a record while none is free (or the reclaimer,
//! about once a second) takes back those whose owner no longer exists.
//!
//! The thread also keeps, for itself alone, what no other thread needs to
//! see but that it must know to refuse a wait on itself: a list of frames on
//! its own stack (invocations without a cell, collections in progress) and
//! the registries it has pinned.

use crate::sync::global;
use crate::sync::{barrier, thread_cell, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::cell::Cell;

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
    cells: [AtomicUsize; CELLS],
    /// Cells in use by the general path (owner-only; beyond `CELLS`
    /// nesting uses slot counters). The fast path, which takes only the
    /// first cell and only while it is empty, leaves it alone: see
    /// `free_cell`.
    depth: AtomicUsize,
    /// The slot whose end this thread waits for (0 = not waiting): lets
    /// another waiter see a cycle.
    waiting_for: AtomicUsize,
    /// The owner's thread token; 0 while the record is free.
    owner: AtomicU32,
    /// The owner's kernel thread id, to tell whether it still exists.
    tid: AtomicU32,
    /// Invocations per registry (by table index), written only by the
    /// owner. Never reset: a record's next owner counts on, so totals never
    /// go back.
    invoked: [AtomicU64; COUNTED_REGISTRIES],
}

impl ThreadRecord {
    #[cfg(loom)]
    fn new() -> Self {
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
    fn published(&self) -> impl Iterator<Item = usize> + '_ {
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

    fn holds(&self, slot: usize) -> bool {
        // A slot's address is never `BLOCKED`.
        self.cells.iter().any(|c| c.load(Ordering::SeqCst) == slot)
    }
}

struct Pool {
    records: Box<[ThreadRecord]>,
    /// One past the highest record ever claimed: writers scan up to here.
    high_water: AtomicUsize,
    /// Records currently claimed; lets a lone thread skip the heavy barrier.
    claimed: AtomicUsize,
}

/// The records, allocated zeroed (a zeroed record is a free one): the
/// counters of registries a thread never invokes stay untouched pages.
#[cfg(not(loom))]
fn new_records() -> Box<[ThreadRecord]> {
    let layout = std::alloc::Layout::array::<ThreadRecord>(RECORDS).expect("fixed size");
    // SAFETY: a nonzero layout; every field of a ThreadRecord is an atomic
    // integer, for which all-zero bytes are a valid value (and the value
    // `ThreadRecord::new` gives).
    unsafe {
        let raw = std::alloc::alloc_zeroed(layout) as *mut ThreadRecord;
        if raw.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, RECORDS))
    }
}
#[cfg(loom)]
fn new_records() -> Box<[ThreadRecord]> {
    (0..RECORDS).map(|_| ThreadRecord::new()).collect()
}

#[cfg(not(loom))]
fn pool() -> &'static Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(Pool::new)
}
#[cfg(loom)]
fn pool() -> &'static Pool {
    global! { static POOL: Pool = Pool::new(); }
    &POOL
}

impl Pool {
    fn new() -> Self {
        barrier::init();
        #[cfg(not(loom))]
        install_fork_handler();
        Self {
            records: new_records(),
            high_water: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
        }
    }

    fn in_use(&self) -> &[ThreadRecord] {
        &self.records[..self.high_water.load(Ordering::Acquire)]
    }
}

// Per-thread state the owner alone reads and writes: separate cells, so the
// invoke path touches only the words it needs.
// This thread's record word (`tls_word.rs` keeps it: the invoke fast path
// reads it) always addresses a first cell: its record's, or before the
// first invoke `NONE_YET`'s, or when the pool was full `NO_RECORD`'s. The
// fast path takes the record when that cell is empty, so both placeholders
// hold `BLOCKED`, as does the first cell of every record while the process
// has no asymmetric barrier (the thread's side must then be a full fence,
// which the general path pays).
thread_cell! { static REALTIME: bool = false; }
thread_cell! { static TOKEN: u32 = 0; }
// Innermost `Frame` of this thread (its address; 0 = none).
thread_cell! { static FRAMES: usize = 0; }
// Registries this thread holds pinned (core addresses; 0 = unused), and how
// many pins did not fit.
#[allow(clippy::declare_interior_mutable_const)]
const NO_PIN: Cell<usize> = Cell::new(0);
#[cfg(not(loom))]
std::thread_local! { static PINS: [Cell<usize>; PIN_SLOTS] = const { [NO_PIN; PIN_SLOTS] }; }
#[cfg(loom)]
loom::thread_local! { static PINS: [Cell<usize>; PIN_SLOTS] = [NO_PIN; PIN_SLOTS]; }
thread_cell! { static PINS_OVERFLOW: usize = 0; }

/// What a first cell holds to keep the fast path away: never a slot's
/// address (slots are cache-line aligned) and never 0 (empty).
const BLOCKED: usize = 1;
global! {
    /// Where the record word points before the thread's first invoke (its
    /// initial value: `tls_word.rs`).
    pub(crate) static NONE_YET: AtomicUsize = AtomicUsize::new(BLOCKED);
}
global! {
    /// Where the record word points when the pool had no record to give.
    static NO_RECORD: AtomicUsize = AtomicUsize::new(BLOCKED);
}

/// The word of a thread with no record yet.
pub(crate) fn none_yet_word() -> usize {
    let cell: &AtomicUsize = &NONE_YET;
    cell as *const AtomicUsize as usize
}

fn no_record_word() -> usize {
    let cell: &AtomicUsize = &NO_RECORD;
    cell as *const AtomicUsize as usize
}
const PIN_SLOTS: usize = 8;

static NEXT_TOKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Makes sure the pool (and the barrier choice) exist before any invoke.
pub(crate) fn init() {
    let _ = pool();
}

#[inline(always)]
pub(crate) fn is_realtime() -> bool {
    REALTIME.with(|r| r.get())
}

/// Marks the thread real-time (or not), and claims its record now, so its
/// first invoke already takes the fast path.
pub(crate) fn set_realtime(on: bool) {
    if on {
        crate::reclaimer::ensure_started();
    }
    REALTIME.with(|r| r.set(on));
    let _ = record();
}

/// A number naming this thread for as long as the process lives (never 0,
/// never reused).
pub(crate) fn token() -> u32 {
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            t.set(fresh);
            fresh
        }
        v => v,
    })
}

fn has_record() -> bool {
    let word = crate::tls_word::get();
    word != none_yet_word() && word != no_record_word()
}

/// This thread's record, claiming one on first use. `None` when the pool is
/// exhausted: the caller uses the slot counter instead.
#[inline(always)]
pub(crate) fn record() -> Option<&'static ThreadRecord> {
    let word = crate::tls_word::get();
    if word == none_yet_word() {
        claim()
    } else if word == no_record_word() {
        None
    } else {
        // SAFETY: the address of a record in the pool, which is never freed.
        Some(unsafe { &*(word as *const ThreadRecord) })
    }
}

/// This thread's record if the invoke fast path may use it: its first cell
/// is empty, so the thread has a record, is not inside another invocation
/// and needs no fence (`barrier::light_unfenced`, decided when the record
/// was claimed). One thread-local load, one load and one test. A thread's
/// first invoke claims its record on the general path (or `set_realtime`
/// did).
#[inline(always)]
pub(crate) fn fast_record() -> Option<&'static ThreadRecord> {
    let word = crate::tls_word::get();
    // SAFETY: the word always addresses a first cell: a record's (a
    // record starts with it) or a placeholder's.
    let first = unsafe { &*(word as *const AtomicUsize) };
    if first.load(Ordering::Relaxed) != 0 {
        return None;
    }
    // SAFETY: placeholders hold BLOCKED, so this first cell is a record's,
    // in the pool, which is never freed.
    Some(unsafe { &*(word as *const ThreadRecord) })
}

#[cold]
fn claim() -> Option<&'static ThreadRecord> {
    let pool = pool();
    let me = token();
    for round in 0..2 {
        for (i, rec) in pool.records.iter().enumerate() {
            if rec
                .owner
                .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                rec.tid.store(current_tid(), Ordering::SeqCst);
                pool.high_water.fetch_max(i + 1, Ordering::SeqCst);
                pool.claimed.fetch_add(1, Ordering::SeqCst);
                // Pairs with the fence in `heavy_barrier`: a writer that did
                // not count this record is seen by this thread's first state
                // load.
                crate::sync::fence(Ordering::SeqCst);
                // Under loom the fast path's barrier is itself a fence.
                let unfenced = cfg!(loom) || barrier::light_is_compiler_only();
                if !unfenced {
                    rec.cells[0].store(BLOCKED, Ordering::Relaxed);
                }
                crate::tls_word::set(rec as *const ThreadRecord as usize);
                #[cfg(all(unix, not(loom)))]
                register_thread_exit(i);
                return Some(rec);
            }
        }
        if round == 0 && !take_back_records_of_exited_threads() {
            break;
        }
    }
    crate::tls_word::set(no_record_word());
    None
}

/// Frees the records whose owners have exited; true if it freed any. A
/// thread that finds the pool full calls it, and the reclaimer now and
/// then, so a process whose other threads are gone gets its free heavy
/// barrier back.
pub(crate) fn take_back_records_of_exited_threads() -> bool {
    let pool = pool();
    let mut freed = false;
    for rec in pool.in_use() {
        let owner = rec.owner.load(Ordering::SeqCst);
        let tid = rec.tid.load(Ordering::SeqCst);
        if owner != 0 && tid != 0 && !thread_exists(tid) {
            freed |= release_record(rec, owner);
        }
    }
    freed
}

/// Returns `rec` to the pool if `owner` still holds it.
fn release_record(rec: &ThreadRecord, owner: u32) -> bool {
    for c in &rec.cells {
        c.store(0, Ordering::Release);
    }
    rec.depth.store(0, Ordering::Relaxed);
    rec.waiting_for.store(0, Ordering::Relaxed);
    rec.tid.store(0, Ordering::SeqCst);
    let freed = rec
        .owner
        .compare_exchange(owner, 0, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok();
    if freed {
        pool().claimed.fetch_sub(1, Ordering::SeqCst);
    }
    freed
}

#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn thread_exists(tid: u32) -> bool {
    // SAFETY: signal 0 only checks that the thread exists in this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid() as libc::c_long,
            tid as libc::c_long,
            0 as libc::c_long,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

// Elsewhere (and under loom) records are not taken back: a process that
// has run more threads than the pool holds uses the slot counters.
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn current_tid() -> u32 {
    0
}
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn thread_exists(_tid: u32) -> bool {
    true
}

/// Invocations counted for one counted-registry index, over every record.
/// Never decreases: each record's count only grows.
pub(crate) fn invoked_total(counter: usize) -> u64 {
    pool()
        .in_use()
        .iter()
        .map(|r| r.invoked[counter].load(Ordering::Relaxed))
        .sum()
}

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

// ---- what this thread is inside (its own view) ----

pub(crate) const FRAME_INVOKE: u8 = 1;
pub(crate) const FRAME_COLLECT: u8 = 2;

/// A marker on this thread's stack: an invocation that has no hazard cell,
/// or a collection in progress. Linked while `scope` runs.
pub(crate) struct Frame {
    kind: u8,
    addr: usize,
    prev: Cell<usize>,
}

impl Frame {
    pub(crate) fn new(kind: u8, addr: usize) -> Self {
        Frame {
            kind,
            addr,
            prev: Cell::new(0),
        }
    }

    /// Runs `f` with this frame linked as the innermost one. Unlinks it
    /// however `f` ends (a forced unwind included).
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unlink(usize);
        impl Drop for Unlink {
            fn drop(&mut self) {
                FRAMES.with(|h| h.set(self.0));
            }
        }
        self.prev.set(FRAMES.with(|h| h.get()));
        FRAMES.with(|h| h.set(self as *const Frame as usize));
        let _unlink = Unlink(self.prev.get());
        f()
    }
}

/// Calls `f(kind, addr)` for every frame of this thread.
pub(crate) fn for_each_frame(mut f: impl FnMut(u8, usize)) {
    let mut at = FRAMES.with(|h| h.get());
    while at != 0 {
        // SAFETY: linked frames live on this thread's stack until unlinked.
        let frame = unsafe { &*(at as *const Frame) };
        f(frame.kind, frame.addr);
        at = frame.prev.get();
    }
}

/// Whether this thread is inside an invocation of the slot at `addr`, at
/// any depth, with or without a record.
pub(crate) fn inside_slot(addr: usize) -> bool {
    inside(|kind, a| kind == FRAME_INVOKE && a == addr)
}

/// Whether this thread is inside anything of the registry whose slots
/// `owns` recognises or whose core is at `core`: an invocation, a
/// collection or a pinned operation (so its release or callback is running).
pub(crate) fn inside_registry(core: usize, owns: impl Fn(usize) -> bool) -> bool {
    inside(|kind, a| {
        if kind == FRAME_INVOKE {
            owns(a)
        } else {
            a == core
        }
    }) || pinned_here(core)
        || PINS_OVERFLOW.with(|o| o.get()) > 0
}

fn inside(matches: impl Fn(u8, usize) -> bool) -> bool {
    let in_cell =
        has_record() && record().is_some_and(|r| r.published().any(|a| matches(FRAME_INVOKE, a)));
    let mut in_frame = false;
    for_each_frame(|kind, a| in_frame |= matches(kind, a));
    in_cell || in_frame
}

/// Whether this thread is inside anything of cbreg's: an invocation, a
/// collection, a release or a pinned operation, of any registry.
pub(crate) fn inside_anything() -> bool {
    inside(|_, _| true)
        || PINS.with(|p| p.iter().any(|c| c.get() != 0))
        || PINS_OVERFLOW.with(|o| o.get()) > 0
}

/// Notes a pin of the registry at `core` on this thread.
pub(crate) fn note_pin(core: usize) {
    PINS.with(|pins| match pins.iter().find(|c| c.get() == 0) {
        Some(free) => free.set(core),
        None => PINS_OVERFLOW.with(|o| o.set(o.get() + 1)),
    })
}

/// Forgets one pin of the registry at `core` on this thread.
pub(crate) fn note_unpin(core: usize) {
    PINS.with(|pins| match pins.iter().rev().find(|c| c.get() == core) {
        Some(slot) => slot.set(0),
        None => PINS_OVERFLOW.with(|o| o.set(o.get().saturating_sub(1))),
    })
}

fn pinned_here(core: usize) -> bool {
    PINS.with(|pins| pins.iter().any(|c| c.get() == core))
}

/// Pins this thread holds on the registry at `core` (for the fork child).
#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
pub(crate) fn my_pins(core: usize) -> usize {
    PINS.with(|pins| pins.iter().filter(|c| c.get() == core).count())
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

// ---- thread exit and fork (not modelled under loom) ----

#[cfg(not(loom))]
fn install_fork_handler() {
    // SAFETY: registers an `extern "C"` handler; no other precondition.
    #[cfg(unix)]
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child))
    };
    #[cfg(unix)]
    let _ = exit_key();
}

/// A pthread key whose destructor returns a thread's record, if setting its
/// value never allocates: with glibc, keys below 32 live in the thread
/// descriptor and later ones in blocks that `pthread_setspecific` callocs
/// (on a real-time thread's first invoke); elsewhere no key is used and
/// exited threads' records are taken back by `take_back_records_of_exited_threads`.
#[cfg(all(unix, not(loom)))]
fn exit_key() -> Option<libc::pthread_key_t> {
    static KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return None;
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creates a key with an `extern "C"` destructor.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
            return None;
        }
        if key < 32 {
            Some(key)
        } else {
            // SAFETY: the key was just created and never set.
            unsafe { libc::pthread_key_delete(key) };
            None
        }
    })
}

#[cfg(all(unix, not(loom)))]
fn register_thread_exit(index: usize) {
    if let Some(key) = exit_key() {
        // SAFETY: a key below 32 (no allocation); the value is an integer.
        unsafe { libc::pthread_setspecific(key, (index + 1) as *const libc::c_void) };
    }
}

#[cfg(all(unix, not(loom)))]
extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    // Code that runs later in this thread's exit (another key's destructor)
    // may still invoke: it must not write into a record another thread can
    // now claim, so from here on it uses the slot counters.
    crate::tls_word::set(no_record_word());
    let rec = &pool().records[value as usize - 1];
    release_record(rec, rec.owner.load(Ordering::SeqCst));
}

/// In a forked child only the forking thread exists: every other record is
/// returned to the pool, so no dead thread's hazard blocks a release; then
/// the registries start again from a consistent state.
#[cfg(all(unix, not(loom)))]
extern "C" fn after_fork_in_child() {
    barrier::reinit_after_fork();
    let pool = pool();
    let mine = crate::tls_word::get();
    for rec in pool.in_use() {
        let owner = rec.owner.load(Ordering::Acquire);
        if rec as *const ThreadRecord as usize != mine && owner != 0 {
            release_record(rec, owner);
        } else if owner != 0 {
            // Our kernel thread id changed with the fork.
            rec.tid.store(current_tid(), Ordering::SeqCst);
        }
    }
    crate::reclaimer::after_fork_in_child();
    crate::registry::after_fork_in_child();
}
