//! Edge cases of the contract (docs/contract.md 4.2-4.4): registry lifetime,
//! waiting, real-time threads, counters. One behaviour per test; each runs
//! in a process of its own and turns a hang into a failure with a message
//! (see `edge_support`). Fork cases are in `edges_fork.rs`, allocation
//! counts in `edges_no_alloc.rs`.
//!
//!     cargo test --test edges                # all of them
//!     cargo test --test edges -- free_on     # by name

mod edge_support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cbreg::ffi::*;
use cbreg::{Stats, Status};
use edge_support::*;

/// An id filled in after registration, for callbacks that name themselves.
fn id_cell() -> &'static AtomicU64 {
    Box::leak(Box::new(AtomicU64::new(0)))
}

// ---- registry lifetime ----

edge! {
    fn stale_handle_after_its_slot_is_reused_is_invalid_registry_everywhere() {
        let old = new_registry();
        let old_entry = register(old, plain_probe(), PERSISTENT);
        assert_eq!(cbreg_registry_free(old), Status::Ok);
        let new = new_registry();
        assert_eq!(new.handle as u32, old.handle as u32, "the table slot was reused");
        assert_ne!(new.handle, old.handle);

        let p = plain_probe();
        let id = register(new, p, PERSISTENT);
        assert_eq!(invoke(new, id), Status::Ok);
        let before = stats(new);

        let stray = plain_probe();
        let ir = Status::InvalidRegistry;
        assert_eq!(try_register(old, stray, PERSISTENT), Err(ir), "register");
        for target in [id, old_entry] {
            assert_eq!(invoke(old, target), ir, "invoke {target:#x}");
            assert_eq!(cbreg_unregister(old, target), ir, "unregister {target:#x}");
            assert_eq!(cbreg_unregister_wait(old, target), ir, "unregister_wait {target:#x}");
        }
        let (mut n, mut s) = (0usize, Stats::default());
        // SAFETY: `n` is a local count.
        assert_eq!(unsafe { cbreg_clear(old, &mut n) }, ir, "clear");
        // SAFETY: `n` is a local count.
        assert_eq!(unsafe { cbreg_close(old, &mut n) }, ir, "close");
        // SAFETY: `n` is a local count.
        assert_eq!(unsafe { cbreg_collect(old, &mut n) }, ir, "collect");
        // SAFETY: `s` is a local.
        assert_eq!(unsafe { cbreg_stats_get(old, &mut s) }, ir, "stats_get");
        assert_eq!(cbreg_registry_free(old), ir, "registry_free");

        assert_eq!(stats(new), before, "the new registry's counters moved");
        assert_eq!(invoke(new, id), Status::Ok, "the new registry's entry still invokes");
        assert_eq!((p.called(), p.released()), (2, 0));
        assert_eq!(stray.called() + stray.released(), 0);
        let fresh = try_register(new, plain_probe(), PERSISTENT);
        assert!(fresh.is_ok(), "the new registry was closed: {fresh:?}");
        assert_eq!(cbreg_registry_free(new), Status::Ok);
        assert_eq!(p.released(), 1);
    }
}

edge! {
    fn handle_is_invalid_registry_while_its_free_is_still_running() {
        let reg = new_registry();
        let (started, go) = (flag(), flag());
        let slow = probe(|| 0, move || {
            started.store(true, SeqCst);
            block_until(go);
        });
        let id = register(reg, slow, PERSISTENT);
        let r = Reg(reg);
        let freeing = spawn_named("registry_free", move || cbreg_registry_free(r.0));
        wait_until("the free to run the release", || started.load(SeqCst));

        let mut s = Stats::default();
        let mut seen = vec![
            ("register", try_register(reg, plain_probe(), PERSISTENT).err()),
            ("invoke", Some(invoke(reg, id))),
            ("unregister", Some(cbreg_unregister(reg, id))),
            // SAFETY: a NULL count pointer is allowed.
            ("clear", Some(unsafe { cbreg_clear(reg, std::ptr::null_mut()) })),
            // SAFETY: `s` is a local.
            ("stats_get", Some(unsafe { cbreg_stats_get(reg, &mut s) })),
        ];
        seen.push(("registry_free", Some(cbreg_registry_free(reg))));
        go.store(true, SeqCst);
        let freed = freeing.join();
        for (what, got) in seen {
            assert_eq!(got, Some(Status::InvalidRegistry), "{what} during the free");
        }
        assert_eq!(freed, Status::Ok);
    }
}

edge! {
    fn racing_frees_of_one_handle_give_one_ok_and_spare_a_new_registry() {
        within("1000 rounds of two frees and a create", || {
            for round in 0..1000 {
                let reg = Reg(new_registry());
                // A release that takes a moment widens the window.
                register(reg.0, probe(|| 0, thread::yield_now), PERSISTENT);
                register(reg.0, plain_probe(), PERSISTENT);
                let start = Arc::new(Barrier::new(3));
                let free = |b: Arc<Barrier>| thread::spawn(move || {
                    b.wait();
                    cbreg_registry_free(reg.0)
                });
                let (a, b) = (free(start.clone()), free(start.clone()));
                let creator = thread::spawn(move || {
                    start.wait();
                    Reg(new_registry())
                });
                let mut got = [a.join().unwrap(), b.join().unwrap()];
                let fresh = creator.join().unwrap().0;
                got.sort_by_key(|s| *s as u32);
                assert_eq!(got, [Status::Ok, Status::InvalidRegistry], "round {round}");
                let p = plain_probe();
                let id = try_register(fresh, p, PERSISTENT);
                assert!(id.is_ok(), "round {round}: the new registry was hit: {id:?}");
                assert_eq!(invoke(fresh, id.unwrap()), Status::Ok, "round {round}");
                let s = stats(fresh);
                assert_eq!((s.registered, s.live, s.released), (1, 1, 0), "round {round}: {s:?}");
                assert_eq!(cbreg_registry_free(fresh), Status::Ok, "round {round}");
                assert_eq!(p.released(), 1, "round {round}");
            }
        });
    }
}

edge! {
    fn free_returns_only_after_every_release_of_its_registry_has_finished() {
        let reg = new_registry();
        let (started, finished) = (flag(), flag());
        let slow = probe(|| 0, move || {
            started.store(true, SeqCst);
            sleep_ms(100);
            finished.store(true, SeqCst);
        });
        let id = register(reg, slow, PERSISTENT);
        let r = Reg(reg);
        let unregistering = spawn_named("unregister", move || cbreg_unregister(r.0, id));
        wait_until("the release to start", || started.load(SeqCst));
        let (status, done_at_return) =
            within("registry_free", move || (cbreg_registry_free(r.0), finished.load(SeqCst)));
        let next = new_registry();
        assert_eq!(unregistering.join(), Status::Ok);
        let after = stats(next);
        assert_eq!(status, Status::Ok);
        assert!(done_at_return, "registry_free returned while a release of it was still running");
        if next.handle as u32 == reg.handle as u32 {
            assert_eq!(after, Stats::default(), "a late release disturbed the registry now in the slot");
        }
        assert_eq!(slow.released(), 1);
    }
}

edge! {
    fn free_inside_its_own_release_run_by_unregister_is_would_deadlock() {
        let reg = new_registry();
        let r = Reg(reg);
        let inner = Seen::new();
        let freeing = probe(|| 0, move || inner.set(cbreg_registry_free(r.0)));
        let id = register(reg, freeing, PERSISTENT);
        let others = [plain_probe(), plain_probe()];
        for p in others {
            register(reg, p, PERSISTENT);
        }
        assert_eq!(within("unregister", move || cbreg_unregister(r.0, id)), Status::Ok);
        assert_eq!(inner.get(), Some(Status::WouldDeadlock), "registry_free inside its own release");
        assert_eq!(within("registry_free from outside", move || cbreg_registry_free(r.0)), Status::Ok);
        for p in others.iter().chain([&freeing]) {
            assert_eq!(p.released(), 1, "every release ran exactly once");
        }
    }
}

edge! {
    fn free_inside_its_own_release_run_by_a_deferred_collect_is_would_deadlock() {
        let reg = new_registry();
        let r = Reg(reg);
        let inner = Seen::new();
        let (entered, go) = (flag(), flag());
        let freeing = probe(
            move || {
                entered.store(true, SeqCst);
                block_until(go);
                0
            },
            move || inner.set(cbreg_registry_free(r.0)),
        );
        let id = register(reg, freeing, PERSISTENT);
        let other = plain_probe();
        register(reg, other, PERSISTENT);
        // Retired while in flight: the release is deferred to the invoker's exit.
        let invoker = spawn_named("invoke whose exit runs the release", move || invoke(r.0, id));
        wait_until("the callback to start", || entered.load(SeqCst));
        assert_eq!(cbreg_unregister(reg, id), Status::Ok);
        go.store(true, SeqCst);
        assert_eq!(invoker.join(), Status::Ok);
        within("the deferred release", move || {
            while freeing.released() == 0 {
                // SAFETY: a NULL count pointer is allowed.
                unsafe { cbreg_collect(r.0, std::ptr::null_mut()) };
                sleep_ms(1);
            }
        });
        assert_eq!(inner.get(), Some(Status::WouldDeadlock), "registry_free inside its own release");
        assert_eq!(within("registry_free from outside", move || cbreg_registry_free(r.0)), Status::Ok);
        assert_eq!((freeing.released(), other.released()), (1, 1));
    }
}

edge! {
    fn free_inside_its_own_callback_is_would_deadlock_at_depth_1_and_8() {
        let reg = new_registry();
        let outer = new_registry();
        let r = Reg(reg);
        let bystander = plain_probe();
        register(reg, bystander, PERSISTENT);

        let at_1 = Seen::new();
        let (ids, probes_1) = nest(&[reg], move || {
            at_1.set(cbreg_registry_free(r.0));
            0
        });
        let id1 = ids[0];
        assert_eq!(within("invoke at depth 1", move || invoke(r.0, id1)), Status::Ok);
        assert_eq!(at_1.get(), Some(Status::WouldDeadlock), "free inside its callback, depth 1");

        // Seven levels in another registry fill (and pass) the hazard cells;
        // the eighth, in `reg`, frees its own registry.
        let at_8 = Seen::new();
        let mut levels = vec![outer; 7];
        levels.push(reg);
        let (ids, probes_8) = nest(&levels, move || {
            at_8.set(cbreg_registry_free(r.0));
            0
        });
        let (o, top) = (Reg(outer), ids[0]);
        assert_eq!(within("invoke nested 8 deep", move || invoke(o.0, top)), Status::Ok);
        assert_eq!(at_8.get(), Some(Status::WouldDeadlock), "free inside its callback, depth 8");

        assert_eq!(within("registry_free from outside", move || cbreg_registry_free(r.0)), Status::Ok);
        assert_eq!(cbreg_registry_free(outer), Status::Ok);
        for p in probes_1.iter().chain(&probes_8).chain([&bystander]) {
            assert_eq!(p.released(), 1, "every release ran exactly once");
        }
    }
}

edge! {
    fn free_on_a_realtime_thread_completes_and_runs_no_release_there() {
        let reg = new_registry();
        let probes: Vec<_> = (0..3).map(|_| plain_probe()).collect();
        for &p in &probes {
            register(reg, p, PERSISTENT);
        }
        let r = Reg(reg);
        let (status, rt_thread, released_at_return) = within("registry_free on a real-time thread", {
            let probes = probes.clone();
            move || {
                assert_eq!(cbreg_thread_set_realtime(true), Status::Ok);
                let st = cbreg_registry_free(r.0);
                (st, thread::current().id(), probes.iter().all(|p| p.released() == 1))
            }
        });
        assert_eq!(status, Status::Ok);
        assert!(released_at_return, "registry_free returned before every release had run");
        for p in &probes {
            assert_ne!(p.release_ran_on(), Some(rt_thread), "a release ran on the real-time thread");
        }
    }
}

edge! {
    fn release_deferred_from_a_realtime_thread_that_frees_its_registry_does_not_hang() {
        let reg = new_registry();
        let r = Reg(reg);
        let inner = Seen::new();
        let once = probe(|| 0, move || inner.set(cbreg_registry_free(r.0)));
        let id = register(reg, once, ONCE);
        let rt = spawn_named("one-shot invoked on a real-time thread", move || {
            assert_eq!(cbreg_thread_set_realtime(true), Status::Ok);
            (invoke(r.0, id), thread::current().id())
        });
        let (status, rt_thread) = rt.join();
        assert_eq!(status, Status::Ok);
        within("the deferred release", move || {
            while once.released() == 0 {
                // SAFETY: a NULL count pointer is allowed.
                unsafe { cbreg_collect(r.0, std::ptr::null_mut()) };
                sleep_ms(1);
            }
        });
        assert_ne!(once.release_ran_on(), Some(rt_thread));
        assert_eq!(inner.get(), Some(Status::WouldDeadlock), "registry_free inside its own release");
        assert_eq!(within("registry_free from outside", move || cbreg_registry_free(r.0)), Status::Ok);
    }
}

edge! {
    fn id_of_another_registry_is_not_found() {
        let (a, b) = (new_registry(), new_registry());
        let (pa, pb) = (plain_probe(), plain_probe());
        let ida = register(a, pa, PERSISTENT);
        let idb = register(b, pb, PERSISTENT);
        assert_eq!(invoke(b, ida), Status::NotFound, "A's id presented to B");
        assert_eq!(cbreg_unregister(b, ida), Status::NotFound, "A's id unregistered through B");
        assert_eq!((pa.called(), pb.called()), (0, 0), "no entry ran");
        assert_eq!((invoke(a, ida), invoke(b, idb)), (Status::Ok, Status::Ok));
        assert_eq!(pb.released(), 0, "B's entry is still registered");
    }
}

// ---- waiting ----

edge! {
    fn unregister_wait_on_itself_is_would_deadlock_at_depth_1_and_8() {
        let reg = new_registry();
        let r = Reg(reg);
        for depth in [1usize, 8] {
            let me = id_cell();
            let seen = Seen::new();
            let (ids, probes) = nest(&vec![reg; depth], move || {
                seen.set(cbreg_unregister_wait(r.0, me.load(SeqCst)));
                0
            });
            let innermost = *ids.last().unwrap();
            me.store(innermost, SeqCst);
            let live = stats(reg).live;
            let top = ids[0];
            assert_eq!(within(&format!("invoke nested {depth} deep"), move || invoke(r.0, top)), Status::Ok);
            assert_eq!(seen.get(), Some(Status::WouldDeadlock), "unregister_wait on itself at depth {depth}");
            assert_eq!(stats(reg).live, live, "depth {depth}: the entry was unregistered");
            assert_eq!(probes.last().unwrap().released(), 0);
            me.store(0, SeqCst); // the next call waits on nothing
            assert_eq!(invoke(reg, innermost), Status::Ok, "depth {depth}: the entry is still live");
        }
        assert_eq!(cbreg_registry_free(reg), Status::Ok);
    }
}

edge! {
    fn unregister_wait_on_an_outer_entry_nested_past_the_hazard_cells_is_would_deadlock() {
        let reg = new_registry();
        let r = Reg(reg);
        let outer_ids: &'static [AtomicU64; 2] = Box::leak(Box::new([AtomicU64::new(0), AtomicU64::new(0)]));
        let seen = [Seen::new(), Seen::new()];
        let (ids, probes) = nest(&[reg; 8], move || {
            // The outermost (in a hazard cell) and the seventh level (past them).
            for (i, s) in seen.iter().enumerate() {
                s.set(cbreg_unregister_wait(r.0, outer_ids[i].load(SeqCst)));
            }
            0
        });
        outer_ids[0].store(ids[0], SeqCst);
        outer_ids[1].store(ids[6], SeqCst);
        let top = ids[0];
        assert_eq!(within("invoke nested 8 deep", move || invoke(r.0, top)), Status::Ok);
        assert_eq!(seen[0].get(), Some(Status::WouldDeadlock), "on level 1 from level 8");
        assert_eq!(seen[1].get(), Some(Status::WouldDeadlock), "on level 7 from level 8");
        assert_eq!(stats(reg).live, 8, "nothing was unregistered");
        assert!(probes.iter().all(|p| p.released() == 0));
        assert_eq!(cbreg_registry_free(reg), Status::Ok);
    }
}

edge! {
    fn unregister_wait_on_itself_without_a_thread_record_is_would_deadlock() {
        const HOLDERS: usize = 300; // the record pool serves 256 threads
        let reg = new_registry();
        let r = Reg(reg);
        let warm = plain_probe();
        let warm_id = register(reg, warm, PERSISTENT);
        let hold = Arc::new(Barrier::new(HOLDERS + 1));
        let ready = Arc::new(AtomicUsize::new(0));
        let holders: Vec<_> = (0..HOLDERS)
            .map(|_| {
                let (hold, ready) = (hold.clone(), ready.clone());
                thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        invoke(r.0, warm_id);
                        ready.fetch_add(1, SeqCst);
                        hold.wait();
                    })
                    .unwrap()
            })
            .collect();
        wait_until("every holder to invoke once", || ready.load(SeqCst) == HOLDERS);

        let me = id_cell();
        let seen = Seen::new();
        let selfish = probe(move || {
            seen.set(cbreg_unregister_wait(r.0, me.load(SeqCst)));
            0
        }, || {});
        let id = register(reg, selfish, PERSISTENT);
        me.store(id, SeqCst);
        let status = within("invoke on a thread with no record", move || invoke(r.0, id));
        hold.wait();
        holders.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(status, Status::Ok);
        assert_eq!(seen.get(), Some(Status::WouldDeadlock), "unregister_wait on itself without a record");
        assert_eq!(selfish.released(), 0, "the entry was unregistered");
        me.store(0, SeqCst);
        assert_eq!(invoke(reg, id), Status::Ok, "the entry is still live");
        assert_eq!(cbreg_registry_free(reg), Status::Ok);
    }
}

edge! {
    fn unregister_wait_cycle_between_two_threads_gives_would_deadlock() {
        let reg = new_registry();
        let r = Reg(reg);
        let ids: &'static [AtomicU64; 2] = Box::leak(Box::new([AtomicU64::new(0), AtomicU64::new(0)]));
        let inside: &'static [AtomicBool; 2] = Box::leak(Box::new([AtomicBool::new(false), AtomicBool::new(false)]));
        let seen = [Seen::new(), Seen::new()];
        let mut probes = Vec::new();
        for me in 0..2 {
            let other = 1 - me;
            let p = probe(move || {
                inside[me].store(true, SeqCst);
                block_until(&inside[other]);
                seen[me].set(cbreg_unregister_wait(r.0, ids[other].load(SeqCst)));
                0
            }, || {});
            ids[me].store(register(reg, p, PERSISTENT), SeqCst);
            probes.push(p);
        }
        let a = spawn_named("thread A waiting on B's entry", move || invoke(r.0, ids[0].load(SeqCst)));
        let b = spawn_named("thread B waiting on A's entry", move || invoke(r.0, ids[1].load(SeqCst)));
        a.join();
        b.join();
        let got = [seen[0].get(), seen[1].get()];
        assert!(
            got.contains(&Some(Status::WouldDeadlock)),
            "a cycle of waits: neither got WOULD_DEADLOCK: {got:?}"
        );
    }
}

edge! {
    fn unregister_wait_waits_for_a_one_shot_another_thread_is_running() {
        let reg = new_registry();
        let r = Reg(reg);
        let (entered, done) = (flag(), flag());
        let once = probe(move || {
            entered.store(true, SeqCst);
            sleep_ms(200);
            done.store(true, SeqCst);
            0
        }, || {});
        let id = register(reg, once, ONCE);
        let invoker = spawn_named("one-shot invoke", move || invoke(r.0, id));
        wait_until("the one-shot to start", || entered.load(SeqCst));
        let (status, done_then, released_then) = within("unregister_wait", move || {
            let st = cbreg_unregister_wait(r.0, id);
            (st, done.load(SeqCst), once.released())
        });
        assert_eq!(invoker.join(), Status::Ok);
        assert!(done_then, "unregister_wait returned while the one-shot was still running");
        assert_eq!(released_then, 1, "unregister_wait returned before the one-shot's release ran");
        assert_eq!(status, Status::NotFound, "someone else retired it");
    }
}

edge! {
    fn unregister_wait_waits_for_a_callback_another_thread_unregistered() {
        let reg = new_registry();
        let r = Reg(reg);
        let (entered, done) = (flag(), flag());
        let slow = probe(move || {
            entered.store(true, SeqCst);
            sleep_ms(200);
            done.store(true, SeqCst);
            0
        }, || {});
        let id = register(reg, slow, PERSISTENT);
        let invoker = spawn_named("invoke", move || invoke(r.0, id));
        wait_until("the callback to start", || entered.load(SeqCst));
        assert_eq!(spawn_named("unregister", move || cbreg_unregister(r.0, id)).join(), Status::Ok);
        let (status, done_then, released_then) = within("unregister_wait", move || {
            let st = cbreg_unregister_wait(r.0, id);
            (st, done.load(SeqCst), slow.released())
        });
        assert_eq!(invoker.join(), Status::Ok);
        assert!(done_then, "unregister_wait returned while the callback was still running");
        assert_eq!(released_then, 1, "unregister_wait returned before the release ran");
        assert_eq!(status, Status::NotFound, "someone else retired it");
    }
}

edge! {
    fn unregister_wait_with_a_stale_id_from_inside_the_entry_in_its_slot_is_not_found() {
        let reg = new_registry();
        let r = Reg(reg);
        let old = register(reg, plain_probe(), PERSISTENT);
        assert_eq!(cbreg_unregister(reg, old), Status::Ok);
        let seen = Seen::new();
        let newer = probe(move || {
            seen.set(cbreg_unregister_wait(r.0, old));
            0
        }, || {});
        let id = register(reg, newer, PERSISTENT);
        assert_eq!(id as u32, old as u32, "the slot was reused");
        assert_eq!(within("invoke", move || invoke(r.0, id)), Status::Ok);
        assert_eq!(seen.get(), Some(Status::NotFound), "a stale id is NOT_FOUND");
        assert_eq!(invoke(reg, id), Status::Ok);
    }
}

// ---- counters and one-shots ----

edge! {
    fn stats_invoked_never_goes_backwards_nor_past_the_invocations_made() {
        let reg = new_registry();
        let r = Reg(reg);
        let id = register(reg, plain_probe(), PERSISTENT);
        let made = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (made, stop) = (made.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let batch: Vec<_> = (0..8)
                        .map(|_| {
                            let made = made.clone();
                            thread::Builder::new()
                                .stack_size(64 << 10)
                                .spawn(move || {
                                    for _ in 0..20 {
                                        made.fetch_add(1, SeqCst); // before the call starts
                                        invoke(r.0, id);
                                    }
                                })
                                .unwrap()
                        })
                        .collect();
                    batch.into_iter().for_each(|t| t.join().unwrap());
                }
            })
        };
        let start = Instant::now();
        let mut previous = 0u64;
        let mut readings = 0u64;
        let mut bad = None;
        while start.elapsed() < Duration::from_secs(3) && bad.is_none() {
            let now = stats(reg).invoked;
            let bound = made.load(SeqCst);
            readings += 1;
            if now < previous {
                bad = Some(format!("went back from {previous} to {now}"));
            } else if now > bound {
                bad = Some(format!("{now} exceeds the {bound} invocations made"));
            }
            previous = now;
        }
        stop.store(true, SeqCst);
        churn.join().unwrap();
        assert!(bad.is_none(), "stats.invoked {} (reading {readings})", bad.unwrap());
        assert_eq!(stats(reg).invoked, made.load(SeqCst));
    }
}

edge! {
    fn a_one_shot_is_not_live_during_its_own_call() {
        let reg = new_registry();
        let r = Reg(reg);
        register(reg, plain_probe(), PERSISTENT);
        let live_inside: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(u64::MAX)));
        let once = probe(move || {
            live_inside.store(stats(r.0).live, SeqCst);
            0
        }, || {});
        let id = register(reg, once, ONCE);
        assert_eq!(stats(reg).live, 2);
        assert_eq!(invoke(reg, id), Status::Ok);
        assert_eq!(live_inside.load(SeqCst), 1, "stats.live inside the one-shot counted it");
        assert_eq!(stats(reg).live, 1);
    }
}

edge! {
    fn releases_deferred_from_a_realtime_thread_run_within_2s_without_collect() {
        // The contract's bound for a deferred release nobody collects.
        const BOUND: Duration = Duration::from_secs(2);
        let reg = new_registry();
        let r = Reg(reg);
        let probes: Vec<_> = (0..4).map(|_| plain_probe()).collect();
        let ids: Vec<u64> = probes.iter().map(|&p| register(reg, p, ONCE)).collect();
        let leave = flag();
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = thread::spawn(move || {
            cbreg_thread_set_realtime(true);
            let statuses: Vec<Status> = ids.iter().map(|&id| invoke(r.0, id)).collect();
            tx.send((statuses, thread::current().id())).unwrap();
            block_until(leave); // stay alive: its thread id stays unique
        });
        let (statuses, rt_thread) = rx.recv_timeout(DEADLINE).expect("real-time invokes returned");
        assert!(statuses.iter().all(|&s| s == Status::Ok), "{statuses:?}");
        let start = Instant::now();
        while start.elapsed() < BOUND && !probes.iter().all(|p| p.released() == 1) {
            sleep_ms(5);
        }
        let released: Vec<usize> = probes.iter().map(|p| p.released()).collect();
        leave.store(true, SeqCst);
        rt.join().unwrap();
        assert_eq!(released, vec![1; 4], "releases run within {} s with no collect call", BOUND.as_secs());
        for p in &probes {
            assert_ne!(p.release_ran_on(), Some(rt_thread), "a release ran on the real-time thread");
        }
    }
}
