//! The reclaimer thread: where releases deferred by real-time threads, and
//! releases left for a batch (`reclaim/`), run.
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
//!
//! The reclaimer is never real-time: a release it runs may ask, and is
//! ignored (`hazard::never_realtime`). It never keeps the process alive:
//! once every other thread has ended (a main thread that left with
//! `pthread_exit` included), it runs what is left pending and ends too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::hazard;

/// How often the reclaimer looks for work: the bound on the delay.
pub(crate) const PERIOD: Duration = Duration::from_millis(10);

static STARTED: AtomicBool = AtomicBool::new(false);
static WORK: AtomicBool = AtomicBool::new(false);

/// Marks this thread real-time (or not), starting the reclaimer first when
/// it is marked: a real-time thread must never be the one to start a thread
/// (that allocates), and its deferred releases need the reclaimer.
pub(crate) fn set_thread_realtime(on: bool) {
    if on {
        ensure_started();
    }
    hazard::set_realtime(on);
}

/// Starts the reclaimer if it is not running (not from a real-time thread:
/// starting a thread allocates).
pub(crate) fn ensure_started() {
    #[cfg(not(loom))]
    if !STARTED.load(Ordering::Acquire) && !STARTED.swap(true, Ordering::AcqRel) {
        crate::fork::set_child_step(crate::fork::ChildStep::Reclaimer, after_fork_in_child);
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
    hazard::never_realtime();
    for round in 1u64.. {
        std::thread::sleep(PERIOD);
        // Every registry with anything pending is collected, asked or not:
        // a wake that found the flag already up did not store it again.
        let asked = WORK.swap(false, Ordering::AcqRel);
        super::for_each_core(|core| core.collect_from_reclaimer(asked));
        if round % SWEEP_ROUNDS == 0 {
            let _ = hazard::take_back_records_of_exited_threads();
        }
        if round % ALONE_ROUNDS == 0 && alone_in_process() {
            // Nobody can invoke any more: what is pending can all run now.
            super::for_each_core(|core| core.collect_from_reclaimer(true));
            STARTED.store(false, Ordering::Release);
            return;
        }
    }
}

/// Every this many periods (about a second) the reclaimer also takes back
/// the records of exited threads.
const SWEEP_ROUNDS: u64 = 100;

/// Every this many periods the reclaimer looks whether it is the last
/// thread of the process.
const ALONE_ROUNDS: u64 = 10;

/// Whether every other thread of the process has ended: the process has
/// two threads, this one and a main thread that has left (`pthread_exit`)
/// but stays a zombie until the last thread ends. Linux alone tells
/// (`/proc/self/stat`); elsewhere the answer is no.
fn alone_in_process() -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return false;
        };
        // The fields after the command name (which may hold spaces and
        // parentheses): state is the first, num_threads the eighteenth.
        let Some((_, fields)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = fields.split_ascii_whitespace();
        let main_ended = fields.next() == Some("Z");
        let threads = fields.nth(16).and_then(|n| n.parse::<u32>().ok());
        main_ended && threads == Some(2)
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The fork child's `Reclaimer` step (`fork.rs`): the child has no
/// reclaimer thread. The next need starts one, and the work the parent
/// left is kept.
#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
fn after_fork_in_child() {
    STARTED.store(false, Ordering::Release);
    WORK.store(true, Ordering::Release);
}
