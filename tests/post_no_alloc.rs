//! `post` allocates nothing, the first post of a new thread included (it
//! claims one of the rings each target makes in advance), and nothing on
//! a real-time thread that reserved its ring with `cbreg_post_reserve`;
//! counted with a global allocator, as in no_alloc.rs.
//!
//!     cargo test --test post_no_alloc

use std::sync::atomic::{AtomicUsize, Ordering};

use cbreg::{Arg, PostFlags, Pump, Registry, Status, Target, Value};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

#[test]
fn counting_allocator_sees_allocations() {
    assert!(allocations_in(|| drop(std::hint::black_box(Box::new(1u64)))).1 >= 1);
}

#[test]
fn post_allocates_nothing_even_first_on_a_new_thread() {
    let reg = Registry::global();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    let pump = Pump::new().unwrap();
    let on_pump = reg
        .register(|_: &[Arg], _: &mut Value| Ok(()))
        .unwrap()
        .detach();
    reg.set_target(on_pump, pump.target()).unwrap();
    // The dispatcher exists and runs (a first post from here starts it).
    reg.post(id, &[Arg::f64(0.0)]).unwrap();
    for round in 0..3 {
        let (sent, n) = std::thread::spawn(move || {
            let reg = Registry::global();
            let text = "A4";
            allocations_in(|| {
                let mut sent = 0;
                for i in 0..100 {
                    let args = [Arg::f64(i as f64), Arg::str(text), Arg::i64(i)];
                    for (target, flags) in [(id, PostFlags::NONE), (on_pump, PostFlags::COALESCE)] {
                        match reg.post_with(target, &args[..1 + (i as usize % 3)], flags) {
                            Ok(()) => sent += 1,
                            Err(Status::Full) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
                sent
            })
        })
        .join()
        .unwrap();
        assert!(sent > 0);
        assert_eq!(n, 0, "post allocated (round {round})");
        while pump.drain(1000) != 0 {}
    }
}

#[test]
fn post_allocates_nothing_on_a_real_time_thread_that_reserved() {
    let reg = Registry::global();
    let id = reg
        .register(|_: &[Arg], _: &mut Value| Ok(()))
        .unwrap()
        .detach();
    let n = std::thread::spawn(move || {
        Target::DISPATCHER.reserve().unwrap();
        cbreg::set_thread_realtime(true);
        let reg = Registry::global();
        let h = cbreg::ffi::RegistryHandle {
            handle: reg.handle(),
        };
        let arg = Value::f64(1.0);
        allocations_in(|| {
            for _ in 0..1000 {
                // SAFETY: one scalar.
                let s = unsafe { cbreg::post::abi::cbreg_post(h, id, &arg, 1, 0) };
                assert!(s == Status::Ok || s == Status::Full, "{s:?}");
            }
        })
        .1
    })
    .join()
    .unwrap();
    assert_eq!(n, 0, "post allocated on a real-time thread");
}
