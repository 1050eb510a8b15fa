//! How a sender wakes a consumer that is going to sleep, and only then.
//!
//! The consumer publishes `sleeping`, runs the heavy barrier, and looks at
//! every ring once more before it sleeps on the wake descriptor; a sender
//! publishes its event, runs the light barrier and reads `sleeping`. The
//! barrier pair (`sync::barrier`, the same one that orders an invoker's
//! hazard against a writer's state change) makes sure that one of the two
//! sees the other: either the consumer's last look finds the event, or the
//! sender finds the flag. A sender that finds it swaps it back to 0 and
//! signals the descriptor; the swap lets exactly one sender of a batch make
//! the system call. With membarrier the sender's barrier is a compiler
//! fence, so a post to an awake consumer costs one more load, of a line the
//! consumer writes only when it falls asleep or wakes.
//!
//! A `CBREG_POST_NO_WAKE` sender skips even that call; its consumer then
//! finds the event when its period ends (`Wake::sleep` never sleeps longer
//! than the period it is given).
//!
//! The descriptor is an eventfd on Linux and a non-blocking pipe on other
//! Unix systems: the host of a pump polls it. Elsewhere there is none and a
//! consumer sleeps for its period.

use std::sync::atomic::{AtomicI32, AtomicU64 as StdAtomicU64};
use std::time::Duration;

use crate::sync::{barrier, AtomicBool, AtomicU32, Ordering};

pub(crate) struct Wake {
    /// 1 while the consumer is asleep or about to be.
    sleeping: AtomicU32,
    /// A signal was sent since the consumer last went to sleep (what the
    /// loom models observe in place of the descriptor).
    signalled: AtomicBool,
    /// The descriptor a sleeping consumer waits on (-1 where none), and the
    /// one a sender writes (the same one for an eventfd).
    read_fd: AtomicI32,
    write_fd: AtomicI32,
    /// Signals sent: system calls made by senders.
    pub(crate) signals: StdAtomicU64,
}

impl Wake {
    pub(crate) fn new() -> Wake {
        let (read_fd, write_fd) = descriptor();
        Wake {
            sleeping: AtomicU32::new(0),
            signalled: AtomicBool::new(false),
            read_fd: AtomicI32::new(read_fd),
            write_fd: AtomicI32::new(write_fd),
            signals: StdAtomicU64::new(0),
        }
    }

    /// The descriptor that becomes readable when a sender signals (-1
    /// where the system has none).
    pub(crate) fn fd(&self) -> i32 {
        self.read_fd.load(Ordering::Acquire)
    }

    // ---- sender ----

    /// After publishing an event: wakes the consumer if it said it is going
    /// to sleep (unless `quiet`).
    #[inline(always)]
    pub(crate) fn after_publish(&self, quiet: bool) {
        barrier::light();
        if self.sleeping.load(Ordering::Relaxed) != 0 && !quiet {
            self.signal_if_sleeping();
        }
    }

    /// `after_publish` (not quiet) for a caller that has decided which
    /// light barrier the process uses (`barrier::light_is_compiler_only`).
    #[inline(always)]
    pub(crate) fn after_publish_fenced(&self, fenced: bool) {
        barrier::light_if(fenced);
        if self.sleeping.load(Ordering::Relaxed) != 0 {
            self.signal_if_sleeping();
        }
    }

    /// `after_publish` where the light barrier is a compiler fence, the
    /// signal left to the caller: whether the consumer said it is going to
    /// sleep (then `signal_if_sleeping`).
    #[inline(always)]
    pub(crate) fn must_signal_unfenced(&self) -> bool {
        barrier::light_unfenced();
        self.sleeping.load(Ordering::Relaxed) != 0
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn signal_if_sleeping(&self) {
        if self.sleeping.swap(0, Ordering::AcqRel) != 0 {
            self.signal();
        }
    }

    /// Makes the descriptor readable (and the consumer's sleep end).
    pub(crate) fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        self.signals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(loom))]
        write_one(self.write_fd.load(Ordering::Acquire));
    }

    // ---- consumer ----

    /// Says the consumer is going to sleep. After it, the consumer looks at
    /// every ring once more: anything published before this is seen there,
    /// anything after finds the flag.
    pub(crate) fn prepare_sleep(&self) {
        self.signalled.store(false, Ordering::Relaxed);
        self.sleeping.store(1, Ordering::Relaxed);
        barrier::heavy();
    }

    /// The last look found work: stay awake.
    pub(crate) fn cancel_sleep(&self) {
        self.sleeping.store(0, Ordering::Relaxed);
    }

    /// Whether a sender signalled since `prepare_sleep`.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn was_signalled(&self) -> bool {
        self.signalled.load(Ordering::Acquire)
    }

    /// Sleeps until a signal or for `period` (forever when `None`), then
    /// empties the descriptor and is awake again.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn sleep(&self, period: Option<Duration>) {
        #[cfg(not(loom))]
        wait_readable(self.fd(), period);
        #[cfg(loom)]
        let _ = period;
        self.clear();
        self.sleeping.store(0, Ordering::Relaxed);
    }

    /// Empties the descriptor (a host's drain starts with it).
    pub(crate) fn clear(&self) {
        #[cfg(not(loom))]
        read_all(self.fd());
    }

    /// A forked child: new descriptors (the inherited ones are shared with
    /// the parent), nobody asleep.
    #[cfg_attr(any(loom, not(unix)), allow(dead_code))]
    pub(crate) fn after_fork_in_child(&self) {
        let (old_read, old_write) = (self.fd(), self.write_fd.load(Ordering::Acquire));
        let (read_fd, write_fd) = descriptor();
        self.read_fd.store(read_fd, Ordering::Release);
        self.write_fd.store(write_fd, Ordering::Release);
        close(old_read);
        if old_write != old_read {
            close(old_write);
        }
        self.sleeping.store(0, Ordering::Relaxed);
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let (r, w) = (self.fd(), self.write_fd.load(Ordering::Acquire));
        close(r);
        if w != r {
            close(w);
        }
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
fn descriptor() -> (i32, i32) {
    // SAFETY: no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    (fd, fd)
}

#[cfg(all(unix, not(target_os = "linux"), not(loom)))]
fn descriptor() -> (i32, i32) {
    let mut fds = [-1; 2];
    // SAFETY: a valid two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return (-1, -1);
    }
    for fd in fds {
        // SAFETY: descriptors just made.
        unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    (fds[0], fds[1])
}

#[cfg(any(loom, not(unix)))]
fn descriptor() -> (i32, i32) {
    (-1, -1)
}

fn close(fd: i32) {
    #[cfg(all(unix, not(loom)))]
    if fd >= 0 {
        // SAFETY: a descriptor this module made and no longer uses.
        unsafe { libc::close(fd) };
    }
    #[cfg(any(loom, not(unix)))]
    let _ = fd;
}

#[cfg(all(unix, not(loom)))]
fn write_one(fd: i32) {
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: 8 readable bytes. A full pipe or a counter at its limit
        // is already readable, which is all a signal must achieve.
        let _ = unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    }
}

#[cfg(all(not(unix), not(loom)))]
fn write_one(_fd: i32) {}

#[cfg(all(unix, not(loom)))]
fn read_all(fd: i32) {
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 64];
    // An eventfd is emptied by one read; a pipe may need more.
    // SAFETY: a writable buffer of its length.
    while unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
}

#[cfg(all(not(unix), not(loom)))]
fn read_all(_fd: i32) {}

#[cfg(all(unix, not(loom)))]
fn wait_readable(fd: i32, period: Option<Duration>) {
    if fd < 0 {
        std::thread::sleep(period.unwrap_or(Duration::from_millis(1)));
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = period.map_or(-1, |p| {
        p.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    #[cfg(target_os = "linux")]
    if let Some(p) = period {
        let ts = libc::timespec {
            tv_sec: p.as_secs() as libc::time_t,
            tv_nsec: p.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        return;
    }
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout) };
}

#[cfg(all(not(unix), not(loom)))]
fn wait_readable(_fd: i32, period: Option<Duration>) {
    std::thread::sleep(period.unwrap_or(Duration::from_millis(1)));
}
