//! Signals: one emit invokes every subscriber of an event
//! (`docs/protocol.md`, section 11, argues the design).
//!
//! A subscriber is an ordinary entry of the signal's registry, and its
//! subscription is the entry itself: unsubscribing unregisters it, and an
//! entry unregistered any other way (a one-shot that ran, a clear) is no
//! longer called and is dropped from the list at the next change.
//!
//! The list is an immutable *snapshot*: the subscribers' call sites, in
//! subscription order. A change (subscribe, unsubscribe) copies it, and
//! the snapshot is itself the `ctx` of an entry of a private registry, so
//! its lifetime is the registry's: emit holds the current snapshot entry
//! (`Core::hold`: a hazard cell, as an invocation) and invokes each
//! subscriber through its call site one cell deeper; a change swaps the
//! signal's `current` id with one CAS and unregisters the old snapshot
//! entry, whose release (freeing the copy) runs exactly once, after every
//! emit that holds it is done, and never on a real-time thread. No second
//! reclamation scheme, and emit takes no lock and allocates nothing.
//!
//! This file owns the table of signals (generation-checked handles, as for
//! registries), the snapshots and the changes; `emit.rs` the emit; `ffi.rs`
//! the C ABI; `api.rs` the Rust API.

use std::ffi::c_void;

use crate::registry::{self, Core, HeldSite};
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use crate::Status;

pub(crate) mod api;
mod emit;
pub(crate) mod ffi;

pub(crate) use emit::emit;
pub use emit::EmitReport;

#[cfg(not(loom))]
const MAX_SIGNALS: usize = 1 << 14;
#[cfg(loom)]
const MAX_SIGNALS: usize = 2;

/// The low half of `life` while the signal is being created or freed.
const DYING: u64 = 1 << 31;

/// One table entry. `life` is `generation << 32` while free, the handle
/// (`generation << 32 | index + 1`) while the signal is alive, the handle
/// with `DYING` while it is created or freed. `current` is the id of the
/// live snapshot entry (0 while free).
struct SignalRecord {
    life: AtomicU64,
    current: AtomicU64,
}

struct Table {
    records: [SignalRecord; MAX_SIGNALS],
    /// The private registry whose entries hold the snapshots.
    snapshots: AtomicPtr<Core>,
}

#[cfg(not(loom))]
static TABLE: Table = Table {
    records: {
        #[allow(clippy::declare_interior_mutable_const)]
        const FREE: SignalRecord = SignalRecord {
            life: AtomicU64::new(0),
            current: AtomicU64::new(0),
        };
        [FREE; MAX_SIGNALS]
    },
    snapshots: AtomicPtr::new(std::ptr::null_mut()),
};

#[inline(always)]
fn table() -> &'static Table {
    #[cfg(not(loom))]
    return &TABLE;
    #[cfg(loom)]
    {
        crate::sync::global! {
            static TABLE: Table = Table {
                records: std::array::from_fn(|_| SignalRecord {
                    life: AtomicU64::new(0),
                    current: AtomicU64::new(0),
                }),
                snapshots: AtomicPtr::new(std::ptr::null_mut()),
            };
        }
        &TABLE
    }
}

/// The record a handle's index names (not yet checked against `life`).
#[inline(always)]
fn record_of(handle: u64) -> Option<&'static SignalRecord> {
    let index = (handle as u32 as usize).wrapping_sub(1);
    table().records.get(index)
}

/// The private registry of snapshots; `None` before the first signal.
#[inline(always)]
fn snapshots() -> Option<&'static Core> {
    // SAFETY: a core in the registry table, never freed.
    unsafe { table().snapshots.load(Ordering::Acquire).as_ref() }
}

/// The private registry of snapshots, created on first use.
fn snapshots_or_create() -> Result<&'static Core, Status> {
    if let Some(core) = snapshots() {
        return Ok(core);
    }
    let handle = registry::create()?;
    let core = registry::installed(handle).ok_or(Status::Internal)?;
    let fresh = core as *const Core as *mut Core;
    match table().snapshots.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Ok(core),
        Err(winner) => {
            let _ = registry::destroy(handle);
            // SAFETY: a core in the registry table, never freed.
            Ok(unsafe { &*winner })
        }
    }
}

/// After a hold of snapshot entry `id` found it retired: a change or a free
/// retires a snapshot only after `current` no longer names it, so `current`
/// has moved on, unless something outside signals retired the entry.
#[cold]
fn moved_on(record: &SignalRecord, id: u64) -> Result<(), Status> {
    if record.current.load(Ordering::Acquire) == id {
        Err(Status::Internal)
    } else {
        Ok(())
    }
}

/// A subscriber: its entry's id and call site (`Core::resolve`).
#[derive(Clone, Copy)]
struct Subscriber {
    id: u64,
    site: HeldSite,
}

/// One version of a signal's subscriber list, never changed once made.
struct Snapshot {
    /// The handle of the signal it belongs to (checked by every use).
    signal: u64,
    /// The handle of the subscribers' registry.
    registry: u64,
    /// That registry's table index (its per-thread invocation counter).
    index: usize,
    /// The call sites emit runs through, in subscription order.
    sites: Box<[HeldSite]>,
    /// Their entries' ids, in the same order.
    ids: Box<[u64]>,
}

impl Snapshot {
    fn subscribers(&self) -> impl Iterator<Item = Subscriber> + '_ {
        self.ids
            .iter()
            .zip(self.sites.iter())
            .map(|(&id, &site)| Subscriber { id, site })
    }
}

unsafe extern "C-unwind" fn snapshot_is_never_called(
    _: *mut c_void,
    _: *const crate::Value,
    _: usize,
    _: *mut crate::Value,
) -> u32 {
    Status::Internal as u32
}

unsafe extern "C-unwind" fn drop_snapshot(ctx: *mut c_void) {
    // SAFETY: the Box made in `publish`; the registry runs this once, after
    // every hold of the entry ended.
    drop(unsafe { Box::from_raw(ctx as *mut Snapshot) });
}

/// Registers `snapshot` as an entry of the snapshot registry; its id.
fn publish(core: &Core, snapshot: Snapshot) -> Result<u64, Status> {
    let ctx = Box::into_raw(Box::new(snapshot)) as *mut c_void;
    let id = core.register(
        Some(snapshot_is_never_called),
        ctx,
        Some(drop_snapshot),
        false,
        false,
    );
    if id.is_err() {
        // SAFETY: not registered, so still ours.
        drop(unsafe { Box::from_raw(ctx as *mut Snapshot) });
    }
    id
}

/// Runs `f` on the snapshot of signal `handle` whose entry is `id`, held.
/// `None` if that entry is no longer live.
fn with_snapshot<R>(
    core: &Core,
    handle: u64,
    id: u64,
    f: impl FnOnce(&Snapshot) -> Result<R, Status>,
) -> Option<Result<R, Status>> {
    core.hold(id, |held| {
        // SAFETY: a live snapshot entry's ctx, held: its release waits.
        let snapshot = unsafe { &*(held.ctx() as *const Snapshot) };
        if snapshot.signal != handle {
            return Err(Status::InvalidSignal);
        }
        f(snapshot)
    })
}

/// Creates a signal whose subscribers are entries of registry `reg`.
pub(crate) fn create(reg: u64) -> Result<u64, Status> {
    drop(registry::pin(reg)?);
    let core = snapshots_or_create()?;
    for (index, record) in table().records.iter().enumerate() {
        let life = record.life.load(Ordering::Acquire);
        if life as u32 != 0 || life >> 32 >= u32::MAX as u64 {
            continue; // in use, or its handles would wrap
        }
        let handle = life | (index as u64 + 1);
        if record
            .life
            .compare_exchange(life, handle | DYING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let empty = Snapshot {
            signal: handle,
            registry: reg,
            index: 0,
            sites: Box::new([]),
            ids: Box::new([]),
        };
        match publish(core, empty) {
            Ok(id) => {
                record.current.store(id, Ordering::Release);
                record.life.store(handle, Ordering::Release);
                return Ok(handle);
            }
            Err(e) => {
                record.life.store(life, Ordering::Release);
                return Err(e);
            }
        }
    }
    Err(Status::NoMemory)
}

/// Runs `f` on the current snapshot of signal `handle`, held; returns the
/// snapshot entry's id with `f`'s result. Reads `current` again when the
/// entry it named was retired meanwhile.
fn with_current<R>(
    handle: u64,
    mut f: impl FnMut(&Snapshot) -> Result<R, Status>,
) -> Result<(u64, R), Status> {
    let record = record_of(handle).ok_or(Status::InvalidSignal)?;
    let core = snapshots().ok_or(Status::InvalidSignal)?;
    loop {
        let id = record.current.load(Ordering::Acquire);
        if id == 0 {
            return Err(Status::InvalidSignal);
        }
        match with_snapshot(core, handle, id, &mut f) {
            Some(result) => return result.map(|r| (id, r)),
            None => moved_on(record, id)?,
        }
    }
}

/// Replaces the snapshot of signal `handle` with `change` of it: copy on
/// write, one CAS on `current`, then the old snapshot entry is unregistered
/// (its copy is freed once no emit holds it). Retried when another change
/// won the CAS. `change` gives the new list and the registry's table index.
fn change(
    handle: u64,
    mut change: impl FnMut(&Snapshot) -> Result<(Vec<Subscriber>, usize), Status>,
) -> Result<(), Status> {
    let record = record_of(handle).ok_or(Status::InvalidSignal)?;
    let core = snapshots().ok_or(Status::InvalidSignal)?;
    loop {
        let (id, made) = with_current(handle, |old| {
            let (subscribers, index) = change(old)?;
            Ok(Snapshot {
                signal: handle,
                registry: old.registry,
                index,
                sites: subscribers.iter().map(|s| s.site).collect(),
                ids: subscribers.iter().map(|s| s.id).collect(),
            })
        })?;
        let fresh = publish(core, made)?;
        match record
            .current
            .compare_exchange(id, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                core.unregister(id);
                return Ok(());
            }
            Err(_) => {
                core.unregister(fresh);
            }
        }
    }
}

/// The subscribers of `old` whose entries are still live in `reg`.
fn still_live(reg: &Core, old: &Snapshot) -> Vec<Subscriber> {
    old.subscribers()
        .filter(|s| reg.resolve(s.id).is_ok())
        .collect()
}

/// Adds entry `id` of the signal's registry at the end of its list.
/// `NotFound` unless the entry is live; `InvalidArgument` if it is a
/// subscriber already.
pub(crate) fn subscribe(handle: u64, id: u64) -> Result<(), Status> {
    change(handle, |old| {
        let reg = registry::pin(old.registry)?;
        let (slot, live, index) = reg.resolve(id)?;
        let mut subscribers = still_live(&reg, old);
        if subscribers.iter().any(|s| s.id == id) {
            return Err(Status::InvalidArgument);
        }
        let mut fresh = Vec::new();
        fresh
            .try_reserve_exact(subscribers.len() + 1)
            .map_err(|_| Status::NoMemory)?;
        fresh.append(&mut subscribers);
        fresh.push(Subscriber {
            id,
            site: HeldSite { slot, live },
        });
        Ok((fresh, index))
    })
}

/// Removes subscriber `id` and unregisters its entry: no emit calls it
/// after this returns. `NotFound` if it is not a live subscriber.
pub(crate) fn unsubscribe(handle: u64, id: u64) -> Result<(), Status> {
    let mut reg_handle = 0;
    change(handle, |old| {
        reg_handle = old.registry;
        let reg = registry::pin(old.registry)?;
        let before = still_live(&reg, old);
        if !before.iter().any(|s| s.id == id) {
            return Err(Status::NotFound);
        }
        Ok((
            before.into_iter().filter(|s| s.id != id).collect(),
            old.index,
        ))
    })?;
    // The entry is unregistered after the list changed: an emit holding
    // an older list sees it retired, and none calls it after this.
    registry::pin(reg_handle)?.unregister(id).ok()
}

/// Frees signal `handle`: refuses the handle from now on, unregisters every
/// subscriber (their releases run under the registry's rules) and the
/// snapshot entry. Returns at once, as `unregister` does.
pub(crate) fn destroy(handle: u64) -> Result<(), Status> {
    let record = record_of(handle).ok_or(Status::InvalidSignal)?;
    let core = snapshots().ok_or(Status::InvalidSignal)?;
    record
        .life
        .compare_exchange(handle, handle | DYING, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| Status::InvalidSignal)?;
    // Changes after this swap find 0 (or a newer signal's snapshot) and
    // fail; this thread now owns the last snapshot.
    let id = record.current.swap(0, Ordering::AcqRel);
    let _ = with_snapshot(core, handle, id, |last| {
        if let Ok(reg) = registry::pin(last.registry) {
            for &id in last.ids.iter() {
                let _ = reg.unregister(id);
            }
        }
        Ok(())
    });
    core.unregister(id);
    record
        .life
        .store(((handle >> 32) + 1) << 32, Ordering::Release);
    Ok(())
}

/// How many live subscribers the signal has now.
pub(crate) fn count(handle: u64) -> Result<usize, Status> {
    let (_, n) = with_current(handle, |s| {
        let reg = registry::pin(s.registry)?;
        Ok(s.ids.iter().filter(|&&id| reg.resolve(id).is_ok()).count())
    })?;
    Ok(n)
}

/// The snapshot registry's counts (for tests: every snapshot made is
/// released exactly once).
pub(crate) fn snapshot_stats() -> registry::Stats {
    snapshots().map(|c| c.stats()).unwrap_or_default()
}
