//! The core's protocol on real threads, small enough for Miri (`make
//! miri`, with the fence barrier): the registry reached directly, not
//! through the C ABI, whose forwarding needs system calls Miri does not
//! have. Under plain `cargo test` they run too.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use super::table::{create, destroy, pin};
use crate::value::Value;
use crate::Status;

/// One entry's context: calls inside now, releases run, and whether a
/// release ran while a call was inside.
#[derive(Default)]
struct Probe {
    inside: AtomicUsize,
    calls: AtomicUsize,
    releases: AtomicUsize,
    released_while_inside: AtomicBool,
}

unsafe extern "C-unwind" fn call(
    ctx: *mut c_void,
    _: *const Value,
    _: usize,
    _: *mut Value,
) -> u32 {
    // SAFETY: registered with a `Probe` that outlives the registry's use.
    let p = unsafe { &*(ctx as *const Probe) };
    p.inside.fetch_add(1, SeqCst);
    p.calls.fetch_add(1, SeqCst);
    std::thread::yield_now();
    p.inside.fetch_sub(1, SeqCst);
    0
}

unsafe extern "C-unwind" fn release(ctx: *mut c_void) {
    // SAFETY: as in `call`.
    let p = unsafe { &*(ctx as *const Probe) };
    if p.inside.load(SeqCst) != 0 {
        p.released_while_inside.store(true, SeqCst);
    }
    p.releases.fetch_add(1, SeqCst);
}

fn register(handle: u64, p: &Probe, once: bool) -> u64 {
    let ctx = p as *const Probe as *mut c_void;
    pin(handle)
        .unwrap()
        .register(Some(call), ctx, Some(release), once, false)
        .unwrap()
}

fn invoke(handle: u64, id: u64) -> Status {
    let core = super::lookup(handle).unwrap();
    // SAFETY: no arguments, no return slot.
    unsafe { core.invoke(handle, id, std::ptr::null(), 0, null_mut()) }
}

#[test]
fn unregister_wait_racing_invokers_releases_once_and_never_inside() {
    let handle = create().unwrap();
    let p = Arc::new(Probe::default());
    let id = register(handle, &p, false);
    let invokers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let s = invoke(handle, id);
                    assert!(matches!(s, Status::Ok | Status::NotFound), "{s:?}");
                }
            })
        })
        .collect();
    assert_eq!(pin(handle).unwrap().unregister_wait(id), Status::Ok);
    assert_eq!(p.releases.load(SeqCst), 1);
    invokers.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(p.releases.load(SeqCst), 1);
    assert!(!p.released_while_inside.load(SeqCst));
    assert_eq!(destroy(handle), Status::Ok);
}

#[test]
fn a_one_shot_racing_a_clear_runs_at_most_once_and_is_released_once() {
    let handle = create().unwrap();
    let p = Arc::new(Probe::default());
    let id = register(handle, &p, true);
    let invoker = std::thread::spawn(move || invoke(handle, id));
    let cleared = pin(handle).unwrap().clear();
    let status = invoker.join().unwrap();
    assert!(matches!(status, Status::Ok | Status::NotFound));
    assert_eq!(cleared + p.calls.load(SeqCst), 1, "cleared or called, once");
    assert_eq!(destroy(handle), Status::Ok);
    assert_eq!(p.releases.load(SeqCst), 1);
    assert!(!p.released_while_inside.load(SeqCst));
}
