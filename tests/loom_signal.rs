//! Loom models of signals, run on the real code (`make loom`): emit racing
//! unsubscribe, subscribe, free, and another emit on a one-shot. Each
//! asserts the subscriber's release ran exactly once and never during a
//! call, that no call starts after an unsubscribe returned, and that every
//! subscriber list made was released exactly once.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use cbreg::{Arg, Registry, Signal, Status, Value};

/// What a subscriber observes: calls inside it, releases, releases that
/// ran while a call was inside, and the order of calls by subscriber.
#[derive(Default)]
struct Probe {
    inside: AtomicUsize,
    calls: AtomicUsize,
    releases: AtomicUsize,
    release_during_call: AtomicUsize,
    /// The tags of the subscribers called, one decimal digit each.
    trace: AtomicUsize,
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

fn subscriber(sig: &Signal, probe: &Arc<Probe>, tag: usize, once: bool) -> u64 {
    let guard = Guard(probe.clone());
    let f = move |_: &[Arg], _: &mut Value| {
        let p = &guard.0;
        p.inside.fetch_add(1, SeqCst);
        p.calls.fetch_add(1, SeqCst);
        let t = p.trace.load(SeqCst);
        p.trace.store(t * 10 + tag, SeqCst);
        p.inside.fetch_sub(1, SeqCst);
        Ok(())
    };
    let conn = if once {
        sig.subscribe_once(f)
    } else {
        sig.subscribe(f)
    };
    conn.unwrap().detach()
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(f);
}

/// A model thread that claims its thread record first.
fn spawn_prepared<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        cbreg::set_thread_realtime(false);
        f()
    })
}

/// After the signal is gone: every release ran once, none during a call,
/// and every subscriber list was released.
fn check(probe: &Probe, releases: usize) {
    Registry::global().collect();
    assert_eq!(probe.releases.load(SeqCst), releases, "releases");
    assert_eq!(probe.release_during_call.load(SeqCst), 0, "release during a call");
    let lists = cbreg::testing::signal_snapshots();
    assert_eq!(lists.released, lists.registered, "lists not released once: {lists:?}");
}

#[test]
fn emit_racing_unsubscribe() {
    model(|| {
        let sig = Arc::new(Signal::new(&Registry::global()).unwrap());
        let probe = Arc::new(Probe::default());
        let id = subscriber(&sig, &probe, 1, false);
        let s = sig.clone();
        let emitter = spawn_prepared(move || s.emit(&[]).unwrap().called);
        let h = cbreg::SignalHandle {
            handle: sig.handle(),
        };
        assert_eq!(cbreg::ffi::cbreg_signal_unsubscribe(h, id), Status::Ok);
        assert_eq!(sig.emit(&[]).unwrap().called, 0, "called after unsubscribe");
        let called = emitter.join().unwrap();
        assert!(called <= 1);
        assert_eq!(probe.calls.load(SeqCst), called);
        drop(sig);
        check(&probe, 1);
    });
}

#[test]
fn emit_racing_unregister_of_a_subscriber() {
    // Unregistered through the registry, the entry stays on the list: each
    // emit's own check of it is what keeps it from being called.
    model(|| {
        let reg = Registry::global();
        let sig = Arc::new(Signal::new(&reg).unwrap());
        let probe = Arc::new(Probe::default());
        let id = subscriber(&sig, &probe, 1, false);
        let s = sig.clone();
        let emitter = spawn_prepared(move || s.emit(&[]).unwrap().called);
        assert_eq!(reg.unregister(id), Status::Ok);
        assert_eq!(sig.emit(&[]).unwrap().called, 0, "called after unregister");
        let called = emitter.join().unwrap();
        assert_eq!(probe.calls.load(SeqCst), called);
        drop(sig);
        check(&probe, 1);
    });
}

#[test]
fn emit_racing_subscribe() {
    model(|| {
        let sig = Arc::new(Signal::new(&Registry::global()).unwrap());
        let probe = Arc::new(Probe::default());
        subscriber(&sig, &probe, 1, false);
        let s = sig.clone();
        let emitter = spawn_prepared(move || s.emit(&[]).unwrap().called);
        subscriber(&sig, &probe, 2, false);
        let called = emitter.join().unwrap();
        // The new one is called after the old, or not at all.
        let trace = probe.trace.load(SeqCst);
        match called {
            1 => assert_eq!(trace, 1),
            2 => assert_eq!(trace, 12),
            n => panic!("{n} called"),
        }
        drop(sig);
        check(&probe, 2);
    });
}

#[test]
fn two_emits_racing_on_a_one_shot_subscriber() {
    model(|| {
        let sig = Arc::new(Signal::new(&Registry::global()).unwrap());
        let probe = Arc::new(Probe::default());
        subscriber(&sig, &probe, 1, true);
        let s = sig.clone();
        let other = spawn_prepared(move || s.emit(&[]).unwrap().called);
        let mine = sig.emit(&[]).unwrap().called;
        let theirs = other.join().unwrap();
        assert_eq!(mine + theirs, 1, "a one-shot ran {} times", mine + theirs);
        assert_eq!(probe.calls.load(SeqCst), 1);
        drop(sig);
        check(&probe, 1);
    });
}

#[test]
fn emit_racing_free() {
    model(|| {
        let sig = Signal::new(&Registry::global()).unwrap();
        let probe = Arc::new(Probe::default());
        subscriber(&sig, &probe, 1, false);
        let h = cbreg::SignalHandle {
            handle: sig.handle(),
        };
        let emitter = spawn_prepared(move || {
            // SAFETY: no arguments; NULL report.
            unsafe { cbreg::ffi::cbreg_signal_emit(h, std::ptr::null(), 0, std::ptr::null_mut()) }
        });
        drop(sig);
        // SAFETY: as above.
        let after = unsafe {
            cbreg::ffi::cbreg_signal_emit(h, std::ptr::null(), 0, std::ptr::null_mut())
        };
        assert_eq!(after, Status::InvalidSignal);
        let s = emitter.join().unwrap();
        assert!(s == Status::Ok || s == Status::InvalidSignal, "{s:?}");
        check(&probe, 1);
    });
}
