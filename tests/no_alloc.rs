//! Invoke and a signal's emit allocate nothing, the first call on a new
//! thread included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cbreg::{Arg, Registry, Signal, Status, Value};

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

/// With persistent, one-shot and failing subscribers, and a real-time
/// emitter.
#[test]
fn emit_allocates_nothing_even_first_on_a_new_thread() {
    let reg = Registry::global();
    let sig = std::sync::Arc::new(Signal::new(&reg).unwrap());
    let _subs: Vec<_> = (0..8)
        .map(|i| {
            sig.subscribe(move |a: &[Arg], _: &mut Value| {
                assert_eq!(a[0].as_f64(), Some(1.0));
                if i == 3 {
                    Err(Status::Closed)
                } else {
                    Ok(())
                }
            })
            .unwrap()
        })
        .collect();
    let gone = sig.subscribe(|_: &[Arg], _: &mut Value| Ok(())).unwrap().detach();
    assert_eq!(reg.unregister(gone), Status::Ok);
    // A retired one-shot may start cbreg's reclaimer thread once per
    // process (that allocates, on whichever thread does it first).
    for _ in 0..2 {
        let warm = reg.register_once(|_: &[Arg], _: &mut Value| Ok(())).unwrap().detach();
        std::thread::spawn(move || assert_eq!(Registry::global().call(warm, &[]), Status::Ok))
            .join()
            .unwrap();
        assert_eq!(reg.call(gone, &[]), Status::NotFound);
    }
    for realtime in [false, true] {
        // One-shots, claimed (and retired) by the emitting thread.
        let once: Vec<_> = (0..4)
            .map(|_| sig.subscribe_once(|_: &[Arg], _: &mut Value| Ok(())).unwrap().detach())
            .collect();
        let sig = sig.clone();
        let n = std::thread::spawn(move || {
            cbreg::set_thread_realtime(realtime);
            let h = cbreg::SignalHandle {
                handle: sig.handle(),
            };
            let arg = Value::f64(1.0);
            let mut report = cbreg::EmitReport::default();
            allocations_in(|| {
                for round in 0..1000 {
                    // SAFETY: one value; a valid report.
                    let status = unsafe { cbreg::ffi::cbreg_signal_emit(h, &arg, 1, &mut report) };
                    assert_eq!(status, Status::Closed);
                    assert_eq!(report.called, if round == 0 { 12 } else { 8 });
                    assert_eq!(report.failed, 1);
                }
            })
        })
        .join()
        .unwrap();
        assert_eq!(n, 0, "emit allocated (real-time: {realtime})");
        drop(once);
    }
}
