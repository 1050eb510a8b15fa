//! How records go back to the pool: through a pthread key's destructor when
//! their thread exits (where setting the key cannot allocate), by taking
//! back those whose owner's kernel thread no longer exists (a thread that
//! finds the pool full, or the reclaimer), and in a forked child, where
//! only the forking thread exists. Under loom there is no exit key, and
//! under loom and Miri no kernel thread id to tell an exited owner by.

#[cfg(all(unix, not(loom)))]
use super::pool::no_record_word;
use super::pool::pool;
#[cfg(not(loom))]
use super::pool::published_pool;
use super::record::ThreadRecord;
use crate::sync::Ordering;

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

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
pub(crate) fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
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

// Elsewhere (and under loom and Miri) records are not taken back: a process that
// has run more threads than the pool holds uses the slot counters.
#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
pub(crate) fn current_tid() -> u32 {
    0
}
#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
pub(crate) fn thread_exists(_tid: u32) -> bool {
    true
}

// ---- thread exit and fork (not modelled under loom) ----

/// A pthread key whose destructor returns a thread's record, if setting its
/// value never allocates: with glibc, keys below 32 live in the thread
/// descriptor and later ones in blocks that `pthread_setspecific` callocs
/// (on a real-time thread's first invoke); elsewhere no key is used and
/// exited threads' records are taken back by `take_back_records_of_exited_threads`.
#[cfg(all(unix, not(loom)))]
pub(super) fn exit_key() -> Option<libc::pthread_key_t> {
    // 0: not decided yet; 1: no key; otherwise the key + 2. Not a
    // `OnceLock`, for the reason `pool` gives: racing makers each make a
    // key, and the losers delete theirs.
    static KEY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let decode = |word: usize| (word >= 2).then(|| (word - 2) as libc::pthread_key_t);
    let known = KEY.load(Ordering::Acquire);
    if known != 0 {
        return decode(known);
    }
    let made = make_exit_key();
    let word = made.map_or(1, |key| key as usize + 2);
    match KEY.compare_exchange(0, word, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => made,
        Err(existing) => {
            if let Some(key) = made {
                // SAFETY: our own key, never set and never handed out.
                unsafe { libc::pthread_key_delete(key) };
            }
            decode(existing)
        }
    }
}

#[cfg(all(unix, not(loom)))]
fn make_exit_key() -> Option<libc::pthread_key_t> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key with an `extern "C"` destructor that lives for
    // the process.
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
}

#[cfg(all(unix, not(loom)))]
pub(super) fn register_thread_exit(index: usize) {
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

/// The fork child's `ThreadRecords` step (`fork.rs`): only the forking
/// thread exists, so every other record goes back to the pool and no dead
/// thread's hazard blocks a release.
#[cfg_attr(loom, allow(dead_code))]
pub(super) fn after_fork_in_child() {
    #[cfg(not(loom))]
    let Some(pool) = published_pool() else {
        return;
    };
    #[cfg(loom)]
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
    // A thread of the parent may have been between its claim and its count.
    let holders = pool
        .in_use()
        .iter()
        .filter(|r| r.owner.load(Ordering::SeqCst) != 0);
    pool.claimed.store(holders.count(), Ordering::SeqCst);
}
