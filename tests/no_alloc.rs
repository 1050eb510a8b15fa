//! Invoke and a signal's emit allocate nothing, the first call on a new
//! thread included.

use cbreg::{Arg, Registry, Signal, Status, Value};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

#[test]
fn counting_allocator_sees_allocations() {
    assert!(allocations_in(|| drop(std::hint::black_box(Box::new(1u64)))).1 >= 1);
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
            .1
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
                    // SAFETY: one value at `&arg`, valid for the call; `ret` points to a local.
                    unsafe { cbreg::ffi::cbreg_invoke(h, id, &arg, 1, &mut ret) },
                    Status::Ok
                );
            }
        })
        .1
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
    let gone = sig
        .subscribe(|_: &[Arg], _: &mut Value| Ok(()))
        .unwrap()
        .detach();
    assert_eq!(reg.unregister(gone), Status::Ok);
    // A retired one-shot may start cbreg's reclaimer thread once per
    // process (that allocates, on whichever thread does it first).
    for _ in 0..2 {
        let warm = reg
            .register_once(|_: &[Arg], _: &mut Value| Ok(()))
            .unwrap()
            .detach();
        std::thread::spawn(move || assert_eq!(Registry::global().call(warm, &[]), Status::Ok))
            .join()
            .unwrap();
        assert_eq!(reg.call(gone, &[]), Status::NotFound);
    }
    for realtime in [false, true] {
        // One-shots, claimed (and retired) by the emitting thread.
        let once: Vec<_> = (0..4)
            .map(|_| {
                sig.subscribe_once(|_: &[Arg], _: &mut Value| Ok(()))
                    .unwrap()
                    .detach()
            })
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
            .1
        })
        .join()
        .unwrap();
        assert_eq!(n, 0, "emit allocated (real-time: {realtime})");
        drop(once);
    }
}
