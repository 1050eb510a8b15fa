//! The invoke protocol: the hot path, and the general path that serves
//! every other case with the same rules (`docs/protocol.md`).
//!
//! The fast path serves a persistent live entry invoked by a thread with a
//! record and a free hazard cell: publish the slot in the cell, light
//! barrier, load the state, check generation and LIVE, check the registry's
//! lifecycle word, call, retract the cell. No read-modify-write and no
//! shared write. The callback is not wrapped in `catch_unwind`: a forced
//! unwind (a thread ended by `pthread_exit` inside a callback) must pass,
//! and the guards below undo what the invoke published as it passes.

use std::ffi::c_void;

use super::slots::{key, Slot, LIVE, ONCE};
use super::{Core, ALIVE};
use crate::hazard::{self, Frame, ThreadRecord, FRAME_INVOKE};
use crate::sync::{barrier, Ordering};
use crate::value::Value;
use crate::Status;

type RawCall = unsafe extern "C-unwind" fn(*mut c_void, *const Value, usize, *mut Value) -> u32;

/// Retracts a hazard cell if the callback unwinds.
struct CellGuard<'a> {
    record: &'a ThreadRecord,
    depth: usize,
}

impl Drop for CellGuard<'_> {
    fn drop(&mut self) {
        self.record.leave(self.depth);
    }
}

/// Takes an invoker off the slot counter if the callback unwinds.
struct CounterGuard<'a>(&'a Slot);

impl Drop for CounterGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The lifecycle word a live registry named by `handle` has.
#[inline(always)]
fn alive_life(handle: u64) -> u64 {
    (handle >> 32) << 32 | ALIVE
}

impl Core {
    /// Invokes entry `id` of the registry `handle` names (this core).
    #[inline]
    pub(crate) fn invoke(&self, handle: u64, id: u64, args: &[Value], ret: *mut Value) -> Status {
        let Some(slot) = self.segments.slot_of_id(id) else {
            return self.not_invoked(handle);
        };
        let Some((record, depth)) = hazard::record().and_then(|r| r.free_cell().map(|d| (r, d)))
        else {
            return self.invoke_general(handle, slot, id, args, ret);
        };
        record.enter(depth, slot.addr());
        barrier::light();
        let state = slot.state.load(Ordering::Acquire);
        // Generation 0 never matches a live state. The lifecycle word is
        // read after the state: an entry of a newer registry on this core
        // was registered after the older one's free, so seeing it means
        // seeing that free too (`docs/protocol.md`, "registry lifetime").
        if state != key(id) | LIVE || self.life.load(Ordering::Relaxed) != alive_life(handle) {
            record.leave(depth);
            return self.invoke_general(handle, slot, id, args, ret);
        }
        self.counters
            .count_invoke(self.counter.load(Ordering::Relaxed), Some(record));
        // SAFETY: `call` was stored from a `CallFn` before the state store we
        // acquired, and the hazard keeps ctx alive.
        let call: RawCall = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
        let guard = CellGuard { record, depth };
        // SAFETY: the callback's contract; args and ret come from our caller.
        let code = unsafe {
            call(
                slot.ctx.load(Ordering::Relaxed),
                args.as_ptr(),
                args.len(),
                ret,
            )
        };
        drop(guard);
        // A writer that saw our hazard deferred the release to us: drain.
        barrier::light();
        if slot.state.load(Ordering::Relaxed) != state {
            self.after_retired_invoke();
        }
        Status::from_callback_code(code)
    }

    #[cold]
    fn not_invoked(&self, handle: u64) -> Status {
        if self.life.load(Ordering::Acquire) == alive_life(handle) {
            Status::NotFound
        } else {
            Status::InvalidRegistry
        }
    }

    #[cold]
    pub(super) fn after_retired_invoke(&self) {
        if hazard::is_realtime() {
            crate::reclaimer::wake();
        } else {
            self.collect();
        }
    }

    /// Every case of invoke: nesting past the hazard cells or a full pool
    /// (slot counter), one-shot entries, ids that are not live, and a
    /// registry that is not (or no longer) the one `handle` names.
    #[cold]
    #[inline(never)]
    fn invoke_general(
        &self,
        handle: u64,
        slot: &Slot,
        id: u64,
        args: &[Value],
        ret: *mut Value,
    ) -> Status {
        if self.life.load(Ordering::Acquire) != alive_life(handle) {
            return Status::InvalidRegistry;
        }
        match hazard::record().and_then(|r| r.free_cell().map(|d| (r, d))) {
            Some((record, depth)) => {
                record.enter(depth, slot.addr());
                let guard = CellGuard { record, depth };
                let (status, claimed_once) =
                    self.enter_and_call(handle, slot, id, args, ret, Some(record));
                drop(guard);
                self.after_general(slot, claimed_once);
                status
            }
            None => {
                let frame = Frame::new(FRAME_INVOKE, slot.addr());
                frame.scope(|| {
                    slot.inflight.fetch_add(1, Ordering::SeqCst);
                    let guard = CounterGuard(slot);
                    let (status, claimed_once) =
                        self.enter_and_call(handle, slot, id, args, ret, None);
                    drop(guard);
                    self.after_general(slot, claimed_once);
                    status
                })
            }
        }
    }

    /// With this invoker published (cell or counter): check the entry,
    /// claim it if it is a one-shot, call. Returns the status and whether
    /// this invoker claimed a one-shot (and so owns its release).
    fn enter_and_call(
        &self,
        handle: u64,
        slot: &Slot,
        id: u64,
        args: &[Value],
        ret: *mut Value,
        record: Option<&ThreadRecord>,
    ) -> (Status, bool) {
        barrier::light();
        let state = slot.state.load(Ordering::Acquire);
        let live = state & !ONCE == key(id) | LIVE
            && self.life.load(Ordering::Relaxed) == alive_life(handle);
        if !live {
            let status = if self.life.load(Ordering::Relaxed) == alive_life(handle) {
                Status::NotFound
            } else {
                Status::InvalidRegistry
            };
            return (status, false);
        }
        let claimed_once = state & ONCE != 0;
        if claimed_once {
            if !Self::take(slot, state, hazard::token()) {
                return (Status::NotFound, false);
            }
            // Counted while our hazard is still up: a `free` waiting for
            // every retired entry to finish cannot miss this one.
            self.counters.retired.fetch_add(1, Ordering::SeqCst);
        }
        self.counters
            .count_invoke(self.counter.load(Ordering::Relaxed), record);
        // SAFETY: as on the fast path.
        let call: RawCall = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
        let ctx = slot.ctx.load(Ordering::Relaxed);
        // If the callback unwinds, the caller's guard retracts the hazard;
        // a claimed one-shot then goes to the pending list.
        struct OnceUnwind<'a>(&'a Core, &'a Slot, bool);
        impl Drop for OnceUnwind<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.push_pending(self.1);
                }
            }
        }
        let mut unwind = OnceUnwind(self, slot, claimed_once);
        // SAFETY: the callback's contract; args and ret come from our caller.
        let code = unsafe { call(ctx, args.as_ptr(), args.len(), ret) };
        unwind.2 = false;
        (Status::from_callback_code(code), claimed_once)
    }

    /// After the invoker has retracted itself: release a one-shot it
    /// claimed, or drain if the entry was retired meanwhile.
    fn after_general(&self, slot: &Slot, claimed_once: bool) {
        if claimed_once {
            self.retire(slot);
        } else {
            barrier::light();
            if slot.state.load(Ordering::Relaxed) & LIVE == 0 {
                self.after_retired_invoke();
            }
        }
    }
}
