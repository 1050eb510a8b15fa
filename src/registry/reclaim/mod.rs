//! Retirement and release: who owns a retired entry, where its release
//! runs, the pending list and its collector, `clear`, and the one wait
//! (`unregister_wait`).
//!
//! Whoever moves a slot from LIVE to RETIRED with one CAS (unregister,
//! clear, close, or the invoker of a one-shot) owns its release. The owner
//! runs a heavy barrier and looks for invokers inside: if there are none it
//! finishes the entry at once, otherwise the slot goes on the pending list
//! and the last invoker to leave (or the next drain point, or the
//! reclaimer thread for real-time threads) finishes it. Finishing runs the
//! release, then moves the slot to its next generation and frees it.
//!
//! Batches. While other threads hold records, the heavy barrier is a system
//! call (`membarrier`), too dear to pay per unregister. An unregister then
//! puts the slot on the pending list without one (unless the entry was
//! registered `CBREG_PROMPT`): the barrier is paid once per batch, by the
//! collect that finds `BATCH` entries waiting, by any explicit collect, by
//! the last invoker of an entry retired under it, or by the reclaimer
//! thread, which runs within `reclaimer::PERIOD`. Nothing else changes: a
//! slot is finished only after a heavy barrier and a look at every hazard,
//! as before.
//!
//! Bounds. The entries left for batches are counted (`batched`) until a
//! round takes them; past `BACKLOG` an unregister pays its own barrier,
//! and one collection runs at most `MAX_ROUNDS` rounds for others, so the
//! pending list, the memory its slots hold and the releases one call runs
//! for others are all bounded whatever the number of threads
//! (`docs/protocol.md` section 3 states the figures).
//!
//! Waiters finish what they wait for. Beginning a release is one CAS
//! (FINISHING), by the slot's holder or by a waiter of that entry
//! (`unregister_wait`), which takes it over once its own barrier finds no
//! invoker inside (`steal`): a waiter waits for its entry's invocations and
//! release only, never for a neighbour in the same batch. The holder and
//! the waiter then agree with one CAS each which of them recycles the slot
//! (RAN, HANDED).
//!
//! The files beside this one each own one step:
//!
//! - `retire.rs`: taking an entry (the one CAS), retirement, batching and
//!   the pending list;
//! - `finish.rs`: running a release and recycling its slot, and the
//!   hand-over between a slot's holder and a waiter (`steal`);
//! - `collect.rs`: the collector: drain points, rounds, and the reclaimer's
//!   and waiters' ways in;
//! - `clear.rs`: `clear`, a chunk at a time;
//! - `unregister_wait.rs`: the one wait.

mod clear;
mod collect;
mod finish;
mod retire;
mod unregister_wait;

/// Entries an unregister leaves for a batch before it collects them itself.
pub(crate) const BATCH: u32 = 64;

/// Entries left for batches that no collection has taken yet, past which
/// an unregister pays its own barrier instead (see "Bounds").
pub(crate) const BACKLOG: u32 = 16 * BATCH;
