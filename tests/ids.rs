//! Ids name their registry. In a binary of its own, so the two registries
//! below are the first of the process: their first entries share a slot
//! index, and only the registry tag in the id tells them apart.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use cbreg::{Arg, Registry, Status, Value};

#[test]
fn an_id_of_one_registry_is_not_found_in_another() {
    let a = Registry::new().unwrap();
    let b = Registry::new().unwrap();
    let ran_b = Arc::new(AtomicUsize::new(0));
    let r = ran_b.clone();
    let in_a = a.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
    let in_b = b
        .register(move |_: &[Arg], _: &mut Value| {
            r.fetch_add(1, SeqCst);
            Ok(())
        })
        .unwrap();
    // Both are the first entry of a fresh registry: the same slot index.
    assert_eq!(in_a.id() & 0xff_ffff, in_b.id() & 0xff_ffff);
    assert_ne!(in_a.id(), in_b.id());
    assert_eq!(b.call(in_a.id(), &[]), Status::NotFound);
    assert_eq!(b.unregister(in_a.id()), Status::NotFound);
    assert_eq!(b.unregister_wait(in_a.id()), Status::NotFound);
    assert_eq!(Registry::global().call(in_a.id(), &[]), Status::NotFound);
    assert_eq!(ran_b.load(SeqCst), 0);
    assert_eq!(a.call(in_a.id(), &[]), Status::Ok);
}
