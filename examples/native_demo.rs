//! A native "audio engine" thread fires callbacks while the main thread
//! unregisters, clears and closes the registry. Run with `make native-demo`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use cbreg::{set_thread_realtime, Arg, Registry, Status, Value};

fn main() {
    let reg = Arc::new(Registry::new().expect("registry"));
    let heard = Arc::new(AtomicU64::new(0));
    let h = heard.clone();
    let note = reg
        .register(move |args: &[Arg], _: &mut Value| {
            let tick = args[0].as_i64().unwrap_or(-1);
            if h.fetch_add(1, SeqCst) % 250 == 0 {
                let name = args[2].as_str().unwrap_or("?");
                println!(
                    "  callback: tick {tick:5}  {:.1} Hz  {name}",
                    args[1].as_f64().unwrap_or(0.0)
                );
            }
            Ok(())
        })
        .expect("register");
    let id = note.id();

    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (reg.clone(), stop.clone());
    let engine = std::thread::spawn(move || {
        set_thread_realtime(true); // no release ever runs on this thread
        let (mut ok, mut gone) = (0u64, 0u64);
        let mut tick = 0i64;
        while !s.load(SeqCst) {
            let args = [Arg::i64(tick), Arg::f64(440.0), Arg::str("A4")];
            match r.call(id, &args) {
                Status::Ok => ok += 1,
                Status::NotFound => gone += 1,
                other => panic!("unexpected {other}"),
            }
            tick += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        (ok, gone)
    });

    std::thread::sleep(Duration::from_millis(300));
    println!("main: unregister the note callback while the engine fires it");
    assert_eq!(note.unregister(), Status::Ok);
    let once = reg
        .register_once(|_: &[Arg], _: &mut Value| Ok(()))
        .expect("one-shot")
        .detach();
    println!("main: one-shot {once:#x} fired: {}", reg.call(once, &[]));
    println!("main: one-shot fired again: {}", reg.call(once, &[]));
    for _ in 0..3 {
        reg.register(|_: &[Arg], _: &mut Value| Ok(()))
            .expect("register")
            .detach();
    }
    println!("main: clear -> {} entries", reg.clear());
    println!(
        "main: close -> {} entries; register now: {:?}",
        reg.close(),
        reg.register(|_: &[Arg], _: &mut Value| Ok(())).err()
    );
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, SeqCst);
    let (ok, gone) = engine.join().expect("engine");
    reg.collect();
    let st = reg.stats();
    println!("engine: {ok} invocations ran, {gone} found the entry gone");
    println!(
        "stats: live {} registered {} invoked {} released {} deferred {} pending {} leaked {}",
        st.live, st.registered, st.invoked, st.released, st.deferred, st.pending, st.leaked
    );
    assert_eq!(st.live, 0);
    assert_eq!(
        st.released, st.registered,
        "every entry released exactly once"
    );
}
