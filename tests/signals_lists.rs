//! Every subscriber list a signal makes (one per change) is released
//! exactly once. A test binary of its own: the counts it reads are the
//! process's.

use std::time::Duration;

use cbreg::{Arg, Registry, Signal, Status, Value};

fn ok(_: &[Arg], _: &mut Value) -> Result<(), Status> {
    Ok(())
}

#[test]
fn every_subscriber_list_is_released_exactly_once() {
    let reg = Registry::new().unwrap();
    let changes = {
        let sig = Signal::new(&reg).unwrap();
        let conns: Vec<_> = (0..50).map(|_| sig.subscribe(ok).unwrap()).collect();
        let emitter = std::thread::spawn({
            let h = cbreg::SignalHandle {
                handle: sig.handle(),
            };
            move || {
                for _ in 0..10_000 {
                    // SAFETY: no arguments; NULL report.
                    let _ = unsafe {
                        cbreg::ffi::cbreg_signal_emit(h, std::ptr::null(), 0, std::ptr::null_mut())
                    };
                }
            }
        });
        for c in conns {
            assert_eq!(c.disconnect(), Status::Ok);
        }
        emitter.join().unwrap();
        1 + 50 + 50 // the empty list, one per subscribe, one per unsubscribe
    };
    for _ in 0..2000 {
        reg.collect();
        let s = cbreg::testing::signal_snapshots();
        assert_eq!(s.registered, changes, "{s:?}");
        assert!(s.released <= s.registered, "{s:?}");
        if s.released == s.registered && s.live == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "lists not released: {:?}",
        cbreg::testing::signal_snapshots()
    );
}
