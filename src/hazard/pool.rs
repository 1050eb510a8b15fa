//! The pool of thread records, and how a thread claims its own. The pool is
//! allocated once (zeroed: a zeroed record is a free one), so the first
//! invoke on a new thread allocates nothing; claiming is one CAS on a free
//! record's owner, after which the thread's record word (`tls_word.rs`)
//! addresses the record and the invoke fast path finds it with one load.

use super::exit::{after_fork_in_child, current_tid, take_back_records_of_exited_threads};
#[cfg(all(unix, not(loom)))]
use super::exit::{exit_key, register_thread_exit};
use super::record::{ThreadRecord, BLOCKED, RECORDS};
use super::this_thread::token;
use crate::sync::global;
use crate::sync::{barrier, AtomicUsize, Ordering};

pub(super) struct Pool {
    pub(super) records: Box<[ThreadRecord]>,
    /// One past the highest record ever claimed: writers scan up to here.
    pub(super) high_water: AtomicUsize,
    /// Records currently claimed; lets a lone thread skip the heavy barrier.
    pub(super) claimed: AtomicUsize,
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

/// The pool, made by the first thread that needs it. Not a `OnceLock`: a
/// fork while another thread is making the pool must leave the child able
/// to make its own, so racing makers each make one and the first published
/// wins (the others are dropped unused).
#[cfg(not(loom))]
static POOL: crate::sync::AtomicPtr<Pool> = crate::sync::AtomicPtr::new(std::ptr::null_mut());

/// The pool if one was published (a forked child's step makes none).
#[cfg(not(loom))]
pub(super) fn published_pool() -> Option<&'static Pool> {
    // SAFETY: a published pool is never freed.
    unsafe { POOL.load(Ordering::Acquire).as_ref() }
}

#[cfg(not(loom))]
pub(super) fn pool() -> &'static Pool {
    if let Some(published) = published_pool() {
        return published;
    }
    // SAFETY: the pool is never freed.
    unsafe { crate::sync::publish_once(&POOL, Box::new(Pool::new())) }
}
#[cfg(loom)]
pub(super) fn pool() -> &'static Pool {
    global! { static POOL: Pool = Pool::new(); }
    &POOL
}

impl Pool {
    fn new() -> Self {
        barrier::init();
        crate::fork::set_child_step(crate::fork::ChildStep::ThreadRecords, after_fork_in_child);
        #[cfg(all(unix, not(loom)))]
        let _ = exit_key();
        Self {
            records: new_records(),
            high_water: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
        }
    }

    pub(super) fn in_use(&self) -> &[ThreadRecord] {
        &self.records[..self.high_water.load(Ordering::Acquire)]
    }
}

// This thread's record word (`tls_word.rs` keeps it: the invoke fast path
// reads it) always addresses a first cell: its record's, or before the
// first invoke `NONE_YET`'s, or when the pool was full `NO_RECORD`'s. The
// fast path takes the record when that cell is empty, so both placeholders
// hold `BLOCKED`, as does the first cell of every record while the process
// has no asymmetric barrier (the thread's side must then be a full fence,
// which the general path pays).
global! {
    /// Where the record word points when the pool had no record to give.
    static NO_RECORD: AtomicUsize = AtomicUsize::new(BLOCKED);
}

fn none_yet_word() -> usize {
    crate::tls_word::none_yet_word()
}

pub(super) fn no_record_word() -> usize {
    let cell: &AtomicUsize = &NO_RECORD;
    cell as *const AtomicUsize as usize
}

/// Makes sure the pool (and the barrier choice) exist before any invoke.
pub(crate) fn init() {
    let _ = pool();
}

pub(super) fn has_record() -> bool {
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

/// Invocations counted for one counted-registry index, over every record.
/// Never decreases: each record's count only grows.
pub(crate) fn invoked_total(counter: usize) -> u64 {
    pool()
        .in_use()
        .iter()
        .map(|r| r.invoked[counter].load(Ordering::Relaxed))
        .sum()
}
