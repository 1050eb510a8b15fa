//! Holding an entry across many calls: a signal's emit holds its
//! subscriber list, which is the `ctx` of an entry of its own, for the
//! whole emit, and invokes each subscriber through its call site meanwhile.
//!
//! Holding is an invocation without the call: the slot is published in the
//! thread's next free hazard cell (or, with none, on the slot's counter in
//! a frame), then the state is checked, as in `Core::invoke_general`. So a
//! writer that retires the held entry defers its release until the holder
//! lets go, by the same pairing (`docs/protocol.md`, section 2), and the
//! last holder out drains.
//!
//! The subscribers are invoked one cell deeper (`Held::invoke_each`), each
//! with the call site's rules: publish the slot, barrier, the state alone
//! names the entry and says it is live, call. The cell is not cleared
//! between two subscribers: publishing the next one replaces the last, and
//! the last one's "retired during the call?" check (prompt release) is made
//! after that store and the next barrier, which is the order the check
//! needs. What this short path does not serve (a one-shot, no cell left,
//! no record) goes through `invoke_site`, which serves everything.

use std::ffi::c_void;

use super::invoke::invoke_site;
use super::slots::{key, Slot, LIVE};
use super::Core;
use crate::hazard::{self, Frame, ThreadRecord, CELLS, FRAME_INVOKE};
use crate::sync::{barrier, Ordering};
use crate::value::Value;
use crate::Status;

type RawCall = unsafe extern "C-unwind" fn(*mut c_void, *const Value, usize, *mut Value) -> u32;

/// A live entry published by this thread for the duration of a closure
/// (`Core::hold`).
pub(crate) struct Held<'a> {
    slot: &'a Slot,
    /// The record and the cell holding the slot; `None` when the slot's
    /// counter holds it.
    cell: Option<(&'static ThreadRecord, usize)>,
}

/// Retracts what `hold` published, however the closure ends.
struct Unhold<'a> {
    core: &'a Core,
    slot: &'a Slot,
    cell: Option<(&'static ThreadRecord, usize)>,
}

impl Drop for Unhold<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        match self.cell {
            Some((record, depth)) => record.leave(depth),
            None => {
                self.slot.inflight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // A writer that saw this hold deferred the release to us: drain.
        barrier::light();
        drain_if_retired(self.slot);
        let _ = self.core;
    }
}

/// After this thread stopped showing `slot` (and a barrier): if the entry
/// was retired meanwhile, its release may have been left to us.
#[inline(always)]
fn drain_if_retired(slot: &Slot) {
    if slot.state.load(Ordering::Relaxed) & LIVE == 0 {
        drain(slot.state.load(Ordering::Relaxed));
    }
}

#[cold]
#[inline(never)]
fn drain(state: u64) {
    // The state names the registry whose entry the slot holds now: ours,
    // or (once ours was finished) a later one, where a collect is harmless.
    if let Some(core) = super::table::core_of_state(state) {
        core.after_retired_invoke();
    }
}

impl Core {
    /// Runs `f` with entry `id` held: its `ctx` stays valid (its release
    /// cannot run) until `f` returns. `None`, without running `f`, unless
    /// the entry is live and persistent after it was published.
    #[inline(always)]
    pub(crate) fn hold<R>(&self, id: u64, f: impl FnOnce(&Held<'_>) -> R) -> Option<R> {
        let slot = self.segments.slot_of_id(id)?;
        let live = key(id) | LIVE;
        if let Some(record) = hazard::record() {
            if let Some(depth) = record.free_cell() {
                record.enter(depth, slot.addr());
                return self.hold_published(slot, live, Some((record, depth)), f);
            }
        }
        self.hold_counted(slot, live, f)
    }

    /// `hold` without a cell (no record, or nested past the cells).
    #[cold]
    #[inline(never)]
    fn hold_counted<R>(&self, slot: &Slot, live: u64, f: impl FnOnce(&Held<'_>) -> R) -> Option<R> {
        Frame::new(FRAME_INVOKE, slot.addr()).scope(|| {
            slot.inflight.fetch_add(1, Ordering::SeqCst);
            self.hold_published(slot, live, None, f)
        })
    }

    #[inline(always)]
    fn hold_published<R>(
        &self,
        slot: &Slot,
        live: u64,
        cell: Option<(&'static ThreadRecord, usize)>,
        f: impl FnOnce(&Held<'_>) -> R,
    ) -> Option<R> {
        let unhold = Unhold {
            core: self,
            slot,
            cell,
        };
        barrier::light();
        if slot.state.load(Ordering::Acquire) != live {
            drop(unhold);
            return None;
        }
        Some(f(&Held { slot, cell }))
    }
}

/// A call site as `Held::invoke_each` takes it: a slot and its live state,
/// as `Core::resolve` gave them.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct HeldSite {
    pub(crate) slot: *const c_void,
    pub(crate) live: u64,
}

impl Held<'_> {
    /// The held entry's `ctx`.
    #[inline(always)]
    pub(crate) fn ctx(&self) -> *mut c_void {
        self.slot.ctx.load(Ordering::Relaxed)
    }

    /// Invokes each site, in order, with the same arguments and no return
    /// value: what `cbreg_site_invoke` would do for each. All the sites are
    /// entries of one registry (table index `index`, handle `handle`).
    /// Returns how many callbacks ran; `failed` gets the status of each
    /// that failed.
    ///
    /// # Safety
    /// As for `invoke_site`, for each site; the arguments are well formed
    /// and valid for the call.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // inlined into its one caller
    pub(crate) unsafe fn invoke_each(
        &self,
        sites: &[HeldSite],
        index: usize,
        handle: u64,
        args: *const Value,
        nargs: usize,
        failed: impl FnMut(Status),
    ) -> usize {
        match self.cell {
            Some((record, held_at)) if held_at + 1 < CELLS => {
                macro_rules! each_in_cell {
                    ($compiler_only:literal) => {
                        // SAFETY: the caller's promises.
                        unsafe {
                            each_in_cell::<$compiler_only>(
                                record,
                                held_at + 1,
                                sites,
                                index,
                                handle,
                                (args, nargs),
                                failed,
                            )
                        }
                    };
                }
                // The barrier's kind is the process's, decided once.
                if barrier::light_is_compiler_only() {
                    each_in_cell!(true)
                } else {
                    each_in_cell!(false)
                }
            }
            // SAFETY: the caller's promises.
            _ => unsafe { each_general(sites, index, handle, args, nargs, failed) },
        }
    }
}

/// The light barrier, its kind known.
#[inline(always)]
fn light<const COMPILER_ONLY: bool>() {
    if COMPILER_ONLY {
        barrier::light_unfenced();
    } else {
        barrier::light();
    }
}

/// `invoke_each` in cell `depth` of `record`: one store publishes each
/// subscriber (and retracts the one before).
///
/// # Safety
/// As for `Held::invoke_each`; `depth < CELLS` is free (the cell after the
/// hold's).
#[inline(always)]
unsafe fn each_in_cell<const COMPILER_ONLY: bool>(
    record: &'static ThreadRecord,
    depth: usize,
    sites: &[HeldSite],
    index: usize,
    handle: u64,
    (args, nargs): (*const Value, usize),
    mut failed: impl FnMut(Status),
) -> usize {
    /// Retracts the cell however the loop ends.
    struct Leave(&'static ThreadRecord, usize);
    impl Drop for Leave {
        #[inline(always)]
        fn drop(&mut self) {
            self.0.leave(self.1);
        }
    }
    let mut called = 0;
    // Calls the general path made (and counted itself).
    let mut elsewhere = 0;
    let mut last: Option<&Slot> = None;
    let leave = Leave(record, depth);
    for site in sites {
        // SAFETY: a slot `resolve` returned; slots are never freed.
        let slot = unsafe { &*(site.slot as *const Slot) };
        record.enter(depth, slot.addr());
        light::<COMPILER_ONLY>();
        let state = slot.state.load(Ordering::Acquire);
        if let Some(last) = last {
            drain_if_retired(last);
        }
        if state != site.live {
            // Not a live persistent entry now: retract, and let the general
            // path decide (a one-shot is claimed there; anything else is
            // NOT_FOUND or INVALID_REGISTRY).
            record.leave(depth);
            last = None;
            // SAFETY: the caller's promises.
            let ran = tally(
                unsafe { general(site, index, handle, args, nargs) },
                &mut failed,
            );
            called += ran;
            elsewhere += ran;
            continue;
        }
        // SAFETY: `call` was stored from a `CallFn` before the state store
        // that was acquired, and the hazard keeps ctx alive.
        let call: RawCall = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
        // SAFETY: the callback's contract; the caller's promises for args.
        let code = unsafe {
            call(
                slot.ctx.load(Ordering::Relaxed),
                args,
                nargs,
                std::ptr::null_mut(),
            )
        };
        called += 1;
        if code != 0 {
            failed(Status::from_callback_code(code));
        }
        last = Some(slot);
    }
    drop(leave);
    if let Some(last) = last {
        light::<COMPILER_ONLY>();
        drain_if_retired(last);
    }
    let count = record.invoked(index);
    count.store(
        count.load(Ordering::Relaxed) + (called - elsewhere) as u64,
        Ordering::Relaxed,
    );
    called
}

/// One site through `invoke_site` (every case; it counts the call).
///
/// # Safety
/// As for `Held::invoke_each`.
#[cold]
#[inline(never)]
unsafe fn general(
    site: &HeldSite,
    index: usize,
    handle: u64,
    args: *const Value,
    nargs: usize,
) -> Status {
    // SAFETY: the caller's promises.
    unsafe {
        invoke_site(
            site.slot,
            site.live,
            index,
            || handle,
            args,
            nargs,
            std::ptr::null_mut(),
        )
    }
}

/// Whether a site's callback ran (1) or not (0), given what `invoke_site`
/// answered; `failed` hears of a failure. NOT_FOUND and INVALID_REGISTRY
/// never come from a callback: the entry was not called.
#[inline(always)]
fn tally(status: Status, failed: &mut impl FnMut(Status)) -> usize {
    match status {
        Status::Ok => 1,
        Status::NotFound | Status::InvalidRegistry => 0,
        status => {
            failed(status);
            1
        }
    }
}

/// `invoke_each` through `invoke_site` for every site.
///
/// # Safety
/// As for `Held::invoke_each`.
#[cold]
#[inline(never)]
unsafe fn each_general(
    sites: &[HeldSite],
    index: usize,
    handle: u64,
    args: *const Value,
    nargs: usize,
    mut failed: impl FnMut(Status),
) -> usize {
    let mut called = 0;
    for site in sites {
        // SAFETY: the caller's promises.
        called += tally(
            unsafe {
                invoke_site(
                    site.slot,
                    site.live,
                    index,
                    || handle,
                    args,
                    nargs,
                    std::ptr::null_mut(),
                )
            },
            &mut failed,
        );
    }
    called
}
