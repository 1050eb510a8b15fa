//! Delivery without waiting: `cbreg_post` hands an event to the entry's
//! target and returns at once; the target's consumer delivers it later
//! through the ordinary invoke path. `docs/post.md` argues the design; each
//! file here owns one idea:
//!
//! - `ring.rs`: one sender's queue to one target (a single-producer ring
//!   of events and a byte arena, reserved when the ring is made);
//! - `wake.rs`: how a sender wakes a consumer that is going to sleep, and
//!   only then (a flag, the asymmetric barrier pair, an eventfd);
//! - `target.rs`: the table of targets and each target's rings (one per
//!   sending thread: claimed, taken over, made);
//! - `push.rs`: the sender's side (its thread-local ring, queueing);
//! - `drain.rs`: the consumer's side (a batch over every ring, delivery
//!   through invoke);
//! - `kept.rs`: the entry a ring's owner last posted to, kept for the
//!   next post's check;
//! - `stats.rs`: sizes and counters; `fork.rs`: the forked child;
//! - `dispatcher.rs`: cbreg's own consumer thread, the default target, and
//!   the consumer loop other dispatchers reuse;
//! - `abi.rs`: the C ABI; `api.rs`: the Rust API (`Registry::post`, `Pump`).
//!
//! The seam for the Python adapter's targets (a dispatcher per
//! interpreter, an asyncio loop): make a target with `target::create`, run
//! `dispatcher::run_consumer` on a thread of its own with a `BatchScope`
//! that attaches once per batch (or drain from the loop's reader callback
//! with `drain`), and set it on each Python entry.

pub mod abi;
mod api;
pub(crate) mod dispatcher;
mod drain;
mod fork;
mod kept;
mod push;
mod ring;
mod stats;
pub(crate) mod target;
mod wake;

pub use api::{PostFlags, Pump, Target};
// The first value of `tls_word::post_word`: a symbol where the word is
// defined in assembly, a function's result where it is a `thread_local!`.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri))))]
pub(crate) use kept::no_ring_word;
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
pub(crate) use kept::NO_RING;
pub use stats::{PostConfig, PostStats};

/// A host's drain of a pump: empties the wake descriptor and delivers up
/// to `max` events. A drain that took events (or left some) makes the
/// descriptor readable again, so a host that polls it comes back; the
/// drain that finds nothing arms the wake (`wake.rs`), paying the heavy
/// barrier only when the host is about to sleep.
pub(crate) fn pump_drain(t: &target::Target, max: usize) -> usize {
    t.wake.clear();
    t.wake.cancel_sleep();
    let taken = t.drain(max, &target::Plain);
    if taken != 0 || t.any_pending() {
        t.wake.signal();
    } else {
        t.wake.prepare_sleep();
        if t.any_pending() {
            t.wake.cancel_sleep();
            t.wake.signal();
        }
    }
    taken
}

/// What the loom models (`tests/loom_post.rs`) drive: one ring and its
/// target's wake, through the code the real senders and consumers run.
#[doc(hidden)]
#[cfg(loom)]
pub mod model {
    use super::ring::{Ring, UNBOUND};
    use super::wake::Wake;
    use crate::Value;

    pub struct Queue {
        ring: Box<Ring>,
        // Boxed before the ring points at it.
        wake: Box<Wake>,
    }

    const TARGET: u32 = 5;

    impl Queue {
        pub fn new(events: usize) -> Queue {
            let wake = Box::new(Wake::new());
            let ring = Ring::new(events, 64, TARGET, &wake);
            Queue { ring, wake }
        }

        /// A sender's post of `n` (waking a sleeping consumer); false when
        /// refused (full, or the target was freed).
        pub fn post(&self, n: i64) -> bool {
            matches!(
                super::push::push_on(&self.ring, 1, 2, TARGET, 0, &[Value::i64(n)]),
                Some(crate::Status::Ok)
            )
        }

        /// The consumer takes the oldest event, if any.
        pub fn take(&self) -> Option<i64> {
            self.ring.pop(|e| e.args[0].as_i64().unwrap())
        }

        /// The consumer takes up to `max` of the oldest events in one batch
        /// (one look at the tail, one release of the places).
        pub fn take_batch(&self, max: usize) -> Vec<i64> {
            let mut out = Vec::new();
            self.ring.pop_many(max, |e| {
                out.push(e.args[0].as_i64().unwrap());
                false
            });
            out
        }

        pub fn prepare_sleep(&self) {
            self.wake.prepare_sleep()
        }

        pub fn any_pending(&self) -> bool {
            self.ring.pending() != 0
        }

        pub fn was_signalled(&self) -> bool {
            self.wake.was_signalled()
        }

        /// What a pump's free does to the ring: unbind, heavy barrier, wait
        /// for a post in flight, drop what is left; returns how many.
        pub fn free(&self) -> u64 {
            self.ring
                .bound
                .store(UNBOUND, crate::sync::Ordering::SeqCst);
            crate::sync::barrier::heavy();
            let mut round = 0;
            while self.ring.busy.load(crate::sync::Ordering::Acquire) != 0 {
                crate::sync::backoff(round);
                round += 1;
            }
            self.ring.discard_all()
        }
    }
}
