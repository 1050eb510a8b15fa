//! One registry table per process, however many copies of cbreg it holds.
//!
//! A process can hold several copies of this library: the Python package's
//! `libcbreg.so`, a renamed copy a wheel repair tool vendored, the crate
//! linked statically into a Rust extension, C plugins each linking
//! `libcbreg.a` and loaded with `RTLD_LOCAL`. Each copy has its own statics,
//! so left alone each would own a table of registries of its own.
//!
//! Instead, the first copy to start *owns* the table and publishes a
//! versioned table of its C ABI functions (`Api`); every later copy finds it
//! and forwards each C ABI call there. Finding it works without any shared
//! symbol (copies loaded `RTLD_LOCAL` cannot see each other's): the owner
//! creates a POSIX shared-memory object whose name is unique to this process
//! image (`/cbreg-` and the 16 random bytes the kernel gives every exec in
//! `AT_RANDOM`), created with `O_EXCL` so exactly one copy wins, and writes
//! the address of its `Api` there. A forked child shares the image, so it
//! shares the owner too; an exec'd program gets new random bytes, so it never
//! reads a stale address.
//!
//! The owner is pinned in memory (`RTLD_NODELETE`) so forwarding copies never
//! call into an unloaded library. The process that created the object
//! removes it at exit; one that ends with `_exit` or replaces itself with
//! exec leaves a 16-byte file in /dev/shm (named for that image, so never
//! read again). A copy that meets an owner whose `Api` is
//! older than it needs fails every call with `CBREG_STATUS_INTERNAL` and
//! says why on stderr once: never a silent second registry. With
//! `CBREG_PRIVATE=1` in the environment (for tests) a copy keeps a table of
//! its own.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::ffi::{self, EmitReport, RegistryHandle, SignalHandle, Site};
use crate::post::abi::{self as post, TargetHandle};
use crate::post::{PostConfig, PostStats};
use crate::registry::{CallFn, ReleaseFn, Stats};
use crate::{Status, Value};

const MAGIC: u64 = u64::from_le_bytes(*b"cbregApi");
/// Version of the `Api` layout; fields are only ever appended.
const VERSION: u32 = 4;

/// The C ABI of the owning copy. `#[repr(C)]`, append-only: a copy checks
/// `size` before it uses a field.
#[repr(C)]
pub struct Api {
    magic: u64,
    version: u32,
    size: u32,
    pub(crate) registry_new: unsafe extern "C" fn(*mut RegistryHandle) -> Status,
    pub(crate) registry_free: extern "C" fn(RegistryHandle) -> Status,
    pub(crate) register: unsafe extern "C" fn(
        RegistryHandle,
        CallFn,
        *mut c_void,
        ReleaseFn,
        u32,
        *mut u64,
    ) -> Status,
    pub(crate) invoke:
        unsafe extern "C-unwind" fn(RegistryHandle, u64, *const Value, usize, *mut Value) -> Status,
    pub(crate) unregister: extern "C" fn(RegistryHandle, u64) -> Status,
    pub(crate) unregister_wait: extern "C" fn(RegistryHandle, u64) -> Status,
    pub(crate) clear: unsafe extern "C" fn(RegistryHandle, *mut usize) -> Status,
    pub(crate) close: unsafe extern "C" fn(RegistryHandle, *mut usize) -> Status,
    pub(crate) collect: unsafe extern "C" fn(RegistryHandle, *mut usize) -> Status,
    pub(crate) stats_get: unsafe extern "C" fn(RegistryHandle, *mut Stats) -> Status,
    pub(crate) registry_is_closed: unsafe extern "C" fn(RegistryHandle, *mut bool) -> Status,
    pub(crate) last_callback_code: extern "C" fn() -> u32,
    pub(crate) thread_set_realtime: extern "C" fn(bool) -> Status,
    pub(crate) thread_is_realtime: extern "C" fn() -> bool,
    pub(crate) release_mark_leaked: extern "C" fn(),
    pub(crate) retire_matching: extern "C" fn(
        ReleaseFn,
        extern "C" fn(*mut c_void, *mut c_void) -> bool,
        *mut c_void,
    ) -> usize,
    pub(crate) set_blocking_hook: extern "C" fn(
        unsafe extern "C" fn() -> *mut c_void,
        unsafe extern "C" fn(*mut c_void),
    ) -> bool,
    pub(crate) collect_all: extern "C" fn() -> usize,
    // Version 2.
    pub(crate) site_resolve: unsafe extern "C" fn(RegistryHandle, u64, *mut Site) -> Status,
    pub(crate) site_invoke:
        unsafe extern "C-unwind" fn(*const Site, *const Value, usize, *mut Value) -> Status,
    // Version 3.
    pub(crate) post: unsafe extern "C" fn(RegistryHandle, u64, *const Value, usize, u32) -> Status,
    pub(crate) post_reserve: extern "C" fn(TargetHandle) -> Status,
    pub(crate) entry_set_target: extern "C" fn(RegistryHandle, u64, TargetHandle) -> Status,
    pub(crate) dispatcher_configure: unsafe extern "C" fn(*const PostConfig) -> Status,
    pub(crate) pump_new: unsafe extern "C" fn(*const PostConfig, *mut TargetHandle) -> Status,
    pub(crate) pump_free: extern "C" fn(TargetHandle) -> Status,
    pub(crate) pump_fd: unsafe extern "C" fn(TargetHandle, *mut std::ffi::c_int) -> Status,
    pub(crate) pump_drain: unsafe extern "C-unwind" fn(TargetHandle, usize, *mut usize) -> Status,
    pub(crate) post_stats_get: unsafe extern "C" fn(TargetHandle, *mut PostStats) -> Status,
    pub(crate) post_stats_total: unsafe extern "C" fn(*mut PostStats) -> Status,
    // Version 4.
    pub(crate) signal_new: unsafe extern "C" fn(RegistryHandle, *mut SignalHandle) -> Status,
    pub(crate) signal_free: extern "C" fn(SignalHandle) -> Status,
    pub(crate) signal_subscribe: extern "C" fn(SignalHandle, u64) -> Status,
    pub(crate) signal_unsubscribe: extern "C" fn(SignalHandle, u64) -> Status,
    pub(crate) signal_count: unsafe extern "C" fn(SignalHandle, *mut usize) -> Status,
    pub(crate) signal_emit: unsafe extern "C-unwind" fn(
        SignalHandle,
        *const Value,
        usize,
        *mut EmitReport,
    ) -> Status,
}

static OWN: Api = Api {
    magic: MAGIC,
    version: VERSION,
    size: std::mem::size_of::<Api>() as u32,
    registry_new: ffi::cbreg_registry_new,
    registry_free: ffi::cbreg_registry_free,
    register: ffi::cbreg_register,
    invoke: ffi::cbreg_invoke,
    unregister: ffi::cbreg_unregister,
    unregister_wait: ffi::cbreg_unregister_wait,
    clear: ffi::cbreg_clear,
    close: ffi::cbreg_close,
    collect: ffi::cbreg_collect,
    stats_get: ffi::cbreg_stats_get,
    registry_is_closed: ffi::cbreg_registry_is_closed,
    last_callback_code: ffi::cbreg_last_callback_code,
    thread_set_realtime: ffi::cbreg_thread_set_realtime,
    thread_is_realtime: ffi::cbreg_thread_is_realtime,
    release_mark_leaked: ffi::cbreg_release_mark_leaked,
    retire_matching: retire_matching_local,
    set_blocking_hook: set_blocking_hook_local,
    collect_all: collect_all_local,
    site_resolve: ffi::cbreg_site_resolve,
    site_invoke: ffi::cbreg_site_invoke,
    post: post::cbreg_post,
    post_reserve: post::cbreg_post_reserve,
    entry_set_target: post::cbreg_entry_set_target,
    dispatcher_configure: post::cbreg_dispatcher_configure,
    pump_new: post::cbreg_pump_new,
    pump_free: post::cbreg_pump_free,
    pump_fd: post::cbreg_pump_fd,
    pump_drain: post::cbreg_pump_drain,
    post_stats_get: post::cbreg_post_stats_get,
    post_stats_total: post::cbreg_post_stats_total,
    signal_new: ffi::cbreg_signal_new,
    signal_free: ffi::cbreg_signal_free,
    signal_subscribe: ffi::cbreg_signal_subscribe,
    signal_unsubscribe: ffi::cbreg_signal_unsubscribe,
    signal_count: ffi::cbreg_signal_count,
    signal_emit: ffi::cbreg_signal_emit,
};

/// Where this copy's calls go: null until decided, `&OWN` when this copy
/// owns the table, the owner's `Api` otherwise.
static ROUTE: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());

const UNDECIDED: u8 = 0;
const DECIDING: u8 = 1;
const DECIDED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The owner's `Api` when calls must be forwarded; `None` when this copy is
/// the owner. One load and a compare once decided.
#[inline(always)]
pub(crate) fn remote() -> Option<&'static Api> {
    let route = ROUTE.load(Ordering::Acquire);
    if std::ptr::eq(route, own()) {
        None
    } else {
        remote_slow(route)
    }
}

/// The owner's table when this copy has already found that it forwards;
/// `None` when it owns the registries or has not decided yet (`remote`
/// decides). A load and two compares, for paths that every call of a
/// forwarding copy takes.
#[inline(always)]
pub(crate) fn forwarding() -> Option<&'static Api> {
    let route = ROUTE.load(Ordering::Acquire);
    if route.is_null() || std::ptr::eq(route, own()) {
        None
    } else {
        // SAFETY: an `Api` of a copy pinned in memory (see `publish`).
        Some(unsafe { &*route })
    }
}

#[cold]
fn remote_slow(route: *mut Api) -> Option<&'static Api> {
    let route = if route.is_null() { decide() } else { route };
    if std::ptr::eq(route, own()) {
        None
    } else {
        // SAFETY: an `Api` of a copy pinned in memory (see `publish`).
        Some(unsafe { &*route })
    }
}

/// Decides once per copy who owns the table.
fn decide() -> *mut Api {
    loop {
        match STATE.compare_exchange(UNDECIDED, DECIDING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let route = elect();
                ROUTE.store(route, Ordering::Release);
                STATE.store(DECIDED, Ordering::Release);
                return route;
            }
            Err(DECIDED) => return ROUTE.load(Ordering::Acquire),
            Err(_) => std::thread::yield_now(),
        }
    }
}

/// What a call site records of the copy that resolved it (this copy's
/// table's address): a site is used directly only by that copy.
#[inline(always)]
pub(crate) fn own_marker() -> *const c_void {
    &OWN as *const Api as *const c_void
}

fn own() -> *mut Api {
    &OWN as *const Api as *mut Api
}

#[cfg(any(loom, not(unix)))]
fn elect() -> *mut Api {
    own()
}

#[cfg(all(unix, not(loom)))]
fn elect() -> *mut Api {
    if std::env::var_os("CBREG_PRIVATE").is_some_and(|v| v == "1") {
        return own();
    }
    match shm::find_or_publish(own()) {
        Ok(owner) if owner == own() => own(),
        Ok(owner) => match check(owner) {
            Ok(()) => owner,
            Err(why) => incompatible(why),
        },
        Err(why) => {
            eprintln!(
                "cbreg: no process-wide rendezvous ({why}); this copy keeps its own registries"
            );
            own()
        }
    }
}

/// Whether `owner` serves every call this copy makes.
#[cfg(all(unix, not(loom)))]
fn check(owner: *mut Api) -> Result<(), String> {
    // SAFETY: the address was published by a live copy of this library.
    let api = unsafe { &*owner };
    if api.magic != MAGIC {
        return Err("the published table is not cbreg's".into());
    }
    if api.version < VERSION || (api.size as usize) < std::mem::size_of::<Api>() {
        return Err(format!(
            "the process's first copy of cbreg serves table version {} ({} bytes); this copy needs version {VERSION} ({} bytes)",
            api.version,
            api.size,
            std::mem::size_of::<Api>()
        ));
    }
    Ok(())
}

/// What a copy that cannot use the owner's table calls instead: every call
/// fails, loudly (see `incompatible`).
mod refuse {
    use super::*;
    pub(super) extern "C" fn new(_: *mut RegistryHandle) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn handle(_: RegistryHandle) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn register(
        _: RegistryHandle,
        _: CallFn,
        _: *mut c_void,
        _: ReleaseFn,
        _: u32,
        _: *mut u64,
    ) -> Status {
        Status::Internal
    }
    pub(super) extern "C-unwind" fn invoke(
        _: RegistryHandle,
        _: u64,
        _: *const Value,
        _: usize,
        _: *mut Value,
    ) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn id(_: RegistryHandle, _: u64) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn count(_: RegistryHandle, _: *mut usize) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn stats(_: RegistryHandle, _: *mut Stats) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn set_realtime(_: bool) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn is_closed(_: RegistryHandle, _: *mut bool) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn site_resolve(_: RegistryHandle, _: u64, _: *mut Site) -> Status {
        Status::Internal
    }
    pub(super) extern "C-unwind" fn site_invoke(
        _: *const Site,
        _: *const Value,
        _: usize,
        _: *mut Value,
    ) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn post(
        _: RegistryHandle,
        _: u64,
        _: *const Value,
        _: usize,
        _: u32,
    ) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn target(_: TargetHandle) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn entry_set_target(_: RegistryHandle, _: u64, _: TargetHandle) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn configure(_: *const PostConfig) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn pump_new(_: *const PostConfig, _: *mut TargetHandle) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn pump_fd(_: TargetHandle, _: *mut std::ffi::c_int) -> Status {
        Status::Internal
    }
    pub(super) extern "C-unwind" fn pump_drain(_: TargetHandle, _: usize, _: *mut usize) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn post_stats(_: TargetHandle, _: *mut PostStats) -> Status {
        Status::Internal
    }
    pub(super) extern "C" fn post_stats_total(_: *mut PostStats) -> Status {
        Status::Internal
    }
}

static INCOMPATIBLE: Api = Api {
    registry_new: refuse::new,
    registry_free: refuse::handle,
    register: refuse::register,
    invoke: refuse::invoke,
    unregister: refuse::id,
    unregister_wait: refuse::id,
    clear: refuse::count,
    close: refuse::count,
    collect: refuse::count,
    stats_get: refuse::stats,
    registry_is_closed: refuse::is_closed,
    thread_set_realtime: refuse::set_realtime,
    site_resolve: refuse::site_resolve,
    site_invoke: refuse::site_invoke,
    post: refuse::post,
    post_reserve: refuse::target,
    entry_set_target: refuse::entry_set_target,
    dispatcher_configure: refuse::configure,
    pump_new: refuse::pump_new,
    pump_free: refuse::target,
    pump_fd: refuse::pump_fd,
    pump_drain: refuse::pump_drain,
    post_stats_get: refuse::post_stats,
    post_stats_total: refuse::post_stats_total,
    ..OWN
};

#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
fn incompatible(why: String) -> *mut Api {
    eprintln!("cbreg: {why}; every cbreg call of this copy fails with CBREG_STATUS_INTERNAL");
    &INCOMPATIBLE as *const Api as *mut Api
}

// ---- what the adapters need from the owner ----

extern "C" fn retire_matching_local(
    release: ReleaseFn,
    matches: extern "C" fn(*mut c_void, *mut c_void) -> bool,
    user: *mut c_void,
) -> usize {
    let matches = |ctx: *mut c_void| matches(ctx, user);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::registry::retire_matching_everywhere(release, &matches)
    }))
    .unwrap_or(0)
}

extern "C" fn set_blocking_hook_local(
    before: unsafe extern "C" fn() -> *mut c_void,
    after: unsafe extern "C" fn(*mut c_void),
) -> bool {
    crate::wait::set_blocking_hook(crate::wait::BlockingHook { before, after })
}

extern "C" fn collect_all_local() -> usize {
    let mut n = 0;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::registry::for_each_core(|core| n += core.collect())
    }));
    n
}

/// Runs the deferred releases that are ready in every registry of the
/// process; returns how many ran.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn collect_all() -> usize {
    match remote() {
        Some(api) => (api.collect_all)(),
        None => collect_all_local(),
    }
}

/// Unregisters every live entry, in every registry of the process, whose
/// release is `release` and whose context `matches(ctx, user)` approves.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn retire_matching(
    release: ReleaseFn,
    matches: extern "C" fn(*mut c_void, *mut c_void) -> bool,
    user: *mut c_void,
) -> usize {
    match remote() {
        Some(api) => (api.retire_matching)(release, matches, user),
        None => retire_matching_local(release, matches, user),
    }
}

/// Installs the process's blocking hook in the owner (the first one wins).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn set_blocking_hook(
    before: unsafe extern "C" fn() -> *mut c_void,
    after: unsafe extern "C" fn(*mut c_void),
) -> bool {
    match remote() {
        Some(api) => (api.set_blocking_hook)(before, after),
        None => set_blocking_hook_local(before, after),
    }
}

#[cfg(all(unix, not(loom)))]
mod shm {
    use super::Api;
    use std::ffi::CString;

    /// 16 bytes of the object: a marker, then the owner's `Api` address.
    const READY: u64 = u64::from_le_bytes(*b"cbregRdy");
    const LEN: usize = 16;

    /// The object's name: unique to this process image.
    fn name() -> Result<CString, String> {
        #[cfg(target_os = "linux")]
        // SAFETY: getauxval has no preconditions; AT_RANDOM points at 16
        // bytes the kernel wrote for this exec.
        let random = unsafe {
            let p = libc::getauxval(libc::AT_RANDOM) as *const u8;
            if p.is_null() {
                return Err("no AT_RANDOM".into());
            }
            std::slice::from_raw_parts(p, 16).to_vec()
        };
        #[cfg(not(target_os = "linux"))]
        let random: Vec<u8> = {
            // Elsewhere the pid and the start of this process's image.
            let mut v = std::process::id().to_le_bytes().to_vec();
            v.extend_from_slice(&(name as fn() -> Result<CString, String> as usize).to_le_bytes());
            v
        };
        // macOS allows 31 characters: "/cbreg-" and 24 hex digits.
        let hex: String = random.iter().take(12).map(|b| format!("{b:02x}")).collect();
        CString::new(format!("/cbreg-{hex}")).map_err(|e| e.to_string())
    }

    fn os_error(what: &str) -> String {
        format!("{what}: {}", std::io::Error::last_os_error())
    }

    /// Publishes `mine` if no copy has, and returns the owner's `Api`.
    pub(super) fn find_or_publish(mine: *mut Api) -> Result<*mut Api, String> {
        let name = name()?;
        // SAFETY: plain libc calls on a NUL-terminated name; the mapping is
        // LEN bytes of a shared object sized to LEN before it is written.
        unsafe {
            let fd = libc::shm_open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600,
            );
            if fd >= 0 {
                let sized = libc::ftruncate(fd, LEN as libc::off_t) == 0;
                let map = sized.then(|| map(fd)).flatten();
                libc::close(fd);
                let Some(words) = map else {
                    libc::shm_unlink(name.as_ptr());
                    return Err(os_error("cannot size the rendezvous object"));
                };
                (*words.add(1)).store(mine as u64, std::sync::atomic::Ordering::Relaxed);
                (*words).store(READY, std::sync::atomic::Ordering::Release);
                publish(name);
                return Ok(mine);
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(os_error("shm_open"));
            }
            let fd = libc::shm_open(name.as_ptr(), libc::O_RDWR, 0);
            if fd < 0 {
                return Err(os_error("shm_open of the existing object"));
            }
            // The owner sizes it right after creating it: wait for that.
            let mut map_ok = None;
            for _ in 0..10_000 {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::fstat(fd, &mut st) == 0 && st.st_size as usize >= LEN {
                    map_ok = map(fd);
                    break;
                }
                std::thread::yield_now();
            }
            libc::close(fd);
            let words =
                map_ok.ok_or_else(|| "the rendezvous object was never sized".to_string())?;
            for _ in 0..1_000_000 {
                if (*words).load(std::sync::atomic::Ordering::Acquire) == READY {
                    return Ok(
                        (*words.add(1)).load(std::sync::atomic::Ordering::Relaxed) as *mut Api
                    );
                }
                std::thread::yield_now();
            }
            Err("the rendezvous object was never filled".into())
        }
    }

    unsafe fn map(fd: libc::c_int) -> Option<*const std::sync::atomic::AtomicU64> {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        (p != libc::MAP_FAILED).then_some(p as *const std::sync::atomic::AtomicU64)
    }

    static CREATOR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static NAME: std::sync::OnceLock<CString> = std::sync::OnceLock::new();

    /// The owner stays loaded for the life of the process, and removes the
    /// object when the process that created it exits.
    fn publish(name: CString) {
        CREATOR.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
        let _ = NAME.set(name);
        // SAFETY: dladdr on an address in this library; dlopen of the file
        // it names with RTLD_NOLOAD only adds a reference (NODELETE pins it).
        unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            if libc::dladdr(publish as *const libc::c_void, &mut info) != 0
                && !info.dli_fname.is_null()
            {
                libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                );
            }
            libc::atexit(unlink_at_exit);
        }
    }

    extern "C" fn unlink_at_exit() {
        if CREATOR.load(std::sync::atomic::Ordering::Relaxed) == std::process::id() {
            if let Some(name) = NAME.get() {
                // SAFETY: a NUL-terminated name.
                unsafe { libc::shm_unlink(name.as_ptr()) };
            }
        }
    }
}
