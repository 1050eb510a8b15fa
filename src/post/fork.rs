//! Fork: the child has only the forking thread. Every ring of another
//! thread is free again, every pending event is dropped and counted (the
//! parent delivers it; delivering it in the child too would run it twice),
//! each target gets a new wake descriptor, and the dispatcher starts again
//! when next needed.

use std::sync::atomic::AtomicU64 as StdAtomicU64;

use super::target::{for_each, Target};
use crate::sync::Ordering;

/// Forks this process has been through (in the child): a drain that was
/// running in the forking thread stops taking from rings that were reset.
pub(super) static FORKS: StdAtomicU64 = StdAtomicU64::new(0);

/// Sets the fork child's `Post` step (`crate::fork`, which runs it after
/// the registries'), before the first target exists.
pub(super) fn after_fork_handler() {
    crate::fork::set_child_step(crate::fork::ChildStep::Post, after_fork_in_child);
}

/// The child of a fork: only the forking thread exists. Every ring of
/// another thread is free again, every event pending is dropped (the parent
/// delivers it; delivering it here too would run it twice) and counted,
/// each target gets a new wake descriptor, and the dispatcher starts again
/// when next needed.
fn after_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let me = crate::hazard::token();
    for_each(|t| t.after_fork_in_child(me));
    super::dispatcher::after_fork_in_child();
}

impl Target {
    #[cfg_attr(any(loom, not(unix)), allow(dead_code))]
    fn after_fork_in_child(&self, me: u32) {
        let mut dropped = 0;
        for ring in self.made_rings() {
            if ring.owner.load(Ordering::Relaxed) != me {
                ring.owner.store(0, Ordering::Relaxed);
                ring.tid.store(0, Ordering::Relaxed);
            } else {
                ring.tid
                    .store(crate::hazard::current_tid(), Ordering::Relaxed);
            }
            ring.busy.store(0, Ordering::Relaxed);
            // The child decides its barriers again: nothing is kept.
            // SAFETY: the only thread left is this one, in a handler.
            unsafe { ring.kept.forget() };
            dropped += ring.discard_all();
        }
        self.forked
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        self.drainer.store(0, Ordering::Relaxed);
        self.draining.store(false, Ordering::Release);
        self.wake.after_fork_in_child();
    }
}
