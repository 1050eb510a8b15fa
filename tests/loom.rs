//! Loom models of the invoke / unregister / clear / collect protocol, run on
//! the real registry code (`RUSTFLAGS="--cfg loom"`, see `make loom`).
//! Each asserts that the release ran exactly once, never while an
//! invocation of the entry was running, and that no invocation starts
//! after unregister returned.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use cbreg::{Registry, Status, Value};

/// What an entry observes: invocations inside it, releases, and releases
/// that ran while an invocation was inside.
#[derive(Default)]
struct Probe {
    inside: AtomicUsize,
    calls: AtomicUsize,
    releases: AtomicUsize,
    release_during_call: AtomicUsize,
}

struct Guard(Arc<Probe>);
impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.inside.load(SeqCst) != 0 {
            self.0.release_during_call.fetch_add(1, SeqCst);
        }
        self.0.releases.fetch_add(1, SeqCst);
    }
}

fn entry(reg: &Registry, probe: &Arc<Probe>, once: bool) -> u64 {
    let guard = Guard(probe.clone());
    let f = move |_: &[Value], _: &mut Value| {
        let p = &guard.0;
        p.inside.fetch_add(1, SeqCst);
        p.calls.fetch_add(1, SeqCst);
        p.inside.fetch_sub(1, SeqCst);
        Ok(())
    };
    let sub = if once {
        reg.register_once(f)
    } else {
        reg.register(f)
    };
    sub.unwrap().detach()
}

/// A registry holding one entry, and the probe that entry reports to.
fn setup(once: bool) -> (Arc<Registry>, Arc<Probe>, u64) {
    let reg = Arc::new(Registry::new().unwrap());
    let probe = Arc::new(Probe::default());
    let id = entry(&reg, &probe, once);
    (reg, probe, id)
}

fn check(probe: &Probe) {
    assert_eq!(
        probe.releases.load(SeqCst),
        1,
        "release must run exactly once"
    );
    assert_eq!(
        probe.release_during_call.load(SeqCst),
        0,
        "release ran during an invocation"
    );
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(f);
}

#[test]
fn invoke_racing_unregister() {
    model(|| {
        let (reg, probe, id) = setup(false);
        let r = reg.clone();
        let invoker = thread::spawn(move || r.call(id, &[]));
        assert_eq!(reg.unregister(id), Status::Ok);
        assert_eq!(
            reg.call(id, &[]),
            Status::NotFound,
            "invocation started after unregister"
        );
        let s = invoker.join().unwrap();
        assert!(s == Status::Ok || s == Status::NotFound);
        // The invoker that drops the last use runs the deferred release.
        check(&probe);
    });
}

#[test]
fn invoke_racing_clear() {
    model(|| {
        let (reg, probe, id) = setup(false);
        let r = reg.clone();
        let invoker = thread::spawn(move || r.call(id, &[]));
        assert_eq!(reg.clear(), 1);
        assert_eq!(reg.call(id, &[]), Status::NotFound);
        invoker.join().unwrap();
        check(&probe);
    });
}

#[test]
fn two_invokers_racing_on_a_one_shot() {
    model(|| {
        let (reg, probe, id) = setup(true);
        let r = reg.clone();
        let other = thread::spawn(move || r.call(id, &[]));
        let mine = reg.call(id, &[]);
        let theirs = other.join().unwrap();
        let oks = [mine, theirs].iter().filter(|s| **s == Status::Ok).count();
        assert_eq!(oks, 1, "one-shot ran {oks} times");
        assert_eq!(probe.calls.load(SeqCst), 1);
        reg.collect();
        check(&probe);
    });
}

#[test]
fn collect_racing_an_invoke_in_flight() {
    model(|| {
        let (reg, probe, id) = setup(false);
        let r = reg.clone();
        let invoker = thread::spawn(move || r.call(id, &[]));
        let r = reg.clone();
        let collector = thread::spawn(move || {
            r.collect();
        });
        assert_eq!(reg.unregister(id), Status::Ok);
        invoker.join().unwrap();
        collector.join().unwrap();
        check(&probe);
    });
}

loom::thread_local! {
    static ON_REALTIME_THREAD: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

#[test]
fn release_never_runs_on_a_realtime_invoker() {
    model(|| {
        let reg = Arc::new(Registry::new().unwrap());
        let released_on_rt = Arc::new(AtomicUsize::new(0));
        let releases = Arc::new(AtomicUsize::new(0));
        struct RtGuard(Arc<AtomicUsize>, Arc<AtomicUsize>);
        impl Drop for RtGuard {
            fn drop(&mut self) {
                if ON_REALTIME_THREAD.with(|c| c.get()) {
                    self.0.fetch_add(1, SeqCst);
                }
                self.1.fetch_add(1, SeqCst);
            }
        }
        let guard = RtGuard(released_on_rt.clone(), releases.clone());
        let id = reg
            .register(move |_: &[Value], _: &mut Value| {
                let _ = &guard;
                Ok(())
            })
            .unwrap()
            .detach();
        let r = reg.clone();
        let audio = thread::spawn(move || {
            ON_REALTIME_THREAD.with(|c| c.set(true));
            cbreg::set_thread_realtime(true);
            r.call(id, &[])
        });
        assert_eq!(reg.unregister(id), Status::Ok);
        audio.join().unwrap();
        reg.collect();
        assert_eq!(releases.load(SeqCst), 1);
        assert_eq!(
            released_on_rt.load(SeqCst),
            0,
            "a release ran on the real-time thread"
        );
    });
}
