//! One registry table per process image, however many copies of cbreg it
//! holds.
//!
//! A process can hold several copies of this library: the Python package's
//! `libcbreg.so`, a renamed copy a wheel repair tool vendored, the crate
//! linked statically into a Rust extension, C plugins each linking
//! `libcbreg.a` and loaded with `RTLD_LOCAL`. Each copy has its own statics,
//! so left alone each would own a table of registries of its own.
//!
//! Instead, the first copy to decide *owns* the table, and every other copy
//! forwards each C ABI call to the owner's table of functions (`Api`).
//!
//! # The forwarding table, declared once
//!
//! `abi_table!` below is the one list of what a copy forwards: each line
//! names a field, its signature, and this copy's function for it. From that
//! list come the `Api` struct (`#[repr(C)]`, append-only: a copy checks
//! `size` before it uses the owner's table), this copy's own table, and the
//! table of stubs a copy uses when the owner is too old for it (each stub
//! returns its type's refusal, `ffi::Fallback`: `CBREG_STATUS_INTERNAL` for
//! a status). Every export of `ffi.rs` that reaches the registries is a
//! line, and so is each service the Python adapter asks of the owner
//! (`retire_matching`, `set_blocking_hook`, `collect_all`).
//!
//! Adding an export (say `cbreg_post`) is one line at the end of the list,
//! `post: "C" fn(RegistryHandle, ...) -> Status = ffi::cbreg_post;`, and
//! `forward!(post(...))` (or `boundary! { forward post(...); ... }`) in
//! the export's body. The compiler checks the line against the export's
//! signature. Only append: fields already published must keep their place.
//!
//! # The anchor: how copies meet, and why fork, exit and privileges cannot
//! # break it
//!
//! Copies loaded `RTLD_LOCAL` cannot see each other's symbols, so they meet
//! at an address. Every copy computes the same few candidate addresses from
//! the 16 random bytes the kernel gives each program image (`AT_RANDOM`).
//! The owner maps one read-only page at the first free candidate, holding a
//! magic pair derived from those bytes and the address of its `Api`. The
//! page is filled before it is mapped there (it is a private mapping of a
//! memory file written beforehand), so it appears whole or not at all; and
//! it is mapped with `MAP_FIXED_NOREPLACE`, so of two copies racing, exactly
//! one maps it and the other finds it. A copy reads a candidate through a
//! pipe first (a `write` from an unreadable address fails instead of
//! faulting), so a foreign mapping that happens to sit on a candidate is
//! recognised as foreign and skipped.
//!
//! The anchor is process memory, so it belongs to exactly one process
//! image, and the argument for each hazard is the same: what a process sees
//! is its own memory.
//! - Fork: the child's memory is a copy of the parent's, the page and the
//!   owner's code and statics included, so the child has the same owner,
//!   alive in the child; a later copy the child loads finds it. Whatever the
//!   child does changes its own copy only: the parent's view never changes,
//!   and a child that is the first to use cbreg (and ends with `_exit`)
//!   leaves the parent nothing to adopt.
//! - Exit: nothing outside the process names the owner, so nothing is
//!   removed at exit and nothing stale is left behind.
//! - Privilege drops: no file, so no permission is ever checked.
//! - Exec: a new image has new memory and new random bytes.
//! - A decision has no in-between state a fork could freeze: electing is
//!   idempotent (every thread that races to decide maps or finds the same
//!   page, and all store the same answer), so a child forked while another
//!   thread was deciding simply decides again.
//!
//! # When copies decide
//!
//! Each copy decides in a library constructor (`.init_array`), at load,
//! on the thread that loads it: a copy's first call (say `cbreg_invoke` on
//! a real-time thread) then finds its answer in one word, with no system
//! call, no allocation and no lock. A copy whose constructor did not run
//! decides at its first call. The owner pins itself in memory
//! (`RTLD_NODELETE`) as soon as it has mapped the page, so forwarding copies
//! never call into an unloaded library.
//!
//! A copy that meets an owner whose table is shorter than its own fails
//! every call with `CBREG_STATUS_INTERNAL` and says why on stderr once:
//! never a silent second registry. With `CBREG_PRIVATE=1` in the environment
//! (for tests) a copy keeps a table of its own. Where no candidate can be
//! mapped (an address space laid out by a sanitizer, say), a copy says so on
//! stderr and keeps a table of its own.
//!
//! Limits: copies of cbreg older than this anchor met through a shared
//! memory object in /dev/shm; they do not find the page, nor it them.
//!
//! No fork handler is needed: nothing here has a state that a fork leaves
//! half done.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::ffi::{self, Fallback, RegistryHandle, Site};
use crate::registry::{CallFn, ReleaseFn, Stats};
use crate::{Status, Value};

const MAGIC: u64 = u64::from_le_bytes(*b"cbregApi");
/// Version of the `Api` layout; fields are only ever appended.
const VERSION: u32 = 2;

/// What a copy that cannot use the owner's table returns from a call.
fn refused<R: Fallback>() -> R {
    R::FALLBACK
}

/// Generates, from one list, the `Api` struct, this copy's table (`OWN`)
/// and the table of refusing stubs (`INCOMPATIBLE`). Every field is an
/// `unsafe` function pointer: a safe export coerces to one, and the caller
/// (`ffi::forward!`) passes its own caller's promises on.
macro_rules! abi_table {
    ($(
        $(#[$meta:meta])*
        $field:ident: $abi:literal fn($($arg:ty),*) $(-> $ret:ty)? = $own:expr;
    )*) => {
        /// The C ABI of the owning copy. `#[repr(C)]`, append-only: a copy
        /// checks `size` before it uses a field.
        #[repr(C)]
        pub struct Api {
            magic: u64,
            version: u32,
            size: u32,
            $( $(#[$meta])* pub(crate) $field: unsafe extern $abi fn($($arg),*) $(-> $ret)?, )*
        }

        static OWN: Api = Api {
            magic: MAGIC,
            version: VERSION,
            size: std::mem::size_of::<Api>() as u32,
            $( $field: $own, )*
        };

        /// What a copy that cannot use the owner's table calls instead:
        /// every call is refused, loudly (see `incompatible`).
        mod refuse {
            #[allow(unused_imports)]
            use super::*;
            $(
                pub(super) extern $abi fn $field($(_: $arg),*) $(-> $ret)? {
                    refused()
                }
            )*
        }

        static INCOMPATIBLE: Api = Api {
            magic: MAGIC,
            version: VERSION,
            size: std::mem::size_of::<Api>() as u32,
            $( $field: refuse::$field, )*
        };
    };
}

abi_table! {
    registry_new: "C" fn(*mut RegistryHandle) -> Status = ffi::cbreg_registry_new;
    registry_free: "C" fn(RegistryHandle) -> Status = ffi::cbreg_registry_free;
    register: "C" fn(RegistryHandle, CallFn, *mut c_void, ReleaseFn, u32, *mut u64) -> Status
        = ffi::cbreg_register;
    /// `C-unwind`: a forced unwind from a callback passes (see `ffi::cbreg_invoke`).
    invoke: "C-unwind" fn(RegistryHandle, u64, *const Value, usize, *mut Value) -> Status
        = ffi::cbreg_invoke;
    unregister: "C" fn(RegistryHandle, u64) -> Status = ffi::cbreg_unregister;
    unregister_wait: "C" fn(RegistryHandle, u64) -> Status = ffi::cbreg_unregister_wait;
    clear: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_clear;
    close: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_close;
    collect: "C" fn(RegistryHandle, *mut usize) -> Status = ffi::cbreg_collect;
    stats_get: "C" fn(RegistryHandle, *mut Stats) -> Status = ffi::cbreg_stats_get;
    registry_is_closed: "C" fn(RegistryHandle, *mut bool) -> Status
        = ffi::cbreg_registry_is_closed;
    last_callback_code: "C" fn() -> u32 = ffi::cbreg_last_callback_code;
    thread_set_realtime: "C" fn(bool) -> Status = ffi::cbreg_thread_set_realtime;
    thread_is_realtime: "C" fn() -> bool = ffi::cbreg_thread_is_realtime;
    release_mark_leaked: "C" fn() = ffi::cbreg_release_mark_leaked;
    retire_matching: "C" fn(ReleaseFn, MatchFn, *mut c_void) -> usize = retire_matching_local;
    set_blocking_hook: "C" fn(BlockingBefore, BlockingAfter) -> bool = set_blocking_hook_local;
    collect_all: "C" fn() -> usize = collect_all_local;
    // Version 2.
    site_resolve: "C" fn(RegistryHandle, u64, *mut Site) -> Status = ffi::cbreg_site_resolve;
    /// `C-unwind`: as `invoke`.
    site_invoke: "C-unwind" fn(*const Site, *const Value, usize, *mut Value) -> Status
        = ffi::cbreg_site_invoke;
}

/// `retire_matching`'s predicate: `matches(ctx, user)`.
pub(crate) type MatchFn = extern "C" fn(*mut c_void, *mut c_void) -> bool;
/// The blocking hook's pair (`wait::BlockingHook`).
pub(crate) type BlockingBefore = unsafe extern "C" fn() -> *mut c_void;
pub(crate) type BlockingAfter = unsafe extern "C" fn(*mut c_void);

/// Where this copy's calls go: null until decided, `&OWN` when this copy
/// owns the table, the owner's `Api` otherwise.
static ROUTE: AtomicPtr<Api> = AtomicPtr::new(std::ptr::null_mut());

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
        // SAFETY: a non-null route other than ours is an owner's `Api`, in
        // a copy pinned in memory for the life of the process (`elect`).
        Some(unsafe { &*route })
    }
}

#[cold]
fn remote_slow(route: *mut Api) -> Option<&'static Api> {
    let route = if route.is_null() { decide() } else { route };
    if std::ptr::eq(route, own()) {
        None
    } else {
        // SAFETY: as in `forwarding`.
        Some(unsafe { &*route })
    }
}

/// Decides who owns the table. Idempotent, with no in-between state:
/// threads that race here all elect the same owner, and a child forked
/// while one of them was here decides again (see the module doc).
fn decide() -> *mut Api {
    let route = elect();
    match ROUTE.compare_exchange(
        std::ptr::null_mut(),
        route,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => route,
        Err(decided) => decided,
    }
}

/// Decides at load, on the loading thread, so that no first call of this
/// copy has anything left to decide.
#[cfg(all(unix, not(loom)))]
extern "C" fn decide_at_load() {
    let _ = ffi::catch_value(|| remote().is_none());
}

#[cfg(all(unix, not(loom), not(target_vendor = "apple")))]
#[used]
#[link_section = ".init_array"]
static DECIDE_AT_LOAD: extern "C" fn() = decide_at_load;

#[cfg(all(not(loom), target_vendor = "apple"))]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static DECIDE_AT_LOAD: extern "C" fn() = decide_at_load;

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
    // SAFETY: a NUL-terminated name; the result is read at once, before
    // this thread calls anything that could change the environment.
    let private = unsafe { libc::getenv(b"CBREG_PRIVATE\0".as_ptr().cast()) };
    // SAFETY: getenv returned a NUL-terminated string or NULL.
    if !private.is_null() && unsafe { std::ffi::CStr::from_ptr(private) }.to_bytes() == b"1" {
        return own();
    }
    match anchor::find_or_publish(own()) {
        Ok(owner) if std::ptr::eq(owner, own()) => {
            anchor::pin_this_copy();
            own()
        }
        Ok(owner) => match check(owner) {
            Ok(()) => owner as *mut Api,
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
fn check(owner: *const Api) -> Result<(), String> {
    // SAFETY: the anchor holds the address of a live copy's `Api`, pinned
    // for the life of the process; its header is the same in every version.
    let api = unsafe { &*owner };
    if api.magic != MAGIC {
        return Err("the published table is not cbreg's".into());
    }
    if (api.size as usize) < std::mem::size_of::<Api>() {
        return Err(format!(
            "the process's first copy of cbreg serves table version {} ({} bytes); this copy needs version {VERSION} ({} bytes)",
            api.version,
            api.size,
            std::mem::size_of::<Api>()
        ));
    }
    Ok(())
}

#[cfg_attr(any(loom, not(unix)), allow(dead_code))]
fn incompatible(why: String) -> *mut Api {
    eprintln!("cbreg: {why}; every cbreg call of this copy fails with CBREG_STATUS_INTERNAL");
    &INCOMPATIBLE as *const Api as *mut Api
}

// ---- what the adapters need from the owner ----

extern "C" fn retire_matching_local(release: ReleaseFn, matches: MatchFn, user: *mut c_void) -> usize {
    crate::ffi::boundary! { local; value {
        crate::registry::retire_matching_everywhere(release, &|ctx: *mut c_void| matches(ctx, user))
    }}
}

extern "C" fn set_blocking_hook_local(before: BlockingBefore, after: BlockingAfter) -> bool {
    crate::ffi::boundary! { local; value {
        crate::wait::set_blocking_hook(crate::wait::BlockingHook { before, after })
    }}
}

extern "C" fn collect_all_local() -> usize {
    crate::ffi::boundary! { local; value {
        let mut n = 0;
        crate::registry::for_each_core(|core| n += core.collect());
        n
    }}
}

/// Runs the deferred releases that are ready in every registry of the
/// process; returns how many ran.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn collect_all() -> usize {
    match remote() {
        // SAFETY: the owner's function for the same service; no arguments.
        Some(api) => unsafe { (api.collect_all)() },
        None => collect_all_local(),
    }
}

/// Unregisters every live entry, in every registry of the process, whose
/// release is `release` and whose context `matches(ctx, user)` approves.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn retire_matching(release: ReleaseFn, matches: MatchFn, user: *mut c_void) -> usize {
    match remote() {
        // SAFETY: the owner's function for the same service, with the same
        // arguments; `matches` is sound to call with `user` (our caller's
        // promise, as for the local path).
        Some(api) => unsafe { (api.retire_matching)(release, matches, user) },
        None => retire_matching_local(release, matches, user),
    }
}

/// Installs the process's blocking hook in the owner (the first one wins).
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) fn set_blocking_hook(before: BlockingBefore, after: BlockingAfter) -> bool {
    match remote() {
        // SAFETY: the owner's function for the same service, with the same
        // arguments.
        Some(api) => unsafe { (api.set_blocking_hook)(before, after) },
        None => set_blocking_hook_local(before, after),
    }
}

#[cfg(all(unix, not(loom)))]
mod anchor {
    //! The page at an address every copy of this image computes.

    use super::Api;

    /// What the page holds: the magic pair of this image, then the owner.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Record {
        magic: [u64; 2],
        owner: usize,
    }

    /// Candidate addresses tried in turn, alternately high (above what
    /// AddressSanitizer keeps for its shadow) and low (inside what
    /// ThreadSanitizer and MemorySanitizer leave to the program).
    const CANDIDATES: u64 = 6;
    const RANGES: [(u64, u64); 2] = [(1 << 44, 1 << 46), (1 << 33, 1 << 38)];

    /// The 16 random bytes of this program image.
    fn image_key() -> [u64; 2] {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: getauxval has no preconditions.
            let p = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const [u64; 2];
            if !p.is_null() {
                // SAFETY: AT_RANDOM points at 16 bytes the kernel wrote for
                // this exec and nothing writes; read unaligned.
                return unsafe { p.read_unaligned() };
            }
        }
        // Elsewhere: fixed words. The page is still per process image (it
        // is process memory); only its place is predictable.
        [0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9]
    }

    fn mix(mut x: u64) -> u64 {
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            n as usize
        } else {
            4096
        }
    }

    fn candidate(key: [u64; 2], i: u64, page: usize) -> usize {
        let (low, high) = RANGES[(i % 2) as usize];
        let pages = (high - low) / page as u64;
        (low + mix(key[0] ^ mix(key[1].wrapping_add(i))) % pages * page as u64) as usize
    }

    /// Finds the owner's `Api`, or publishes `mine` if no copy has.
    pub(super) fn find_or_publish(mine: *const Api) -> Result<*const Api, &'static str> {
        let key = image_key();
        let magic = [u64::from_le_bytes(*b"cbregRdv") ^ key[1], mix(key[0])];
        let page = page_size();
        let mut file = None;
        for i in 0..CANDIDATES {
            let at = candidate(key, i, page);
            if let Some(owner) = owner_at(at, magic)? {
                return Ok(owner);
            }
            let file = match file {
                Some(fd) => fd,
                None => *file.insert(filled_file(
                    page,
                    Record {
                        magic,
                        owner: mine as usize,
                    },
                )?),
            };
            if map_at(at, page, file) {
                // SAFETY: our own descriptor, mapped where it must be.
                unsafe { libc::close(file) };
                return Ok(mine);
            }
            // Taken: by another copy just now, or by something else.
            if let Some(owner) = owner_at(at, magic)? {
                // SAFETY: our own descriptor.
                unsafe { libc::close(file) };
                return Ok(owner);
            }
        }
        if let Some(fd) = file {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
        Err("no candidate address could hold the rendezvous page")
    }

    /// The owner recorded at `at`, if the page there is this image's
    /// anchor. Reads through a pipe, so an unmapped or unreadable address
    /// is a failed `write`, never a fault.
    fn owner_at(at: usize, magic: [u64; 2]) -> Result<Option<*const Api>, &'static str> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is storage for two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err("no pipe to read the rendezvous page through");
        }
        let len = std::mem::size_of::<Record>();
        let mut record = std::mem::MaybeUninit::<Record>::uninit();
        // SAFETY: the kernel reads `len` bytes at `at` or fails with
        // EFAULT; it writes at most `len` bytes into `record`, and a fresh
        // pipe holds far more than `len` bytes, so neither call blocks.
        let read = unsafe {
            libc::write(fds[1], at as *const libc::c_void, len) == len as isize
                && libc::read(fds[0], record.as_mut_ptr().cast(), len) == len as isize
        };
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        if !read {
            return Ok(None);
        }
        // SAFETY: `read` filled every byte, and any bytes are a `Record`.
        let record = unsafe { record.assume_init() };
        Ok((record.magic == magic).then_some(record.owner as *const Api))
    }

    /// A memory file of one page holding `record`: the page's content
    /// before the page is mapped where copies look.
    fn filled_file(page: usize, record: Record) -> Result<libc::c_int, &'static str> {
        let fd = memory_file()?;
        // SAFETY: our own descriptor, sized to one page before it is mapped
        // writable; the record fits in the page, and the mapping is gone
        // before the file is mapped anywhere else.
        unsafe {
            let filled = libc::ftruncate(fd, page as libc::off_t) == 0 && {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                p != libc::MAP_FAILED && {
                    p.cast::<Record>().write(record);
                    libc::munmap(p, page);
                    true
                }
            };
            if !filled {
                libc::close(fd);
                return Err("cannot fill the rendezvous page");
            }
        }
        Ok(fd)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn memory_file() -> Result<libc::c_int, &'static str> {
        // SAFETY: a NUL-terminated name.
        let fd = unsafe { libc::memfd_create(b"cbreg-rendezvous\0".as_ptr().cast(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            Err("memfd_create failed")
        } else {
            Ok(fd)
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn memory_file() -> Result<libc::c_int, &'static str> {
        // A shared memory object removed at once: a file no other process
        // can open. The name only has to be free for a moment.
        let mut name = *b"/cbreg-rdv-0000000000000000\0";
        let pid = std::process::id() as u64;
        let stamp = pid << 32 ^ (&name as *const _ as u64);
        for (i, b) in name[11..27].iter_mut().enumerate() {
            *b = b"0123456789abcdef"[(stamp >> (60 - 4 * i) & 15) as usize];
        }
        let name = name.as_ptr().cast::<libc::c_char>();
        // SAFETY: a NUL-terminated name.
        let fd = unsafe {
            libc::shm_open(
                name,
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err("shm_open failed");
        }
        // SAFETY: the name just created.
        unsafe { libc::shm_unlink(name) };
        Ok(fd)
    }

    /// Maps the file's page read-only at exactly `at`, unless something is
    /// there already.
    fn map_at(at: usize, page: usize, fd: libc::c_int) -> bool {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let exact = libc::MAP_FIXED_NOREPLACE;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let exact = 0;
        // SAFETY: a new private mapping of our own file; without
        // MAP_FIXED, nothing already mapped is replaced.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | exact,
                fd,
                0,
            )
        };
        if p as usize == at {
            return true;
        }
        if p != libc::MAP_FAILED {
            // The address was taken, and the kernel placed the page
            // elsewhere (no MAP_FIXED_NOREPLACE here): not an anchor.
            // SAFETY: the mapping just made, used by nothing.
            unsafe { libc::munmap(p, page) };
        }
        false
    }

    /// Keeps this copy loaded for the life of the process: other copies
    /// hold the address of its table.
    pub(super) fn pin_this_copy() {
        // SAFETY: dladdr of an address in this library fills `info`; dlopen
        // of the file it names with RTLD_NOLOAD only adds a reference, and
        // RTLD_NODELETE keeps the library loaded.
        unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            if libc::dladdr(pin_this_copy as *const libc::c_void, &mut info) != 0
                && !info.dli_fname.is_null()
            {
                libc::dlopen(
                    info.dli_fname,
                    libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                );
            }
        }
    }
}
