//! The consumer's side of a target: a drain takes events from every ring,
//! a share per ring per round, and delivers each through the ordinary
//! invoke path, so a stale id is dropped and counted, a one-shot runs
//! once, and `unregister_wait` waits for a delivery like for any invoke.
//!
//! One consumer at a time (`draining`): it alone writes the consumer's
//! counters. A Python dispatcher wraps each batch in its `BatchScope`.

use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};

use super::fork::FORKS;
use super::ring::Taken;
use super::target::Target;
use crate::ffi::RegistryHandle;
use crate::sync::Ordering;
use crate::value::Value;
use crate::Status;

/// How a consumer runs a batch of deliveries: the seam where a Python
/// dispatcher attaches to its interpreter once per batch. The native
/// targets run it as is.
pub(crate) trait BatchScope {
    fn run(&self, batch: &mut dyn FnMut());
}

/// A batch with nothing around it.
pub(crate) struct Plain;

impl BatchScope for Plain {
    fn run(&self, batch: &mut dyn FnMut()) {
        batch()
    }
}

/// Events one ring gives per round of a drain.
const ROUND_SHARE: usize = 64;

impl Target {
    /// Whether any ring holds an event.
    pub(crate) fn any_pending(&self) -> bool {
        self.made_rings().any(|r| r.pending() != 0)
    }

    /// Delivers up to `max` events, round-robin over the rings, inside
    /// `scope`; returns how many it took (delivered, dropped or skipped).
    /// One consumer at a time: a drain that finds another running (or is
    /// nested in one, from a callback) returns 0 at once.
    pub(crate) fn drain(&self, max: usize, scope: &dyn BatchScope) -> usize {
        if max == 0 || self.draining.swap(true, Ordering::Acquire) {
            return 0;
        }
        self.drainer
            .store(crate::hazard::token(), Ordering::Release);
        struct Release<'a>(&'a Target);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.drainer.store(0, Ordering::Relaxed);
                self.0.draining.store(false, Ordering::Release);
            }
        }
        let _release = Release(self);
        let mut taken = 0;
        let forks = FORKS.load(StdOrdering::Acquire);
        scope.run(&mut || loop {
            let before = taken;
            for ring in self.made_rings() {
                let pending = ring.pending();
                if pending > self.high_water.load(StdOrdering::Relaxed) {
                    self.high_water.store(pending, StdOrdering::Relaxed);
                }
                // A share per ring per round, so one busy sender does not
                // hold the others back.
                let share = (max - taken).min(ROUND_SHARE);
                let mut forked = false;
                taken += ring.pop_many(share, |event| {
                    self.deliver(event);
                    // A callback forked, and this is the child: its rings
                    // were emptied, take nothing more from them.
                    forked = FORKS.load(StdOrdering::Relaxed) != forks;
                    forked
                });
                if forked || taken >= max {
                    return;
                }
            }
            if taken == before {
                return;
            }
        });
        taken
    }

    fn deliver(&self, event: Taken<'_>) {
        // One consumer at a time writes the counters: no read-modify-write.
        let count =
            |c: &StdAtomicU64| c.store(c.load(StdOrdering::Relaxed) + 1, StdOrdering::Relaxed);
        if event.superseded {
            count(&self.coalesced);
            return;
        }
        let reg = RegistryHandle { handle: event.reg };
        let args: &[Value] = event.args;
        // SAFETY: the values were well formed when posted and point into
        // the arena, which holds their copies until `pop` returns.
        let status = unsafe {
            crate::ffi::cbreg_invoke(
                reg,
                event.id,
                args.as_ptr(),
                args.len(),
                std::ptr::null_mut(),
            )
        };
        match status {
            Status::NotFound => {
                let mut closed = false;
                // SAFETY: a valid out-pointer.
                let _ = unsafe { crate::ffi::cbreg_registry_is_closed(reg, &mut closed) };
                count(if closed { &self.closed } else { &self.stale })
            }
            Status::InvalidRegistry | Status::InvalidArgument => count(&self.stale),
            _ => count(&self.delivered),
        };
    }
}
