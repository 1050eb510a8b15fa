//! The Rust API of signals: a `Signal` freed when dropped, and a
//! `Connection` (one subscription) that unsubscribes when dropped.

use super::ffi::{self as sffi, SignalHandle};
use super::EmitReport;
use crate::api::{Callback, Id, Registry};
use crate::ffi::RegistryHandle;
use crate::{Arg, Status};

/// A signal: one `emit` calls every subscriber, in subscription order.
/// Subscribers are entries of the registry the signal was made over.
/// Dropping the signal frees it (every subscriber is unregistered).
///
/// ```
/// # fn main() -> Result<(), cbreg::Status> {
/// let reg = cbreg::Registry::global();
/// let tick = cbreg::Signal::new(&reg)?;
/// let a = tick.subscribe(|args: &[cbreg::Arg], _: &mut cbreg::Value| {
///     assert_eq!(args[0].as_f64(), Some(440.0));
///     Ok(())
/// })?;
/// let report = tick.emit(&[cbreg::Arg::f64(440.0)])?;
/// assert_eq!(report.called, 1);
/// drop(a); // unsubscribes
/// assert_eq!(tick.emit(&[cbreg::Arg::f64(440.0)])?.called, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Signal {
    handle: SignalHandle,
    registry: RegistryHandle,
}

impl Signal {
    /// A new signal whose subscribers are entries of `reg`.
    pub fn new(reg: &Registry) -> Result<Signal, Status> {
        let registry = RegistryHandle {
            handle: reg.handle(),
        };
        let mut handle = SignalHandle { handle: 0 };
        // SAFETY: a valid out-pointer.
        unsafe { sffi::cbreg_signal_new(registry, &mut handle) }.ok()?;
        Ok(Signal { handle, registry })
    }

    /// The handle C code uses for this signal (`cbreg_signal.handle`).
    pub fn handle(&self) -> u64 {
        self.handle.handle
    }

    /// Subscribes a persistent closure (registered in the signal's
    /// registry) after the current subscribers.
    pub fn subscribe<F: Callback>(&self, f: F) -> Result<Connection, Status> {
        self.subscribe_new(Registry::borrowed(self.registry.handle).register(f)?)
    }

    /// Subscribes a closure that runs at most once (one emit), then
    /// unregisters itself.
    pub fn subscribe_once<F: Callback>(&self, f: F) -> Result<Connection, Status> {
        self.subscribe_new(Registry::borrowed(self.registry.handle).register_once(f)?)
    }

    fn subscribe_new(&self, sub: crate::Subscription) -> Result<Connection, Status> {
        // Unregistered (dropped) if subscribing fails.
        sffi::cbreg_signal_subscribe(self.handle, sub.id()).ok()?;
        Ok(Connection {
            signal: self.handle,
            id: sub.detach(),
        })
    }

    /// Subscribes an existing entry of the signal's registry; dropping the
    /// connection unsubscribes it (and so unregisters it). On failure the
    /// entry stays registered.
    pub fn subscribe_id(&self, id: Id) -> Result<Connection, Status> {
        sffi::cbreg_signal_subscribe(self.handle, id).ok()?;
        Ok(Connection {
            signal: self.handle,
            id,
        })
    }

    /// Calls every live subscriber once with `args`, in subscription order.
    /// `Ok` with the counts when none failed; otherwise the first failure's
    /// status (the counts through [`Signal::emit_report`]).
    pub fn emit(&self, args: &[Arg<'_>]) -> Result<EmitReport, Status> {
        let (status, report) = self.emit_report(args);
        status.ok().map(|_| report)
    }

    /// Calls every live subscriber once with `args`; returns the status and
    /// the counts (called, failed, the first failure).
    pub fn emit_report(&self, args: &[Arg<'_>]) -> (Status, EmitReport) {
        let values = Arg::as_values(args);
        let mut report = EmitReport::default();
        // SAFETY: every `Arg` borrows its memory for at least this call; a
        // valid out-pointer.
        let status = unsafe {
            sffi::cbreg_signal_emit(self.handle, values.as_ptr(), values.len(), &mut report)
        };
        (status, report)
    }

    /// Live subscribers now.
    pub fn len(&self) -> usize {
        let mut n = 0;
        // SAFETY: a valid out-pointer.
        let _ = unsafe { sffi::cbreg_signal_count(self.handle, &mut n) };
        n
    }

    /// Whether no subscriber is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        let _ = sffi::cbreg_signal_free(self.handle);
    }
}

/// One subscription: dropping it unsubscribes (unregisters the entry).
#[must_use = "dropping a Connection unsubscribes the callback"]
#[derive(Debug)]
pub struct Connection {
    signal: SignalHandle,
    id: Id,
}

impl Connection {
    /// The subscriber's entry id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// Unsubscribes now: no emit calls it after this returns. `NotFound` if
    /// it already went (a one-shot ran, the entry was unregistered).
    pub fn disconnect(mut self) -> Status {
        let id = std::mem::take(&mut self.id);
        sffi::cbreg_signal_unsubscribe(self.signal, id)
    }

    /// Keeps the subscription past this value's life; returns its id.
    pub fn detach(mut self) -> Id {
        std::mem::take(&mut self.id)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.id != 0 {
            let _ = sffi::cbreg_signal_unsubscribe(self.signal, self.id);
        }
    }
}
