//! The native dispatcher: a thread of cbreg's that delivers the events of
//! target 0, the default target of every entry.
//!
//! It starts at the first post or `cbreg_post_reserve` of a thread not
//! marked real-time (starting a thread allocates), and never ends. Its
//! loop, `run_consumer`, is the one any consumer thread runs (the Python
//! adapter's dispatchers run it with a scope that attaches once per
//! batch): drain a batch; when nothing is left, look again for a few tens
//! of microseconds (`LINGER`), then say it
//! is going to sleep, look once more, and sleep on the wake descriptor for
//! at most the target's period (`wake.rs`).

// Under loom no thread is started: the loop is checked through its parts.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::sync::atomic::{AtomicBool, Ordering};

use super::target::{BatchScope, Plain, Target};

static STARTED: AtomicBool = AtomicBool::new(false);
crate::sync::thread_cell! { static IS_DISPATCHER: bool = false; }

/// Events a consumer takes per batch (per attach, for Python).
pub(crate) const BATCH: usize = 256;
/// How long a consumer that found nothing keeps looking before it goes to
/// sleep: a sender that posts again within it costs the consumer no
/// barrier and itself no wake, which keeps a steady stream of posts from
/// paying a sleep and a wake every few events.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// Starts the dispatcher thread if it is not running.
pub(crate) fn ensure_started(target: &'static Target) {
    #[cfg(not(loom))]
    if !STARTED.load(Ordering::Acquire) && !STARTED.swap(true, Ordering::AcqRel) {
        let spawned = std::thread::Builder::new()
            .name("cbreg-dispatcher".into())
            .spawn(move || {
                IS_DISPATCHER.with(|d| d.set(true));
                run_consumer(target, &Plain)
            });
        if spawned.is_err() {
            STARTED.store(false, Ordering::Release);
        }
    }
    #[cfg(loom)]
    let _ = target;
}

/// Delivers `target`'s events for ever, inside `scope` per batch.
pub(crate) fn run_consumer(target: &'static Target, scope: &dyn BatchScope) -> ! {
    loop {
        if target.drain(BATCH, scope) != 0 {
            continue;
        }
        if linger(target) {
            continue;
        }
        target.wake.prepare_sleep();
        if target.any_pending() {
            target.wake.cancel_sleep();
            continue;
        }
        target.wake.sleep(target.period());
    }
}

/// Looks for events for `LINGER`; true as soon as there are some.
fn linger(target: &Target) -> bool {
    let start = std::time::Instant::now();
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            if target.any_pending() {
                return true;
            }
        }
        if start.elapsed() >= LINGER {
            return false;
        }
    }
}

/// The child of a fork has no dispatcher thread, unless the forking thread
/// was the dispatcher itself: the next post starts one.
#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
pub(crate) fn after_fork_in_child() {
    if !IS_DISPATCHER.with(|d| d.get()) {
        STARTED.store(false, Ordering::Release);
    }
}
