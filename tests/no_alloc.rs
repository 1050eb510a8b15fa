//! Invoke allocates nothing, the first invoke on a new thread included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cbreg::{Arg, Registry, Status, Value};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! { static COUNTING: Cell<bool> = const { Cell::new(false) }; }

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::SeqCst) - before
}

#[test]
fn counting_allocator_sees_allocations() {
    assert!(allocations_in(|| drop(std::hint::black_box(Box::new(1u64)))) >= 1);
}

#[test]
fn invoke_allocates_nothing_even_first_on_a_new_thread() {
    let reg = Registry::global();
    let sub = reg
        .register(|a: &[Arg], ret: &mut Value| {
            *ret = Value::f64(a[0].as_f64().unwrap() * 2.0);
            Ok(())
        })
        .unwrap();
    let id = sub.id();
    let gone = reg
        .register(|_: &[Arg], _: &mut Value| Ok(()))
        .unwrap()
        .detach();
    assert_eq!(reg.unregister(gone), Status::Ok);
    for _ in 0..4 {
        let n = std::thread::spawn(move || {
            let reg = Registry::global();
            let args = [Arg::f64(220.0), Arg::str("A3")];
            allocations_in(|| {
                for _ in 0..1000 {
                    assert_eq!(reg.invoke(id, &args).unwrap().as_f64(), Some(440.0));
                    assert_eq!(reg.call(gone, &args), Status::NotFound);
                }
            })
        })
        .join()
        .unwrap();
        assert_eq!(n, 0, "invoke allocated");
    }
    // Through the C ABI as well.
    let n = std::thread::spawn(move || {
        let h = cbreg::ffi::cbreg_default();
        let arg = Value::f64(1.0);
        let mut ret = Value::none();
        allocations_in(|| {
            for _ in 0..1000 {
                assert_eq!(
                    unsafe { cbreg::ffi::cbreg_invoke(h, id, &arg, 1, &mut ret) },
                    Status::Ok
                );
            }
        })
    })
    .join()
    .unwrap();
    assert_eq!(n, 0, "cbreg_invoke allocated");
}
