//! The one place the core takes its synchronisation primitives from.
//!
//! Under `--cfg loom` the atomics, statics and thread-locals come from loom,
//! so the model tests in `tests/loom.rs` check the real registry code. The
//! two barriers of the invoke protocol live here too: the invoker pays a
//! `light` barrier, the writer a `heavy` one, and together they order the
//! invoker's hazard store before its state load (see `hazard/scan.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize,
};

pub(crate) use std::sync::atomic::Ordering;

/// Declares a process-wide static: a plain `static` normally, a loom
/// `lazy_static` (fresh for every model execution) under loom.
#[cfg_attr(not(loom), allow(unused_macros))]
macro_rules! global {
    ($(#[$m:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$m])* static $name: $ty = $init;
        #[cfg(loom)]
        loom::lazy_static! { $(#[$m])* static ref $name: $ty = $init; }
    };
    // loom's `lazy_static!` takes the visibility as tokens, not as a `vis`.
    ($(#[$m:meta])* pub(crate) static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(loom))]
        $(#[$m])* pub(crate) static $name: $ty = $init;
        #[cfg(loom)]
        loom::lazy_static! { $(#[$m])* pub(crate) static ref $name: $ty = $init; }
    };
}
#[cfg_attr(not(loom), allow(unused_imports))]
pub(crate) use global;

/// Declares a thread-local `Cell` without a destructor (no allocation and no
/// TLS destructor registration on first use, which matters on audio threads).
macro_rules! thread_cell {
    ($vis:vis static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(loom))]
        std::thread_local! { $vis static $name: std::cell::Cell<$ty> = const { std::cell::Cell::new($init) }; }
        #[cfg(loom)]
        loom::thread_local! { $vis static $name: std::cell::Cell<$ty> = std::cell::Cell::new($init); }
    };
}
pub(crate) use thread_cell;

/// Publishes `fresh` in `cell` unless another thread published a value
/// first, and returns the published one (the loser's is dropped unused).
/// Not a once-lock: a fork while another thread is making the value leaves
/// the child free to make its own.
///
/// # Safety
/// A value published in `cell` is never freed (nor replaced).
pub(crate) unsafe fn publish_once<T>(cell: &AtomicPtr<T>, fresh: Box<T>) -> &'static T {
    let fresh = Box::into_raw(fresh);
    match cell.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just published; the caller's promise keeps it alive.
        Ok(_) => unsafe { &*fresh },
        Err(existing) => {
            // SAFETY: `fresh` was never published.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: published; the caller's promise keeps it alive.
            unsafe { &*existing }
        }
    }
}

/// Spin-wait hint for loops that wait on another thread.
pub(crate) fn backoff(round: u32) {
    #[cfg(loom)]
    {
        let _ = round;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if round < 16 {
            std::hint::spin_loop();
        } else if round < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

/// Asymmetric barrier pair, chosen once at start-up. With Linux
/// `membarrier(PRIVATE_EXPEDITED)` (or Windows' `FlushProcessWriteBuffers`)
/// the invoker's side is a compiler fence and the writer's side a system call
/// that makes every running thread of the process execute a full barrier.
/// Elsewhere (macOS, other Unixes, Linux kernels without membarrier, loom,
/// and `CBREG_BARRIER=fence`) both sides are SeqCst fences: correct, with a
/// full fence on every invoke. `docs/protocol.md` section 2 has the pairing.
pub(crate) mod barrier {
    use super::*;

    /// Heavy barriers run (system calls, where the process has them), for
    /// `cbreg::testing`.
    pub(crate) static HEAVY_RUNS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);

    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    mod membarrier {
        use std::sync::atomic::{AtomicU8, Ordering};

        const CMD_QUERY: libc::c_long = 0;
        const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

        const UNKNOWN: u8 = 0;
        const YES: u8 = 1;
        const NO: u8 = 2;
        static AVAILABLE: AtomicU8 = AtomicU8::new(UNKNOWN);

        fn call(cmd: libc::c_long) -> libc::c_long {
            // SAFETY: membarrier takes integer arguments only.
            unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    cmd,
                    0 as libc::c_long,
                    0 as libc::c_long,
                )
            }
        }

        /// Registers the process for expedited barriers. Decided once, before
        /// any invoke can run, because invokers and writers must agree.
        pub(crate) fn init() {
            if AVAILABLE.load(Ordering::Acquire) != UNKNOWN {
                return;
            }
            // `CBREG_BARRIER=fence` forces the fence pair that kernels
            // without membarrier (and other systems) use, so tests can run
            // that path here too.
            if std::env::var_os("CBREG_BARRIER").is_some_and(|v| v == "fence") {
                AVAILABLE.store(NO, Ordering::Release);
                return;
            }
            let supported = call(CMD_QUERY);
            let ok = supported >= 0
                && supported & CMD_PRIVATE_EXPEDITED != 0
                && call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
            let _ = AVAILABLE.compare_exchange(
                UNKNOWN,
                if ok { YES } else { NO },
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }

        /// A forked child is a new memory map: register it again.
        #[cfg_attr(loom, allow(dead_code))]
        pub(crate) fn reinit_after_fork() {
            if AVAILABLE.load(Ordering::Acquire) == YES && call(CMD_REGISTER_PRIVATE_EXPEDITED) != 0
            {
                // Cannot happen on a kernel that let the parent register;
                // invokers would keep using compiler fences, so abort loudly
                // rather than run unordered.
                std::process::abort();
            }
        }

        #[inline(always)]
        pub(crate) fn available() -> bool {
            AVAILABLE.load(Ordering::Relaxed) == YES
        }

        pub(crate) fn run() {
            let rc = call(CMD_PRIVATE_EXPEDITED);
            debug_assert_eq!(rc, 0);
            if rc != 0 {
                std::process::abort();
            }
        }
    }

    /// Called before the first registry exists (and by adapters before
    /// they use the pair). The fork child's `Barrier` step is set first,
    /// so no child can inherit a registration without re-registering.
    pub(crate) fn init() {
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        {
            crate::fork::set_child_step(crate::fork::ChildStep::Barrier, reinit_after_fork);
            membarrier::init();
        }
    }

    /// The fork child's `Barrier` step (`fork.rs`).
    #[cfg_attr(any(loom, not(unix)), allow(dead_code))]
    fn reinit_after_fork() {
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        membarrier::reinit_after_fork();
    }

    /// Whether `light` is a compiler fence only (the writer's side is a
    /// system call). Decided by `init`, before any thread record exists; a
    /// thread whose record was claimed under it uses `light_unfenced`.
    pub(crate) fn light_is_compiler_only() -> bool {
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        return membarrier::available();
        #[cfg(all(windows, not(loom)))]
        return true;
        #[allow(unreachable_code)]
        false
    }

    /// `light` for a thread whose record says the process has the
    /// asymmetric pair (`light_is_compiler_only`): no run-time test. Under
    /// loom, which models fences only, it is the full fence, and every
    /// record takes the fast path.
    #[inline(always)]
    pub(crate) fn light_unfenced() {
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        #[cfg(not(loom))]
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// `light` where the caller read `light_is_compiler_only` already
    /// (`fenced` is its negation): one test of that for several barriers.
    #[inline(always)]
    pub(crate) fn light_if(fenced: bool) {
        if fenced || cfg!(loom) {
            fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        }
    }

    /// The invoker's side: orders its hazard store before its state load.
    #[inline(always)]
    pub(crate) fn light() {
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        if membarrier::available() {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            return;
        }
        #[cfg(all(windows, not(loom)))]
        {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            return;
        }
        #[allow(unreachable_code)]
        fence(Ordering::SeqCst);
    }

    /// The writer's side: after it, every invoker either shows its hazard
    /// cell to the writer or sees the writer's state change.
    pub(crate) fn heavy() {
        HEAVY_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        fence(Ordering::SeqCst);
        #[cfg(all(target_os = "linux", not(loom), not(miri)))]
        if membarrier::available() {
            membarrier::run();
        }
        #[cfg(all(windows, not(loom)))]
        flush_process_write_buffers::run();
    }

    /// Windows' asymmetric barrier: every processor running a thread of
    /// this process drains its store buffer (what membarrier does on Linux).
    #[cfg(all(windows, not(loom)))]
    mod flush_process_write_buffers {
        #[link(name = "kernel32")]
        extern "system" {
            fn FlushProcessWriteBuffers();
        }

        pub(crate) fn run() {
            // SAFETY: no arguments, no preconditions.
            unsafe { FlushProcessWriteBuffers() }
        }
    }
}
