//! Holding an entry across many calls: a signal's emit holds its
//! subscriber list, which is the `ctx` of an entry of its own, for the
//! whole emit, and invokes each subscriber through a call site meanwhile.
//!
//! Holding is an invocation without the call: the slot is published in the
//! thread's next free hazard cell (or, with none, on the slot's counter in
//! a frame), then the state is checked, as in `Core::invoke_general`. So a
//! writer that retires the held entry defers its release until the holder
//! lets go, by the same pairing (`docs/protocol.md`, section 2), and the
//! last holder out drains. The subscribers are invoked one cell deeper
//! with the call site's rules (the state alone names the entry); what that
//! short path does not serve (a one-shot, no cell left, no record) goes
//! through `invoke_site`, which serves everything.

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
struct Release<'a> {
    core: &'a Core,
    slot: &'a Slot,
    cell: Option<(&'static ThreadRecord, usize)>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        match self.cell {
            Some((record, depth)) => record.leave(depth),
            None => {
                self.slot.inflight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // A writer that saw this hold deferred the release to us: drain.
        barrier::light();
        if self.slot.state.load(Ordering::Relaxed) & LIVE == 0 {
            self.core.after_retired_invoke();
        }
    }
}

impl Core {
    /// Runs `f` with entry `id` held: its `ctx` stays valid (its release
    /// cannot run) until `f` returns. `None`, without running `f`, unless
    /// the entry is live and persistent after it was published.
    pub(crate) fn hold<R>(&self, id: u64, f: impl FnOnce(&Held<'_>) -> R) -> Option<R> {
        let slot = self.segments.slot_of_id(id)?;
        let live = key(id) | LIVE;
        match hazard::record().and_then(|r| r.free_cell().map(|d| (r, d))) {
            Some((record, depth)) => {
                record.enter(depth, slot.addr());
                self.hold_published(slot, live, Some((record, depth)), f)
            }
            None => Frame::new(FRAME_INVOKE, slot.addr()).scope(|| {
                slot.inflight.fetch_add(1, Ordering::SeqCst);
                self.hold_published(slot, live, None, f)
            }),
        }
    }

    fn hold_published<R>(
        &self,
        slot: &Slot,
        live: u64,
        cell: Option<(&'static ThreadRecord, usize)>,
        f: impl FnOnce(&Held<'_>) -> R,
    ) -> Option<R> {
        let release = Release {
            core: self,
            slot,
            cell,
        };
        barrier::light();
        if slot.state.load(Ordering::Acquire) != live {
            drop(release);
            return None;
        }
        Some(f(&Held { slot, cell }))
    }
}

impl Held<'_> {
    /// The held entry's `ctx`.
    pub(crate) fn ctx(&self) -> *mut c_void {
        self.slot.ctx.load(Ordering::Relaxed)
    }

    /// Invokes the entry a call site names (`slot`, `live`, `index` as
    /// `Core::resolve` gave them, `handle` its registry's), with no return
    /// value, from inside this hold: `cbreg_site_invoke`'s statuses.
    ///
    /// # Safety
    /// As for `invoke_site`: the site's fields are `resolve`'s, and the
    /// arguments are well formed and valid for the call.
    #[inline(always)]
    pub(crate) unsafe fn invoke_site(
        &self,
        slot: *const c_void,
        live: u64,
        index: usize,
        handle: u64,
        args: *const Value,
        nargs: usize,
    ) -> Status {
        let general =
            // SAFETY: the caller's promises.
            move || unsafe { invoke_site(slot, live, index, || handle, args, nargs, std::ptr::null_mut()) };
        let Some((record, held_at)) = self.cell else {
            return general();
        };
        let depth = held_at + 1;
        if depth >= CELLS {
            return general();
        }
        // SAFETY: a slot `resolve` returned; slots are never freed.
        let slot = unsafe { &*(slot as *const Slot) };
        record.enter(depth, slot.addr());
        barrier::light();
        if slot.state.load(Ordering::Acquire) != live {
            record.leave(depth);
            return general();
        }
        ThreadRecord::bump(record.invoked(index));
        struct Leave(&'static ThreadRecord, usize);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.leave(self.1);
            }
        }
        // SAFETY: `call` was stored from a `CallFn` before the state store
        // that was acquired, and the hazard keeps ctx alive.
        let call: RawCall = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
        let leave = Leave(record, depth);
        // SAFETY: the callback's contract; the caller's promises for args.
        let code = unsafe {
            call(
                slot.ctx.load(Ordering::Relaxed),
                args,
                nargs,
                std::ptr::null_mut(),
            )
        };
        drop(leave);
        barrier::light();
        let state = slot.state.load(Ordering::Relaxed);
        if state & LIVE == 0 {
            // Retired during the call: drain, as the fast path does.
            if let Some(core) = super::table::core_of_state(state) {
                core.after_retired_invoke();
            }
        }
        Status::from_callback_code(code)
    }
}
