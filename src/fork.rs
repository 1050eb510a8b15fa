//! Fork: the process's one `pthread_atfork` registration, and the order in
//! which a forked child puts cbreg's state back together.
//!
//! In a forked child only the forking thread exists. Whatever the others
//! were doing (invoking at any depth, collecting, holding a retired entry,
//! running a release, making the first registry) must leave nothing the
//! child waits for. The child handler runs these steps, in this order:
//!
//! 1. `Barrier`: the asymmetric barrier is registered again (a child is a
//!    new memory map; `sync::barrier`). First, because every later step
//!    may run a heavy barrier.
//! 2. `ThreadRecords`: every other thread's record goes back to the pool
//!    (`hazard/exit.rs`), so no dead thread's hazard blocks a release.
//! 3. `Reclaimer`: the reclaimer thread is forgotten, its flag left raised
//!    (`registry/reclaimer.rs`); the next need starts a new one.
//! 4. `Registries`: each registry's pins, slot counters, collector word and
//!    pending list are set to what the forking thread holds
//!    (`registry/fork.rs`). After the records, so that the rebuilt pending
//!    lists meet no dead hazard.
//! 5. `Post`: every ring of another thread is free again, what was pending
//!    is dropped (the parent delivers it), each target gets a new wake and
//!    the dispatcher starts again when needed (`post/target.rs`). After the
//!    registries, on which delivery runs.
//! 6. `Rendezvous`: the slot for the forwarding rendezvous's own step
//!    (`rendezvous::after_fork_in_child`, once it has one).
//! 7. Then the hooks adapters add (`add_child_hook`), in the order added:
//!    an adapter's state sits on top of the core's.
//!
//! Before the fork the adapters' prepare hooks run (last added first, as
//! `pthread_atfork` orders prepare handlers); after it, in the parent, their
//! parent hooks (first added first).
//!
//! Each core module sets its own step when it first starts, so this module
//! depends on none of them: the order lives here, the work beside the state
//! it resets. The lists are fixed arrays of function addresses, written
//! with one atomic store each and read by the handlers without allocating
//! or locking.
//!
//! The registration happens once, before any state a child would need to
//! reset exists (the barrier's first step sets it). A fork can land while
//! another thread is registering: a later caller in the child finds the
//! registration owned by a process that is not its own and makes it again.

// Fork exists on Unix alone, and neither loom nor Miri models it:
// elsewhere the lists are filled and never run.
#![cfg_attr(any(loom, miri, not(unix)), allow(dead_code))]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The core's child steps, in the order they run.
#[derive(Clone, Copy)]
pub(crate) enum ChildStep {
    Barrier,
    ThreadRecords,
    Reclaimer,
    Registries,
    Post,
    /// Kept for `rendezvous::after_fork_in_child`.
    #[allow(dead_code)]
    Rendezvous,
}

const STEPS: usize = 6;

/// Hooks each adapter list can hold.
pub(crate) const MAX_HOOKS: usize = 8;

/// A list of functions, filled by appending: a count, then the slots.
struct Hooks {
    len: AtomicUsize,
    fns: [AtomicUsize; MAX_HOOKS],
}

impl Hooks {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: AtomicUsize = AtomicUsize::new(0);
        Hooks {
            len: AtomicUsize::new(0),
            fns: [EMPTY; MAX_HOOKS],
        }
    }

    /// Appends `hook`; false when the list is full.
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    fn add(&self, hook: fn()) -> bool {
        let at = self.len.fetch_add(1, Ordering::AcqRel);
        if at >= MAX_HOOKS {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.fns[at].store(hook as usize, Ordering::Release);
        true
    }

    /// The hooks in the order added (a slot whose store has not landed yet
    /// is skipped).
    fn each(&self) -> impl DoubleEndedIterator<Item = fn()> + '_ {
        let len = self.len.load(Ordering::Acquire).min(MAX_HOOKS);
        self.fns[..len]
            .iter()
            .filter_map(|f| as_fn(f.load(Ordering::Acquire)))
    }
}

/// The function at `addr`, which `Hooks::add` or `set_child_step` stored
/// from a `fn()` (0: none).
fn as_fn(addr: usize) -> Option<fn()> {
    (addr != 0).then(|| {
        // SAFETY: nonzero values in these lists are `fn()` addresses stored
        // by `Hooks::add` or `set_child_step`, which live for the process.
        unsafe { std::mem::transmute::<usize, fn()>(addr) }
    })
}

static STEP_FNS: [AtomicUsize; STEPS] = {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: AtomicUsize = AtomicUsize::new(0);
    [EMPTY; STEPS]
};
static PREPARE_HOOKS: Hooks = Hooks::new();
static PARENT_HOOKS: Hooks = Hooks::new();
static CHILD_HOOKS: Hooks = Hooks::new();

/// Sets the function that runs as `step` in a forked child (a module sets
/// its own, once; setting it again replaces it), and makes sure the
/// handlers are registered.
pub(crate) fn set_child_step(step: ChildStep, run: fn()) {
    install();
    STEP_FNS[step as usize].store(run as usize, Ordering::Release);
}

/// Adds `hook` to run in every forked child after the core's steps (in the
/// order added). False when `MAX_HOOKS` are there already.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn add_child_hook(hook: fn()) -> bool {
    install();
    CHILD_HOOKS.add(hook)
}

/// Adds `hook` to run before every fork, in the forking thread (the last
/// added first). False when `MAX_HOOKS` are there already.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn add_prepare_hook(hook: fn()) -> bool {
    install();
    PREPARE_HOOKS.add(hook)
}

/// Adds `hook` to run in the parent after every fork (in the order added).
/// False when `MAX_HOOKS` are there already.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn add_parent_hook(hook: fn()) -> bool {
    install();
    PARENT_HOOKS.add(hook)
}

/// `pid << 2 | phase`: whether the handlers are registered, and while a
/// thread registers them, which process it belongs to.
static STATE: AtomicU64 = AtomicU64::new(0);
const INSTALLING: u64 = 1;
const INSTALLED: u64 = 2;

/// Registers the handlers, once per process image; returns once they are
/// registered. A caller that finds another thread of its own process
/// registering waits for it; one that finds a registration begun in the
/// parent of this (forked) process, by a thread it does not have, takes it
/// over. The pid in the word makes each take-over a distinct CAS.
fn install() {
    #[cfg(all(unix, not(loom), not(miri)))]
    loop {
        let me = u64::from(std::process::id()) << 2;
        let seen = STATE.load(Ordering::Acquire);
        if seen & INSTALLED != 0 {
            return;
        }
        if seen == me | INSTALLING {
            std::hint::spin_loop();
            continue;
        }
        if STATE
            .compare_exchange(seen, me | INSTALLING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        // SAFETY: registers three `extern "C"` functions that live for the
        // process; no other precondition.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
        // Without memory for the handlers a child would run unordered (its
        // barrier unregistered): stop here instead.
        if rc != 0 {
            std::process::abort();
        }
        STATE.store(me | INSTALLED, Ordering::Release);
        return;
    }
}

#[cfg(all(unix, not(loom), not(miri)))]
extern "C" fn prepare() {
    PREPARE_HOOKS.each().rev().for_each(|hook| hook());
}

#[cfg(all(unix, not(loom), not(miri)))]
extern "C" fn in_parent() {
    PARENT_HOOKS.each().for_each(|hook| hook());
}

/// The child handler: the core's steps in `ChildStep` order, then the
/// adapters' hooks.
#[cfg(all(unix, not(loom), not(miri)))]
extern "C" fn in_child() {
    STEP_FNS
        .iter()
        .filter_map(|f| as_fn(f.load(Ordering::Acquire)))
        .for_each(|step| step());
    CHILD_HOOKS.each().for_each(|hook| hook());
}
