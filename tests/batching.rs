//! Unregisters batch their heavy barriers while other threads are alive:
//! no system call per unregister, and the release still runs within a
//! bounded delay with nobody collecting; `CBREG_PROMPT` entries are
//! released before unregister returns. In a binary of its own, so the
//! barrier count is this file's alone.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cbreg::ffi::{cbreg_register, RegistryHandle, CBREG_PROMPT};
use cbreg::{Arg, Registry, Status, Value};

/// Tests here run one at a time: they count barriers.
static SERIAL: Mutex<()> = Mutex::new(());

/// A thread that has invoked (so it holds a record) and stays alive until
/// the returned guard is dropped: heavy barriers are system calls then.
fn other_thread_alive() -> impl Drop {
    struct Alive(
        Option<std::sync::mpsc::Sender<()>>,
        Option<std::thread::JoinHandle<()>>,
    );
    impl Drop for Alive {
        fn drop(&mut self) {
            drop(self.0.take());
            let _ = self.1.take().map(|h| h.join());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let reg = Registry::global();
        let sub = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
        assert_eq!(reg.call(sub.id(), &[]), Status::Ok);
        ready_tx.send(()).unwrap();
        let _ = rx.recv();
    });
    ready_rx.recv().unwrap();
    Alive(Some(tx), Some(h))
}

fn counting(releases: &Arc<AtomicUsize>) -> impl cbreg::Callback {
    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let c = Count(releases.clone());
    move |_: &[Arg], _: &mut Value| {
        let _ = &c;
        Ok(())
    }
}

#[test]
fn unregisters_with_another_thread_alive_pay_a_barrier_per_batch_not_per_call() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _alive = other_thread_alive();
    let reg = Registry::new().unwrap();
    let releases = Arc::new(AtomicUsize::new(0));
    let before = cbreg::testing::heavy_barriers();
    const PAIRS: usize = 10_000;
    for _ in 0..PAIRS {
        drop(reg.register(counting(&releases)).unwrap());
    }
    let barriers = cbreg::testing::heavy_barriers() - before;
    assert!(
        barriers <= (PAIRS / 32) as u64,
        "{barriers} heavy barriers for {PAIRS} register + unregister pairs"
    );
    reg.collect();
    assert_eq!(releases.load(SeqCst), PAIRS, "every release ran once");
}

#[test]
fn a_batched_release_runs_within_a_bounded_delay_with_nobody_collecting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _alive = other_thread_alive();
    let reg = Registry::new().unwrap();
    let releases = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    drop(reg.register(counting(&releases)).unwrap());
    // No call into cbreg from here on: the reclaimer runs the batch.
    while releases.load(SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not released within 5 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(releases.load(SeqCst), 1);
}

unsafe extern "C-unwind" fn noop(_: *mut c_void, _: *const Value, _: usize, _: *mut Value) -> u32 {
    0
}

unsafe extern "C-unwind" fn count_release(ctx: *mut c_void) {
    // SAFETY: registered with a leaked `AtomicUsize`.
    unsafe { &*(ctx as *const AtomicUsize) }.fetch_add(1, SeqCst);
}

#[test]
fn a_prompt_entry_is_released_before_unregister_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _alive = other_thread_alive();
    let reg = Registry::new().unwrap();
    let handle = RegistryHandle {
        handle: reg.handle(),
    };
    let releases: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    let ctx = releases as *const AtomicUsize as *mut c_void;
    for round in 1..=100 {
        let mut id = 0;
        // SAFETY: noop and count_release are sound with this ctx.
        let s = unsafe {
            cbreg_register(
                handle,
                Some(noop),
                ctx,
                Some(count_release),
                CBREG_PROMPT,
                &mut id,
            )
        };
        assert_eq!(s, Status::Ok);
        assert_eq!(reg.unregister(id), Status::Ok);
        assert_eq!(
            releases.load(SeqCst),
            round,
            "released before unregister returned"
        );
    }
}
