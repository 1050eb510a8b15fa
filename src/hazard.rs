//! Per-thread hazard cells: how an invoker announces "I am inside slot S".
//!
//! Each thread that invokes claims one `ThreadRecord` from a fixed pool that
//! is allocated once, when the first registry is created, so the first
//! invoke on a new thread allocates nothing. The record holds a few cells (one per nesting level) written only
//! by its owner; writers scan all records after a heavy barrier before they
//! release an entry or reuse its slot. A thread that finds the pool empty, or
//! nests deeper than the cells allow, falls back to the slot's shared
//! `inflight` counter. The record goes back to the pool from a pthread key
//! destructor (no allocation: the key's storage is in the thread descriptor).

#[cfg(loom)]
use crate::sync::global;
use crate::sync::{barrier, thread_cell, AtomicBool, AtomicU64, AtomicUsize, Ordering};

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
/// Registries whose invocation counts are kept per thread (no shared write).
pub(crate) const COUNTED_REGISTRIES: usize = 8;

#[repr(C, align(128))]
pub(crate) struct ThreadRecord {
    /// Slot addresses this thread is invoking, innermost last; 0 = empty.
    cells: [AtomicUsize; CELLS],
    /// Cells in use (owner-only; beyond `CELLS` nesting uses slot counters).
    depth: AtomicUsize,
    claimed: AtomicBool,
    /// Invocations per counted registry, written only by the owner.
    invoked: [AtomicU64; COUNTED_REGISTRIES],
}

impl ThreadRecord {
    fn new() -> Self {
        Self {
            cells: std::array::from_fn(|_| AtomicUsize::new(0)),
            depth: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
            invoked: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Cells in use: the index of the next free cell.
    #[inline(always)]
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Publishes `slot` in cell `depth` (the next free one).
    #[inline(always)]
    pub(crate) fn enter(&self, depth: usize, slot: usize) {
        self.cells[depth].store(slot, Ordering::Relaxed);
        self.depth.store(depth + 1, Ordering::Relaxed);
    }

    /// Clears cell `depth` again.
    #[inline(always)]
    pub(crate) fn leave(&self, depth: usize) {
        self.cells[depth].store(0, Ordering::Release);
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// This thread's invocation counter for a counted registry.
    #[inline(always)]
    pub(crate) fn invoked(&self, counter: usize) -> Option<&AtomicU64> {
        self.invoked.get(counter)
    }

    /// Owner-only increment: a plain load and store, no read-modify-write.
    #[inline(always)]
    pub(crate) fn bump(count: &AtomicU64) {
        count.store(
            count.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// The slot published at nesting level `depth`, if any.
    pub(crate) fn cell(&self, depth: usize) -> Option<usize> {
        let v = self.cells[depth].load(Ordering::Relaxed);
        (v != 0).then_some(v)
    }
}

struct Pool {
    records: Vec<ThreadRecord>,
    /// One past the highest record ever claimed: writers scan up to here.
    high_water: AtomicUsize,
    /// Records currently claimed; lets a lone thread skip the heavy barrier.
    claimed: AtomicUsize,
    /// Counts folded in from records of threads that have exited.
    retired_invoked: [AtomicU64; COUNTED_REGISTRIES],
}

#[cfg(not(loom))]
fn pool() -> &'static Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(Pool::new)
}
#[cfg(loom)]
fn pool() -> &'static Pool {
    global! { static POOL: Pool = Pool::new(); }
    &*POOL
}

impl Pool {
    fn new() -> Self {
        barrier::init();
        #[cfg(not(loom))]
        install_thread_hooks();
        Self {
            records: (0..RECORDS).map(|_| ThreadRecord::new()).collect(),
            high_water: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            retired_invoked: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

// Per-thread state the owner alone reads and writes: separate cells, so the
// invoke path touches only the words it needs.
// This thread's record address; `NONE_YET` before the first invoke,
// `NO_RECORD` when the pool was full.
thread_cell! { static RECORD: usize = NONE_YET; }
thread_cell! { static REALTIME: bool = false; }

const NONE_YET: usize = 0;
const NO_RECORD: usize = 1;

/// Makes sure the pool (and the barrier choice) exist before any invoke.
pub(crate) fn init() {
    let _ = pool();
}

#[inline(always)]
pub(crate) fn is_realtime() -> bool {
    REALTIME.with(|r| r.get())
}

pub(crate) fn set_realtime(on: bool) {
    REALTIME.with(|r| r.set(on))
}

fn has_record() -> bool {
    RECORD.with(|r| r.get()) > NO_RECORD
}

/// This thread's record, claiming one on first use. `None` when the pool is
/// exhausted: the caller uses the slot counter instead.
#[inline(always)]
pub(crate) fn record() -> Option<&'static ThreadRecord> {
    match RECORD.with(|r| r.get()) {
        NONE_YET => claim(),
        NO_RECORD => None,
        // SAFETY: the address of a record in the pool, which is never freed.
        addr => Some(unsafe { &*(addr as *const ThreadRecord) }),
    }
}

#[cold]
fn claim() -> Option<&'static ThreadRecord> {
    let pool = pool();
    for (i, rec) in pool.records.iter().enumerate() {
        if rec
            .claimed
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            pool.high_water.fetch_max(i + 1, Ordering::SeqCst);
            pool.claimed.fetch_add(1, Ordering::SeqCst);
            // Pairs with the fence in `heavy_barrier`: a writer that did not
            // count this record is seen by this thread's first state load.
            crate::sync::fence(Ordering::SeqCst);
            RECORD.with(|r| r.set(rec as *const ThreadRecord as usize));
            #[cfg(not(loom))]
            register_thread_exit(i + 1);
            return Some(rec);
        }
    }
    RECORD.with(|r| r.set(NO_RECORD));
    None
}

#[cfg_attr(loom, allow(dead_code))]
fn release_record(index: usize) {
    let pool = pool();
    let rec = &pool.records[index - 1];
    for c in &rec.cells {
        c.store(0, Ordering::Release);
    }
    rec.depth.store(0, Ordering::Relaxed);
    for (total, mine) in pool.retired_invoked.iter().zip(&rec.invoked) {
        total.fetch_add(mine.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
    rec.claimed.store(false, Ordering::SeqCst);
    pool.claimed.fetch_sub(1, Ordering::SeqCst);
}

/// Invocations counted for one counted-registry index, over every thread.
pub(crate) fn invoked_total(counter: usize) -> u64 {
    let pool = pool();
    let live: u64 = pool.records[..pool.high_water.load(Ordering::Acquire)]
        .iter()
        .map(|r| r.invoked[counter].load(Ordering::Relaxed))
        .sum();
    live.wrapping_add(pool.retired_invoked[counter].load(Ordering::Relaxed))
}

/// The writer's barrier, skipped when no other thread holds a record (then
/// no other thread can be between its hazard store and its state load).
pub(crate) fn heavy_barrier() {
    let pool = pool();
    crate::sync::fence(Ordering::SeqCst);
    let mine = usize::from(has_record());
    if pool.claimed.load(Ordering::SeqCst) > mine {
        barrier::heavy();
    }
}

/// Calls `f` with every published hazard (a slot address). Call after
/// `heavy_barrier`.
pub(crate) fn for_each_hazard(mut f: impl FnMut(usize)) {
    let pool = pool();
    for rec in &pool.records[..pool.high_water.load(Ordering::Acquire)] {
        for c in &rec.cells {
            let v = c.load(Ordering::Acquire);
            if v != 0 {
                f(v);
            }
        }
    }
}

/// True if any thread has published `slot` (call after `heavy_barrier`).
pub(crate) fn is_hazarded(slot: usize) -> bool {
    let mut found = false;
    for_each_hazard(|v| found |= v == slot);
    found
}

// ---- thread exit and fork (not modelled under loom) ----

#[cfg(not(loom))]
static EXIT_KEY: std::sync::OnceLock<libc::pthread_key_t> = std::sync::OnceLock::new();

#[cfg(not(loom))]
extern "C" fn on_thread_exit(value: *mut libc::c_void) {
    // Code that runs later in this thread's exit (another key's destructor)
    // may still invoke: it must not write into a record another thread can
    // now claim, so from here on it uses the slot counters.
    RECORD.with(|r| r.set(NO_RECORD));
    release_record(value as usize);
}

#[cfg(not(loom))]
fn install_thread_hooks() {
    EXIT_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: plain libc calls with valid pointers and `extern "C"` handlers.
        unsafe {
            let rc = libc::pthread_key_create(&mut key, Some(on_thread_exit));
            assert_eq!(rc, 0, "pthread_key_create failed");
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
        key
    });
}

#[cfg(not(loom))]
fn register_thread_exit(index: usize) {
    if let Some(key) = EXIT_KEY.get() {
        // SAFETY: the key was created above; the value is an integer.
        unsafe { libc::pthread_setspecific(*key, index as *const libc::c_void) };
    }
}

/// In a forked child only the forking thread exists: every other record is
/// returned to the pool, so no dead thread's hazard blocks a release.
#[cfg(not(loom))]
extern "C" fn after_fork_in_child() {
    barrier::reinit_after_fork();
    let pool = pool();
    let mine = RECORD.with(|r| r.get());
    for i in 1..=pool.high_water.load(Ordering::Acquire) {
        let rec = &pool.records[i - 1];
        if rec as *const ThreadRecord as usize != mine && rec.claimed.load(Ordering::Acquire) {
            release_record(i);
        }
    }
    crate::registry::after_fork_in_child();
}
