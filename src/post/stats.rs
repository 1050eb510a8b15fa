//! A target's sizes and counters: `PostConfig` (`cbreg_post_config`),
//! `PostStats` (`cbreg_post_stats`) and how a target adds them up.
//!
//! The sender counts nothing shared: `posted` and `dropped_full` are sums
//! over the rings (their tails and refusals), less what earlier targets at
//! the same index left in them; the other counters are written by the one
//! consumer (`drain.rs`) and read here.

use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering};

use super::target::{for_each, Target};
use crate::Status;

/// The flags `cbreg_post` knows.
pub(crate) const NO_WAKE: u32 = 1;
pub(crate) const COALESCE: u32 = 2;

/// Sizes and period of a target (`cbreg_post_config`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostConfig {
    /// Events each sender's ring holds (rounded up to a power of two;
    /// 0: the default, 1024).
    pub ring_events: u32,
    /// Bytes of each sender's arena for strings, bytes, arrays and
    /// arguments past the second (rounded up to a power of two; 0: the
    /// default, 16384).
    pub ring_bytes: u32,
    /// The longest the consumer sleeps without a wake, in microseconds
    /// (0: the default, 1000). What bounds the delay of a
    /// `CBREG_POST_NO_WAKE` event.
    pub period_us: u32,
}

impl PostConfig {
    pub(crate) const DEFAULT: PostConfig = PostConfig {
        ring_events: 1024,
        ring_bytes: 16384,
        period_us: 1000,
    };

    /// Zeros replaced by defaults, sizes rounded up to powers of two.
    pub(crate) fn normalized(self) -> Result<PostConfig, Status> {
        let pick = |v: u32, d: u32| if v == 0 { d } else { v };
        let events = pick(self.ring_events, Self::DEFAULT.ring_events);
        let bytes = pick(self.ring_bytes, Self::DEFAULT.ring_bytes);
        if events > 1 << 24 || bytes > 1 << 30 {
            return Err(Status::InvalidArgument);
        }
        Ok(PostConfig {
            ring_events: events.next_power_of_two(),
            ring_bytes: bytes.next_power_of_two().max(8),
            period_us: pick(self.period_us, Self::DEFAULT.period_us),
        })
    }
}

impl Default for PostConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of one target (`cbreg_post_stats`). At rest (nothing pending)
/// `posted` equals `delivered` plus every `dropped_*` plus `coalesced`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostStats {
    /// Posts that reached this target (queued or refused as full).
    pub posted: u64,
    /// Events delivered (the callback ran, whatever it returned).
    pub delivered: u64,
    /// Posts refused with `CBREG_STATUS_FULL`.
    pub dropped_full: u64,
    /// Events whose entry was gone by delivery (unregistered, cleared, a
    /// one-shot that already ran, its registry freed).
    pub dropped_stale: u64,
    /// Events whose registry was closed by delivery, or left when the
    /// target was freed.
    pub dropped_closed: u64,
    /// Events pending in the parent when this process was forked (the
    /// parent delivers them, the child drops them).
    pub dropped_fork: u64,
    /// Coalescing events skipped because a newer one for the same entry
    /// from the same sender followed.
    pub coalesced: u64,
    /// Events queued and not yet taken.
    pub pending: u64,
    /// The most events a drain found waiting in one ring.
    pub high_water: u64,
    /// Configured events per ring and arena bytes per ring.
    pub ring_events: u64,
    pub ring_bytes: u64,
    /// Rings made (sending threads served at once).
    pub rings: u64,
    /// Wakes sent by senders (system calls).
    pub wakes: u64,
}

impl Target {
    pub(crate) fn stats(&self) -> PostStats {
        let load = |c: &StdAtomicU64| c.load(Ordering::Relaxed);
        let (mut posted, mut full, mut pending, mut rings) = (0, 0, 0, 0);
        for ring in self.made_rings() {
            posted += ring.posted();
            full += ring.refused();
            pending += ring.pending();
            rings += 1;
        }
        let no_ring = load(&self.no_ring);
        PostStats {
            posted: posted - load(&self.base_posted) + no_ring,
            delivered: load(&self.delivered),
            dropped_full: full - load(&self.base_full) + no_ring,
            dropped_stale: load(&self.stale),
            dropped_closed: load(&self.closed),
            dropped_fork: load(&self.forked),
            coalesced: load(&self.coalesced),
            pending,
            high_water: load(&self.high_water),
            ring_events: self.ring_events as u64,
            ring_bytes: self.ring_bytes as u64,
            rings,
            wakes: self.wake.signals.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the consumer's counters and takes the rings' totals as the
    /// new base (a pump made again at an index).
    pub(super) fn reset_counters(&self) {
        for c in [
            &self.delivered,
            &self.stale,
            &self.closed,
            &self.forked,
            &self.coalesced,
            &self.high_water,
            &self.no_ring,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        let (mut posted, mut full) = (0, 0);
        for ring in self.made_rings() {
            posted += ring.posted();
            full += ring.refused();
        }
        self.base_posted.store(posted, Ordering::Relaxed);
        self.base_full.store(full, Ordering::Relaxed);
    }
}

/// Every target's counters summed (`cbreg_post_stats` of no target).
pub(crate) fn total_stats() -> PostStats {
    let mut sum = PostStats::default();
    for_each(|t| {
        let s = t.stats();
        sum.posted += s.posted;
        sum.delivered += s.delivered;
        sum.dropped_full += s.dropped_full;
        sum.dropped_stale += s.dropped_stale;
        sum.dropped_closed += s.dropped_closed;
        sum.dropped_fork += s.dropped_fork;
        sum.coalesced += s.coalesced;
        sum.pending += s.pending;
        sum.high_water = sum.high_water.max(s.high_water);
        sum.rings += s.rings;
        sum.wakes += s.wakes;
    });
    sum
}
