//! clear, close and free allocate nothing in proportion to the entries
//! (docs/contract.md 4.4), so they cannot fail for lack of memory: 200 000 entries,
//! counted with a global allocator (as in no_alloc.rs).
//!
//!     cargo test --release --test edges_no_alloc

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};

use cbreg::ffi::*;
use cbreg::{Status, Value};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

const ENTRIES: usize = 200_000;
static RELEASES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C-unwind" fn nop(_: *mut c_void, _: *const Value, _: usize, _: *mut Value) -> u32 {
    0
}
unsafe extern "C-unwind" fn count_release(_: *mut c_void) {
    RELEASES.fetch_add(1, Ordering::SeqCst);
}

fn filled_registry() -> RegistryHandle {
    let mut reg = RegistryHandle { handle: 0 };
    // SAFETY: `reg` is a local handle to write.
    assert_eq!(unsafe { cbreg_registry_new(&mut reg) }, Status::Ok);
    for _ in 0..ENTRIES {
        let mut id = 0;
        assert_eq!(
            // SAFETY: `nop` and `count_release` touch only a static counter and are sound from any thread; `out_id` points to a local.
            unsafe { cbreg_register(reg, Some(nop), null_mut(), Some(count_release), 0, &mut id) },
            Status::Ok
        );
    }
    reg
}

#[test]
fn counting_allocator_sees_allocations() {
    let (_, n) = allocations_in(|| drop(std::hint::black_box(Box::new(1u64))));
    assert!(n >= 1);
}

#[test]
fn clear_close_and_free_of_200_000_entries_allocate_nothing() {
    // One test, in order, so the release count is this test's alone.
    let reg = filled_registry();
    let mut count = 0usize;
    // SAFETY: `count` is a local.
    let (st, n_clear) = allocations_in(|| unsafe { cbreg_clear(reg, &mut count) });
    assert_eq!((st, count), (Status::Ok, ENTRIES));

    let reg2 = filled_registry();
    // SAFETY: `count` is a local.
    let (st, n_close) = allocations_in(|| unsafe { cbreg_close(reg2, &mut count) });
    assert_eq!((st, count), (Status::Ok, ENTRIES));

    let reg3 = filled_registry();
    let (st, n_free) = allocations_in(|| cbreg_registry_free(reg3));
    assert_eq!(st, Status::Ok);
    assert_eq!(
        (n_clear, n_close, n_free),
        (0, 0, 0),
        "allocations by clear, close and registry_free of {ENTRIES} entries each"
    );
    assert_eq!(
        n_close, 0,
        "close of {ENTRIES} entries allocated {n_close} times"
    );
    assert_eq!(
        n_free, 0,
        "registry_free of {ENTRIES} entries allocated {n_free} times"
    );
    assert_eq!(RELEASES.load(Ordering::SeqCst), 3 * ENTRIES);
    assert_eq!(cbreg_registry_free(reg), Status::Ok);
    assert_eq!(cbreg_registry_free(reg2), Status::Ok);
}
