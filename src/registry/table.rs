//! The table of registries that handles name, and each registry's
//! lifecycle: create, pin, free.
//!
//! A handle is `generation << 32 | (table index + 1)`. Each table entry
//! holds a `Core` that is never freed; its lifecycle word `life` is
//! `generation << 32` while the entry is free, the handle itself while the
//! registry is alive, and the handle with DYING while it is being freed
//! (or created). A handle is valid while `life` equals it: one compare on
//! the invoke path. `free` sets DYING
//! first (so the handle is refused from that moment on, and only one of two
//! racing frees wins), waits for every operation that pinned the registry,
//! for every invocation and for every release, then moves `life` to the
//! next generation: the core may then serve a new registry, which no old
//! handle can reach.
//!
//! Operations other than invoke *pin* the registry for their duration (a
//! counter, and a note in the thread's own state), so a `free` cannot
//! complete under them and they cannot land in a newer registry. Invoke
//! pins nothing: it checks `life` after it loaded the entry's state
//! (`invoke.rs`).

use std::ffi::c_void;

use super::{Core, ReleaseFn, COLLECTOR_IDLE, DYING};
use crate::hazard::{self, COUNTED_REGISTRIES};

const _: () = assert!(MAX_REGISTRIES == COUNTED_REGISTRIES);
use crate::sync::{fence, AtomicPtr, Ordering};
use crate::wait::{self, Step};
use crate::Status;

#[cfg(not(loom))]
const MAX_REGISTRIES: usize = super::slots::MAX_TAGS;
#[cfg(loom)]
const MAX_REGISTRIES: usize = 2;

struct Table {
    /// Registries by handle index; a core, once installed, is never freed.
    cores: [AtomicPtr<Core>; MAX_REGISTRIES],
}

#[cfg(not(loom))]
impl Table {
    const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const EMPTY: AtomicPtr<Core> = AtomicPtr::new(std::ptr::null_mut());
        Table {
            cores: [EMPTY; MAX_REGISTRIES],
        }
    }
}

#[cfg(loom)]
use crate::sync::global;

#[cfg(not(loom))]
static TABLE: Table = Table::new();

#[inline(always)]
fn table() -> &'static Table {
    #[cfg(not(loom))]
    return &TABLE;
    #[cfg(loom)]
    {
        global! {
            static TABLE: Table = Table {
                cores: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            };
        }
        &TABLE
    }
}

/// Handle of the process-wide default registry (index 0, generation 1).
pub(crate) const DEFAULT_HANDLE: u64 = 1 << 32 | 1;

fn core_at(index: usize) -> Option<&'static Core> {
    if index >= MAX_REGISTRIES {
        return None;
    }
    let p = table().cores[position(index + 1)].load(Ordering::Acquire);
    // SAFETY: cores in the table are never freed.
    unsafe { p.as_ref() }
}

/// The core whose slots carry `state` (its registry tag is the table index).
pub(crate) fn core_of_state(state: u64) -> Option<&'static Core> {
    core_at(super::slots::registry_index(state))
}

/// Calls `f` on every core in the table (live, dying or free).
pub(crate) fn for_each_core(mut f: impl FnMut(&'static Core)) {
    (0..MAX_REGISTRIES).filter_map(core_at).for_each(&mut f)
}

/// Where the core of table index `index1 - 1` sits in `cores`: at
/// `index1` itself, masked, so a handle's low half finds it in one step.
#[inline(always)]
fn position(index1: usize) -> usize {
    const _: () = assert!(MAX_REGISTRIES.is_power_of_two());
    index1 & (MAX_REGISTRIES - 1)
}

/// Installs a core with lifecycle word `life` at `index`, unless another
/// thread installed one first.
fn install(index: usize, life: u64) -> &'static Core {
    let cell = &table().cores[position(index + 1)];
    // SAFETY: cores in the table are never freed nor replaced.
    unsafe { crate::sync::publish_once(cell, Box::new(Core::new(index, life))) }
}

/// The default registry, created on first use; never destroyed.
pub(crate) fn default_core() -> &'static Core {
    core_at(0).unwrap_or_else(|| install(0, DEFAULT_HANDLE))
}

/// The core a handle's index names, whatever its state. For invoke, which
/// checks the lifecycle word itself.
#[inline(always)]
pub(crate) fn lookup(handle: u64) -> Result<&'static Core, Status> {
    match installed(handle) {
        Some(core) => Ok(core),
        None => lookup_slow(handle),
    }
}

/// The core installed at a handle's index, if any: one load. The index is
/// masked, not bounds-checked: a handle whose index is out of range names
/// some core whose `life` it can never equal.
#[inline(always)]
pub(crate) fn installed(handle: u64) -> Option<&'static Core> {
    let p = table().cores[position(handle as u32 as usize)].load(Ordering::Acquire);
    // SAFETY: cores in the table are never freed.
    unsafe { p.as_ref() }
}

#[cold]
pub(crate) fn lookup_slow(handle: u64) -> Result<&'static Core, Status> {
    if handle == DEFAULT_HANDLE {
        Ok(default_core()) // first use: create it
    } else {
        Err(Status::InvalidRegistry)
    }
}

/// An operation in progress on a registry: while it lives, the registry's
/// `free` cannot complete.
pub(crate) struct Pinned {
    core: &'static Core,
}

impl std::ops::Deref for Pinned {
    type Target = Core;
    fn deref(&self) -> &Core {
        self.core
    }
}

impl Pinned {
    /// Ends the pin and keeps the core (never freed; it may serve another
    /// registry from then on).
    pub(crate) fn into_core(pinned: Pinned) -> &'static Core {
        let core = pinned.core;
        drop(pinned);
        core
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        hazard::note_unpin(self.core.addr());
        self.core.pins.fetch_sub(1, Ordering::Release);
    }
}

/// Pins the registry `handle` names; `InvalidRegistry` if it is not alive
/// (freed, being freed, forged).
pub(crate) fn pin(handle: u64) -> Result<Pinned, Status> {
    let core = lookup(handle)?;
    // Count in first, then check (SeqCst both; `free` does the reverse):
    // either `free` sees this pin, or this sees DYING.
    core.pins.fetch_add(1, Ordering::SeqCst);
    // SeqCst RMW then SeqCst load already order (Dekker); loom models the
    // pairing only through fences.
    #[cfg(loom)]
    fence(Ordering::SeqCst);
    if core.life.load(Ordering::SeqCst) != handle {
        core.pins.fetch_sub(1, Ordering::SeqCst);
        return Err(Status::InvalidRegistry);
    }
    hazard::note_pin(core.addr());
    Ok(Pinned { core })
}

/// Creates a registry and returns its handle.
pub(crate) fn create() -> Result<u64, Status> {
    default_core();
    for index in 1..MAX_REGISTRIES {
        let core = match core_at(index) {
            Some(c) => c,
            None => install(index, 1 << 32), // generation 1, free
        };
        let index1 = index as u64 + 1;
        let life = core.life.load(Ordering::Acquire);
        if life as u32 != 0 || life >> 32 >= u32::MAX as u64 {
            continue; // in use, or its handles would wrap
        }
        if core
            .life
            .compare_exchange(
                life,
                life | index1 | DYING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            // DYING: ours, not yet usable. Start it afresh.
            core.counters.reset(index);
            core.closed.store(false, Ordering::SeqCst);
            core.life.store(life | index1, Ordering::SeqCst);
            return Ok(life | index1);
        }
    }
    Err(Status::NoMemory)
}

/// Destroys the registry a handle names: refuse the handle, close, wait for
/// every pinned operation, invocation and release, then retire the handle's
/// generation. `WouldDeadlock` from inside one of the registry's own
/// callbacks, releases or operations (nothing changes then).
pub(crate) fn destroy(handle: u64) -> Status {
    if handle == DEFAULT_HANDLE {
        return Status::InvalidArgument;
    }
    let Ok(core) = lookup(handle) else {
        return Status::InvalidRegistry;
    };
    let alive = handle;
    if core.life.load(Ordering::SeqCst) != alive {
        return Status::InvalidRegistry;
    }
    if hazard::inside_registry(core.addr(), |a| core.segments.owns(a)) {
        return Status::WouldDeadlock;
    }
    if core
        .life
        .compare_exchange(alive, alive | DYING, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Status::InvalidRegistry; // freed concurrently
    }
    // Pairs with the fence in `pin`: every later pin sees DYING, or this
    // thread's wait sees the pin.
    fence(Ordering::SeqCst);
    core.close();
    let status = wait::until(0, || {
        core.collect();
        let settled = core.pins.load(Ordering::SeqCst) == 0
            && core.collector.load(Ordering::SeqCst) == COLLECTOR_IDLE
            && core.counters.finished() == core.counters.retired.load(Ordering::SeqCst)
            && !core.any_in_flight();
        if settled {
            Step::Done
        } else {
            Step::Again
        }
    });
    debug_assert_eq!(status, Status::Ok);
    core.life
        .store(((handle >> 32) + 1) << 32, Ordering::SeqCst);
    Status::Ok
}

/// `Core::retire_matching` on every live registry, the default one included;
/// returns how many entries were retired.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn retire_matching_everywhere(
    release: ReleaseFn,
    matches: &dyn Fn(*mut c_void) -> bool,
) -> usize {
    let mut count = 0;
    for_each_core(|core| {
        let life = core.life.load(Ordering::SeqCst);
        if life as u32 != 0 && life & DYING == 0 {
            if let Ok(pinned) = pin(life) {
                count += pinned.retire_matching(release, matches);
            }
        }
    });
    count
}
