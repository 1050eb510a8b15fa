//! The one status enum every cbreg function returns.

use std::ffi::c_char;

/// Outcome of every cbreg call. `CBREG_STATUS_OK` is 0.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// No live entry has this id (never registered, unregistered, cleared,
    /// a one-shot that already ran, or a stale id from an older entry).
    NotFound = 1,
    /// The registry is closed, or the callback's runtime is finalizing.
    Closed = 2,
    /// A null pointer, id 0, unknown flags, a bad value tag or invalid UTF-8.
    InvalidArgument = 3,
    /// The registry handle is unknown or was destroyed.
    InvalidRegistry = 4,
    /// The callback reported failure (or raised an exception or panicked).
    CallbackFailed = 5,
    /// Waiting would wait for the calling thread itself.
    WouldDeadlock = 6,
    /// Out of memory, or a fixed capacity is exhausted.
    NoMemory = 7,
    /// A bug in cbreg (a caught panic); please report it.
    Internal = 8,
}

/// Every status, in code order.
pub(crate) const ALL_STATUSES: [Status; 9] = [
    Status::Ok,
    Status::NotFound,
    Status::Closed,
    Status::InvalidArgument,
    Status::InvalidRegistry,
    Status::CallbackFailed,
    Status::WouldDeadlock,
    Status::NoMemory,
    Status::Internal,
];

impl Status {
    /// The status for a raw code returned by a foreign callback; codes cbreg
    /// does not know become `CallbackFailed`.
    #[inline(always)]
    pub fn from_code(code: u32) -> Status {
        if code == 0 {
            return Status::Ok;
        }
        ALL_STATUSES
            .get(code as usize)
            .copied()
            .unwrap_or(Status::CallbackFailed)
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

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message().trim_end_matches('\0'))
    }
}

impl std::error::Error for Status {}
