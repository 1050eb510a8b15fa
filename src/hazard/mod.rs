//! Per-thread state: how a thread announces what it is inside, and how
//! other threads see it.
//!
//! Each thread that invokes claims one `ThreadRecord` from a fixed pool that
//! is allocated once, when the first registry is created, so the first
//! invoke on a new thread allocates nothing, not even in libc. A record holds
//! a few hazard cells (one per nesting level) written only by its owner;
//! writers scan every record after a heavy barrier before they release an
//! entry (`docs/protocol.md`). A thread that finds the pool empty, or nests
//! deeper than the cells allow, uses the slot's shared `inflight` counter.
//!
//! A record goes back to the pool when its thread exits, through a pthread
//! key's destructor, but only where setting the key's value cannot allocate
//! (glibc allocates for keys past the first 32: see `exit_key`). Otherwise,
//! and as a backstop, a record is claimed with the owner's kernel thread id
//! and a thread that needs a record while none is free (or the reclaimer,
//! about once a second) takes back those whose owner no longer exists.
//!
//! The thread also keeps, for itself alone, what no other thread needs to
//! see but that it must know to refuse a wait on itself: a list of frames on
//! its own stack (invocations without a cell, collections in progress) and
//! the registries it has pinned.
//!
//! The files beside this one each own one concern:
//!
//! - `record.rs`: a thread record (its hazard cells, its wait mark, its
//!   invocation counters) and what its owner writes into it;
//! - `pool.rs`: the pool of records and how a thread claims its own (the
//!   record word the invoke fast path reads);
//! - `exit.rs`: how records go back to the pool: at thread exit, when their
//!   owner no longer exists, and in a forked child;
//! - `scan.rs`: what a writer sees of other threads: the heavy barrier, the
//!   hazard scan and wait-cycle detection;
//! - `this_thread.rs`: what a thread keeps for itself alone: its real-time
//!   mark, its token, its frames and its pins.

mod exit;
mod pool;
mod record;
mod scan;
mod this_thread;

pub(crate) use exit::{current_tid, take_back_records_of_exited_threads, thread_exists};
pub(crate) use pool::{fast_record, init, invoked_total, record};
pub(crate) use record::{ThreadRecord, CELLS, COUNTED_REGISTRIES};
pub(crate) use scan::{
    heavy_barrier, heavy_barrier_is_costly, is_hazarded, set_waiting_for, wait_would_cycle, Hazards,
};
pub(crate) use this_thread::{
    for_each_frame, inside_anything, inside_registry, inside_slot, is_realtime, my_pins,
    never_realtime, note_pin, note_unpin, set_realtime, token, Frame, FRAME_COLLECT, FRAME_INVOKE,
};
