//! How a cbreg call that must wait for other threads lets go of what they
//! may need while it waits.
//!
//! The only such resource today is a foreign runtime's global lock: a
//! thread holding Python's GIL that waits for a Python callback running on
//! another thread would wait for ever. The Python adapter installs a hook
//! pair here; every waiting loop in the core calls `before` once when it
//! starts to wait and `after` when it is done.

use std::ffi::c_void;
use std::sync::OnceLock;

/// Called around a wait: `before` returns a token that `after` receives.
#[derive(Clone, Copy)]
pub(crate) struct BlockingHook {
    pub before: unsafe fn() -> *mut c_void,
    pub after: unsafe fn(*mut c_void),
}

static HOOK: OnceLock<BlockingHook> = OnceLock::new();

/// Installs the process's blocking hook (the first one installed wins).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn set_blocking_hook(hook: BlockingHook) {
    let _ = HOOK.set(hook);
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
