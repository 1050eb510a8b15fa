//! The Rust API of post: `Registry::post`, entry targets, and `Pump`, the
//! RAII owner of a target a host drains from its own loop. Every method
//! goes through the C ABI, so a statically linked copy reaches the
//! process's one set of targets (see `rendezvous.rs`).

use super::abi::{self, TargetHandle, CBREG_POST_COALESCE, CBREG_POST_NO_WAKE};
use super::{PostConfig, PostStats};
use crate::{Arg, Id, Registry, Status};

/// How a post behaves (`cbreg_post`'s `flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostFlags(u32);

impl PostFlags {
    /// Wake the consumer if it is going to sleep (at most one system call).
    pub const NONE: PostFlags = PostFlags(0);
    /// No system call at all; the consumer finds the event within its period.
    pub const NO_WAKE: PostFlags = PostFlags(CBREG_POST_NO_WAKE);
    /// Only this sender's newest pending event for the entry is delivered.
    pub const COALESCE: PostFlags = PostFlags(CBREG_POST_COALESCE);

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for PostFlags {
    type Output = PostFlags;
    fn bitor(self, other: PostFlags) -> PostFlags {
        PostFlags(self.0 | other.0)
    }
}

fn registry_handle(reg: &Registry) -> crate::ffi::RegistryHandle {
    crate::ffi::RegistryHandle {
        handle: reg.handle(),
    }
}

impl Registry {
    /// Queues an event for entry `id` and returns at once: the arguments
    /// are copied, and the entry's target invokes it later (see
    /// `cbreg_post`). `Full` when the sender's queue has no room.
    #[inline]
    pub fn post(&self, id: Id, args: &[Arg<'_>]) -> Result<(), Status> {
        self.post_with(id, args, PostFlags::NONE)
    }

    /// `post` with flags.
    #[inline]
    pub fn post_with(&self, id: Id, args: &[Arg<'_>], flags: PostFlags) -> Result<(), Status> {
        let values = Arg::as_values(args);
        // SAFETY: every `Arg` borrows its memory for at least this call,
        // and post copies it.
        unsafe {
            super::push::post(
                registry_handle(self),
                id,
                values.as_ptr(),
                values.len(),
                flags.0,
            )
        }
        .ok()
    }

    /// Sets where entry `id`'s events go: a pump's target, or
    /// [`Target::DISPATCHER`] (the default).
    pub fn set_target(&self, id: Id, target: Target) -> Result<(), Status> {
        abi::cbreg_entry_set_target(registry_handle(self), id, target.0).ok()
    }
}

/// A target handle: where an entry's events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target(pub(crate) TargetHandle);

impl Target {
    /// cbreg's native dispatcher thread, every entry's default target.
    pub const DISPATCHER: Target = Target(TargetHandle { handle: 0 });

    /// The handle C code uses (`cbreg_target.handle`).
    pub fn handle(self) -> u32 {
        self.0.handle
    }

    /// Claims the calling thread's queue to this target ahead of time (and
    /// starts the dispatcher, for it): do it before a thread goes real-time.
    pub fn reserve(self) -> Result<(), Status> {
        abi::cbreg_post_reserve(self.0).ok()
    }

    /// This target's counters.
    pub fn stats(self) -> Result<PostStats, Status> {
        let mut out = PostStats::default();
        // SAFETY: a valid out-pointer.
        unsafe { abi::cbreg_post_stats_get(self.0, &mut out) }.ok()?;
        Ok(out)
    }

    /// The native dispatcher's sizes (before it starts) and period.
    pub fn configure_dispatcher(config: PostConfig) -> Result<(), Status> {
        // SAFETY: a valid config.
        unsafe { abi::cbreg_dispatcher_configure(&config) }.ok()
    }

    /// Every target's counters, summed.
    pub fn total_stats() -> PostStats {
        let mut out = PostStats::default();
        // SAFETY: a valid out-pointer.
        let _ = unsafe { abi::cbreg_post_stats_total(&mut out) };
        out
    }
}

/// A target that the host drains from its own loop: poll [`Pump::fd`] for
/// reading, call [`Pump::drain`] when it is readable. Freed when dropped
/// (events still queued are dropped and counted as closed).
#[derive(Debug)]
pub struct Pump {
    target: Target,
}

impl Pump {
    /// A pump with the default sizes and period.
    pub fn new() -> Result<Pump, Status> {
        Self::with_config(PostConfig::default())
    }

    pub fn with_config(config: PostConfig) -> Result<Pump, Status> {
        let mut out = TargetHandle { handle: 0 };
        // SAFETY: valid pointers.
        unsafe { abi::cbreg_pump_new(&config, &mut out) }.ok()?;
        Ok(Pump {
            target: Target(out),
        })
    }

    /// The target to set on entries.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The descriptor that is readable while events wait (-1 where none).
    pub fn fd(&self) -> i32 {
        let mut fd = -1;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { abi::cbreg_pump_fd(self.target.0, &mut fd) };
        fd
    }

    /// Delivers up to `max` events on this thread; returns how many it took.
    pub fn drain(&self, max: usize) -> usize {
        let mut n = 0;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { abi::cbreg_pump_drain(self.target.0, max, &mut n) };
        n
    }

    pub fn stats(&self) -> PostStats {
        self.target.stats().unwrap_or_default()
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        let _ = abi::cbreg_pump_free(self.target.0);
    }
}
