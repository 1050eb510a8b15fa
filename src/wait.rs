//! The one way cbreg waits for other threads (`unregister_wait`, registry
//! `free`), and how a waiter lets go of what they may need meanwhile.
//!
//! `until` runs a step function until it says done or deadlock, backing off
//! between rounds, with this thread marked as waiting (so other waiters can
//! see a cycle). The only resource let go today is a foreign runtime's global lock: a
//! thread holding Python's GIL that waits for a Python callback running on
//! another thread would wait for ever. The Python adapter installs a hook
//! pair here; every waiting loop in the core calls `before` once when it
//! starts to wait and `after` when it is done.

use std::ffi::c_void;
use std::sync::OnceLock;

use crate::hazard;
use crate::Status;

/// Called around a wait: `before` returns a token that `after` receives.
/// C functions, because the copy of cbreg that waits may not be the copy
/// that installed the hook (`rendezvous.rs`).
#[derive(Clone, Copy)]
pub(crate) struct BlockingHook {
    pub before: unsafe extern "C" fn() -> *mut c_void,
    pub after: unsafe extern "C" fn(*mut c_void),
}

static HOOK: OnceLock<BlockingHook> = OnceLock::new();

/// Installs this copy's blocking hook (the first one installed wins);
/// false if another was installed first. Adapters go through
/// `rendezvous::set_blocking_hook`, which reaches the owning copy.
pub(crate) fn set_blocking_hook(hook: BlockingHook) -> bool {
    HOOK.set(hook).is_ok()
}

/// What one round of a wait found.
pub(crate) enum Step {
    Done,
    Deadlock,
    Again,
}

/// Runs `step` until it returns `Done` (`Ok`) or `Deadlock`
/// (`WouldDeadlock`). `waiting_for` is the slot address this thread waits
/// on (0 for none), published for cycle detection while it waits.
pub(crate) fn until(waiting_for: usize, mut step: impl FnMut() -> Step) -> Status {
    match step() {
        Step::Done => return Status::Ok,
        Step::Deadlock => return Status::WouldDeadlock,
        Step::Again => {}
    }
    struct NotWaiting;
    impl Drop for NotWaiting {
        fn drop(&mut self) {
            hazard::set_waiting_for(0);
        }
    }
    blocking(|| {
        hazard::set_waiting_for(waiting_for);
        let _done = NotWaiting;
        let mut round = 0;
        loop {
            crate::sync::backoff(round);
            round = round.saturating_add(1);
            match step() {
                Step::Done => return Status::Ok,
                Step::Deadlock => return Status::WouldDeadlock,
                Step::Again => {}
            }
        }
    })
}

/// Runs `wait` between the hook's `before` and `after`.
pub(crate) fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    struct After(Option<(BlockingHook, *mut c_void)>);
    impl Drop for After {
        fn drop(&mut self) {
            if let Some((hook, token)) = self.0.take() {
                // SAFETY: pairs with the `before` call below, on this thread.
                unsafe { (hook.after)(token) };
            }
        }
    }
    // SAFETY: the hook's contract: callable on any thread, any time.
    let _after = After(HOOK.get().map(|h| (*h, unsafe { (h.before)() })));
    wait()
}
