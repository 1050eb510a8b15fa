//! An interpreter's gate and the counts of the threads inside it, in plain
//! Rust on `crate::sync`'s atomics: no CPython here, so the loom model in
//! `tests/loom.rs` checks this very code (`--cfg loom`, without the
//! `python` feature: `lib.rs` compiles this file alone then).
//!
//! The guarantee: once the exit hook has shut a gate (`shut_all`) and then
//! seen no thread counted inside, no thread is inside and none gets in
//! after, except a release while the hook is draining. Threads count
//! themselves in two ways:
//!
//! - on the gate's shared counter (`Gate::count_in`): a SeqCst increment,
//!   then a SeqCst load of the gate's state. The hook shuts with a SeqCst
//!   read-modify-write and then reads the counter: in the one SeqCst order
//!   either the thread's increment comes first and the hook sees it, or the
//!   hook's shut does and the thread sees it and counts out again. (Loom
//!   does not model that order: under `--cfg loom` a fence stands in.)
//! - on a counter its own thread alone writes (`OwnCount`, a kept-state
//!   thread's, on its own cache lines): a plain store, the light barrier
//!   (a compiler fence where the process has membarrier), then the load of
//!   the gate. The hook pays instead: after it shuts it runs the heavy
//!   barrier, which orders every running thread's earlier stores, and only
//!   then reads the counters. Either the hook sees the count or the thread
//!   sees the gate shut: the pairing `docs/protocol.md`, section 2, argues
//!   for hazards.

use crate::sync::barrier;
use crate::sync::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::{AtomicU32, AtomicUsize};

/// The gate lets every thread in.
pub const OPEN: u32 = 0;
/// The exit hook is draining: no new calls, releases still allowed.
pub const DRAINING: u32 = 1;
/// Shut for good.
pub const CLOSED: u32 = 2;

/// One interpreter's gate: its state, and the passes held on its shared
/// counter.
pub struct Gate {
    state: AtomicU32,
    inside: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// An open gate with no one inside.
    pub fn new() -> Gate {
        Gate {
            state: AtomicU32::new(OPEN),
            inside: AtomicUsize::new(0),
        }
    }

    /// Counts in, then looks at the state: true when let in (open; draining
    /// and `for_release`; or `in_hook()`, asked only when the state says
    /// no). Counted out again when not.
    #[inline]
    pub fn count_in(&self, for_release: bool, in_hook: impl FnOnce() -> bool) -> bool {
        self.inside.fetch_add(1, SeqCst);
        // Loom models SeqCst accesses as AcqRel, without the one order
        // this pairing relies on; a SeqCst fence, which it does model,
        // stands in for that order in the model alone.
        #[cfg(loom)]
        crate::sync::fence(SeqCst);
        let state = self.state.load(SeqCst);
        if state == OPEN || (state == DRAINING && for_release) || in_hook() {
            return true;
        }
        self.inside.fetch_sub(1, SeqCst);
        false
    }

    /// Counts out a thread that `count_in` let in (saturating: a forked
    /// child recounts what its one thread holds, see `set_inside`).
    #[inline]
    pub fn count_out(&self) {
        let _ = self
            .inside
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }

    /// Passes held on the shared counter.
    pub fn inside(&self) -> usize {
        self.inside.load(SeqCst)
    }

    /// Sets the shared counter (a forked child, whose one thread holds
    /// `n` passes).
    pub fn set_inside(&self, n: usize) {
        self.inside.store(n, SeqCst);
    }

    /// The gate's state: `OPEN`, `DRAINING` or `CLOSED`.
    #[inline]
    pub fn state(&self) -> u32 {
        self.state.load(SeqCst)
    }

    /// Whether the gate is open.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.state() == OPEN
    }

    /// Opens the gate again (its record serves a new interpreter).
    pub fn reopen(&self) {
        self.state.store(OPEN, SeqCst);
    }

    /// Shuts the gate to `level` (`DRAINING` or `CLOSED`; never back).
    /// Threads counting on an `OwnCount` see it only once `shut_all`'s
    /// heavy barrier has run.
    pub fn shut(&self, level: u32) {
        self.state.fetch_max(level, SeqCst);
    }
}

/// The exit hook's side: shuts every gate of `gates` to `level`, then runs
/// the heavy barrier that pairs with `OwnCount::count_in`. Counters read
/// after it show every thread that got in.
pub fn shut_all<'a>(gates: impl IntoIterator<Item = &'a Gate>, level: u32) {
    for gate in gates {
        gate.shut(level);
    }
    barrier::heavy();
}

/// Passes one thread holds through a gate, counted on a counter only that
/// thread writes (the exit hook and a forked child read it).
pub struct OwnCount {
    inside: AtomicUsize,
}

impl Default for OwnCount {
    fn default() -> Self {
        OwnCount::new()
    }
}

impl OwnCount {
    /// No passes held.
    pub fn new() -> OwnCount {
        OwnCount {
            inside: AtomicUsize::new(0),
        }
    }

    /// Counts in on this thread's own counter, then looks at `gate`: true
    /// when let in (open, or draining and `for_release`). Counted out again
    /// when not. Only the counter's own thread calls it.
    #[inline(always)]
    pub fn count_in(&self, gate: &Gate, for_release: bool) -> bool {
        self.inside.store(self.inside.load(Relaxed) + 1, Relaxed);
        barrier::light();
        let state = gate.state.load(SeqCst);
        if state == OPEN || (state == DRAINING && for_release) {
            return true;
        }
        self.count_out();
        false
    }

    /// Counts out (saturating, as `Gate::count_out`). Only the counter's
    /// own thread calls it.
    #[inline(always)]
    pub fn count_out(&self) {
        self.inside
            .store(self.inside.load(Relaxed).saturating_sub(1), Release);
    }

    /// Passes held, read by the counter's own thread.
    #[inline(always)]
    pub fn held(&self) -> usize {
        self.inside.load(Relaxed)
    }

    /// Passes held, read by another thread (the exit hook, after
    /// `shut_all`).
    pub fn seen(&self) -> usize {
        self.inside.load(Acquire)
    }

    /// None held any more (a forked child: the thread is gone).
    pub fn reset(&self) {
        self.inside.store(0, SeqCst);
    }
}
