//! Call sites (`cbreg_site_resolve` / `cbreg_site_invoke`, `Registry::site`):
//! the same statuses and guarantees as invoking the id, and a site never
//! reaches any entry but the one it was resolved for.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use cbreg::ffi::{cbreg_site_invoke, cbreg_site_resolve, Site, CBREG_MAX_ARGS};
use cbreg::{Arg, Registry, Status, Tag, Value};

/// A call count and a callback that counts.
fn counter() -> (Arc<AtomicUsize>, impl cbreg::Callback + Clone) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    (n, move |_: &[Arg], _: &mut Value| {
        c.fetch_add(1, SeqCst);
        Ok(())
    })
}

#[test]
fn a_site_runs_its_entry_and_returns_its_value() {
    let reg = Registry::new().unwrap();
    let sub = reg
        .register(|a: &[Arg], ret: &mut Value| {
            *ret = Value::f64(a.first().and_then(Arg::as_f64).unwrap_or(0.0) * 2.0);
            Ok(())
        })
        .unwrap();
    let site = reg.site(sub.id()).unwrap();
    let before = reg.stats().invoked;
    assert_eq!(
        site.invoke(&[Arg::f64(220.0)]).unwrap().as_f64(),
        Some(440.0)
    );
    assert_eq!(site.call(&[Arg::f64(1.0)]), Status::Ok);
    assert_eq!(reg.stats().invoked, before + 2, "site calls are counted");
    let text = String::from("A4");
    assert_eq!(site.call(&[Arg::f64(1.0), Arg::str(&text)]), Status::Ok);
    assert_eq!(site.call(&[]), Status::Ok, "no arguments");
}

#[test]
fn a_stale_site_is_not_found_and_never_reaches_the_slots_next_entry() {
    let reg = Registry::new().unwrap();
    let (old_runs, old) = counter();
    let first = reg.register(old).unwrap();
    let site = reg.site(first.id()).unwrap();
    assert_eq!(site.call(&[]), Status::Ok);
    let old_id = first.id();
    assert_eq!(first.unregister(), Status::Ok);
    assert_eq!(site.call(&[]), Status::NotFound);
    // The freed slot is the next one handed out: a new entry takes it.
    let (new_runs, new) = counter();
    let second = reg.register(new).unwrap();
    assert_eq!(second.id() & 0xff_ffff, old_id & 0xff_ffff, "same slot");
    assert_eq!(site.call(&[]), Status::NotFound);
    assert_eq!(new_runs.load(SeqCst), 0);
    assert_eq!(old_runs.load(SeqCst), 1);
    assert_eq!(reg.site(old_id).unwrap_err(), Status::NotFound);
}

#[test]
fn a_site_of_a_freed_registry_is_invalid_even_when_its_table_slot_is_reused() {
    let reg = Registry::new().unwrap();
    let (_, f) = counter();
    let id = reg.register(f).unwrap().detach();
    let site = reg.site(id).unwrap();
    drop(reg);
    assert_eq!(site.call(&[]), Status::InvalidRegistry);
    // Registries made now may take the freed one's table slot.
    let (runs, f) = counter();
    let others: Vec<_> = (0..4).map(|_| Registry::new().unwrap()).collect();
    let subs: Vec<_> = others
        .iter()
        .map(|r| r.register(f.clone()).unwrap())
        .collect();
    assert_eq!(site.call(&[]), Status::InvalidRegistry);
    assert_eq!(runs.load(SeqCst), 0);
    drop(subs);
}

#[test]
fn bad_sites_and_bad_arguments_get_statuses() {
    let reg = Registry::new().unwrap();
    let (runs, f) = counter();
    let sub = reg.register(f).unwrap();
    let mut ret = Value::none();
    // SAFETY: the NULL `out` and NULL or zeroed sites are rejected before use; `ret` points to a local.
    unsafe {
        assert_eq!(
            cbreg_site_resolve(
                cbreg::ffi::RegistryHandle {
                    handle: reg.handle()
                },
                sub.id(),
                std::ptr::null_mut()
            ),
            Status::InvalidArgument
        );
        assert_eq!(
            cbreg_site_invoke(std::ptr::null(), std::ptr::null(), 0, &mut ret),
            Status::InvalidArgument
        );
        assert_eq!(
            cbreg_site_invoke(&Site::NONE, std::ptr::null(), 0, &mut ret),
            Status::InvalidArgument,
            "a zeroed site"
        );
    }
    assert_eq!(reg.site(0).unwrap_err(), Status::NotFound);
    assert_eq!(
        Registry::new().unwrap().site(sub.id()).unwrap_err(),
        Status::NotFound
    );
    let site = reg.site(sub.id()).unwrap().raw();
    let mut bad_tag = Value::f64(1.0);
    bad_tag.tag = 99;
    let mut bad_bool = Value::bool(true);
    // SAFETY: the payload's first byte is the BOOL byte.
    unsafe { *(&mut bad_bool.r#as as *mut _ as *mut u8) = 2 };
    let many = vec![Value::none(); CBREG_MAX_ARGS + 1];
    // SAFETY: `site` was resolved by this copy; each `args` points to its count of values (the over-long and NULL ones are rejected before any read); `ret` points to a local.
    unsafe {
        assert_eq!(
            cbreg_site_invoke(&site, &bad_tag, 1, &mut ret),
            Status::InvalidArgument
        );
        assert_eq!(
            cbreg_site_invoke(&site, &bad_bool, 1, &mut ret),
            Status::InvalidArgument
        );
        assert_eq!(
            cbreg_site_invoke(&site, many.as_ptr(), many.len(), &mut ret),
            Status::InvalidArgument
        );
        assert_eq!(
            cbreg_site_invoke(&site, std::ptr::null(), 1, &mut ret),
            Status::InvalidArgument
        );
        let pair = [Value::i64(1), bad_tag];
        assert_eq!(
            cbreg_site_invoke(&site, pair.as_ptr(), 2, &mut ret),
            Status::InvalidArgument
        );
    }
    assert_eq!(runs.load(SeqCst), 0, "no bad call reached the callback");
    assert_eq!(ret.tag, Tag::None as u32);
}

#[test]
fn a_one_shot_site_runs_once_across_racing_threads() {
    let reg = Arc::new(Registry::new().unwrap());
    let (runs, f) = counter();
    let id = reg.register_once(f).unwrap().detach();
    let site = reg.site(id).unwrap();
    let start = Arc::new(Barrier::new(8));
    let statuses: Vec<Status> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let start = start.clone();
                s.spawn(move || {
                    start.wait();
                    site.call(&[])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(statuses.iter().filter(|s| **s == Status::Ok).count(), 1);
    assert!(statuses
        .iter()
        .all(|s| matches!(s, Status::Ok | Status::NotFound)));
    assert_eq!(site.call(&[]), Status::NotFound);
}

#[test]
fn site_invokes_racing_unregister_release_once_after_the_last_call() {
    for _ in 0..50 {
        let reg = Registry::new().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let released_at = Arc::new(AtomicUsize::new(usize::MAX));
        let guard = ReleaseProbe {
            calls: calls.clone(),
            released_at: released_at.clone(),
        };
        let c = calls.clone();
        let sub = reg
            .register(move |_: &[Arg], _: &mut Value| {
                let _keep = &guard;
                c.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        let site = reg.site(sub.id()).unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(move || while site.call(&[]) == Status::Ok {});
            }
            while calls.load(SeqCst) < 100 {
                std::hint::spin_loop();
            }
            assert_eq!(reg.unregister_wait(sub.detach()), Status::Ok);
            let at = released_at.load(SeqCst);
            assert_ne!(at, usize::MAX, "released before unregister_wait returned");
            assert_eq!(calls.load(SeqCst), at, "no call after the release");
        });
    }
}

/// Records the call count when the closure holding it is dropped (its
/// release).
struct ReleaseProbe {
    calls: Arc<AtomicUsize>,
    released_at: Arc<AtomicUsize>,
}

impl Drop for ReleaseProbe {
    fn drop(&mut self) {
        self.released_at.store(self.calls.load(SeqCst), SeqCst);
    }
}

#[test]
fn a_site_nested_past_the_hazard_cells_still_holds() {
    let reg = Arc::new(Registry::new().unwrap());
    let depth = Arc::new(AtomicUsize::new(0));
    let (r, d) = (reg.clone(), depth.clone());
    let site_cell: Arc<std::sync::OnceLock<cbreg::Site>> = Arc::new(std::sync::OnceLock::new());
    let sc = site_cell.clone();
    let sub = reg
        .register(move |_: &[Arg], _: &mut Value| {
            if d.fetch_add(1, SeqCst) < 20 {
                assert_eq!(sc.get().unwrap().call(&[]), Status::Ok);
            }
            let _ = &r;
            Ok(())
        })
        .unwrap();
    site_cell.set(reg.site(sub.id()).unwrap()).unwrap();
    assert_eq!(site_cell.get().unwrap().call(&[]), Status::Ok);
    assert_eq!(depth.load(SeqCst), 21);
    drop(sub);
}
