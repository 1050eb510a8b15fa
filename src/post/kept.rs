//! The entry a sender kept (`Ring::kept`): the registry handle, id, slot,
//! state and tag of the entry the ring's owner last posted one scalar to,
//! so that its next post to that entry checks it with one load of the
//! slot's state (`push.rs`, docs/post.md section 2). And `NO_RING`, what
//! the thread-local word of a thread with no ring points at: a kept entry
//! that matches no post, where a ring's would be.

/// What `Ring::kept` holds.
#[derive(Clone, Copy)]
pub(crate) struct KeptEntry {
    pub(crate) reg: u64,
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) state: u64,
    /// The tag, widened: `NO_TAG` while nothing is kept, which no 32-bit
    /// tag widens to, so no post matches it (whatever its other words).
    pub(crate) tag: u64,
}

const NO_TAG: u64 = u64::MAX;

/// Plain memory, not atomics: only the ring's owner reads and writes it
/// (and a new owner, or a forked child, forgets it while no post of the
/// old one can run), and plain fields let each comparison read memory
/// directly.
#[repr(transparent)]
pub(crate) struct Kept(std::cell::UnsafeCell<KeptEntry>);

/// What a thread with no ring has for one (`tls_word::post_word`'s first
/// value): a kept entry that no post matches, at the address a ring's
/// `kept` would be. Never written.
// Read only through the word, as a ring's `kept` is.
#[allow(dead_code)]
pub(crate) struct NoRing(Kept);

// SAFETY: never written (`kept` is written only through a claimed ring).
unsafe impl Sync for NoRing {}

pub(crate) static NO_RING: NoRing = NoRing(Kept::new());

/// The word of a thread with no ring.
#[inline(always)]
pub(crate) fn no_ring_word() -> usize {
    &NO_RING as *const NoRing as usize
}

impl Kept {
    pub(crate) const fn new() -> Kept {
        Kept(std::cell::UnsafeCell::new(KeptEntry {
            reg: 0,
            id: 0,
            slot: 0,
            state: 0,
            tag: NO_TAG,
        }))
    }

    /// # Safety
    /// Called by the ring's owner.
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> &KeptEntry {
        // SAFETY: the caller's promise: no one writes it meanwhile.
        unsafe { &*self.0.get() }
    }

    /// # Safety
    /// Called by the ring's owner.
    pub(crate) unsafe fn set(&self, entry: KeptEntry) {
        // SAFETY: the caller's promise: no one reads it meanwhile.
        unsafe { *self.0.get() = entry }
    }

    /// # Safety
    /// No post of the owner runs on the ring (a new owner took it over, or
    /// this is a forked child).
    pub(crate) unsafe fn forget(&self) {
        // SAFETY: the caller's promise.
        unsafe { (*self.0.get()).tag = NO_TAG }
    }
}
