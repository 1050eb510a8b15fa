//! The one status enum every cbreg function returns.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_char;

/// Outcome of every cbreg call. `CBREG_STATUS_OK` is 0.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// No live entry has this id (id 0, never registered, unregistered, cleared,
    /// a one-shot that already ran, or a stale id from an older entry).
    NotFound = 1,
    /// The registry is closed; from invoke: the callback's runtime is
    /// finalizing (the callback returned this code itself).
    Closed = 2,
    /// A null pointer, unknown flags, a bad value tag, a BOOL byte other
    /// than 0 or 1, more than `CBREG_MAX_ARGS` arguments, or invalid UTF-8.
    InvalidArgument = 3,
    /// The registry handle is unknown or was destroyed.
    InvalidRegistry = 4,
    /// The callback reported failure (returned a nonzero code, raised an
    /// exception or panicked); `cbreg_last_callback_code` gives its code.
    CallbackFailed = 5,
    /// Waiting would wait for the calling thread itself.
    WouldDeadlock = 6,
    /// Out of memory, or a fixed capacity is exhausted.
    NoMemory = 7,
    /// A bug in cbreg (a caught panic); please report it.
    Internal = 8,
    /// `cbreg_post`: the sender's queue to the entry's target has no room
    /// for this event (or, on a thread marked real-time, no queue was
    /// reserved for it): nothing was queued, and the refusal is counted.
    Full = 9,
    /// The signal handle is unknown or the signal was freed.
    InvalidSignal = 10,
}

/// How many statuses cbreg defines: their codes are 0 to
/// `CBREG_STATUS_COUNT - 1`.
pub const CBREG_STATUS_COUNT: u32 = 11;

/// Every status, in code order: the one list (`cbreg_status_str`,
/// `TryFrom<u32>`; the C++ and Python lists are checked against it).
pub(crate) const ALL_STATUSES: [Status; CBREG_STATUS_COUNT as usize] = [
    Status::Ok,
    Status::NotFound,
    Status::Closed,
    Status::InvalidArgument,
    Status::InvalidRegistry,
    Status::CallbackFailed,
    Status::WouldDeadlock,
    Status::NoMemory,
    Status::Internal,
    Status::Full,
    Status::InvalidSignal,
];

impl Status {
    /// The status an invoke reports for a callback's own return code: 0 is
    /// `Ok`; `CBREG_STATUS_CLOSED` means "my runtime is closed" (an adapter
    /// for a finalizing interpreter returns it) and passes through; every
    /// other code is `CallbackFailed`, and the code itself is kept for
    /// `cbreg_last_callback_code` on this thread.
    #[inline(always)]
    pub(crate) fn from_callback_code(code: u32) -> Status {
        if code == 0 {
            Status::Ok
        } else {
            callback_failed(code)
        }
    }
    /// A short English description, NUL-terminated for C.
    pub fn message(self) -> &'static str {
        match self {
            Status::Ok => "ok\0",
            Status::NotFound => "not found\0",
            Status::Closed => "closed\0",
            Status::InvalidArgument => "invalid argument\0",
            Status::InvalidRegistry => "invalid registry\0",
            Status::CallbackFailed => "callback failed\0",
            Status::WouldDeadlock => "would deadlock\0",
            Status::NoMemory => "out of memory or capacity\0",
            Status::Internal => "internal error\0",
            Status::Full => "queue full\0",
            Status::InvalidSignal => "invalid signal\0",
        }
    }

    pub(crate) fn message_ptr(self) -> *const c_char {
        self.message().as_ptr().cast()
    }

    /// `Ok(())` for `Status::Ok`, `Err(self)` otherwise.
    pub fn ok(self) -> Result<(), Status> {
        match self {
            Status::Ok => Ok(()),
            e => Err(e),
        }
    }
}

#[cold]
fn callback_failed(code: u32) -> Status {
    LAST_CALLBACK_CODE.with(|c| c.set(code));
    if code == Status::Closed as u32 {
        Status::Closed
    } else {
        Status::CallbackFailed
    }
}

crate::sync::thread_cell! { static LAST_CALLBACK_CODE: u32 = 0; }

/// The code the last callback that failed on this thread returned (0 if
/// none has): what `CallbackFailed` hides.
pub fn last_callback_code() -> u32 {
    crate::ffi::cbreg_last_callback_code()
}

/// `last_callback_code` as this copy of the library saw it.
pub(crate) fn last_callback_code_here() -> u32 {
    LAST_CALLBACK_CODE.with(|c| c.get())
}

/// The status with this code, if cbreg defines one.
impl TryFrom<u32> for Status {
    type Error = u32;
    fn try_from(code: u32) -> Result<Status, u32> {
        ALL_STATUSES.get(code as usize).copied().ok_or(code)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message().trim_end_matches('\0'))
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_sits_at_its_code() {
        for (code, status) in ALL_STATUSES.iter().enumerate() {
            assert_eq!(*status as usize, code);
            assert_eq!(Status::try_from(code as u32), Ok(*status));
        }
        assert_eq!(
            Status::try_from(ALL_STATUSES.len() as u32),
            Err(CBREG_STATUS_COUNT)
        );
    }
}
