//! A Rust program that links cbreg statically and also loads the shared
//! library (`libcbreg.so`, as a Python extension would bring it) with
//! RTLD_LOCAL: two copies in one process, one registry.

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use cbreg::ffi::RegistryHandle;
use cbreg::{Arg, Registry, Stats, Status, Value};

type InvokeFn =
    unsafe extern "C-unwind" fn(RegistryHandle, u64, *const Value, usize, *mut Value) -> Status;
type StatsFn = unsafe extern "C" fn(RegistryHandle, *mut Stats) -> Status;
type DefaultFn = extern "C" fn() -> RegistryHandle;

/// The shared library `cargo rustc --crate-type cdylib` built beside this
/// test binary.
fn shared_copy() -> *mut c_void {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().parent().unwrap().join("libcbreg.so");
    assert!(
        lib.exists(),
        "{} missing: `cargo rustc --lib --crate-type cdylib` builds it (make rust-test)",
        lib.display()
    );
    let path = CString::new(lib.to_str().unwrap()).unwrap();
    // SAFETY: dlopen of a library path.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen failed");
    h
}

fn sym<T>(h: *mut c_void, name: &str) -> T {
    let name = CString::new(name).unwrap();
    // SAFETY: a handle dlopen returned and a NUL-terminated name.
    let p = unsafe { libc::dlsym(h, name.as_ptr()) };
    assert!(!p.is_null(), "no symbol");
    // SAFETY: the library exports the symbol as a function of type `T` (a
    // function pointer, as large as `p`).
    unsafe { std::mem::transmute_copy(&p) }
}

#[test]
fn a_static_copy_and_a_shared_copy_share_one_registry() {
    let reg = Registry::global();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let sub = reg
        .register(move |_: &[Arg], _: &mut Value| {
            c.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap();
    let lib = shared_copy();
    let invoke: InvokeFn = sym(lib, "cbreg_invoke");
    let stats: StatsFn = sym(lib, "cbreg_stats_get");
    let default: DefaultFn = sym(lib, "cbreg_default");
    let ours: InvokeFn = cbreg::ffi::cbreg_invoke;
    assert_ne!(invoke as usize, ours as usize, "two copies, not one");
    let theirs = default();
    assert_eq!(
        // SAFETY: no arguments, no return value asked for.
        unsafe { invoke(theirs, sub.id(), std::ptr::null(), 0, std::ptr::null_mut()) },
        Status::Ok
    );
    assert_eq!(
        calls.load(SeqCst),
        1,
        "the entry ran through the other copy"
    );
    let mut s = Stats::default();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { stats(theirs, &mut s) }, Status::Ok);
    assert_eq!(s.live, reg.stats().live);
    drop(sub);
    assert_eq!(
        // SAFETY: as above.
        unsafe {
            invoke(
                theirs,
                1 << 36 | 1,
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
            )
        },
        Status::NotFound
    );
}
