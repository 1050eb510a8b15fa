//! Passes through an interpreter's gate, held while a thread is inside:
//! guards that count in on the gate (`gate.rs` has the counting and its
//! pairing with the exit hook) and count out on drop, also when CPython
//! ends the thread with a forced unwind. A thread that must attach to an
//! interpreter (a native thread, or one of another interpreter) holds a
//! `GatePass`; a kept-state thread, on its fast way in, a `KeptPass` on
//! its own counter. Also the exit hook's drain, which waits for the
//! passes to be given back, which gates this thread holds passes of
//! (recounted in a forked child), and whether it is running an exit hook.

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::interp::{interps, Interp};
use super::kept::{kept_inside, KeptRecord};

thread_local! {
    /// This thread is running an exit hook (its own releases may pass).
    pub(super) static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    /// The gates this thread holds passes of, innermost last (for fork).
    static HELD: [Cell<*const Interp>; HELD_TRACKED] =
        const { [const { Cell::new(std::ptr::null()) }; HELD_TRACKED] };
    static HELD_DEPTH: Cell<usize> = const { Cell::new(0) };
}
const HELD_TRACKED: usize = 16;

/// In a forked child, whose one thread is the forking thread: each gate's
/// shared counter counts the passes that thread holds, nothing else.
pub(super) fn recount_after_fork_in_child() {
    let depth = HELD_DEPTH.with(Cell::get).min(HELD_TRACKED);
    for interp in interps() {
        let held = HELD.with(|h| {
            h[..depth]
                .iter()
                .filter(|c| std::ptr::eq(c.get(), interp))
                .count()
        });
        interp.gate.set_inside(held);
    }
}

/// A pass through one interpreter's gate, taken before attaching to it;
/// leaving on drop (also when CPython ends the thread with a forced unwind).
pub(super) struct GatePass(&'static Interp);

impl GatePass {
    /// Counts in on the gate's shared counter (`Gate::count_in`); an exit
    /// hook running on this thread lets its own calls through.
    pub(super) fn enter(interp: &'static Interp, for_release: bool) -> Option<GatePass> {
        if !interp
            .gate
            .count_in(for_release, || IN_HOOK.with(Cell::get))
        {
            return None;
        }
        let depth = HELD_DEPTH.with(Cell::get);
        if depth < HELD_TRACKED {
            HELD.with(|h| h[depth].set(interp));
        }
        HELD_DEPTH.with(|d| d.set(depth + 1));
        Some(GatePass(interp))
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        HELD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        self.0.gate.count_out();
    }
}

/// A pass through the main interpreter's gate on a kept-state thread's own
/// counter; leaving on drop (also on a forced unwind).
pub(super) struct KeptPass(&'static KeptRecord);

impl KeptPass {
    /// Counts in on this thread's own `record` (`OwnCount::count_in`).
    #[inline(always)]
    pub(super) fn enter(
        record: &'static KeptRecord,
        interp: &Interp,
        for_release: bool,
    ) -> Option<KeptPass> {
        record
            .inside
            .count_in(&interp.gate, for_release)
            .then_some(KeptPass(record))
    }
}

impl Drop for KeptPass {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.inside.count_out();
    }
}

/// Waits (GIL released by the caller) until no thread is inside any of
/// `gates`, or until `deadline`.
pub(super) fn drain(gates: &[&'static Interp], deadline: Option<Instant>) {
    let main = gates.iter().any(|g| g.main.load(Relaxed));
    let idle = || gates.iter().all(|g| g.gate.inside() == 0) && (!main || kept_inside() == 0);
    while !idle() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
