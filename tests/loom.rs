//! Loom models of the invoke / unregister / clear / collect protocol and of
//! signals, run on the real registry code (`RUSTFLAGS="--cfg loom"`, see
//! `make loom`).
//! Each asserts that the release ran exactly once, never while an
//! invocation of the entry was running, and that no invocation starts
//! after unregister returned.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use cbreg::{Arg, Registry, Signal, Status, Value};

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
    let f = move |_: &[Arg], _: &mut Value| {
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
/// A model thread that claims its thread record first, as a thread that
/// has invoked before has, so its invokes take the fast path.
fn spawn_prepared<T: 'static>(f: impl FnOnce() -> T + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        cbreg::set_thread_realtime(false);
        f()
    })
}

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
        let invoker = spawn_prepared(move || r.call(id, &[]));
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
        let invoker = spawn_prepared(move || r.call(id, &[]));
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
        let other = spawn_prepared(move || r.call(id, &[]));
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
        let invoker = spawn_prepared(move || r.call(id, &[]));
        let r = reg.clone();
        let collector = spawn_prepared(move || {
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
            .register(move |_: &[Arg], _: &mut Value| {
                let _ = &guard;
                Ok(())
            })
            .unwrap()
            .detach();
        let r = reg.clone();
        let audio = spawn_prepared(move || {
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

/// A stale handle's register racing `free` and the next `new` on the same
/// table entry: it lands in the old registry (and is cleared by the free)
/// or is refused, and never reaches the new one.
#[test]
fn stale_handle_register_racing_free_never_reaches_the_next_registry() {
    use cbreg::ffi::{cbreg_register, RegistryHandle};
    unsafe extern "C-unwind" fn noop(
        _: *mut std::ffi::c_void,
        _: *const Value,
        _: usize,
        _: *mut Value,
    ) -> u32 {
        0
    }
    model(|| {
        let old = Registry::new().unwrap();
        let handle = RegistryHandle {
            handle: old.handle(),
        };
        let stale = spawn_prepared(move || {
            let mut id = 0;
            let s = unsafe {
                cbreg_register(handle, Some(noop), std::ptr::null_mut(), None, 0, &mut id)
            };
            (s, id)
        });
        std::mem::forget(old);
        assert_eq!(cbreg::ffi::cbreg_registry_free(handle), Status::Ok);
        let new = Registry::new().unwrap();
        let (status, id) = stale.join().unwrap();
        assert!(
            matches!(
                status,
                Status::Ok | Status::InvalidRegistry | Status::Closed
            ),
            "{status:?}"
        );
        assert_eq!(new.stats().registered, 0, "landed in the new registry");
        if status == Status::Ok {
            assert_eq!(new.call(id, &[]), Status::NotFound);
        }
    });
}

/// `unregister_wait` racing the invoker of a one-shot: whoever retires it,
/// the wait returns only after the call and the release are over.
#[test]
fn unregister_wait_racing_a_one_shot_returns_after_call_and_release() {
    model(|| {
        let (reg, probe, id) = setup(true);
        let r = reg.clone();
        let invoker = spawn_prepared(move || r.call(id, &[]));
        let waited = reg.unregister_wait(id);
        assert!(waited == Status::Ok || waited == Status::NotFound);
        assert_eq!(probe.inside.load(SeqCst), 0, "returned during the call");
        assert_eq!(
            probe.releases.load(SeqCst),
            1,
            "returned before the release"
        );
        invoker.join().unwrap();
        check(&probe);
    });
}

/// An invocation nested deeper than the hazard cells (the slot counter
/// path) racing unregister of the innermost entry.
#[test]
fn invoke_nested_past_the_cells_racing_unregister() {
    model(|| {
        let (reg, probe, inner) = setup(false);
        // Two outer levels fill the cells (2 under loom); the inner call
        // takes the counter path.
        let r = reg.clone();
        let middle = reg
            .register(move |_: &[Arg], _: &mut Value| {
                let _ = r.call(inner, &[]);
                Ok(())
            })
            .unwrap()
            .detach();
        let r = reg.clone();
        let outer = reg
            .register(move |_: &[Arg], _: &mut Value| {
                let _ = r.call(middle, &[]);
                Ok(())
            })
            .unwrap()
            .detach();
        let r = reg.clone();
        let invoker = spawn_prepared(move || r.call(outer, &[]));
        assert_eq!(reg.unregister(inner), Status::Ok);
        invoker.join().unwrap();
        reg.collect();
        check(&probe);
        reg.clear();
    });
}

/// A stale id racing the reuse of its slot never runs the newer entry.
#[test]
fn stale_id_racing_slot_reuse_never_runs_the_newer_entry() {
    model(|| {
        let (reg, probe, old) = setup(false);
        let r = reg.clone();
        let invoker = spawn_prepared(move || r.call(old, &[]));
        assert_eq!(reg.unregister(old), Status::Ok);
        reg.collect();
        let newer = Arc::new(Probe::default());
        let new_id = entry(&reg, &newer, false);
        invoker.join().unwrap();
        assert_eq!(newer.calls.load(SeqCst), 0, "a stale id ran a newer entry");
        assert_ne!(new_id, old);
        reg.collect();
        check(&probe);
        reg.clear();
    });
}

/// `free` racing the invoker of a one-shot: it returns only after the
/// one-shot's call and its release are over, and the release runs once.
#[test]
fn free_racing_a_one_shot_returns_after_its_release() {
    use cbreg::ffi::{cbreg_registry_free, RegistryHandle};
    model(|| {
        let (reg, probe, id) = setup(true);
        let handle = RegistryHandle {
            handle: reg.handle(),
        };
        let r = reg.clone();
        let invoker = spawn_prepared(move || r.call(id, &[]));
        assert_eq!(cbreg_registry_free(handle), Status::Ok);
        assert_eq!(
            probe.inside.load(SeqCst),
            0,
            "free returned during the call"
        );
        assert_eq!(
            probe.releases.load(SeqCst),
            1,
            "free returned before the release"
        );
        let s = invoker.join().unwrap();
        assert!(
            matches!(s, Status::Ok | Status::NotFound | Status::InvalidRegistry),
            "{s:?}"
        );
        check(&probe);
    });
}

/// A call site racing unregister, slot reuse and the registry's free: the
/// site runs its own entry or reports it gone, never the slot's newer
/// entry, and the release still runs once, never during a call.
#[test]
fn site_racing_unregister_slot_reuse_and_free_never_runs_another_entry() {
    use cbreg::ffi::{cbreg_registry_free, RegistryHandle};
    model(|| {
        let (reg, probe, old) = setup(false);
        let site = reg.site(old).unwrap();
        let invoker = spawn_prepared(move || site.call(&[]));
        assert_eq!(reg.unregister(old), Status::Ok);
        reg.collect();
        let newer = Arc::new(Probe::default());
        let new_id = entry(&reg, &newer, false);
        assert_ne!(new_id, old);
        let s = invoker.join().unwrap();
        assert!(matches!(s, Status::Ok | Status::NotFound), "{s:?}");
        assert_eq!(newer.calls.load(SeqCst), 0, "a site ran a newer entry");
        reg.collect();
        check(&probe);
        let handle = RegistryHandle {
            handle: reg.handle(),
        };
        assert_eq!(cbreg_registry_free(handle), Status::Ok);
        assert_eq!(site.call(&[]), Status::InvalidRegistry);
        assert_eq!(newer.releases.load(SeqCst), 1);
    });
}

// ---- signals ----
//
// Subscribers are entries of the default registry (the model's table has
// room for one registry more, which signals take for their lists). Each
// model also checks that every subscriber list made was released once.

/// A signal of the default registry, with one subscriber reporting to the
/// returned probe; the subscriber's id.
fn signal_setup(once: bool) -> (Arc<Signal>, Arc<Probe>, u64) {
    let reg = Registry::global();
    let sig = Arc::new(Signal::new(&reg).unwrap());
    let probe = Arc::new(Probe::default());
    let id = entry(&reg, &probe, once);
    sig.subscribe_id(id).unwrap().detach();
    (sig, probe, id)
}

/// After the signal is gone: every subscriber list was released once.
fn check_lists() {
    Registry::global().collect();
    let lists = cbreg::testing::signal_snapshots();
    assert_eq!(
        lists.released, lists.registered,
        "lists not released once: {lists:?}"
    );
}

fn emit(sig: &Signal) -> usize {
    sig.emit(&[]).unwrap().called
}

/// An emit racing the removal of its one subscriber (`remove`, which must
/// succeed): once the removal returned, no emit calls it.
fn emit_racing_removal(remove: fn(&Signal, u64) -> Status) {
    model(move || {
        let (sig, probe, id) = signal_setup(false);
        let s = sig.clone();
        let emitter = spawn_prepared(move || emit(&s));
        assert_eq!(remove(&sig, id), Status::Ok);
        assert_eq!(emit(&sig), 0, "called after its removal returned");
        let called = emitter.join().unwrap();
        assert_eq!(probe.calls.load(SeqCst), called);
        Registry::global().collect();
        check(&probe);
        drop(sig);
        check_lists();
    });
}

#[test]
fn emit_racing_unsubscribe() {
    emit_racing_removal(|sig, id| {
        let handle = cbreg::SignalHandle {
            handle: sig.handle(),
        };
        cbreg::ffi::cbreg_signal_unsubscribe(handle, id)
    });
}

/// Unregistered through the registry, the entry stays on the list: each
/// emit's own check of it keeps it from being called.
#[test]
fn emit_racing_unregister_of_a_subscriber() {
    emit_racing_removal(|_, id| Registry::global().unregister(id));
}

/// A subscriber added during an emit is called by it only if the emit
/// started after the change, and then after the older one.
#[test]
fn emit_racing_subscribe() {
    model(|| {
        let (sig, first, _) = signal_setup(false);
        let s = sig.clone();
        let emitter = spawn_prepared(move || emit(&s));
        let second = Arc::new(Probe::default());
        let id = entry(&Registry::global(), &second, false);
        sig.subscribe_id(id).unwrap().detach();
        let called = emitter.join().unwrap();
        assert_eq!(first.calls.load(SeqCst), 1);
        assert_eq!(second.calls.load(SeqCst), called - 1);
        drop(sig);
        Registry::global().collect();
        check(&first);
        check(&second);
        check_lists();
    });
}

#[test]
fn two_emits_racing_on_a_one_shot_subscriber() {
    model(|| {
        let (sig, probe, _) = signal_setup(true);
        let s = sig.clone();
        let other = spawn_prepared(move || emit(&s));
        let mine = emit(&sig);
        let theirs = other.join().unwrap();
        assert_eq!(mine + theirs, 1, "a one-shot ran {} times", mine + theirs);
        assert_eq!(probe.calls.load(SeqCst), 1);
        drop(sig);
        Registry::global().collect();
        check(&probe);
        check_lists();
    });
}

#[test]
fn emit_racing_free() {
    use cbreg::ffi::cbreg_signal_emit;
    model(|| {
        let (sig, probe, _) = signal_setup(false);
        let handle = cbreg::SignalHandle {
            handle: sig.handle(),
        };
        // SAFETY (both): no arguments; no report.
        let emitter = spawn_prepared(move || unsafe {
            cbreg_signal_emit(handle, std::ptr::null(), 0, std::ptr::null_mut())
        });
        drop(Arc::try_unwrap(sig).unwrap());
        let after = unsafe { cbreg_signal_emit(handle, std::ptr::null(), 0, std::ptr::null_mut()) };
        assert_eq!(after, Status::InvalidSignal);
        let s = emitter.join().unwrap();
        assert!(s == Status::Ok || s == Status::InvalidSignal, "{s:?}");
        Registry::global().collect();
        check(&probe);
        check_lists();
    });
}

/// The Python adapter's gate (`src/python/gate.rs`, the code itself, built
/// without CPython): a thread the gate let in, on its shared counter or on
/// a kept-state thread's own one, is always seen by the exit hook's drain
/// until it is out; once the hook has shut the gate no call gets in, a
/// release only while it drains.
#[test]
fn gate_drain_sees_every_thread_let_in_and_none_enters_after_shut() {
    use cbreg::python_gate::{shut_all, Gate, OwnCount, CLOSED, DRAINING};
    use loom::sync::atomic::AtomicBool;

    /// A thread let in: it must not be inside once the hook has drained.
    fn inside(in_gate: &AtomicUsize, drained: &AtomicBool) {
        in_gate.fetch_add(1, SeqCst);
        assert!(!drained.load(SeqCst), "a thread inside after the drain");
        in_gate.fetch_sub(1, SeqCst);
    }

    model(|| {
        let gate = Arc::new(Gate::new());
        let own = Arc::new(OwnCount::new());
        let in_gate = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(AtomicBool::new(false));
        let shared = {
            let (gate, in_gate, drained) = (gate.clone(), in_gate.clone(), drained.clone());
            thread::spawn(move || {
                if gate.count_in(false, || false) {
                    inside(&in_gate, &drained);
                    gate.count_out();
                }
            })
        };
        let kept = {
            let (gate, own) = (gate.clone(), own.clone());
            let (in_gate, drained) = (in_gate.clone(), drained.clone());
            thread::spawn(move || {
                if own.count_in(&gate, false) {
                    inside(&in_gate, &drained);
                    own.count_out();
                }
            })
        };
        // The exit hook: shut, then drain.
        shut_all([&*gate], DRAINING);
        while gate.inside() != 0 || own.seen() != 0 {
            thread::yield_now();
        }
        assert_eq!(in_gate.load(SeqCst), 0, "the drain missed a thread inside");
        drained.store(true, SeqCst);
        shared.join().unwrap();
        kept.join().unwrap();
        assert!(!gate.count_in(false, || false), "a call let in after shut");
        assert!(!own.count_in(&gate, false), "a kept call let in after shut");
        assert!(
            gate.count_in(true, || false),
            "a release refused while draining"
        );
        gate.count_out();
        shut_all([&*gate], CLOSED);
        assert!(
            !gate.count_in(true, || false),
            "a release let in after close"
        );
        assert!(
            !own.count_in(&gate, true),
            "a kept release let in after close"
        );
    });
}
