//! cbreg: a shutdown-safe, thread-safe callback registry for native code.
//!
//! A Rust core owns the table of callbacks; C, C++, Rust and Python all
//! register into and invoke from it. Entries hold an opaque context plus a
//! release function, and the registry decides when and where that release
//! runs: exactly once, never under a lock, never while the entry is being
//! invoked, never on a thread marked real-time. Invoke is lock-free and
//! allocation-free. See `README.md` for the map and `include/cbreg.h` for the
//! C reference.
//!
//! ```
//! # fn main() -> Result<(), cbreg::Status> {
//! let reg = cbreg::Registry::global();
//! let sub = reg.register(|args: &[cbreg::Arg], ret: &mut cbreg::Value| {
//!     let name = args[1].as_str().unwrap_or("?"); // borrowed for the call: no unsafe
//!     println!("{name}");
//!     *ret = cbreg::Value::f64(args[0].as_f64().unwrap_or(0.0) * 2.0);
//!     Ok(())
//! })?;
//! let args = [cbreg::Arg::f64(220.0), cbreg::Arg::str("A3")];
//! assert_eq!(reg.invoke(sub.id(), &args)?.as_f64(), Some(440.0));
//! let id = sub.id();
//! drop(sub); // unregisters
//! assert_eq!(reg.invoke(id, &[]).unwrap_err(), cbreg::Status::NotFound);
//! # Ok(())
//! # }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod api;
mod arg;
pub mod ffi;
mod fork;
mod hazard;
pub mod post;
#[cfg(feature = "python")]
pub mod python;
/// The Python adapter's gate alone (no CPython in it), for its loom model.
/// cbindgen:ignore
#[cfg(all(loom, not(feature = "python")))]
#[doc(hidden)]
#[path = "python/gate.rs"]
pub mod python_gate;
mod registry;
mod rendezvous;
mod signal;
mod status;
mod sync;
mod tls_word;
mod value;
mod wait;

/// What tests of this library observe that no user needs. Not part of the
/// API: it may change at any time.
#[doc(hidden)]
pub mod testing {
    /// Heavy barriers this copy of the library has run (each one a system
    /// call where the process has `membarrier`).
    pub fn heavy_barriers() -> u64 {
        crate::sync::barrier::HEAVY_RUNS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counts of the private registry that holds signals' subscriber
    /// lists: every list made is registered once and released once.
    pub fn signal_snapshots() -> crate::Stats {
        crate::signal::snapshot_stats()
    }
}

pub use api::{set_thread_realtime, Callback, Id, Registry, Site, Subscription};
pub use arg::Arg;
pub use post::{PostConfig, PostFlags, PostStats, Pump, Target};
pub use registry::{CallFn, ReleaseFn, Stats, ENTRY_BYTES};
pub use signal::api::{Connection, Signal};
pub use signal::ffi::SignalHandle;
pub use signal::EmitReport;
pub use status::{last_callback_code, Status};
pub use value::{Payload, Tag, Value, ValueDropFn};
