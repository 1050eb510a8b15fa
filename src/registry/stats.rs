//! A registry's counters and the `Stats` snapshot built from them.
//!
//! Every counter only grows (`pending` is a gauge that the same paths move
//! up and down), so a snapshot never goes backwards and never wraps.
//! Invocations are counted per thread, in the thread's record under the
//! registry's table index (no shared write on invoke); a thread without a
//! record counts in a shared atomic.

use crate::hazard;
use crate::sync::{AtomicU64, Ordering};

/// Counters reported by `stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries registered and not yet unregistered (a one-shot stops being
    /// live when its call starts).
    pub live: u64,
    /// Entries ever registered.
    pub registered: u64,
    /// Callbacks started.
    pub invoked: u64,
    /// Entries whose release step finished (release ran, or there was none).
    pub released: u64,
    /// Releases that had to wait: a barrier found an invocation in flight,
    /// or the entry was retired on a real-time thread. (A release left for
    /// a batch counts only if its batch finds it in flight.)
    pub deferred: u64,
    /// Retired entries still waiting for their release (in a batch, or for
    /// invocations in flight).
    pub pending: u64,
    /// Releases deliberately skipped because their runtime was finalizing.
    pub leaked: u64,
}

pub(crate) struct Counters {
    /// The per-thread total for this table index when this registry
    /// started (an earlier registry at the index counted the rest).
    invoked_base: AtomicU64,
    shared_invoked: AtomicU64,
    pub(crate) registered: AtomicU64,
    /// Entries unregistered (by anyone, one-shots at their call).
    pub(crate) retired: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) leaked: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) pending: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            invoked_base: AtomicU64::new(0),
            shared_invoked: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            released: AtomicU64::new(0),
            leaked: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// Counts one invocation on this thread of the registry at table index
    /// `index`.
    #[inline(always)]
    pub(crate) fn count_invoke(&self, index: usize, record: Option<&hazard::ThreadRecord>) {
        match record {
            Some(r) => hazard::ThreadRecord::bump(r.invoked(index)),
            None => self.count_shared(),
        }
    }

    #[cold]
    fn count_shared(&self) {
        self.shared_invoked.fetch_add(1, Ordering::Relaxed);
    }

    /// Entries whose release step is done (released or leaked).
    pub(crate) fn finished(&self) -> u64 {
        self.released.load(Ordering::SeqCst) + self.leaked.load(Ordering::SeqCst)
    }

    pub(crate) fn snapshot(&self, index: usize) -> Stats {
        let per_thread =
            hazard::invoked_total(index).saturating_sub(self.invoked_base.load(Ordering::Relaxed));
        let registered = self.registered.load(Ordering::Relaxed);
        let released = self.released.load(Ordering::Relaxed);
        let leaked = self.leaked.load(Ordering::Relaxed);
        let retired = self.retired.load(Ordering::Relaxed);
        // The gauge keeps an entry whose release a waiter ran itself
        // (`unregister_wait`) until the next collection takes it off the
        // pending list; no entry is pending once its release step is done.
        let unfinished = retired.saturating_sub(released + leaked);
        Stats {
            live: registered.saturating_sub(retired),
            registered,
            invoked: per_thread + self.shared_invoked.load(Ordering::Relaxed),
            released,
            deferred: self.deferred.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed).min(unfinished),
            leaked,
        }
    }

    /// Starts the counters of a new registry at table index `index`.
    pub(crate) fn reset(&self, index: usize) {
        for c in [
            &self.shared_invoked,
            &self.registered,
            &self.retired,
            &self.released,
            &self.leaked,
            &self.deferred,
            &self.pending,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.invoked_base
            .store(hazard::invoked_total(index), Ordering::Relaxed);
    }
}
