//! The reclaimer and batches: the reclaimer thread cannot be made
//! real-time by a release it runs; entries that share a batch wait for
//! nothing of each other (`unregister_wait(B)` waits for B's own
//! invocations and release only); a release that marks its own thread
//! real-time in the middle of a `clear`, `close` or `registry_free` leaves
//! the rest to the reclaimer. Each test runs in a process of its own
//! (`edge_support`).
//!
//!     cargo test --test reclaimer

mod edge_support;

use std::ptr::null_mut;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Mutex;
use std::thread;

use cbreg::ffi::*;
use cbreg::Status;
use edge_support::*;

/// A thread that has invoked (so it holds a record) and stays alive for
/// the rest of the process: a heavy barrier is then a system call, and
/// unregisters leave their releases for a batch.
fn keep_another_thread_alive() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let reg = cbreg_default();
        let p = plain_probe();
        let id = register(reg, p, PERSISTENT);
        assert_eq!(invoke(reg, id), Status::Ok);
        ready_tx.send(()).unwrap();
        loop {
            thread::park();
        }
    });
    ready_rx.recv().unwrap();
}

edge! {
    fn a_release_on_the_reclaimer_cannot_make_it_real_time() {
        let reg = new_registry();
        let r = Reg(reg);
        let asks = probe(|| 0, || {
            let _ = cbreg_thread_set_realtime(true);
        });
        let later = plain_probe();
        let (a, b) = (register(reg, asks, PERSISTENT), register(reg, later, PERSISTENT));
        let realtime = spawn_named("unregister on a real-time thread", move || {
            assert_eq!(cbreg_thread_set_realtime(true), Status::Ok);
            assert_eq!(cbreg_unregister(r.0, a), Status::Ok);
            wait_until("the reclaimer to run the release that asks for real-time", || {
                asks.released() == 1
            });
            assert_eq!(cbreg_unregister(r.0, b), Status::Ok);
            thread::current().id()
        })
        .join();
        wait_until(
            "the reclaimer to run a deferred release after a release asked it to be real-time",
            || later.released() == 1,
        );
        assert_ne!(later.release_ran_on(), Some(realtime));
    }
}

edge! {
    fn a_release_that_waits_for_an_unrelated_entry_of_its_batch_is_not_refused() {
        keep_another_thread_alive();
        let reg = new_registry();
        let r = Reg(reg);
        let other = plain_probe();
        let b = register(reg, other, PERSISTENT);
        let seen = Seen::new();
        let released_before_return = flag();
        let waits = probe(|| 0, move || {
            seen.set(cbreg_unregister_wait(r.0, b));
            released_before_return.store(other.released() == 1, SeqCst);
        });
        let a = register(reg, waits, PERSISTENT);
        // Both batched, A on top: the collection runs A's release first.
        assert_eq!(cbreg_unregister(reg, b), Status::Ok);
        assert_eq!(cbreg_unregister(reg, a), Status::Ok);
        assert_eq!(stats(reg).pending, 2, "both left for a batch");
        // SAFETY: a NULL count is allowed.
        within("collect", move || unsafe { cbreg_collect(r.0, null_mut()) });
        wait_until("A's release", || waits.released() == 1);
        assert_eq!(
            seen.get(),
            Some(Status::NotFound),
            "unregister_wait(B) from A's release: B was unregistered already, and its release must be run, not refused"
        );
        assert!(released_before_return.load(SeqCst), "B released before unregister_wait(B) returned");
        assert_eq!(other.released(), 1);
    }
}

edge! {
    fn a_thread_holding_a_lock_waits_for_its_entry_not_for_a_batch_neighbour_that_takes_the_lock() {
        keep_another_thread_alive();
        static LOCK: Mutex<()> = Mutex::new(());
        let reg = new_registry();
        let r = Reg(reg);
        let mine = plain_probe();
        let b = register(reg, mine, PERSISTENT);
        let neighbour_started = flag();
        let takes_lock = probe(|| 0, move || {
            neighbour_started.store(true, SeqCst);
            drop(LOCK.lock().unwrap_or_else(|e| e.into_inner()));
        });
        let a = register(reg, takes_lock, PERSISTENT);
        let (locked, go) = (flag(), flag());
        let waiter = spawn_named("unregister_wait(B) holding the lock", move || {
            let _held = LOCK.lock().unwrap();
            locked.store(true, SeqCst);
            block_until(go);
            let status = cbreg_unregister_wait(r.0, b);
            (status, mine.released())
        });
        wait_until("the waiter to take its lock", || locked.load(SeqCst));
        // Both batched, A on top: whoever collects runs A's release first,
        // which waits for the lock.
        assert_eq!(cbreg_unregister(reg, b), Status::Ok);
        assert_eq!(cbreg_unregister(reg, a), Status::Ok);
        // SAFETY: a NULL count is allowed.
        let _collector = spawn_named("collect", move || unsafe { cbreg_collect(r.0, null_mut()) });
        wait_until("A's release to start", || neighbour_started.load(SeqCst));
        go.store(true, SeqCst);
        let (status, released) = waiter.join();
        assert_eq!(status, Status::NotFound, "B was unregistered already");
        assert_eq!(released, 1, "B released before unregister_wait(B) returned");
        wait_until("A's release", || takes_lock.released() == 1);
    }
}

/// Registers plain entries and, among them, one whose release marks its
/// thread real-time; runs `retire_all` on a thread of its own, then
/// `unregister_wait` of a plain entry there. Checks that no release ran on
/// that thread after it turned real-time, that the rest ran (on the
/// reclaimer), and that the wait returned.
fn turning_real_time_partway(retire_all: fn(RegistryHandle) -> Status) {
    let reg = new_registry();
    let r = Reg(reg);
    let turned = flag();
    let plain: Vec<_> = (0..16)
        .map(|_| {
            let after_turn = flag();
            (
                probe(|| 0, move || after_turn.store(turned.load(SeqCst), SeqCst)),
                after_turn,
            )
        })
        .collect();
    let turns = probe(
        || 0,
        move || {
            let _ = cbreg_thread_set_realtime(true);
            turned.store(true, SeqCst);
        },
    );
    // In the middle: whichever way the releases are ordered, some run
    // after it.
    let mut ids = Vec::new();
    for (k, &(p, _)) in plain.iter().enumerate() {
        if k == plain.len() / 2 {
            register(reg, turns, PERSISTENT);
        }
        ids.push(register(reg, p, PERSISTENT));
    }
    let first = ids[0];
    let retirer = spawn_named("retire everything, then unregister_wait", move || {
        let status = retire_all(r.0);
        let waited = cbreg_unregister_wait(r.0, first);
        (thread::current().id(), status, waited)
    });
    let (retirer, status, waited) = retirer.join();
    assert!(turned.load(SeqCst));
    assert_eq!(status, Status::Ok);
    assert!(
        matches!(waited, Status::NotFound | Status::InvalidRegistry),
        "unregister_wait after the clear: {waited:?}"
    );
    wait_until("every release to run", || {
        plain.iter().all(|(p, _)| p.released() == 1)
    });
    let after: Vec<_> = plain
        .iter()
        .filter(|(_, after)| after.load(SeqCst))
        .collect();
    assert!(
        !after.is_empty(),
        "no release ran after the turn: the test proves nothing"
    );
    let on_retirer = after
        .iter()
        .filter(|(p, _)| p.release_ran_on() == Some(retirer))
        .count();
    assert_eq!(
        on_retirer,
        0,
        "releases run on the thread after it turned real-time (of {} after the turn)",
        after.len()
    );
}

edge! {
    fn a_release_that_turns_its_thread_real_time_mid_clear_leaves_the_rest_to_the_reclaimer() {
        // SAFETY: a NULL count is allowed.
        turning_real_time_partway(|reg| unsafe { cbreg_clear(reg, null_mut()) });
    }
}

edge! {
    fn a_release_that_turns_its_thread_real_time_mid_close_leaves_the_rest_to_the_reclaimer() {
        // SAFETY: a NULL count is allowed.
        turning_real_time_partway(|reg| unsafe { cbreg_close(reg, null_mut()) });
    }
}

edge! {
    fn a_release_that_turns_its_thread_real_time_mid_free_leaves_the_rest_to_the_reclaimer() {
        turning_real_time_partway(|reg| cbreg_registry_free(reg));
    }
}

edge! {
    fn a_real_time_thread_that_clears_runs_no_release_itself() {
        let reg = new_registry();
        let r = Reg(reg);
        let plain: Vec<_> = (0..16).map(|_| plain_probe()).collect();
        for &p in &plain {
            register(reg, p, PERSISTENT);
        }
        let clearer = spawn_named("clear on a real-time thread", move || {
            assert_eq!(cbreg_thread_set_realtime(true), Status::Ok);
            // SAFETY: a NULL count is allowed.
            assert_eq!(unsafe { cbreg_clear(r.0, null_mut()) }, Status::Ok);
            thread::current().id()
        })
        .join();
        wait_until("every release to run", || plain.iter().all(|p| p.released() == 1));
        assert!(plain.iter().all(|p| p.release_ran_on() != Some(clearer)));
    }
}
