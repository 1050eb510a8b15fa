"""Exception classes, one per failing cbreg status (looked up by the native
code through BY_STATUS, indexed by status code)."""


class Error(Exception):
    """Base class of every cbreg error; ``status`` is the C status code."""

    status = -1


class NotFound(Error, LookupError):
    """No live entry has this id (unregistered, cleared, a one-shot that ran)."""

    status = 1


class Closed(Error):
    """The registry is closed, or Python is shutting down (after the atexit hook)."""

    status = 2


class InvalidArgument(Error, ValueError):
    """A bad argument: id 0, an unsupported value, invalid UTF-8."""

    status = 3


class InvalidRegistry(Error):
    """The registry handle is unknown or was destroyed."""

    status = 4


class CallbackFailed(Error):
    """The callback failed (a native callback's status; Python exceptions
    propagate as themselves when invoked from Python)."""

    status = 5


class WouldDeadlock(Error):
    """Waiting would wait for the calling thread itself."""

    status = 6


class NoMemory(Error, MemoryError):
    """Out of memory, or a fixed capacity is exhausted."""

    status = 7


class InternalError(Error):
    """A bug in cbreg (a caught panic); please report it."""

    status = 8


class Full(Error):
    """A post found no room in the sender's queue to the entry's target:
    nothing was queued, and the refusal is counted."""

    status = 9


class InvalidSignal(Error):
    """The signal handle is unknown or the signal was freed."""

    status = 10


# Index = status code; OK (0) has no exception. tests/python/test_statuses.py
# checks it against the library's own list (cbreg_status_str).
BY_STATUS = (Error, NotFound, Closed, InvalidArgument, InvalidRegistry,
             CallbackFailed, WouldDeadlock, NoMemory, InternalError, Full, InvalidSignal)
