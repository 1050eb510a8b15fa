//! One test per guarantee of docs/contract.md 4.3, through the safe Rust API.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use cbreg::{set_thread_realtime, Arg, Registry, Status, Value};

/// Counts its own drops: the closure's release.
struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counted(releases: &Arc<AtomicUsize>) -> DropCounter {
    DropCounter(releases.clone())
}

/// Registers a no-op entry whose release bumps `releases`; returns its id.
fn register_counted(reg: &Registry, releases: &Arc<AtomicUsize>) -> u64 {
    let guard = counted(releases);
    reg.register(move |_: &[Arg], _: &mut Value| {
        let _ = &guard;
        Ok(())
    })
    .unwrap()
    .detach()
}

#[test]
fn ids_are_nonzero_and_never_reused() {
    let reg = Registry::new().unwrap();
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let sub = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
        assert_ne!(sub.id(), 0);
        assert!(seen.insert(sub.id()), "id {:#x} reused", sub.id());
    }
}

#[test]
fn stale_id_after_its_slot_is_reused_is_not_found() {
    let reg = Registry::new().unwrap();
    let old = reg.register(|_: &[Arg], ret: &mut Value| {
        *ret = Value::i64(1);
        Ok(())
    });
    let old_id = old.unwrap().unregister_and_id();
    reg.collect(); // its slot is free by then (also when the release was batched)
    let new = reg
        .register(|_: &[Arg], ret: &mut Value| {
            *ret = Value::i64(2);
            Ok(())
        })
        .unwrap();
    // Same slot (the free list hands it back), newer generation.
    assert_eq!(old_id as u32, new.id() as u32, "the slot was reused");
    assert_ne!(old_id, new.id());
    assert_eq!(reg.invoke(old_id, &[]).unwrap_err(), Status::NotFound);
    assert_eq!(reg.unregister(old_id), Status::NotFound);
    assert_eq!(reg.invoke(new.id(), &[]).unwrap().as_i64(), Some(2));
}

trait UnregisterAndId {
    fn unregister_and_id(self) -> u64;
}
impl UnregisterAndId for cbreg::Subscription {
    fn unregister_and_id(self) -> u64 {
        let id = self.id();
        assert_eq!(self.unregister(), Status::Ok);
        id
    }
}

#[test]
fn release_runs_exactly_once_when_unregistered() {
    let reg = Registry::new().unwrap();
    let releases = Arc::new(AtomicUsize::new(0));
    let guard = counted(&releases);
    let sub = reg.register(move |_: &[Arg], _: &mut Value| {
        let _ = &guard;
        Ok(())
    });
    let id = sub.unwrap().unregister_and_id();
    // Here, or in a batch (other test threads hold records): collect is a
    // batch point.
    reg.collect();
    assert_eq!(releases.load(SeqCst), 1, "released by the next collect");
    assert_eq!(reg.unregister(id), Status::NotFound);
    reg.clear();
    reg.collect();
    assert_eq!(releases.load(SeqCst), 1);
}

#[test]
fn eight_threads_invoking_while_others_unregister_and_clear_release_each_entry_once() {
    let reg = Arc::new(Registry::new().unwrap());
    let releases = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let released_while_inside = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let registered = Arc::new(AtomicU64::new(0));

    // Each entry's release checks that no invocation of that entry runs.
    struct Entry {
        inside: AtomicUsize,
        releases: Arc<AtomicUsize>,
        flag: Arc<AtomicBool>,
    }
    impl Drop for Entry {
        fn drop(&mut self) {
            if self.inside.load(SeqCst) != 0 {
                self.flag.store(true, SeqCst);
            }
            self.releases.fetch_add(1, SeqCst);
        }
    }

    let mut threads = Vec::new();
    for _ in 0..8 {
        let (reg, ids, stop) = (reg.clone(), ids.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                let snapshot: Vec<u64> = ids.lock().unwrap().clone();
                for id in snapshot {
                    let _ = reg.call(id, &[Arg::i64(n as i64)]);
                    n += 1;
                }
            }
        }));
    }
    for worker in 0..2 {
        let (reg, ids, stop, releases, flag, registered, inside) = (
            reg.clone(),
            ids.clone(),
            stop.clone(),
            releases.clone(),
            released_while_inside.clone(),
            registered.clone(),
            inside.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(SeqCst) {
                let entry = Arc::new(Entry {
                    inside: AtomicUsize::new(0),
                    releases: releases.clone(),
                    flag: flag.clone(),
                });
                let inside = inside.clone();
                let sub = reg
                    .register(move |_: &[Arg], _: &mut Value| {
                        entry.inside.fetch_add(1, SeqCst);
                        inside.fetch_add(1, SeqCst);
                        std::hint::spin_loop();
                        entry.inside.fetch_sub(1, SeqCst);
                        Ok(())
                    })
                    .unwrap();
                registered.fetch_add(1, SeqCst);
                let id = sub.detach();
                ids.lock().unwrap().push(id);
                round += 1;
                if worker == 0 && round % 3 == 0 {
                    let _ = reg.unregister(id);
                } else if worker == 1 && round % 50 == 0 {
                    reg.clear();
                }
                if round % 100 == 0 {
                    ids.lock().unwrap().retain(|_| false);
                }
                thread::yield_now();
            }
        }));
    }
    thread::sleep(Duration::from_millis(400));
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    reg.clear();
    reg.collect();
    assert!(inside.load(SeqCst) > 0, "invocations happened");
    assert_eq!(releases.load(SeqCst) as u64, registered.load(SeqCst));
    assert!(
        !released_while_inside.load(SeqCst),
        "a release ran during an invocation"
    );
    let stats = reg.stats();
    assert_eq!(stats.live, 0);
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.released, stats.registered);
}

#[test]
fn release_waits_for_the_invocation_in_flight_and_runs_when_it_returns() {
    let reg = Arc::new(Registry::new().unwrap());
    let releases = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(Barrier::new(2));
    let proceed = Arc::new(Barrier::new(2));
    let guard = counted(&releases);
    let (e, p) = (entered.clone(), proceed.clone());
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let _ = &guard;
            e.wait();
            p.wait();
            Ok(())
        })
        .unwrap()
        .detach();
    let r = reg.clone();
    let invoker = thread::spawn(move || r.call(id, &[]));
    entered.wait();
    assert_eq!(reg.unregister(id), Status::Ok);
    assert_eq!(
        reg.invoke(id, &[]).unwrap_err(),
        Status::NotFound,
        "no invocation starts after unregister"
    );
    assert_eq!(releases.load(SeqCst), 0, "not released while in flight");
    assert_eq!(reg.stats().pending, 1);
    proceed.wait();
    assert_eq!(invoker.join().unwrap(), Status::Ok);
    // The invoker dropped the last use, so it ran the release.
    assert_eq!(releases.load(SeqCst), 1);
    assert_eq!(reg.stats().pending, 0);
}

#[test]
fn callback_unregisters_itself() {
    let reg = Arc::new(Registry::new().unwrap());
    let releases = Arc::new(AtomicUsize::new(0));
    let my_id = Arc::new(AtomicU64::new(0));
    let guard = counted(&releases);
    let (r, m) = (reg.clone(), my_id.clone());
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let _ = &guard;
            r.unregister(m.load(SeqCst)).ok()
        })
        .unwrap()
        .detach();
    my_id.store(id, SeqCst);
    assert_eq!(reg.call(id, &[]), Status::Ok);
    assert_eq!(
        releases.load(SeqCst),
        1,
        "released by the invoker once the callback returned"
    );
    assert_eq!(reg.call(id, &[]), Status::NotFound);
}

#[test]
fn callback_registers_and_invokes_from_inside_a_callback() {
    let reg = Arc::new(Registry::new().unwrap());
    let r = reg.clone();
    let id = reg
        .register(move |args: &[Arg], ret: &mut Value| {
            let depth = args[0].as_i64().unwrap();
            if depth == 0 {
                *ret = Value::i64(100);
                return Ok(());
            }
            let r2 = r.clone();
            let inner = r.register(move |a: &[Arg], ret: &mut Value| {
                // One level further: invoke a third entry from inside.
                let x = a[0].as_i64().unwrap();
                let leaf = r2.register(|a: &[Arg], ret: &mut Value| {
                    *ret = Value::i64(a[0].as_i64().unwrap() * 2);
                    Ok(())
                })?;
                *ret = r2.invoke(leaf.id(), &[Arg::i64(x)])?;
                Ok(())
            })?;
            *ret = r.invoke(inner.id(), &[Arg::i64(depth)])?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        reg.invoke(id.id(), &[Arg::i64(21)]).unwrap().as_i64(),
        Some(42)
    );
    assert_eq!(
        reg.invoke(id.id(), &[Arg::i64(0)]).unwrap().as_i64(),
        Some(100)
    );
    drop(id);
    assert_eq!(reg.stats().live, 0);
}

#[test]
fn nesting_deeper_than_the_hazard_cells_still_protects_every_level() {
    let reg = Arc::new(Registry::new().unwrap());
    let r = reg.clone();
    let id = Arc::new(AtomicU64::new(0));
    let me = id.clone();
    let sub = reg
        .register(move |a: &[Arg], ret: &mut Value| {
            let n = a[0].as_i64().unwrap();
            *ret = if n == 0 {
                Value::i64(0)
            } else {
                Value::i64(
                    1 + r
                        .invoke(me.load(SeqCst), &[Arg::i64(n - 1)])?
                        .as_i64()
                        .unwrap(),
                )
            };
            Ok(())
        })
        .unwrap();
    id.store(sub.id(), SeqCst);
    assert_eq!(
        reg.invoke(sub.id(), &[Arg::i64(20)]).unwrap().as_i64(),
        Some(20)
    );
}

/// Entries nested `LEVELS` deep (past the hazard cells, so cells and slot
/// counters both serve), each invoking the next; at the innermost level
/// another thread unregisters every one of them and collects. No release
/// may run before its invocation returns, whichever path each level took:
/// a thread's first invoke takes the general path, later outermost ones
/// the fast path (the record's first cell), nested ones the next cells.
#[test]
fn every_nesting_level_stays_protected_until_it_returns() {
    const LEVELS: usize = 9;
    for round in 0..3 {
        let reg = Arc::new(Registry::new().unwrap());
        let releases: Vec<Arc<AtomicUsize>> =
            (0..LEVELS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let ids: Arc<Vec<AtomicU64>> = Arc::new((0..LEVELS).map(|_| AtomicU64::new(0)).collect());
        let (to_writer, writer_rx) = std::sync::mpsc::channel::<()>();
        let (to_invoker, invoker_rx) = std::sync::mpsc::channel::<()>();
        let invoker_rx = Arc::new(Mutex::new(invoker_rx));
        let seen_inside = Arc::new(Mutex::new(Vec::new()));
        for level in 0..LEVELS {
            let (r, ids2, guard) = (reg.clone(), ids.clone(), counted(&releases[level]));
            let (to_writer, invoker_rx) = (to_writer.clone(), invoker_rx.clone());
            let (all, seen) = (releases.clone(), seen_inside.clone());
            let id = reg
                .register(move |_: &[Arg], _: &mut Value| {
                    let _ = &guard;
                    if level + 1 < LEVELS {
                        r.invoke(ids2[level + 1].load(SeqCst), &[])?;
                    } else {
                        to_writer.send(()).unwrap();
                        invoker_rx.lock().unwrap().recv().unwrap();
                        let now: Vec<usize> = all.iter().map(|c| c.load(SeqCst)).collect();
                        seen.lock().unwrap().push(now);
                    }
                    Ok(())
                })
                .unwrap()
                .detach();
            ids[level].store(id, SeqCst);
        }
        let (r, ids2) = (reg.clone(), ids.clone());
        let invoker = thread::spawn(move || {
            // Round 0: the thread's first invoke (general path, claims the
            // record). Rounds 1 and 2: a warm record (fast path outermost),
            // the second after nested levels left their count behind.
            for _ in 0..round {
                let warm = r.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
                let nested = r.clone();
                let inner = warm.id();
                let outer = r
                    .register(move |_: &[Arg], _: &mut Value| nested.invoke(inner, &[]).map(|_| ()))
                    .unwrap();
                r.invoke(outer.id(), &[]).unwrap();
            }
            r.invoke(ids2[0].load(SeqCst), &[])
        });
        writer_rx.recv().unwrap();
        for id in ids.iter() {
            assert_eq!(reg.unregister(id.load(SeqCst)), Status::Ok);
        }
        reg.collect();
        to_invoker.send(()).unwrap();
        invoker.join().unwrap().unwrap();
        reg.collect();
        let inside = seen_inside.lock().unwrap()[0].clone();
        assert_eq!(
            inside,
            vec![0; LEVELS],
            "round {round}: releases ran inside their invocations"
        );
        let after: Vec<usize> = releases.iter().map(|c| c.load(SeqCst)).collect();
        assert_eq!(
            after,
            vec![1; LEVELS],
            "round {round}: each release once, after return"
        );
    }
}

#[test]
fn callback_may_clear_and_close_its_own_registry() {
    let reg = Arc::new(Registry::new().unwrap());
    let releases = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        register_counted(&reg, &releases);
    }
    let r = reg.clone();
    let g = counted(&releases);
    let id = reg
        .register(move |_: &[Arg], ret: &mut Value| {
            let _ = &g;
            *ret = Value::i64(r.close() as i64);
            Ok(())
        })
        .unwrap()
        .detach();
    assert_eq!(reg.invoke(id, &[]).unwrap().as_i64(), Some(4));
    assert_eq!(
        releases.load(SeqCst),
        4,
        "own entry released after its callback returned"
    );
    assert!(reg.is_closed());
}

#[test]
fn release_may_call_back_into_the_registry() {
    let reg = Arc::new(Registry::new().unwrap());
    struct Reentrant(Arc<Registry>, Arc<AtomicU64>);
    impl Drop for Reentrant {
        fn drop(&mut self) {
            // Register from inside a release: no lock is held.
            let id = self
                .0
                .register(|_: &[Arg], _: &mut Value| Ok(()))
                .unwrap()
                .detach();
            self.1.store(id, SeqCst);
            self.0.collect();
        }
    }
    let out = Arc::new(AtomicU64::new(0));
    let g = Reentrant(reg.clone(), out.clone());
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let _ = &g;
            Ok(())
        })
        .unwrap()
        .detach();
    assert_eq!(reg.unregister(id), Status::Ok);
    reg.collect(); // the release runs by then (see `release_runs_exactly_once_when_unregistered`)
    assert_eq!(reg.call(out.load(SeqCst), &[]), Status::Ok);
}

#[test]
fn one_shot_runs_once_under_eight_racing_invokers() {
    for _ in 0..200 {
        let reg = Arc::new(Registry::new().unwrap());
        let runs = Arc::new(AtomicUsize::new(0));
        let releases = Arc::new(AtomicUsize::new(0));
        let (r, g) = (runs.clone(), counted(&releases));
        let id = reg
            .register_once(move |_: &[Arg], _: &mut Value| {
                let _ = &g;
                r.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap()
            .detach();
        let start = Arc::new(Barrier::new(8));
        let results: Vec<Status> = (0..8)
            .map(|_| {
                let (reg, start) = (reg.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    reg.call(id, &[])
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(results.iter().filter(|s| **s == Status::Ok).count(), 1);
        assert_eq!(
            results.iter().filter(|s| **s == Status::NotFound).count(),
            7
        );
        reg.collect();
        assert_eq!(releases.load(SeqCst), 1);
    }
}

#[test]
fn unregister_wait_inside_its_own_callback_would_deadlock() {
    let reg = Arc::new(Registry::new().unwrap());
    let r = reg.clone();
    let me = Arc::new(AtomicU64::new(0));
    let m = me.clone();
    let id = reg
        .register(move |_: &[Arg], ret: &mut Value| {
            *ret = Value::i64(r.unregister_wait(m.load(SeqCst)) as i64);
            Ok(())
        })
        .unwrap()
        .detach();
    me.store(id, SeqCst);
    let got = reg.invoke(id, &[]).unwrap().as_i64().unwrap();
    assert_eq!(got, Status::WouldDeadlock as i64);
    assert_eq!(
        reg.call(id, &[]),
        Status::Ok,
        "nothing changed: still registered"
    );
}

#[test]
fn unregister_wait_returns_after_the_invocation_in_flight_and_its_release() {
    let reg = Arc::new(Registry::new().unwrap());
    let releases = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(Barrier::new(2));
    let (g, d, e) = (counted(&releases), done.clone(), entered.clone());
    let id = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let _ = &g;
            e.wait();
            thread::sleep(Duration::from_millis(50));
            d.store(true, SeqCst);
            Ok(())
        })
        .unwrap()
        .detach();
    let r = reg.clone();
    let t = thread::spawn(move || r.call(id, &[]));
    entered.wait();
    assert_eq!(reg.unregister_wait(id), Status::Ok);
    assert!(done.load(SeqCst), "waited for the callback");
    assert_eq!(releases.load(SeqCst), 1, "released before returning");
    t.join().unwrap();
}

#[test]
fn register_after_close_is_closed() {
    let reg = Registry::new().unwrap();
    let releases = Arc::new(AtomicUsize::new(0));
    let id = register_counted(&reg, &releases);
    assert_eq!(reg.close(), 1);
    assert_eq!(releases.load(SeqCst), 1);
    assert_eq!(reg.call(id, &[]), Status::NotFound);
    let g2 = counted(&releases);
    let err = reg
        .register(move |_: &[Arg], _: &mut Value| {
            let _ = &g2;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err, Status::Closed);
    assert_eq!(
        releases.load(SeqCst),
        2,
        "the refused closure was dropped by the caller side"
    );
}

#[test]
fn real_time_thread_never_runs_a_release() {
    let reg = Arc::new(Registry::new().unwrap());
    let release_thread = Arc::new(Mutex::new(None));
    struct Probe(Arc<Mutex<Option<thread::ThreadId>>>);
    impl Drop for Probe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(thread::current().id());
        }
    }
    let p = Probe(release_thread.clone());
    let id = reg
        .register_once(move |_: &[Arg], _: &mut Value| {
            let _ = &p;
            Ok(())
        })
        .unwrap()
        .detach();
    let r = reg.clone();
    let audio = thread::spawn(move || {
        set_thread_realtime(true);
        let s = r.call(id, &[]); // the one-shot retires on this thread...
        r.collect(); // ...and collect does nothing here
        (s, thread::current().id())
    });
    let (status, audio_id) = audio.join().unwrap();
    assert_eq!(status, Status::Ok);
    // Deferred: this collect, or the reclaimer thread, runs it.
    reg.collect();
    let ran_on = release_thread.lock().unwrap().expect("released by now");
    assert_ne!(ran_on, audio_id);
    assert_eq!(reg.stats().pending, 0);
    assert_eq!(reg.stats().deferred, 1);
}

#[test]
fn panicking_callback_reports_callback_failed() {
    let reg = Registry::new().unwrap();
    let sub = reg
        .register(|_: &[Arg], _: &mut Value| panic!("boom"))
        .unwrap();
    assert_eq!(reg.call(sub.id(), &[]), Status::CallbackFailed);
    let sub2 = reg
        .register(|_: &[Arg], _: &mut Value| Err(Status::CallbackFailed))
        .unwrap();
    assert_eq!(reg.call(sub2.id(), &[]), Status::CallbackFailed);
}

#[test]
fn stats_account_for_every_entry() {
    let reg = Registry::new().unwrap();
    let a = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
    let b = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
    for _ in 0..5 {
        assert_eq!(reg.call(a.id(), &[]), Status::Ok);
    }
    drop(b);
    reg.collect();
    let s = reg.stats();
    assert_eq!((s.live, s.registered, s.invoked, s.released), (1, 2, 5, 1));
    drop(a);
    assert_eq!(reg.clear(), 0);
    reg.collect();
    let s = reg.stats();
    assert_eq!((s.live, s.released, s.pending, s.leaked), (0, 2, 0, 0));
}

#[test]
fn destroyed_registry_handle_is_detected() {
    let reg = Registry::new().unwrap();
    let handle = reg.handle();
    let sub = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
    drop(reg);
    // The subscription outlived its registry: unregistering is a status.
    assert_eq!(sub.unregister(), Status::InvalidRegistry);
    let mut id = 0u64;
    // SAFETY: the NULL call is rejected before any use; `out_id` points to a local.
    let st = unsafe {
        cbreg::ffi::cbreg_register(
            cbreg::ffi::RegistryHandle { handle },
            None,
            std::ptr::null_mut(),
            None,
            0,
            &mut id,
        )
    };
    assert_eq!(st, Status::InvalidRegistry);
    // A new registry may reuse the storage, never the handle.
    let again = Registry::new().unwrap();
    assert_ne!(again.handle(), handle);
}

#[test]
fn clear_counts_what_it_unregistered() {
    let reg = Registry::new().unwrap();
    let subs: Vec<_> = (0..1000)
        .map(|_| {
            reg.register(|_: &[Arg], _: &mut Value| Ok(()))
                .unwrap()
                .detach()
        })
        .collect();
    assert_eq!(reg.unregister(subs[0]), Status::Ok);
    assert_eq!(reg.clear(), 999);
    assert_eq!(reg.clear(), 0);
    assert!(subs.iter().all(|id| reg.call(*id, &[]) == Status::NotFound));
}

/// `stats` never counts an entry both released and pending: a waiter that
/// runs a pending entry's release itself (`unregister_wait`) leaves it on
/// the pending list until the next collection takes it off.
#[test]
fn an_entry_released_by_its_waiter_is_not_also_counted_pending() {
    let reg = Registry::new().unwrap();
    let id = reg
        .register(|_: &[Arg], _: &mut Value| Ok(()))
        .unwrap()
        .detach();
    // Retired on a real-time thread: its release is left pending.
    set_thread_realtime(true);
    assert_eq!(reg.unregister(id), Status::Ok);
    set_thread_realtime(false);
    assert_eq!(reg.stats().pending, 1);
    // NOT_FOUND: already unregistered; it waits for the release all the same.
    assert_eq!(reg.unregister_wait(id), Status::NotFound);
    let s = reg.stats();
    assert_eq!(s.released, 1, "{s:?}");
    assert!(
        s.released + s.leaked + s.pending + s.live <= s.registered,
        "counted twice: {s:?}"
    );
}
