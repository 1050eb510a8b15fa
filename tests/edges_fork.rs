//! Fork edge cases (docs/contract.md 4.4a): whatever the parent's threads were
//! doing at the fork, the child waits for nothing that belongs to them and
//! releases what they left pending. The child runs under alarm() and reports
//! through its exit code.
//!
//!     cargo test --test edges_fork

mod edge_support;

use std::sync::atomic::Ordering::SeqCst;
use std::thread;

use cbreg::ffi::*;
use cbreg::Status;
use edge_support::*;

const CHILD_ALARM_SECS: u32 = 10;

/// Forks; the child runs `child` under an alarm and exits with its code.
/// Returns a description of how the child ended unless it exited 0.
fn in_child(child: impl FnOnce() -> i32) -> Result<(), String> {
    match code_of(fork_and_wait(child)) {
        0 => Ok(()),
        HUNG => Err(format!(
            "HANG: the child was still blocked after {CHILD_ALARM_SECS} s"
        )),
        KILLED => Err("the child died of a signal".to_string()),
        code => Err(format!("the child failed check {code}")),
    }
}

/// Forks; the child runs `child` under an alarm; returns its wait status.
fn fork_and_wait(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only calls cbreg, reads memory and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: no precondition; a hung child dies of SIGALRM.
        unsafe { libc::alarm(CHILD_ALARM_SECS) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(90);
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    let mut wstatus = 0;
    // SAFETY: waits for our own child, into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut wstatus, 0) }, pid);
    wstatus
}

/// A child's exit code: `HUNG` for one the alarm ended, `KILLED` for any
/// other signal, else its own code.
fn code_of(wstatus: i32) -> i32 {
    if libc::WIFSIGNALED(wstatus) {
        if libc::WTERMSIG(wstatus) == libc::SIGALRM {
            HUNG
        } else {
            KILLED
        }
    } else {
        libc::WEXITSTATUS(wstatus)
    }
}
const HUNG: i32 = 99;
const KILLED: i32 = 98;

edge! {
    fn child_forked_while_a_thread_is_nested_8_deep_can_unregister_wait_and_free() {
        let reg = new_registry();
        let r = Reg(reg);
        let (entered, go) = (flag(), flag());
        let (ids, probes) = nest(&[reg; 8], move || {
            entered.store(true, SeqCst);
            block_until(go);
            0
        });
        let top = ids[0];
        let invoker = spawn_named("invoke nested 8 deep", move || invoke(r.0, top));
        wait_until("the innermost callback to start", || entered.load(SeqCst));

        let innermost = ids[7];
        let outcome = in_child(|| {
            // Check 1: the entry the dead thread was inside.
            if cbreg_unregister_wait(reg, innermost) != Status::Ok {
                return 1;
            }
            // Check 2: the registry, with the seven outer levels.
            if cbreg_registry_free(reg) != Status::Ok {
                return 2;
            }
            // Check 3: every release ran, once.
            if probes.iter().any(|p| p.released() != 1) {
                return 3;
            }
            0
        });
        go.store(true, SeqCst);
        assert_eq!(invoker.join(), Status::Ok);
        if let Err(e) = outcome {
            panic!("child: unregister_wait (1), registry_free (2), releases once (3): {e}");
        }
    }
}

edge! {
    fn child_runs_the_releases_a_collector_was_holding_at_the_fork() {
        let reg = new_registry();
        let r = Reg(reg);
        let batch: Vec<_> = (0..4).map(|_| plain_probe()).collect();
        let (slow_started, go) = (flag(), flag());
        let slow = probe(|| 0, move || {
            slow_started.store(true, SeqCst);
            block_until(go);
        });
        let mut ids: Vec<u64> = batch.iter().map(|&p| register(reg, p, PERSISTENT)).collect();
        ids.push(register(reg, slow, PERSISTENT)); // retired last: first in line
        // Retired on a real-time thread, so every release waits for a collect.
        spawn_named("unregister on a real-time thread", move || {
            cbreg_thread_set_realtime(true);
            for id in ids {
                assert_eq!(cbreg_unregister(r.0, id), Status::Ok);
            }
        })
        .join();
        // SAFETY: a NULL count is allowed.
        let collector = spawn_named("collect", move || unsafe { cbreg_collect(r.0, std::ptr::null_mut()) });
        wait_until("a collector to start the slow release", || slow_started.load(SeqCst));

        let outcome = in_child(|| {
            for _ in 0..200 {
                // SAFETY: a NULL count is allowed.
                let _ = unsafe { cbreg_collect(reg, std::ptr::null_mut()) };
                if batch.iter().all(|p| p.released() >= 1) && stats(reg).pending == 0 {
                    break;
                }
                sleep_ms(10);
            }
            if batch.iter().any(|p| p.released() == 0) {
                return 1; // a release the dead collector held never ran
            }
            if batch.iter().any(|p| p.released() > 1) {
                return 2;
            }
            if stats(reg).pending != 0 {
                return 3;
            }
            0
        });
        go.store(true, SeqCst);
        assert_eq!(collector.join(), Status::Ok);
        if let Err(e) = outcome {
            panic!("child: held releases ran (1), once (2), pending reached 0 (3): {e}");
        }
    }
}

/// A registry made, used and freed from scratch: what a child must be able
/// to do. Returns 0 or the number of the step that failed.
fn use_a_fresh_registry() -> i32 {
    let mut h = RegistryHandle { handle: 0 };
    // SAFETY: writes the handle into a local.
    if unsafe { cbreg_registry_new(&mut h) } != Status::Ok {
        return 1;
    }
    let p = plain_probe();
    let Ok(id) = try_register(h, p, PERSISTENT) else {
        return 2;
    };
    if invoke(h, id) != Status::Ok || p.called() != 1 {
        return 3;
    }
    if cbreg_registry_free(h) != Status::Ok || p.released() != 1 {
        return 4;
    }
    0
}

edge! {
    fn child_forked_while_another_thread_makes_the_first_registry_can_use_cbreg() {
        // Each round needs a process in which cbreg has made nothing yet: a
        // child of this process, which has not touched cbreg. Its thread
        // makes the first registry while it forks a grandchild that uses
        // cbreg; later rounds fork a little later into that first call.
        const ROUNDS: u32 = 40;
        let mut failures = Vec::new();
        for round in 0..ROUNDS {
            let outcome = code_of(fork_and_wait(move || {
                // Decide the copy's forwarding first (it makes no registry):
                // the round is about the registry's own first use.
                let forged = RegistryHandle { handle: 0x7fff_0000_0001 };
                let _ = cbreg_unregister(forged, 1);
                let started = flag();
                let maker = thread::spawn(move || {
                    started.store(true, SeqCst);
                    let mut h = RegistryHandle { handle: 0 };
                    // SAFETY: writes the handle into a local.
                    unsafe { cbreg_registry_new(&mut h) }
                });
                block_until_spinning(started);
                for _ in 0..round * 50 {
                    std::hint::spin_loop();
                }
                let grandchild = code_of(fork_and_wait(use_a_fresh_registry));
                if maker.join().ok() != Some(Status::Ok) {
                    return 97;
                }
                grandchild
            }));
            if outcome != 0 {
                failures.push((round, outcome));
                break; // a hang costs the alarm's time
            }
        }
        assert!(
            failures.is_empty(),
            "(round, code) of the rounds whose forked child failed ({HUNG}: HANG, \
             still blocked after {CHILD_ALARM_SECS} s; 1-4: the step of \
             new/register/invoke/free that failed): {failures:?}"
        );
    }
}

/// Spins (no sleep, so the fork lands early in the other thread's call)
/// until `f` is set.
fn block_until_spinning(f: &std::sync::atomic::AtomicBool) {
    while !f.load(SeqCst) {
        std::hint::spin_loop();
    }
}

edge! {
    fn children_forked_while_threads_invoke_nested_9_deep_free_the_registry() {
        // Four threads invoke a chain nine entries deep (past the hazard
        // cells, so the inner levels use slot counters), without pause;
        // every child frees the registry, which waits for nothing of theirs.
        const THREADS: usize = 4;
        const DEPTH: usize = 9;
        const FORKS: usize = 300;
        let reg = new_registry();
        let r = Reg(reg);
        let (ids, _probes) = nest(&[reg; DEPTH], || 0);
        let top = ids[0];
        let stop = flag();
        let invokers: Vec<_> = (0..THREADS)
            .map(|_| {
                thread::spawn(move || {
                    let r = r;
                    while !stop.load(SeqCst) {
                        assert_eq!(invoke(r.0, top), Status::Ok);
                    }
                })
            })
            .collect();
        let mut failures = Vec::new();
        for fork in 0..FORKS {
            let code = code_of(fork_and_wait(|| {
                if cbreg_registry_free(reg) != Status::Ok {
                    return 1;
                }
                0
            }));
            if code != 0 {
                failures.push((fork, code));
                if code == HUNG {
                    break; // each hang costs the alarm's time
                }
            }
        }
        stop.store(true, SeqCst);
        invokers.into_iter().for_each(|t| t.join().unwrap());
        assert!(
            failures.is_empty(),
            "(fork, code) of the children that failed ({HUNG}: HANG in \
             cbreg_registry_free, still blocked after {CHILD_ALARM_SECS} s; \
             1: it did not return OK): {failures:?}"
        );
    }
}

edge! {
    fn child_forked_while_a_clear_runs_its_releases_frees_the_registry() {
        // A clear finishes its entries in order and hands their counts over
        // after the chunk: the fork lands while a release in the middle of
        // it blocks, after two entries were finished and before their
        // counts were.
        let reg = new_registry();
        let r = Reg(reg);
        let (before, after): (Vec<_>, Vec<_>) =
            ((0..2).map(|_| plain_probe()).collect(), (0..2).map(|_| plain_probe()).collect());
        let (blocked, go) = (flag(), flag());
        let blocking = probe(|| 0, move || {
            blocked.store(true, SeqCst);
            block_until(go);
        });
        for &p in &before {
            register(reg, p, PERSISTENT);
        }
        register(reg, blocking, PERSISTENT);
        for &p in &after {
            register(reg, p, PERSISTENT);
        }
        // SAFETY: a NULL count is allowed.
        let clearer = spawn_named("clear", move || unsafe { cbreg_clear(r.0, std::ptr::null_mut()) });
        wait_until("the clear to reach the blocking release", || blocked.load(SeqCst));
        let ran_before = before.iter().filter(|p| p.released() == 1).count();
        let outcome = in_child(|| {
            if cbreg_registry_free(reg) != Status::Ok {
                return 1;
            }
            if before.iter().chain(&after).any(|p| p.released() != 1) {
                return 2;
            }
            0
        });
        go.store(true, SeqCst);
        assert_eq!(clearer.join(), Status::Ok);
        assert_eq!(ran_before, before.len(), "the releases before the blocking one ran first");
        if let Err(e) = outcome {
            panic!("child: registry_free returned OK (1), every other release ran once (2): {e}");
        }
    }
}
