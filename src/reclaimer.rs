//! The reclaimer thread: where releases deferred by real-time threads, and
//! releases left for a batch (`registry/reclaim.rs`), run.
//!
//! A real-time thread never runs a release; what it retires goes on its
//! registry's pending list, and it raises a flag with one store. An
//! unregister that leaves its release for a batch does the same. The
//! reclaimer, started when the first thread is marked real-time or the
//! first release is batched, wakes every `PERIOD` and collects every
//! registry whose pending list is not empty. So a deferred release runs
//! within about `PERIOD` plus the time the releases before it take, with
//! nobody calling collect. About once a second it also takes back the
//! thread records of exited threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the reclaimer looks for work: the bound on the delay.
pub(crate) const PERIOD: Duration = Duration::from_millis(10);

static STARTED: AtomicBool = AtomicBool::new(false);
static WORK: AtomicBool = AtomicBool::new(false);

/// Starts the reclaimer if it is not running (not from a real-time thread:
/// starting a thread allocates).
pub(crate) fn ensure_started() {
    #[cfg(not(loom))]
    if !STARTED.load(Ordering::Acquire) && !STARTED.swap(true, Ordering::AcqRel) {
        let spawned = std::thread::Builder::new()
            .name("cbreg-reclaimer".into())
            .spawn(run);
        if spawned.is_err() {
            STARTED.store(false, Ordering::Release);
        }
    }
}

/// Asks the reclaimer to collect: one store (none when already asked),
/// safe on a real-time thread.
#[inline]
pub(crate) fn wake() {
    if !WORK.load(Ordering::Relaxed) {
        WORK.store(true, Ordering::Release);
    }
}

#[cfg_attr(loom, allow(dead_code))]
fn run() {
    for round in 1u64.. {
        std::thread::sleep(PERIOD);
        // Every registry with anything pending is collected, asked or not:
        // a wake that found the flag already up did not store it again.
        let asked = WORK.swap(false, Ordering::AcqRel);
        crate::registry::for_each_core(|core| core.collect_from_reclaimer(asked));
        if round % SWEEP_ROUNDS == 0 {
            let _ = crate::hazard::take_back_records_of_exited_threads();
        }
    }
}

/// Every this many periods (about a second) the reclaimer also takes back
/// the records of exited threads.
const SWEEP_ROUNDS: u64 = 100;

/// The child of a fork has no reclaimer thread: the next thread marked
/// real-time starts one, and work the parent left is kept.
#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
pub(crate) fn after_fork_in_child() {
    STARTED.store(false, Ordering::Release);
    WORK.store(true, Ordering::Release);
}
