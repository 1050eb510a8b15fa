//! Fork edge cases (docs/contract.md 4.4a): whatever the parent's threads were
//! doing at the fork, the child waits for nothing that belongs to them and
//! releases what they left pending. The child runs under alarm() and reports
//! through its exit code.
//!
//!     cargo test --test edges_fork

mod edge_support;

use std::sync::atomic::Ordering::SeqCst;

use cbreg::ffi::*;
use cbreg::Status;
use edge_support::*;

const CHILD_ALARM_SECS: u32 = 10;

/// Forks; the child runs `child` under an alarm and exits with its code.
/// Returns a description of how the child ended unless it exited 0.
fn in_child(child: impl FnOnce() -> i32) -> Result<(), String> {
    // SAFETY: the child only calls cbreg, reads memory and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { libc::alarm(CHILD_ALARM_SECS) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(90);
        unsafe { libc::_exit(code) };
    }
    let mut wstatus = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut wstatus, 0) }, pid);
    if libc::WIFSIGNALED(wstatus) && libc::WTERMSIG(wstatus) == libc::SIGALRM {
        return Err(format!(
            "HANG: the child was still blocked after {CHILD_ALARM_SECS} s"
        ));
    }
    if libc::WIFSIGNALED(wstatus) {
        return Err(format!(
            "the child died of signal {}",
            libc::WTERMSIG(wstatus)
        ));
    }
    match libc::WEXITSTATUS(wstatus) {
        0 => Ok(()),
        code => Err(format!("the child failed check {code}")),
    }
}

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
        let collector = spawn_named("collect", move || unsafe { cbreg_collect(r.0, std::ptr::null_mut()) });
        wait_until("a collector to start the slow release", || slow_started.load(SeqCst));

        let outcome = in_child(|| {
            for _ in 0..200 {
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
