//! The anchor: one read-only page at an address every copy of this
//! program image computes, naming the owner's `Api` (the argument is in
//! the parent module's doc). Unix only; everything here is a system call
//! on this process's own memory.

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
    // Close-on-exec where the system can say so at once: a thread that
    // forks and execs meanwhile must not hand the pipe on.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `fds` is storage for two descriptors.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `fds` is storage for two descriptors.
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if made != 0 {
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
    let fd =
        unsafe { libc::memfd_create(b"cbreg-rendezvous\0".as_ptr().cast(), libc::MFD_CLOEXEC) };
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
