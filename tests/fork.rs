//! After fork(), the child can use the registry even though other threads
//! of the parent were inside invoke at the moment of the fork.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use cbreg::{Arg, Registry, Status, Value};

#[test]
fn fork_child_can_register_invoke_and_clear_while_parent_threads_were_inside_invoke() {
    let reg = Arc::new(Registry::new().unwrap());
    let inside = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let i2 = inside.clone();
    let slow = reg
        .register(move |_: &[Arg], _: &mut Value| {
            i2.fetch_add(1, SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })
        .unwrap()
        .detach();
    let invokers: Vec<_> = (0..3)
        .map(|_| {
            let (reg, stop) = (reg.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = reg.call(slow, &[]);
                }
            })
        })
        .collect();
    while inside.load(SeqCst) < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the child only calls cbreg and async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A child stuck on a dead thread's hazard dies instead of hanging.
        // SAFETY: no precondition.
        unsafe { libc::alarm(20) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(&reg, slow)))
            .unwrap_or(90);
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    let mut wstatus = 0;
    // SAFETY: waits for our own child, into a local.
    assert_eq!(unsafe { libc::waitpid(pid, &mut wstatus, 0) }, pid);
    stop.store(true, SeqCst);
    invokers.into_iter().for_each(|t| t.join().unwrap());
    assert!(libc::WIFEXITED(wstatus), "child died: status {wstatus:#x}");
    assert_eq!(libc::WEXITSTATUS(wstatus), 0, "child check failed");
}

/// Returns a process exit code: 0 when every check passed.
fn child(reg: &Registry, slow: u64) -> i32 {
    let released = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let flag = Flag(released.clone());
    let Ok(sub) = reg.register(move |a: &[Arg], r: &mut Value| {
        let _ = &flag;
        *r = Value::i64(a[0].as_i64().unwrap() + 1);
        Ok(())
    }) else {
        return 1;
    };
    match reg.invoke(sub.id(), &[Arg::i64(1)]) {
        Ok(v) if v.as_i64() == Some(2) => {}
        _ => return 2,
    }
    // The parent's threads were inside `slow`; in the child they are gone,
    // so the clear must finish every release without waiting for them.
    if reg.unregister_wait(slow) != Status::Ok {
        return 3;
    }
    if reg.clear() != 1 || !released.load(SeqCst) {
        return 4;
    }
    std::mem::forget(sub);
    if reg.stats().pending != 0 {
        return 5;
    }
    0
}
