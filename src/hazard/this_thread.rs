//! What a thread keeps for itself alone, in thread-locals no other thread
//! reads: whether it is real-time, its token, the frames on its stack
//! (invocations without a hazard cell, collections in progress) and the
//! registries it has pinned. It needs them to refuse a wait on itself and
//! to know where it may run a release.

use super::pool::{has_record, record};
use crate::sync::thread_cell;
use std::cell::Cell;

// Per-thread state the owner alone reads and writes: separate cells, so the
// invoke path touches only the words it needs.
thread_cell! { static REALTIME: bool = false; }
thread_cell! { static NEVER_REALTIME: bool = false; }
thread_cell! { static TOKEN: u32 = 0; }
// Innermost `Frame` of this thread (its address; 0 = none).
thread_cell! { static FRAMES: usize = 0; }
// Registries this thread holds pinned (core addresses; 0 = unused), and how
// many pins did not fit.
#[allow(clippy::declare_interior_mutable_const)]
const NO_PIN: Cell<usize> = Cell::new(0);
#[cfg(not(loom))]
std::thread_local! { static PINS: [Cell<usize>; PIN_SLOTS] = const { [NO_PIN; PIN_SLOTS] }; }
#[cfg(loom)]
loom::thread_local! { static PINS: [Cell<usize>; PIN_SLOTS] = [NO_PIN; PIN_SLOTS]; }
thread_cell! { static PINS_OVERFLOW: usize = 0; }
const PIN_SLOTS: usize = 8;

static NEXT_TOKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

#[inline(always)]
pub(crate) fn is_realtime() -> bool {
    REALTIME.with(|r| r.get())
}

/// Marks the thread real-time (or not), and claims its record now, so its
/// first invoke already takes the fast path. A thread that runs releases
/// for every thread (`never_realtime`) stays as it is. The caller starts
/// the reclaimer first (`registry::set_thread_realtime`).
pub(crate) fn set_realtime(on: bool) {
    if NEVER_REALTIME.with(|n| n.get()) {
        return;
    }
    REALTIME.with(|r| r.set(on));
    let _ = record();
}

/// Keeps this thread from ever being marked real-time: the reclaimer, on
/// which a release may ask for it.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn never_realtime() {
    REALTIME.with(|r| r.set(false));
    NEVER_REALTIME.with(|n| n.set(true));
}

/// A number naming this thread for as long as the process lives (never 0,
/// never reused).
pub(crate) fn token() -> u32 {
    TOKEN.with(|t| match t.get() {
        0 => {
            let fresh = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            t.set(fresh);
            fresh
        }
        v => v,
    })
}

// ---- what this thread is inside (its own view) ----

pub(crate) const FRAME_INVOKE: u8 = 1;
pub(crate) const FRAME_COLLECT: u8 = 2;

/// A marker on this thread's stack: an invocation that has no hazard cell,
/// or a collection in progress. Linked while `scope` runs.
pub(crate) struct Frame {
    kind: u8,
    addr: usize,
    prev: Cell<usize>,
}

impl Frame {
    pub(crate) fn new(kind: u8, addr: usize) -> Self {
        Frame {
            kind,
            addr,
            prev: Cell::new(0),
        }
    }

    /// Runs `f` with this frame linked as the innermost one. Unlinks it
    /// however `f` ends (a forced unwind included).
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Unlink(usize);
        impl Drop for Unlink {
            fn drop(&mut self) {
                FRAMES.with(|h| h.set(self.0));
            }
        }
        self.prev.set(FRAMES.with(|h| h.get()));
        FRAMES.with(|h| h.set(self as *const Frame as usize));
        let _unlink = Unlink(self.prev.get());
        f()
    }
}

/// Calls `f(kind, addr)` for every frame of this thread.
pub(crate) fn for_each_frame(mut f: impl FnMut(u8, usize)) {
    let mut at = FRAMES.with(|h| h.get());
    while at != 0 {
        // SAFETY: linked frames live on this thread's stack until unlinked.
        let frame = unsafe { &*(at as *const Frame) };
        f(frame.kind, frame.addr);
        at = frame.prev.get();
    }
}

/// Whether this thread is inside an invocation of the slot at `addr`, at
/// any depth, with or without a record.
pub(crate) fn inside_slot(addr: usize) -> bool {
    inside(|kind, a| kind == FRAME_INVOKE && a == addr)
}

/// Whether this thread is inside anything of the registry whose slots
/// `owns` recognises or whose core is at `core`: an invocation, a
/// collection or a pinned operation (so its release or callback is running).
pub(crate) fn inside_registry(core: usize, owns: impl Fn(usize) -> bool) -> bool {
    inside(|kind, a| {
        if kind == FRAME_INVOKE {
            owns(a)
        } else {
            a == core
        }
    }) || pinned_here(core)
        || PINS_OVERFLOW.with(|o| o.get()) > 0
}

fn inside(matches: impl Fn(u8, usize) -> bool) -> bool {
    let in_cell =
        has_record() && record().is_some_and(|r| r.published().any(|a| matches(FRAME_INVOKE, a)));
    let mut in_frame = false;
    for_each_frame(|kind, a| in_frame |= matches(kind, a));
    in_cell || in_frame
}

/// Whether this thread is inside anything of cbreg's: an invocation, a
/// collection, a release or a pinned operation, of any registry.
pub(crate) fn inside_anything() -> bool {
    inside(|_, _| true)
        || PINS.with(|p| p.iter().any(|c| c.get() != 0))
        || PINS_OVERFLOW.with(|o| o.get()) > 0
}

/// Notes a pin of the registry at `core` on this thread.
pub(crate) fn note_pin(core: usize) {
    PINS.with(|pins| match pins.iter().find(|c| c.get() == 0) {
        Some(free) => free.set(core),
        None => PINS_OVERFLOW.with(|o| o.set(o.get() + 1)),
    })
}

/// Forgets one pin of the registry at `core` on this thread.
pub(crate) fn note_unpin(core: usize) {
    PINS.with(|pins| match pins.iter().rev().find(|c| c.get() == core) {
        Some(slot) => slot.set(0),
        None => PINS_OVERFLOW.with(|o| o.set(o.get().saturating_sub(1))),
    })
}

fn pinned_here(core: usize) -> bool {
    PINS.with(|pins| pins.iter().any(|c| c.get() == core))
}

/// Pins this thread holds on the registry at `core` (for the fork child).
#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
pub(crate) fn my_pins(core: usize) -> usize {
    PINS.with(|pins| pins.iter().filter(|c| c.get() == core).count())
}
