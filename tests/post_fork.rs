//! `post` across fork(): the child starts from consistent rings. Events
//! pending in the parent at the fork are the parent's to deliver: the child
//! drops them (counted as `dropped_fork`), frees the rings of threads it
//! does not have, gets new wake descriptors, and starts its dispatcher
//! again when a post needs it.
//!
//!     cargo test --test post_fork
#![cfg(unix)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbreg::{Arg, Pump, Registry, Status, Value};

fn recorder(reg: &Registry) -> (u64, Arc<Mutex<Vec<i64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let id = reg
        .register(move |a: &[Arg], _: &mut Value| {
            s.lock().unwrap().push(a[0].as_i64().unwrap_or(-1));
            Ok(())
        })
        .unwrap()
        .detach();
    (id, seen)
}

#[test]
fn a_forked_child_starts_with_consistent_rings_and_drops_what_the_parent_had_pending() {
    let reg = Arc::new(Registry::new().unwrap());
    let pump = Arc::new(Pump::new().unwrap());
    let (on_pump, pump_seen) = recorder(&reg);
    reg.set_target(on_pump, pump.target()).unwrap();
    let (on_dispatcher, dispatcher_seen) = recorder(&reg);
    // Pending in the parent: three from this thread, more from a thread
    // that keeps posting while the fork happens.
    for i in 0..3 {
        reg.post(on_pump, &[Arg::i64(i)]).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (reg, stop) = (reg.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 100;
            while !stop.load(SeqCst) {
                let _ = reg.post(on_pump, &[Arg::i64(i)]);
                i += 1;
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    // The dispatcher is running in the parent.
    reg.post(on_dispatcher, &[Arg::i64(1)]).unwrap();
    // This thread's ring to the pump keeps `on_pump` as its last entry.
    for i in 3..5 {
        reg.post(on_pump, &[Arg::i64(i)]).unwrap();
    }
    // SAFETY: the child calls cbreg, allocates and exits with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: async-signal-safe, in the forked child.
        unsafe { libc::alarm(20) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(
                &reg,
                &pump,
                on_pump,
                &pump_seen,
                on_dispatcher,
                &dispatcher_seen,
            )
        }))
        .unwrap_or(90);
        // SAFETY: ends the forked child without running its parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut wstatus = 0;
    // SAFETY: `pid` is our child; `wstatus` is a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut wstatus, 0) }, pid);
    stop.store(true, SeqCst);
    sender.join().unwrap();
    assert!(libc::WIFEXITED(wstatus), "child died: {wstatus:#x}");
    assert_eq!(libc::WEXITSTATUS(wstatus), 0, "child failed");
    // The parent still has every event it posted, and delivers them.
    while pump.drain(1 << 16) != 0 {}
    let seen = pump_seen.lock().unwrap();
    assert_eq!(&seen[..5], &[0, 1, 2, 3, 4]);
    let s = pump.stats();
    assert_eq!(s.dropped_fork, 0);
    assert_eq!(s.posted, s.delivered + s.dropped_full, "{s:?}");
}

fn child(
    reg: &Registry,
    pump: &Pump,
    on_pump: u64,
    pump_seen: &Mutex<Vec<i64>>,
    on_dispatcher: u64,
    dispatcher_seen: &Mutex<Vec<i64>>,
) -> i32 {
    let before = pump.stats();
    if before.pending != 0 || before.dropped_fork < 5 {
        eprintln!("child: pending events survived the fork: {before:?}");
        return 1;
    }
    // What was pending was dropped, not delivered.
    if pump.drain(1 << 16) != 0 || !pump_seen.lock().unwrap().is_empty() {
        eprintln!("child: delivered an event of the parent");
        return 2;
    }
    if pump.stats().posted
        != before.delivered + before.dropped_full + before.dropped_fork + before.dropped_stale
    {
        eprintln!("child: accounting broken: {before:?}");
        return 3;
    }
    // The entry this thread last posted to is forgotten, and nothing that
    // was kept lets a malformed argument through.
    let mut bad = Value::i64(0);
    bad.tag = u32::MAX;
    let reg_handle = cbreg::ffi::RegistryHandle {
        handle: reg.handle(),
    };
    // SAFETY: one value.
    if unsafe { cbreg::post::abi::cbreg_post(reg_handle, on_pump, &bad, 1, 0) }
        != Status::InvalidArgument
    {
        eprintln!("child: a post with a bad tag was taken");
        return 9;
    }
    // The child posts and drains; its descriptor is its own.
    if reg.post(on_pump, &[Arg::i64(7)]) != Ok(()) || pump.drain(10) != 1 {
        return 4;
    }
    if *pump_seen.lock().unwrap() != vec![7] {
        return 5;
    }
    // A new thread of the child takes a ring the parent's sender held.
    let handle = reg.handle();
    let posted = std::thread::spawn(move || {
        let reg = cbreg::ffi::RegistryHandle { handle };
        let v = Value::i64(8);
        // SAFETY: one scalar.
        unsafe { cbreg::post::abi::cbreg_post(reg, on_pump, &v, 1, 0) }
    })
    .join()
    .unwrap();
    if posted != Status::Ok || pump.drain(10) != 1 {
        return 6;
    }
    // The dispatcher starts again in the child.
    dispatcher_seen.lock().unwrap().clear();
    if reg.post(on_dispatcher, &[Arg::i64(9)]) != Ok(()) {
        return 7;
    }
    let start = Instant::now();
    while dispatcher_seen.lock().unwrap().as_slice() != [9] {
        if start.elapsed() > Duration::from_secs(15) {
            eprintln!("child: the dispatcher never delivered");
            return 8;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    0
}
