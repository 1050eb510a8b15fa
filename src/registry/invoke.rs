//! The invoke protocol: the hot path, and the general path that serves
//! every other case with the same rules (`docs/protocol.md`).
//!
//! The fast path serves a persistent live entry invoked, not nested in
//! another invocation, by a thread with a record: publish the slot in the
//! record's first cell, light barrier, load the state, check generation
//! and LIVE, check the registry's lifecycle word, call, retract the cell,
//! and drain if the entry is no longer LIVE. No read-modify-write and no
//! shared write. Nested invocations take the general path, in the next
//! cells. A call site (`invoke_site`) enters the same path at the
//! slot and skips the lifecycle word (`docs/protocol.md` section 2 says
//! why). The callback is not wrapped in `catch_unwind`: a forced
//! unwind (a thread ended by `pthread_exit` inside a callback) must pass,
//! and the guards below undo what the invoke published as it passes.

use std::ffi::c_void;

use super::slots::{key, Segments, Slot, LIVE, ONCE};
use super::Core;
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

/// Retracts the first cell (the fast path's) if the callback unwinds.
struct FirstCellGuard<'a>(&'a ThreadRecord);

impl Drop for FirstCellGuard<'_> {
    fn drop(&mut self) {
        self.0.leave_first();
    }
}

/// Takes an invoker off the slot counter if the callback unwinds.
struct CounterGuard<'a>(&'a Slot);

impl Drop for CounterGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Core {
    /// Invokes entry `id` of the registry `handle` names (this core), with
    /// an argument vector the caller has checked.
    ///
    /// The fast path is written for the instruction count: the registry is
    /// checked by one compare (`life` equals a live handle), one test of the
    /// thread's first cell says the thread has a record, needs no fence and
    /// is not nested, and every other case leaves for `invoke_general`.
    ///
    /// # Safety
    /// `args` holds `nargs` well-formed values (or `nargs` is 0) and `ret`
    /// is NULL or valid, as the C ABI's caller promises.
    #[inline(always)]
    pub(crate) unsafe fn invoke(
        &self,
        handle: u64,
        id: u64,
        args: *const Value,
        nargs: usize,
        ret: *mut Value,
    ) -> Status {
        let (entry, offset) = self.segments.locate_id(id);
        if entry == 0 {
            return self.not_invoked(handle);
        }
        // SAFETY: a nonzero entry from `locate_id`.
        let slot = unsafe { Segments::at(entry, offset) };
        // The lifecycle word is read after the state: an entry of a newer
        // registry on this core was registered after the older one's free,
        // so seeing it means seeing that free too (`docs/protocol.md`,
        // "registry lifetime").
        let alive = move || self.life.load(Ordering::Relaxed) == handle;
        // SAFETY: the caller's promises.
        let general = move || unsafe { self.invoke_general(handle, id, args, nargs, ret) };
        // SAFETY: the caller's promises; the slot is this core's.
        unsafe {
            invoke_at(
                slot,
                key(id) | LIVE,
                self.index,
                alive,
                general,
                args,
                nargs,
                ret,
            )
        }
    }

    /// What a call site keeps of entry `id` (`ffi::cbreg_site_resolve`):
    /// its slot's address, the state it has while live and persistent (a
    /// one-shot never has exactly that state, so its site takes the general
    /// path, which claims it) and this registry's table index (its
    /// per-thread counter). `NotFound` unless the entry is live now.
    pub(crate) fn resolve(&self, id: u64) -> Result<(*const c_void, u64, usize), Status> {
        let slot = self.segments.slot_of_id(id).ok_or(Status::NotFound)?;
        let live = key(id) | LIVE;
        if slot.state.load(Ordering::Acquire) & !ONCE != live {
            return Err(Status::NotFound);
        }
        Ok((slot.addr() as *const c_void, live, self.index))
    }

    #[cold]
    fn not_invoked(&self, handle: u64) -> Status {
        if self.life.load(Ordering::Acquire) == handle {
            Status::NotFound
        } else {
            Status::InvalidRegistry
        }
    }

    #[cold]
    pub(super) fn after_retired_invoke(&self) {
        if hazard::is_realtime() {
            super::reclaimer::wake();
        } else {
            self.collect();
        }
    }

    /// Every case of invoke: nesting past the hazard cells or a full pool
    /// (slot counter), one-shot entries, ids that are not live, and a
    /// registry that is not (or no longer) the one `handle` names.
    #[cold]
    #[inline(never)]
    unsafe fn invoke_general(
        &self,
        handle: u64,
        id: u64,
        args: *const Value,
        nargs: usize,
        ret: *mut Value,
    ) -> Status {
        if self.life.load(Ordering::Acquire) != handle {
            return Status::InvalidRegistry;
        }
        let Some(slot) = self.segments.slot_of_id(id) else {
            return Status::NotFound;
        };
        match hazard::record().and_then(|r| r.free_cell().map(|d| (r, d))) {
            Some((record, depth)) => {
                record.enter(depth, slot.addr());
                let guard = CellGuard { record, depth };
                // SAFETY: our caller's promises for args and ret.
                let (status, claimed_once) = unsafe {
                    self.enter_and_call(handle, slot, id, (args, nargs), ret, Some(record))
                };
                drop(guard);
                self.after_general(slot, claimed_once);
                status
            }
            None => {
                let frame = Frame::new(FRAME_INVOKE, slot.addr());
                frame.scope(|| {
                    slot.inflight.fetch_add(1, Ordering::SeqCst);
                    let guard = CounterGuard(slot);
                    // SAFETY: our caller's promises for args and ret.
                    let (status, claimed_once) =
                        unsafe { self.enter_and_call(handle, slot, id, (args, nargs), ret, None) };
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
    ///
    /// # Safety
    /// As for `Core::invoke`: `args` holds `nargs` well-formed values and
    /// `ret` is NULL or valid.
    unsafe fn enter_and_call(
        &self,
        handle: u64,
        slot: &Slot,
        id: u64,
        (args, nargs): (*const Value, usize),
        ret: *mut Value,
        record: Option<&ThreadRecord>,
    ) -> (Status, bool) {
        barrier::light();
        let state = slot.state.load(Ordering::Acquire);
        let live = state & !ONCE == key(id) | LIVE && self.life.load(Ordering::Relaxed) == handle;
        if !live {
            let status = if self.life.load(Ordering::Relaxed) == handle {
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
        self.counters.count_invoke(self.index, record);
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
        let code = unsafe { call(ctx, args, nargs, ret) };
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

/// A call site's invoke (`ffi::cbreg_site_invoke`): the fast path with no
/// lifecycle check. The state alone shows the entry is the one the site was
/// resolved for (generations never repeat, on any registry this core
/// serves) and is not retired. A registry's `free` retires every entry
/// before it completes and waits for every invocation in flight, so a call
/// that saw the entry live is ordered before that free; once the entry is
/// retired the general path answers, with the lifecycle check.
///
/// # Safety
/// `slot`, `live`, `index` and `handle()` are what `Core::resolve` and its
/// caller gave for one entry; `args`, `nargs` and `ret` as for
/// `Core::invoke`.
#[inline(always)]
pub(crate) unsafe fn invoke_site(
    slot: *const c_void,
    live: u64,
    index: usize,
    handle: impl FnOnce() -> u64,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: a slot `resolve` returned; slots are never freed.
    let slot = unsafe { &*(slot as *const Slot) };
    // The site's state names its registry (`resolve` made it from an id
    // live there); the handle is read only on this path.
    // SAFETY: the caller's promises.
    let general = move || unsafe { invoke_general_at(slot, args, nargs, ret, live, handle()) };
    // SAFETY: the caller's promises.
    unsafe { invoke_at(slot, live, index, || true, general, args, nargs, ret) }
}

/// The fast path from the slot on, for `Core::invoke` and for call
/// sites: publish the slot in the thread's first cell, then call if the
/// entry's state is `live` and `alive()` holds after it; every other case
/// (no record, a fenced thread, a nested invoke, another state) leaves for
/// `general()`, with nothing published. `index` is the registry's table
/// index (its per-thread counter).
///
/// # Safety
/// `slot` belongs to the registry of table index `index`; `args`, `nargs`
/// and `ret` as for `Core::invoke`.
#[allow(clippy::too_many_arguments)] // inlined into its two callers
#[inline(always)]
pub(crate) unsafe fn invoke_at(
    slot: &Slot,
    live: u64,
    index: usize,
    alive: impl Fn() -> bool,
    general: impl FnOnce() -> Status,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    let Some(record) = hazard::fast_record() else {
        return general();
    };
    record.enter_first(slot.addr());
    barrier::light_unfenced();
    // Generation 0 never matches a live state.
    if slot.state.load(Ordering::Acquire) != live || !alive() {
        record.leave_first();
        return general();
    }
    hazard::ThreadRecord::bump(record.invoked(index));
    // SAFETY: the entry is published in the first cell and was live after
    // that; the caller's promises for args and ret.
    unsafe { call_published(record, slot, args, nargs, ret) }
}

/// `Core::invoke_general` for the entry of `slot` whose live state is
/// `live`, reached from the fast path by a tail call. The core is the one
/// the state's registry tag names. The arguments come in the registers the
/// callback takes them in (after the slot), so the fast path never moves
/// them.
///
/// # Safety
/// As for `invoke_site`.
#[cold]
#[inline(never)]
unsafe fn invoke_general_at(
    slot: &Slot,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
    live: u64,
    handle: u64,
) -> Status {
    match super::table::core_of_state(live) {
        // SAFETY: the caller's promises.
        Some(core) => unsafe { core.invoke_general(handle, slot.id(live), args, nargs, ret) },
        None => Status::InvalidRegistry,
    }
}

/// The fast path's second half: call the entry of `slot`, which is
/// published in `record`'s first cell, then retract the cell. Only the
/// record lives across the callback (one saved register): after the call
/// the cell names the slot, and the LIVE bit alone says whether to drain
/// (`docs/protocol.md`, "prompt release").
///
/// # Safety
/// The first cell holds `slot`, which was live (persistent) after the cell
/// was published; `args`, `nargs` and `ret` as for `Core::invoke`.
#[inline(always)]
unsafe fn call_published(
    record: &ThreadRecord,
    slot: &Slot,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> Status {
    // SAFETY: `call` was stored from a `CallFn` before the state store that
    // was acquired, and the hazard keeps ctx alive.
    let call: RawCall = unsafe { std::mem::transmute(slot.call.load(Ordering::Relaxed)) };
    let guard = FirstCellGuard(record);
    // SAFETY: the callback's contract; args and ret come from our caller.
    let code = unsafe { call(slot.ctx.load(Ordering::Relaxed), args, nargs, ret) };
    let slot: &Slot = record.first_slot();
    // Clears the cell. A writer that saw our hazard deferred the release
    // to us: drain.
    drop(guard);
    barrier::light_unfenced();
    if slot.state.load(Ordering::Relaxed) & LIVE == 0 || code != 0 {
        return after_fast_call(slot, code);
    }
    debug_assert_eq!(code, Status::Ok as u32);
    // SAFETY: `code` is 0 here, which is `Status::Ok`; returning it rather
    // than a constant lets the result stay in the register it came in.
    unsafe { std::mem::transmute::<u32, Status>(code) }
}

/// The fast path's exit when the entry may have been retired during the
/// call, or the callback failed.
#[cold]
#[inline(never)]
fn after_fast_call(slot: &Slot, code: u32) -> Status {
    let state = slot.state.load(Ordering::Relaxed);
    if state & LIVE == 0 {
        // The state names the registry whose entry the slot holds now:
        // ours, or (once ours was finished) a later one, where a collect
        // is harmless.
        if let Some(core) = super::table::core_of_state(state) {
            core.after_retired_invoke();
        }
    }
    Status::from_callback_code(code)
}
