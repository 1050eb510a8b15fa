//! `clear`: every live entry retired and released without allocating, the
//! retired slots chained through their own links a chunk at a time, with
//! one barrier and one hazard snapshot per chunk; what an invocation is
//! still inside goes to the pending list.

use super::finish::Finished;
use crate::hazard::{self, Hazards};
use crate::registry::slots::{LIVE, STOLEN};
use crate::registry::{reclaimer, Core};
use crate::sync::Ordering;

/// Entries `clear` retires before it releases them: 256 KB of slots, which
/// stay in the cache between the two passes.
const CLEAR_CHUNK: u32 = 4096;

/// A chain of slots `clear` retired (index + 1 of the first; 0 = none).
#[derive(Default)]
struct Chunk {
    head: u32,
    len: u32,
}

impl Core {
    /// Unregisters every live entry; returns how many this call retired.
    /// Allocates nothing: the retired slots are chained through their own
    /// links, a chunk at a time (so the second pass over a chunk finds it
    /// in the cache), with one barrier and one hazard snapshot per chunk.
    pub(crate) fn clear(&self) -> usize {
        let me = hazard::token();
        let mut chunk = Chunk::default();
        let mut count = 0;
        let mut deferred = false;
        self.for_each_used_slot(|slot| {
            let state = slot.state.load(Ordering::SeqCst);
            if state & LIVE != 0 && Self::take(slot, state, me) {
                slot.next.store(chunk.head, Ordering::Relaxed);
                chunk.head = slot.index + 1;
                chunk.len += 1;
                count += 1;
                if chunk.len == CLEAR_CHUNK {
                    deferred |= self.release_cleared(std::mem::take(&mut chunk));
                }
            }
        });
        deferred |= self.release_cleared(chunk);
        if deferred {
            self.collect();
        }
        self.drain_if_pending();
        count
    }

    /// Releases a chunk of entries `clear` retired: those no invocation is
    /// inside now, the rest through the pending list. True if any waits.
    fn release_cleared(&self, chunk: Chunk) -> bool {
        if chunk.len == 0 {
            return false;
        }
        self.counters
            .retired
            .fetch_add(u64::from(chunk.len), Ordering::SeqCst);
        if hazard::is_realtime() {
            self.walk(chunk.head, |slot| self.push_pending(slot));
            reclaimer::wake();
            return false;
        }
        hazard::heavy_barrier();
        let hazards = Hazards::snapshot();
        let mut deferred = false;
        let mut ready = 0;
        self.walk(chunk.head, |slot| {
            if slot.state.load(Ordering::Acquire) & STOLEN != 0 {
                self.let_go_of_stolen(slot);
            } else if slot.inflight.load(Ordering::SeqCst) != 0 || hazards.contains(slot.addr()) {
                self.push_pending(slot);
                deferred = true;
            } else {
                slot.next.store(ready, Ordering::Relaxed);
                ready = slot.index + 1;
            }
        });
        let mut done = Finished::new(self);
        self.finish_ready(ready, false, &mut done);
        deferred
    }
}
