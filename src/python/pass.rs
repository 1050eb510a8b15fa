//! Passes through an interpreter's gate: a thread that must attach to an
//! interpreter (a native thread, or one of another interpreter) holds a pass
//! while it is inside, and the exit hook shuts the gate and drains the
//! threads still holding one. Two kinds: `GatePass` counts on the gate's
//! shared counter; `KeptPass`, a kept-state thread's fast way in, counts on
//! the thread's own counter, paired with the exit hook's heavy barrier.
//! Also which gates this thread holds passes of (recounted in a forked
//! child) and whether it is running an exit hook.

use std::cell::Cell;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use super::interp::Interp;
use super::kept::{kept_inside, KeptRecord};

pub(super) const GATE_OPEN: u8 = 0;
/// The exit hook is draining: no new calls, releases still allowed.
pub(super) const GATE_DRAINING: u8 = 1;
pub(super) const GATE_CLOSED: u8 = 2;

thread_local! {
    /// This thread is running an exit hook (its own releases may pass).
    pub(super) static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    /// The gates this thread holds passes of, innermost last (for fork).
    pub(super) static HELD: [Cell<*const Interp>; HELD_TRACKED] =
        const { [const { Cell::new(std::ptr::null()) }; HELD_TRACKED] };
    pub(super) static HELD_DEPTH: Cell<usize> = const { Cell::new(0) };
}
pub(super) const HELD_TRACKED: usize = 16;

/// A pass through one interpreter's gate, taken before attaching to it;
/// leaving on drop (also when CPython ends the thread with a forced unwind).
pub(super) struct GatePass(&'static Interp);

impl GatePass {
    /// Counts in first, then looks at the state (SeqCst both): the hook
    /// either sees us counted or we see its new state.
    pub(super) fn enter(interp: &'static Interp, for_release: bool) -> Option<GatePass> {
        interp.inside.fetch_add(1, SeqCst);
        let state = interp.gate.load(SeqCst);
        if state == GATE_OPEN || (state == GATE_DRAINING && for_release) || IN_HOOK.with(Cell::get)
        {
            let depth = HELD_DEPTH.with(Cell::get);
            if depth < HELD_TRACKED {
                HELD.with(|h| h[depth].set(interp));
            }
            HELD_DEPTH.with(|d| d.set(depth + 1));
            Some(GatePass(interp))
        } else {
            interp.inside.fetch_sub(1, SeqCst);
            None
        }
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        HELD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        // Saturating: a forked child recounts what this thread holds.
        let _ = self
            .0
            .inside
            .fetch_update(SeqCst, SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// A pass through the main interpreter's gate on a kept-state thread's own
/// counter; leaving on drop (also on a forced unwind).
pub(super) struct KeptPass(&'static KeptRecord);

impl KeptPass {
    /// Counts in on this thread's own `record`, then looks at the gate.
    #[inline(always)]
    pub(super) fn enter(record: &'static KeptRecord, interp: &Interp, for_release: bool) -> Option<KeptPass> {
        let count = &record.inside;
        count.store(count.load(Relaxed) + 1, Relaxed);
        let pass = KeptPass(record);
        crate::sync::barrier::light();
        let state = interp.gate.load(SeqCst);
        // Otherwise dropped: counted out.
        (state == GATE_OPEN || (state == GATE_DRAINING && for_release)).then_some(pass)
    }
}

impl Drop for KeptPass {
    fn drop(&mut self) {
        let count = &self.0.inside;
        count.store(count.load(Relaxed).saturating_sub(1), Release);
    }
}

/// Waits (GIL released by the caller) until no thread is inside any of
/// `gates`, or until `deadline`.
pub(super) fn drain(gates: &[&'static Interp], deadline: Option<Instant>) {
    let main = gates.iter().any(|g| g.main.load(Relaxed));
    let idle = || gates.iter().all(|g| g.inside.load(SeqCst) == 0) && (!main || kept_inside() == 0);
    while !idle() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
