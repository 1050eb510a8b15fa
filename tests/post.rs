//! `post`: delivery without waiting. One test per rule of the contract;
//! each uses a pump of its own (drained here) or the native dispatcher.
//!
//!     cargo test --test post

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbreg::{Arg, PostConfig, PostFlags, Pump, Registry, Status, Target, Value};

/// Generous: a loaded machine may be slow, never this slow.
const PATIENCE: Duration = Duration::from_secs(30);

/// An entry that records the i64 arguments it is called with.
fn recorder(reg: &Registry) -> (u64, Arc<Mutex<Vec<Vec<i64>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let id = reg
        .register(move |args: &[Arg], _: &mut Value| {
            s.lock()
                .unwrap()
                .push(args.iter().map(|a| a.as_i64().unwrap_or(-1)).collect());
            Ok(())
        })
        .unwrap()
        .detach();
    (id, seen)
}

fn drain_all(pump: &Pump) -> usize {
    let mut n = 0;
    loop {
        let k = pump.drain(1 << 20);
        if k == 0 {
            return n;
        }
        n += k;
    }
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// posted = delivered + every dropped count + coalesced, nothing pending.
fn assert_accounted(s: &cbreg::PostStats) {
    assert_eq!(s.pending, 0, "{s:?}");
    assert_eq!(
        s.posted,
        s.delivered
            + s.dropped_full
            + s.dropped_stale
            + s.dropped_closed
            + s.dropped_fork
            + s.coalesced,
        "{s:?}"
    );
}

#[test]
fn events_of_one_sender_are_delivered_in_order_per_target() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let (id, seen) = recorder(&reg);
    reg.set_target(id, pump.target()).unwrap();
    const SENDERS: i64 = 4;
    const EACH: i64 = 2000;
    let handle = reg.handle();
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| {
            std::thread::spawn(move || {
                let reg = cbreg::ffi::RegistryHandle { handle };
                for i in 0..EACH {
                    let args = [Value::i64(k), Value::i64(i)];
                    loop {
                        // SAFETY: two scalars.
                        match unsafe { cbreg::post::abi::cbreg_post(reg, id, args.as_ptr(), 2, 0) }
                        {
                            Status::Ok => break,
                            Status::Full => std::thread::yield_now(),
                            e => panic!("{e:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    while total < (SENDERS * EACH) as usize {
        total += pump.drain(100);
    }
    for s in senders {
        s.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let mut next = vec![0; SENDERS as usize];
    for call in seen.iter() {
        let (k, i) = (call[0] as usize, call[1]);
        assert_eq!(i, next[k], "sender {k} out of order");
        next[k] += 1;
    }
    assert!(next.iter().all(|&n| n == EACH));
    assert_accounted(&pump.stats());
}

#[test]
fn an_event_for_an_entry_gone_before_delivery_is_dropped_and_counted() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let (old, old_seen) = recorder(&reg);
    reg.set_target(old, pump.target()).unwrap();
    reg.post(old, &[Arg::i64(1)]).unwrap();
    assert_eq!(reg.unregister(old), Status::Ok);
    // A newer entry, possibly in the same slot, on the same pump.
    let (new, new_seen) = recorder(&reg);
    reg.set_target(new, pump.target()).unwrap();
    assert_eq!(drain_all(&pump), 1);
    assert!(old_seen.lock().unwrap().is_empty());
    assert!(
        new_seen.lock().unwrap().is_empty(),
        "delivered to a newer entry"
    );
    let s = pump.stats();
    assert_eq!((s.dropped_stale, s.delivered), (1, 0));
    assert_accounted(&s);
    // A stale id at post time is refused outright.
    assert_eq!(reg.post(old, &[Arg::i64(1)]), Err(Status::NotFound));
    assert_eq!(reg.post(0, &[]), Err(Status::NotFound));
}

#[test]
fn a_one_shot_runs_at_most_once_however_many_events_were_posted() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let id = reg
        .register_once(move |_: &[Arg], _: &mut Value| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    reg.set_target(id, pump.target()).unwrap();
    for i in 0..100 {
        reg.post(id, &[Arg::i64(i)]).unwrap();
    }
    assert_eq!(drain_all(&pump), 100);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = pump.stats();
    assert_eq!((s.delivered, s.dropped_stale), (1, 99));
    assert_accounted(&s);
}

#[test]
fn unregister_wait_waits_for_a_delivery_in_progress() {
    let reg = Registry::global();
    let inside = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (i, f, r) = (inside.clone(), finished.clone(), release.clone());
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            i.store(true, Ordering::SeqCst);
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            f.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    // The native dispatcher delivers it.
    reg.post(id, &[Arg::f64(1.0)]).unwrap();
    wait_until(|| inside.load(Ordering::SeqCst));
    let releaser = {
        let r = release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            r.store(true, Ordering::SeqCst);
        })
    };
    assert_eq!(reg.unregister_wait(id), Status::Ok);
    assert!(
        finished.load(Ordering::SeqCst),
        "unregister_wait returned during the delivery"
    );
    releaser.join().unwrap();
}

#[test]
fn a_post_that_does_not_fit_is_full_and_nothing_of_it_is_queued() {
    let reg = Registry::new().unwrap();
    let pump = Pump::with_config(PostConfig {
        ring_events: 4,
        ring_bytes: 64,
        period_us: 0,
    })
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let id = reg
        .register(move |args: &[Arg], _: &mut Value| {
            let text = args
                .iter()
                .map(|a| {
                    a.as_str()
                        .map_or(format!("{:?}", a.as_i64()), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(",");
            s.lock().unwrap().push(text);
            Ok(())
        })
        .unwrap()
        .detach();
    reg.set_target(id, pump.target()).unwrap();
    // Arena: 40 bytes fit, a second 40 do not; the event ring has room.
    let forty = "x".repeat(40);
    reg.post(id, &[Arg::str(&forty)]).unwrap();
    assert_eq!(
        reg.post(id, &[Arg::i64(7), Arg::str(&forty)]),
        Err(Status::Full)
    );
    // Bigger than the whole arena.
    assert_eq!(
        reg.post(id, &[Arg::str(&"y".repeat(100))]),
        Err(Status::Full)
    );
    // Events: three more scalars fill the ring of four, the next is refused.
    for i in 0..3 {
        reg.post(id, &[Arg::i64(i)]).unwrap();
    }
    assert_eq!(reg.post(id, &[Arg::i64(99)]), Err(Status::Full));
    assert_eq!(drain_all(&pump), 4);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            forty.clone(),
            "Some(0)".into(),
            "Some(1)".into(),
            "Some(2)".into()
        ]
    );
    let s = pump.stats();
    assert_eq!((s.delivered, s.dropped_full), (4, 3));
    assert_eq!((s.ring_events, s.ring_bytes), (4, 64));
    assert!(s.high_water >= 4, "{s:?}");
    assert_accounted(&s);
    // Room again once drained, the arena wrapping around.
    for _ in 0..10 {
        reg.post(id, &[Arg::str(&forty)]).unwrap();
        assert_eq!(drain_all(&pump), 1);
    }
    assert_eq!(seen.lock().unwrap().last().unwrap(), &forty);
}

#[test]
fn every_argument_kind_is_copied_and_delivered_intact() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let id = reg
        .register(move |a: &[Arg], _: &mut Value| {
            *s.lock().unwrap() = Some((
                a.len(),
                a[0].as_bool(),
                a[1].as_i64(),
                a[2].as_f64(),
                a[3].as_str().map(str::to_owned),
                a[4].as_bytes().map(<[u8]>::to_vec),
                a[5].as_i64s().map(<[i64]>::to_vec),
                a[6].as_f64s().map(<[f64]>::to_vec),
                a[7].tag(),
            ));
            Ok(())
        })
        .unwrap()
        .detach();
    reg.set_target(id, pump.target()).unwrap();
    {
        let text = String::from("A4");
        let bytes = vec![1u8, 2, 3];
        let ints = vec![4i64, 5];
        let floats = vec![0.5f64];
        let args = [
            Arg::bool(true),
            Arg::i64(-3),
            Arg::f64(440.0),
            Arg::str(&text),
            Arg::bytes(&bytes),
            Arg::i64_array(&ints),
            Arg::f64_array(&floats),
            Arg::none(),
        ];
        reg.post(id, &args).unwrap();
    } // the sender's memory is gone before delivery
    assert_eq!(drain_all(&pump), 1);
    let got = seen.lock().unwrap().take().unwrap();
    assert_eq!(got.0, 8);
    assert_eq!(got.1, Some(true));
    assert_eq!(got.2, Some(-3));
    assert_eq!(got.3, Some(440.0));
    assert_eq!(got.4.as_deref(), Some("A4"));
    assert_eq!(got.5, Some(vec![1, 2, 3]));
    assert_eq!(got.6, Some(vec![4, 5]));
    assert_eq!(got.7, Some(vec![0.5]));
    assert_eq!(got.8, cbreg::Tag::None);
}

#[test]
fn bad_input_gets_a_status_as_for_invoke() {
    let reg = Registry::new().unwrap();
    let (id, _) = recorder(&reg);
    let h = cbreg::ffi::RegistryHandle {
        handle: reg.handle(),
    };
    // SAFETY: `args` is a live slice, valid for the call, and `args.len()` its length.
    let post = |args: &[Value], flags: u32| unsafe {
        cbreg::post::abi::cbreg_post(h, id, args.as_ptr(), args.len(), flags)
    };
    assert_eq!(post(&[Value::i64(1)], 1 << 7), Status::InvalidArgument);
    let mut bad_tag = Value::i64(1);
    bad_tag.tag = 99;
    assert_eq!(post(&[bad_tag], 0), Status::InvalidArgument);
    let mut bad_bool = Value::bool(true);
    // SAFETY: writing the byte C could write.
    unsafe { *(&mut bad_bool.r#as as *mut cbreg::Payload as *mut u8) = 2 };
    assert_eq!(post(&[bad_bool], 0), Status::InvalidArgument);
    let many = vec![Value::i64(0); cbreg::ffi::CBREG_MAX_ARGS + 1];
    assert_eq!(post(&many, 0), Status::InvalidArgument);
    assert_eq!(
        // SAFETY: NULL with a nonzero count is rejected before any read.
        unsafe { cbreg::post::abi::cbreg_post(h, id, std::ptr::null(), 1, 0) },
        Status::InvalidArgument
    );
    let forged = cbreg::ffi::RegistryHandle {
        handle: 0xdead_0000_0005,
    };
    assert_eq!(
        // SAFETY: no arguments (NULL, 0).
        unsafe { cbreg::post::abi::cbreg_post(forged, id, std::ptr::null(), 0, 0) },
        Status::InvalidRegistry
    );
}

#[test]
fn a_post_after_close_is_closed_and_pending_events_are_dropped_as_closed() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let (id, seen) = recorder(&reg);
    reg.set_target(id, pump.target()).unwrap();
    reg.post(id, &[Arg::i64(1)]).unwrap();
    reg.close();
    assert_eq!(reg.post(id, &[Arg::i64(2)]), Err(Status::Closed));
    assert_eq!(drain_all(&pump), 1);
    assert!(seen.lock().unwrap().is_empty());
    let s = pump.stats();
    assert_eq!((s.posted, s.dropped_closed), (1, 1));
    assert_accounted(&s);
}

#[test]
fn a_post_to_an_entry_whose_pump_was_freed_is_closed() {
    let reg = Registry::new().unwrap();
    let (id, seen) = recorder(&reg);
    let pump = Pump::new().unwrap();
    reg.set_target(id, pump.target()).unwrap();
    reg.post(id, &[Arg::i64(1)]).unwrap();
    let target = pump.target();
    drop(pump);
    assert_eq!(reg.post(id, &[Arg::i64(2)]), Err(Status::Closed));
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(target.stats(), Err(Status::Closed));
    // A new pump, maybe at the same index, does not answer to the old handle.
    let again = Pump::new().unwrap();
    assert_ne!(again.target(), target);
    assert_eq!(reg.post(id, &[Arg::i64(3)]), Err(Status::Closed));
    reg.set_target(id, again.target()).unwrap();
    reg.post(id, &[Arg::i64(4)]).unwrap();
    assert_eq!(drain_all(&again), 1);
    assert_eq!(*seen.lock().unwrap(), vec![vec![4]]);
    assert_accounted(&again.stats());
}

#[test]
fn coalescing_keeps_only_the_newest_pending_event_per_entry() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let (meter, meter_seen) = recorder(&reg);
    let (other, other_seen) = recorder(&reg);
    for id in [meter, other] {
        reg.set_target(id, pump.target()).unwrap();
    }
    for level in 0..10 {
        reg.post_with(meter, &[Arg::i64(level)], PostFlags::COALESCE)
            .unwrap();
        if level == 5 {
            // Not coalescing: every one is delivered.
            reg.post(other, &[Arg::i64(level)]).unwrap();
            reg.post(other, &[Arg::i64(level + 1)]).unwrap();
        }
    }
    assert_eq!(drain_all(&pump), 12);
    assert_eq!(*meter_seen.lock().unwrap(), vec![vec![9]]);
    assert_eq!(*other_seen.lock().unwrap(), vec![vec![5], vec![6]]);
    let s = pump.stats();
    assert_eq!((s.delivered, s.coalesced), (3, 9));
    assert_accounted(&s);
}

#[test]
fn the_native_dispatcher_delivers_without_anyone_draining() {
    let reg = Registry::global();
    let (id, seen) = recorder(&reg);
    for i in 0..1000 {
        while reg.post(id, &[Arg::i64(i)]) == Err(Status::Full) {
            std::thread::yield_now();
        }
    }
    wait_until(|| seen.lock().unwrap().len() == 1000);
    let got: Vec<i64> = seen.lock().unwrap().iter().map(|c| c[0]).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(reg.unregister_wait(id), Status::Ok);
}

#[test]
fn a_no_wake_event_is_found_on_the_consumers_period() {
    let reg = Registry::global();
    let (id, seen) = recorder(&reg);
    Target::DISPATCHER.reserve().unwrap();
    // Let the dispatcher fall asleep first: the event must not wait for a
    // wake that never comes.
    std::thread::sleep(Duration::from_millis(20));
    reg.post_with(id, &[Arg::i64(1)], PostFlags::NO_WAKE)
        .unwrap();
    wait_until(|| seen.lock().unwrap().len() == 1);
    assert_eq!(reg.unregister_wait(id), Status::Ok);
}

#[cfg(unix)]
#[test]
fn a_pumps_descriptor_is_readable_while_events_wait() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let (id, _) = recorder(&reg);
    reg.set_target(id, pump.target()).unwrap();
    let readable = |timeout_ms: i32| {
        let mut pfd = libc::pollfd {
            fd: pump.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) == 1 }
    };
    assert!(pump.fd() >= 0);
    assert_eq!(pump.drain(10), 0); // arms the wake
    assert!(!readable(0));
    reg.post(id, &[Arg::i64(1)]).unwrap();
    assert!(readable(30_000), "the post did not wake the pump");
    assert_eq!(pump.drain(10), 1);
    // A drain that took events sends the host back; the next arms.
    assert!(readable(0));
    assert_eq!(pump.drain(10), 0);
    assert!(!readable(0));
    // More than one drain's worth: readable again after a partial drain.
    for i in 0..5 {
        reg.post(id, &[Arg::i64(i)]).unwrap();
    }
    assert!(readable(30_000));
    assert_eq!(pump.drain(2), 2);
    assert!(readable(0), "events remain: the descriptor stays readable");
    assert_eq!(drain_all(&pump), 3);
    assert!(!readable(0));
}

/// Senders on several threads, a small ring (so some posts are full),
/// entries unregistered and one-shots claimed while events are in flight,
/// coalescing and plain posts: every post is accounted for exactly once,
/// and no event is delivered twice.
#[test]
fn every_post_is_accounted_for_under_concurrent_senders() {
    let reg = Arc::new(Registry::new().unwrap());
    let pump = Arc::new(
        Pump::with_config(PostConfig {
            ring_events: 64,
            ring_bytes: 1024,
            period_us: 0,
        })
        .unwrap(),
    );
    let delivered = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let entry = |once: bool| {
        let d = delivered.clone();
        let f = move |a: &[Arg], _: &mut Value| {
            let key = (a[0].as_i64().unwrap(), a[1].as_i64().unwrap());
            assert!(d.lock().unwrap().insert(key), "delivered twice: {key:?}");
            Ok(())
        };
        let sub = if once {
            reg.register_once(f)
        } else {
            reg.register(f)
        };
        let id = sub.unwrap().detach();
        reg.set_target(id, pump.target()).unwrap();
        id
    };
    let ids: Vec<u64> = (0..8).map(|i| entry(i % 4 == 3)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (pump, stop) = (pump.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                pump.drain(50);
                std::thread::yield_now();
            }
        })
    };
    let senders: Vec<_> = (0..4i64)
        .map(|k| {
            let (reg, ids) = (reg.clone(), ids.clone());
            std::thread::spawn(move || {
                let (mut ok, mut refused) = (0u64, 0u64);
                let text = format!("sender {k}");
                for i in 0..20_000i64 {
                    let id = ids[(i as usize) % ids.len()];
                    let flags = if i % 5 == 0 {
                        PostFlags::COALESCE
                    } else {
                        PostFlags::NONE
                    };
                    match reg.post_with(id, &[Arg::i64(k), Arg::i64(i), Arg::str(&text)], flags) {
                        Ok(()) => ok += 1,
                        Err(Status::Full) => refused += 1,
                        Err(Status::NotFound) => {}
                        Err(e) => panic!("{e:?}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(reg.unregister(ids[0]), Status::Ok);
    let mut queued = 0;
    let mut refused = 0;
    for s in senders {
        let (o, r) = s.join().unwrap();
        queued += o;
        refused += r;
    }
    stop.store(true, Ordering::SeqCst);
    drainer.join().unwrap();
    drain_all(&pump);
    let s = pump.stats();
    assert_eq!(s.posted, queued + refused, "{s:?}");
    assert_eq!(s.dropped_full, refused, "{s:?}");
    assert_eq!(
        s.delivered as usize,
        delivered.lock().unwrap().len(),
        "{s:?}"
    );
    assert_accounted(&s);
}

#[test]
fn freeing_a_pump_from_inside_its_own_drain_would_deadlock() {
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let target = pump.target();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let raw = cbreg::post::abi::TargetHandle {
                handle: target.handle(),
            };
            *s.lock().unwrap() = Some(cbreg::post::abi::cbreg_pump_free(raw));
            Ok(())
        })
        .unwrap()
        .detach();
    reg.set_target(id, target).unwrap();
    reg.post(id, &[]).unwrap();
    assert_eq!(pump.drain(10), 1);
    assert_eq!(*seen.lock().unwrap(), Some(Status::WouldDeadlock));
    drop(pump); // frees it, from outside
    assert_eq!(target.stats(), Err(Status::Closed));
}

#[test]
fn the_drained_ring_of_an_exited_thread_is_reused() {
    let reg = Arc::new(Registry::new().unwrap());
    let pump = Pump::new().unwrap();
    let (id, seen) = recorder(&reg);
    reg.set_target(id, pump.target()).unwrap();
    for i in 0..20 {
        let reg = reg.clone();
        std::thread::spawn(move || reg.post(id, &[Arg::i64(i)]).unwrap())
            .join()
            .unwrap();
        assert_eq!(drain_all(&pump), 1);
    }
    assert_eq!(seen.lock().unwrap().len(), 20);
    // Twenty threads, one after another: the rings made in advance served
    // them all, each taking over an exited thread's drained ring.
    assert!(pump.stats().rings <= 4, "{:?}", pump.stats());
    assert_accounted(&pump.stats());
}

/// The fast path keeps the entry a thread last posted to; every post still
/// checks it: unregistered is `NOT_FOUND`, a newer entry in the same slot
/// does not answer to the old id, a new target is followed, a closed
/// registry is `CLOSED` and a freed one `INVALID_REGISTRY`.
#[test]
fn the_entry_a_thread_posted_to_last_is_checked_again_at_each_post() {
    fn post_f64(handle: u64, id: u64) -> Status {
        let arg = Value::f64(440.0);
        // SAFETY: one scalar value.
        unsafe {
            cbreg::post::abi::cbreg_post(cbreg::ffi::RegistryHandle { handle }, id, &arg, 1, 0)
        }
    }
    let reg = Registry::new().unwrap();
    let pump = Pump::new().unwrap();
    let other = Pump::new().unwrap();
    let (id, _seen) = recorder(&reg);
    reg.set_target(id, pump.target()).unwrap();
    for _ in 0..3 {
        assert_eq!(post_f64(reg.handle(), id), Status::Ok);
    }
    reg.set_target(id, other.target()).unwrap();
    assert_eq!(post_f64(reg.handle(), id), Status::Ok);
    assert_eq!((drain_all(&pump), drain_all(&other)), (3, 1));

    assert_eq!(reg.unregister(id), Status::Ok);
    assert_eq!(post_f64(reg.handle(), id), Status::NotFound);
    let (newer, _) = recorder(&reg);
    reg.set_target(newer, pump.target()).unwrap();
    for _ in 0..3 {
        assert_eq!(post_f64(reg.handle(), newer), Status::Ok);
    }
    assert_eq!(post_f64(reg.handle(), id), Status::NotFound);
    assert_eq!(post_f64(reg.handle(), newer), Status::Ok);
    assert_eq!(drain_all(&pump), 4);

    let handle = reg.handle();
    reg.close();
    assert_eq!(post_f64(handle, newer), Status::Closed);
    let freed = Registry::new().unwrap();
    let (last, _) = recorder(&freed);
    freed.set_target(last, pump.target()).unwrap();
    for _ in 0..3 {
        assert_eq!(post_f64(freed.handle(), last), Status::Ok);
    }
    let freed_handle = freed.handle();
    drop(freed);
    assert_eq!(post_f64(freed_handle, last), Status::InvalidRegistry);
    drain_all(&pump);
    assert_accounted(&pump.stats());
    assert_accounted(&other.stats());
}
