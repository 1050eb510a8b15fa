//! Signals: one test per rule of the contract (emit order, changes during
//! an emit, one-shots, exactly-once releases, handles after free, failures,
//! racing changes, fork).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cbreg::{Arg, Registry, Signal, Status, Value};

/// Counts the releases of one closure's captures.
struct Released(Arc<AtomicUsize>);
impl Drop for Released {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn ok(_: &[Arg], _: &mut Value) -> Result<(), Status> {
    Ok(())
}

/// Waits until `cond` holds, collecting (releases may wait for a batch).
fn eventually(reg: &Registry, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        reg.collect();
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("condition never held");
}

#[test]
fn subscribers_are_called_once_each_in_subscription_order() {
    let reg = Registry::new().unwrap();
    let sig = Signal::new(&reg).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let subs: Vec<_> = (0..10)
        .map(|i| {
            let order = order.clone();
            sig.subscribe(move |a: &[Arg], _: &mut Value| {
                assert_eq!(a[0].as_f64(), Some(440.0));
                order.lock().unwrap().push(i);
                Ok(())
            })
            .unwrap()
        })
        .collect();
    let report = sig.emit(&[Arg::f64(440.0)]).unwrap();
    assert_eq!(report.called, 10);
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
    drop(subs);
}

#[test]
fn a_subscriber_added_during_an_emit_is_not_called_by_it() {
    let reg = Registry::new().unwrap();
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let late_calls = Arc::new(AtomicUsize::new(0));
    let added = Arc::new(Mutex::new(Vec::new()));
    let (s2, l2, a2) = (sig.clone(), late_calls.clone(), added.clone());
    let _adder = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            let l3 = l2.clone();
            let c = s2
                .subscribe(move |_: &[Arg], _: &mut Value| {
                    l3.fetch_add(1, SeqCst);
                    Ok(())
                })
                .unwrap();
            a2.lock().unwrap().push(c);
            Ok(())
        })
        .unwrap();
    assert_eq!(sig.emit(&[]).unwrap().called, 1);
    assert_eq!(
        late_calls.load(SeqCst),
        0,
        "added during the emit, called by it"
    );
    // The next emit calls it (and adds another, which it does not call).
    assert_eq!(sig.emit(&[]).unwrap().called, 2);
    assert_eq!(late_calls.load(SeqCst), 1);
    added.lock().unwrap().clear();
}

#[test]
fn a_subscriber_removed_during_an_emit_is_not_called_after_the_removal_returns() {
    let reg = Registry::new().unwrap();
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let victim_calls = Arc::new(AtomicUsize::new(0));
    let victim_id = Arc::new(AtomicUsize::new(0));
    let (s2, v2) = (sig.clone(), victim_id.clone());
    // The first subscriber removes the second, before the emit reaches it.
    let _remover = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            let id = v2.load(SeqCst) as u64;
            if id != 0 {
                assert_eq!(
                    cbreg::ffi::cbreg_signal_unsubscribe(
                        cbreg::SignalHandle {
                            handle: s2.handle()
                        },
                        id
                    ),
                    Status::Ok
                );
            }
            Ok(())
        })
        .unwrap();
    let vc = victim_calls.clone();
    let victim = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            vc.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    victim_id.store(victim as usize, SeqCst);
    assert_eq!(sig.emit(&[]).unwrap().called, 1);
    assert_eq!(
        victim_calls.load(SeqCst),
        0,
        "called after its removal returned"
    );
}

#[test]
fn a_subscriber_removed_by_another_thread_is_not_called_after_the_removal_returns() {
    // An emit on another thread may be inside the callback when the removal
    // returns (it started before); once that call has ended
    // (`unregister_wait`), no emit calls it again.
    let reg = Arc::new(Registry::new().unwrap());
    let sig = Arc::new(Signal::new(&reg).unwrap());
    for _ in 0..200 {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let victim = sig
            .subscribe(move |_: &[Arg], _: &mut Value| {
                c2.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        let id = victim.id();
        let stop = Arc::new(AtomicBool::new(false));
        let emitter = {
            let (sig, stop) = (sig.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    sig.emit(&[]).unwrap();
                }
            })
        };
        std::thread::yield_now();
        assert_eq!(victim.disconnect(), Status::Ok);
        assert_eq!(reg.unregister_wait(id), Status::NotFound);
        let after = calls.load(SeqCst);
        std::thread::sleep(Duration::from_micros(200));
        stop.store(true, SeqCst);
        emitter.join().unwrap();
        assert_eq!(
            calls.load(SeqCst),
            after,
            "called after its removal returned"
        );
    }
}

#[test]
fn a_subscriber_can_unsubscribe_itself_and_resubscribe_others_inside_an_emit() {
    let reg = Registry::new().unwrap();
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (sig.clone(), calls.clone());
    let me = Arc::new(AtomicUsize::new(0));
    let me2 = me.clone();
    let id = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            c2.fetch_add(1, SeqCst);
            let h = cbreg::SignalHandle {
                handle: s2.handle(),
            };
            let id = me2.load(SeqCst) as u64;
            assert_eq!(cbreg::ffi::cbreg_signal_unsubscribe(h, id), Status::Ok);
            // A nested emit from inside a subscriber works too.
            assert_eq!(s2.emit(&[]).unwrap().called, 0);
            Ok(())
        })
        .unwrap()
        .detach();
    me.store(id as usize, SeqCst);
    assert_eq!(sig.emit(&[]).unwrap().called, 1);
    assert_eq!(sig.emit(&[]).unwrap().called, 0);
    assert_eq!(calls.load(SeqCst), 1);
    assert!(sig.is_empty());
}

#[test]
fn a_one_shot_subscriber_runs_at_most_once_under_racing_emits() {
    let reg = Arc::new(Registry::new().unwrap());
    let sig = Arc::new(Signal::new(&reg).unwrap());
    for _ in 0..100 {
        let calls = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicUsize::new(0));
        let (c2, guard) = (calls.clone(), Released(released.clone()));
        let conn = sig
            .subscribe_once(move |_: &[Arg], _: &mut Value| {
                let _ = &guard;
                c2.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        let start = Arc::new(std::sync::Barrier::new(4));
        let emitters: Vec<_> = (0..4)
            .map(|_| {
                let (sig, start) = (sig.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    sig.emit(&[]).unwrap().called
                })
            })
            .collect();
        let called: usize = emitters.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(calls.load(SeqCst), 1, "a one-shot ran more than once");
        assert_eq!(called, 1);
        assert_eq!(conn.disconnect(), Status::NotFound);
        eventually(&reg, || released.load(SeqCst) == 1);
    }
}

#[test]
fn every_subscriber_release_runs_exactly_once() {
    let reg = Registry::new().unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let sig = Signal::new(&reg).unwrap();
    let make = |once: bool| {
        let guard = Released(released.clone());
        let f = move |_: &[Arg], _: &mut Value| {
            let _ = &guard;
            Ok(())
        };
        if once {
            sig.subscribe_once(f).unwrap()
        } else {
            sig.subscribe(f).unwrap()
        }
    };
    let unsubscribed = make(false);
    let one_shot = make(true).detach();
    let kept: Vec<_> = (0..5).map(|_| make(false).detach()).collect();
    assert_eq!(unsubscribed.disconnect(), Status::Ok);
    assert_eq!(sig.emit(&[]).unwrap().called, 6);
    assert_eq!(sig.emit(&[]).unwrap().called, 5);
    assert_eq!(reg.unregister(one_shot), Status::NotFound);
    drop(sig); // frees: unregisters the five left
    eventually(&reg, || released.load(SeqCst) == 7);
    for id in kept {
        assert_eq!(reg.unregister(id), Status::NotFound);
    }
    std::thread::sleep(Duration::from_millis(30));
    reg.collect();
    assert_eq!(released.load(SeqCst), 7, "a release ran twice");
}

#[test]
fn a_freed_signal_handle_gets_invalid_signal_never_a_newer_signal() {
    let reg = Registry::new().unwrap();
    let old = Signal::new(&reg).unwrap();
    let old_handle = cbreg::SignalHandle {
        handle: old.handle(),
    };
    drop(old);
    let calls = Arc::new(AtomicUsize::new(0));
    // Newer signals, one of which likely reuses the old one's table entry.
    let newer: Vec<_> = (0..4).map(|_| Signal::new(&reg).unwrap()).collect();
    let conns: Vec<_> = newer
        .iter()
        .map(|s| {
            let c = calls.clone();
            s.subscribe(move |_: &[Arg], _: &mut Value| {
                c.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap()
        })
        .collect();
    let h = old_handle;
    assert_eq!(
        // SAFETY: no arguments (NULL, 0) and a NULL report.
        unsafe { cbreg::ffi::cbreg_signal_emit(h, std::ptr::null(), 0, std::ptr::null_mut()) },
        Status::InvalidSignal
    );
    assert_eq!(
        cbreg::ffi::cbreg_signal_subscribe(h, conns[0].id()),
        Status::InvalidSignal
    );
    assert_eq!(
        cbreg::ffi::cbreg_signal_unsubscribe(h, conns[0].id()),
        Status::InvalidSignal
    );
    assert_eq!(cbreg::ffi::cbreg_signal_free(h), Status::InvalidSignal);
    let mut n = 0;
    // SAFETY: `n` is a local count.
    let counted = unsafe { cbreg::ffi::cbreg_signal_count(h, &mut n) };
    assert_eq!(counted, Status::InvalidSignal);
    assert_eq!(
        calls.load(SeqCst),
        0,
        "a stale handle reached a newer signal"
    );
    for bad in [0, u64::MAX, 1 << 40 | 3] {
        let h = cbreg::SignalHandle { handle: bad };
        assert_eq!(
            // SAFETY: no arguments (NULL, 0) and a NULL report.
            unsafe { cbreg::ffi::cbreg_signal_emit(h, std::ptr::null(), 0, std::ptr::null_mut()) },
            Status::InvalidSignal
        );
    }
    drop(conns);
}

#[test]
fn failures_are_counted_without_stopping_the_emit() {
    let reg = Registry::new().unwrap();
    let sig = Signal::new(&reg).unwrap();
    let after = Arc::new(AtomicUsize::new(0));
    let a2 = after.clone();
    let _c: Vec<_> = vec![
        sig.subscribe(ok).unwrap(),
        sig.subscribe(|_: &[Arg], _: &mut Value| Err(Status::NotFound))
            .unwrap(),
        sig.subscribe(|_: &[Arg], _: &mut Value| panic!("a panicking subscriber"))
            .unwrap(),
        sig.subscribe(move |_: &[Arg], _: &mut Value| {
            a2.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap(),
    ];
    let (status, report) = sig.emit_report(&[]);
    assert_eq!(status, Status::CallbackFailed);
    assert_eq!(report.called, 4);
    assert_eq!(report.failed, 2);
    assert_eq!(report.first_status, Status::CallbackFailed as u32);
    assert_eq!(
        report.first_code,
        Status::NotFound as u32,
        "the callback's own code"
    );
    assert_eq!(after.load(SeqCst), 1, "the emit stopped at a failure");
}

#[test]
fn subscribing_checks_its_entry() {
    let reg = Registry::new().unwrap();
    let other = Registry::new().unwrap();
    let sig = Signal::new(&reg).unwrap();
    let c = sig.subscribe(ok).unwrap();
    assert_eq!(
        sig.subscribe_id(c.id()).unwrap_err(),
        Status::InvalidArgument
    );
    assert_eq!(sig.subscribe_id(0).unwrap_err(), Status::NotFound);
    let foreign = other.register(ok).unwrap();
    assert_eq!(
        sig.subscribe_id(foreign.id()).unwrap_err(),
        Status::NotFound
    );
    let h = cbreg::SignalHandle {
        handle: sig.handle(),
    };
    assert_eq!(
        cbreg::ffi::cbreg_signal_unsubscribe(h, foreign.id()),
        Status::NotFound
    );
    assert_eq!(sig.len(), 1);
    // An entry unregistered behind the signal's back is no longer called.
    let id = c.detach();
    assert_eq!(reg.unregister(id), Status::Ok);
    assert_eq!(sig.emit(&[]).unwrap().called, 0);
    assert!(sig.is_empty());
}

#[test]
fn emit_while_other_threads_subscribe_and_unsubscribe_in_a_loop() {
    let reg = Arc::new(Registry::new().unwrap());
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let released = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let inside_after_removal = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let steady = Arc::new(AtomicUsize::new(0));
    let st = steady.clone();
    let _steady = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            st.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap();
    let emitters: Vec<_> = (0..2)
        .map(|i| {
            let (sig, stop) = (sig.clone(), stop.clone());
            std::thread::spawn(move || {
                cbreg::set_thread_realtime(i == 0);
                let mut emits = 0u64;
                while !stop.load(SeqCst) {
                    assert!(sig.emit(&[Arg::f64(1.0)]).unwrap().called >= 1);
                    emits += 1;
                }
                emits
            })
        })
        .collect();
    let changers: Vec<_> = (0..2)
        .map(|_| {
            let (reg, sig, released, made, late) = (
                reg.clone(),
                sig.clone(),
                released.clone(),
                made.clone(),
                inside_after_removal.clone(),
            );
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let calls = Arc::new(AtomicUsize::new(0));
                    let c2 = calls.clone();
                    let guard = Released(released.clone());
                    let c = sig
                        .subscribe(move |_: &[Arg], _: &mut Value| {
                            let _ = &guard;
                            c2.fetch_add(1, SeqCst);
                            Ok(())
                        })
                        .unwrap();
                    made.fetch_add(1, SeqCst);
                    let id = c.id();
                    assert_eq!(c.disconnect(), Status::Ok);
                    assert_eq!(reg.unregister_wait(id), Status::NotFound);
                    let after = calls.load(SeqCst);
                    std::thread::yield_now();
                    if calls.load(SeqCst) != after {
                        late.fetch_add(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    changers.into_iter().for_each(|t| t.join().unwrap());
    stop.store(true, SeqCst);
    let emits: u64 = emitters.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(emits > 0);
    assert_eq!(inside_after_removal.load(SeqCst), 0);
    let made = made.load(SeqCst);
    eventually(&reg, || released.load(SeqCst) == made);
    assert_eq!(sig.len(), 1);
}

#[test]
fn a_real_time_emitter_never_runs_a_release() {
    let reg = Arc::new(Registry::new().unwrap());
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let release_threads = Arc::new(Mutex::new(Vec::new()));
    struct OnThread(Arc<Mutex<Vec<std::thread::ThreadId>>>);
    impl Drop for OnThread {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }
    let rt = {
        let (sig, rel) = (sig.clone(), release_threads.clone());
        std::thread::spawn(move || {
            cbreg::set_thread_realtime(true);
            for _ in 0..200 {
                // One-shots: the emitting thread claims them, and would
                // otherwise run their releases.
                let guard = OnThread(rel.clone());
                sig.subscribe_once(move |_: &[Arg], _: &mut Value| {
                    let _ = &guard;
                    Ok(())
                })
                .unwrap()
                .detach();
                assert_eq!(sig.emit(&[]).unwrap().called, 1);
            }
            std::thread::current().id()
        })
    };
    let rt_id = rt.join().unwrap();
    eventually(&reg, || release_threads.lock().unwrap().len() == 200);
    assert!(!release_threads.lock().unwrap().contains(&rt_id));
}

#[test]
fn a_forked_child_can_emit() {
    let reg = Arc::new(Registry::new().unwrap());
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let _c = sig
        .subscribe(move |_: &[Arg], _: &mut Value| {
            c2.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_micros(50));
            Ok(())
        })
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Other threads are inside emits and changes at the fork.
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let (sig, stop) = (sig.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    if i == 0 {
                        let _ = sig.emit(&[]);
                    } else {
                        drop(sig.subscribe(ok).unwrap());
                    }
                }
            })
        })
        .collect();
    while calls.load(SeqCst) < 10 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the child calls cbreg and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: async-signal-safe, in the forked child.
        unsafe { libc::alarm(20) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let before = calls.load(SeqCst);
            let report = sig.emit(&[]).unwrap();
            let c = sig.subscribe(ok).unwrap();
            let again = sig.emit(&[]).unwrap();
            drop(c);
            let ok = report.called >= 1
                && calls.load(SeqCst) == before + 2
                && again.called == report.called + 1;
            if ok {
                0
            } else {
                1
            }
        }))
        .unwrap_or(90);
        // SAFETY: ends the forked child without running its parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut wstatus = 0;
    // SAFETY: `pid` is our child; `wstatus` is a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut wstatus, 0) }, pid);
    stop.store(true, SeqCst);
    busy.into_iter().for_each(|t| t.join().unwrap());
    assert!(libc::WIFEXITED(wstatus), "child died: {wstatus:#x}");
    assert_eq!(libc::WEXITSTATUS(wstatus), 0, "child check failed");
}
