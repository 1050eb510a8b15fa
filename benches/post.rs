//! `cbreg_post` beside the queues a Rust or C++ codebase would use to hand
//! an event to another thread; `benches/invoke.rs` has the invoke rows and
//! shares the harness (`benches/callgrind_rows.py`, `benches/report.py`).
//!
//!   post rows [CALLS [GROUP]]   run every row once (CALLS pushes) after
//!                               printing what each row is: the mode
//!                               callgrind counts
//!   post ns [CALLS]             time every row (best of several rounds),
//!                               then the same rows on two senders at once,
//!                               then one sender to the native dispatcher
//!                               end to end (its rings configured to 64 Ki
//!                               events); print JSON rows and the ratios
//!                               to stderr
//!
//! Every row pushes one f64 (cbreg also carries the registry, the entry id
//! and the argument's tag) in chunks of `CHUNK`, its consumer emptying the
//! queue between chunks, outside the row's function: callgrind counts the
//! pushes alone, the timings time them alone, and the consumer is awake
//! (cbreg's pump is drained by one call per chunk, which never arms the
//! wake: no post pays one).

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use cbreg::ffi::RegistryHandle;
use cbreg::{Arg, PostConfig, Pump, Registry, Status, Value};

const DEFAULT_CALLS: u64 = 1_000_000;
const ROUNDS: usize = 7;
/// Pushes per chunk; every queue holds two chunks (cbreg's ring then
/// takes 128 KiB, a cache's worth).
const CHUNK: u64 = 1024;
const CAPACITY: usize = 2048;
/// Events per ring of the native dispatcher in the end-to-end rows.
const DISPATCHER_RING_EVENTS: u32 = 1 << 16;

unsafe extern "C-unwind" fn count_callback(
    ctx: *mut c_void,
    _args: *const Value,
    _nargs: usize,
    _ret: *mut Value,
) -> u32 {
    // SAFETY: ctx is an AtomicU64 that outlives the registry.
    unsafe { &*(ctx as *const AtomicU64) }.fetch_add(1, Ordering::Relaxed);
    0
}

struct Fixture {
    x: f64,
    reg: Registry,
    id: u64,
    pump: Pump,
    array_queue: crossbeam_queue::ArrayQueue<f64>,
    rtrb: Mutex<(rtrb::Producer<f64>, rtrb::Consumer<f64>)>,
    mutex_deque: Mutex<VecDeque<f64>>,
}

impl Fixture {
    fn new() -> Fixture {
        let reg = Registry::new().expect("registry");
        let calls: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        // SAFETY: the callback only counts in the leaked counter.
        let id = unsafe {
            reg.register_raw(
                Some(count_callback),
                calls as *const AtomicU64 as *mut c_void,
                None,
                false,
            )
        }
        .unwrap();
        let pump = Pump::with_config(PostConfig {
            ring_events: CAPACITY as u32,
            ring_bytes: 0,
            period_us: 0,
        })
        .unwrap();
        reg.set_target(id, pump.target()).unwrap();
        let fx = Fixture {
            x: 440.0,
            reg,
            id,
            pump,
            array_queue: crossbeam_queue::ArrayQueue::new(CAPACITY),
            rtrb: Mutex::new(rtrb::RingBuffer::new(CAPACITY)),
            mutex_deque: Mutex::new(VecDeque::with_capacity(CAPACITY)),
        };
        // This thread's ring is claimed here, not in a row.
        fx.reg.post(fx.id, &[Arg::f64(fx.x)]).unwrap();
        fx.pump.drain(usize::MAX);
        fx
    }

    fn handle(&self) -> RegistryHandle {
        RegistryHandle {
            handle: self.reg.handle(),
        }
    }
}

// ---- rows: `n` pushes each, the queue empty on entry ----

#[inline(never)]
fn run_cbreg_post_c_abi(fx: &Fixture, n: u64) {
    let (h, id, arg) = (fx.handle(), fx.id, Value::f64(fx.x));
    for _ in 0..n {
        // SAFETY: one scalar value.
        let s = unsafe { cbreg::post::abi::cbreg_post(h, id, &arg, 1, 0) };
        debug_assert_eq!(s, Status::Ok);
    }
}

#[inline(never)]
fn run_cbreg_post_rust_api(fx: &Fixture, n: u64) {
    let args = [Arg::f64(fx.x)];
    for _ in 0..n {
        let _ = fx.reg.post(fx.id, &args);
    }
}

#[inline(never)]
fn run_crossbeam_array_queue_push(fx: &Fixture, n: u64) {
    for _ in 0..n {
        let _ = fx.array_queue.push(fx.x);
    }
}

#[inline(never)]
fn run_rtrb_push(producer: &mut rtrb::Producer<f64>, x: f64, n: u64) {
    for _ in 0..n {
        let _ = producer.push(x);
    }
}

#[inline(never)]
fn run_std_mutex_deque_push(fx: &Fixture, n: u64) {
    for _ in 0..n {
        fx.mutex_deque.lock().unwrap().push_back(fx.x);
    }
}

// ---- the row table ----

#[derive(Clone, Copy)]
enum Peer {
    CbregCAbi,
    CbregRust,
    ArrayQueue,
    Rtrb,
    MutexDeque,
}

struct Row {
    name: &'static str,
    peer: Peer,
}

const ROWS: &[Row] = &[
    Row {
        name: "cbreg_post_c_abi",
        peer: Peer::CbregCAbi,
    },
    Row {
        name: "cbreg_post_rust_api",
        peer: Peer::CbregRust,
    },
    Row {
        name: "crossbeam_array_queue_push",
        peer: Peer::ArrayQueue,
    },
    Row {
        name: "rtrb_push",
        peer: Peer::Rtrb,
    },
    Row {
        name: "std_mutex_deque_push",
        peer: Peer::MutexDeque,
    },
];

/// One chunk of `n` pushes of `peer`, then its consumer empties the queue
/// (outside the timing); returns the chunk's seconds.
fn chunk(fx: &Fixture, peer: Peer, n: u64) -> f64 {
    let seconds;
    match peer {
        Peer::CbregCAbi | Peer::CbregRust => {
            let t0 = Instant::now();
            if matches!(peer, Peer::CbregCAbi) {
                run_cbreg_post_c_abi(fx, n);
            } else {
                run_cbreg_post_rust_api(fx, n);
            }
            seconds = t0.elapsed().as_secs_f64();
            // One drain takes all: the pump stays awake (a drain that finds
            // nothing would arm the wake, with a heavy barrier).
            fx.pump.drain(usize::MAX);
        }
        Peer::ArrayQueue => {
            let t0 = Instant::now();
            run_crossbeam_array_queue_push(fx, n);
            seconds = t0.elapsed().as_secs_f64();
            while fx.array_queue.pop().is_some() {}
        }
        Peer::Rtrb => {
            // One sender per ring: the lock only hands this thread the ring.
            let mut ring = fx.rtrb.lock().unwrap();
            let (producer, consumer) = &mut *ring;
            let t0 = Instant::now();
            run_rtrb_push(producer, fx.x, n);
            seconds = t0.elapsed().as_secs_f64();
            while consumer.pop().is_ok() {}
        }
        Peer::MutexDeque => {
            let t0 = Instant::now();
            run_std_mutex_deque_push(fx, n);
            seconds = t0.elapsed().as_secs_f64();
            fx.mutex_deque.lock().unwrap().clear();
        }
    }
    seconds
}

/// `calls` pushes of `peer` in chunks; the seconds `calls` pushes take at
/// the median chunk's rate. The median, not the sum: on a shared machine a
/// thread is sometimes descheduled inside a chunk, for milliseconds, and
/// that would be timed as pushing. With `together`, every chunk starts when
/// the other sender's does, so the two senders' chunks overlap.
fn pushes(fx: &Fixture, peer: Peer, calls: u64, together: Option<&SpinBarrier>) -> f64 {
    let mut left = calls;
    let mut per_push = Vec::new();
    while left > 0 {
        let n = left.min(CHUNK);
        if let Some(b) = together {
            b.wait();
        }
        per_push.push(chunk(fx, peer, n) / n as f64);
        left -= n;
    }
    per_push.sort_by(f64::total_cmp);
    per_push[per_push.len() / 2] * calls as f64
}

/// Two threads meet here before each chunk (spinning, then yielding).
struct SpinBarrier {
    arrived: AtomicU64,
    round: AtomicU64,
}

impl SpinBarrier {
    fn new() -> SpinBarrier {
        SpinBarrier {
            arrived: AtomicU64::new(0),
            round: AtomicU64::new(0),
        }
    }

    fn wait(&self) {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.store(round + 1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.round.load(Ordering::Acquire) == round {
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn run_rows(fx: &Fixture, calls: u64, group: Option<&str>) {
    if group.is_some_and(|g| g != "post") {
        return;
    }
    for row in ROWS {
        println!("row run_{} post {} {calls}", row.name, row.name);
    }
    for row in ROWS {
        pushes(fx, row.peer, calls, None);
    }
}

fn best(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// Two senders at once: ns per post. crossbeam's queue and the mutex
/// queue are shared, as their designs mean them to be; rtrb has one ring
/// per sender; cbreg has one ring per sender to one target, shared
/// or a target each: each sender empties its queue itself between
/// chunks, and a drain of a shared target also takes the other sender's
/// events, from the other core.
fn two_senders(peer: Peer, own_queue: bool, calls: u64) -> f64 {
    let shared = Arc::new(Fixture::new());
    let start = Arc::new(Barrier::new(2));
    let together = Arc::new(SpinBarrier::new());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (shared, start, together) = (shared.clone(), start.clone(), together.clone());
            std::thread::spawn(move || {
                let own = own_queue.then(Fixture::new);
                let fx = own.as_ref().unwrap_or(&shared);
                if matches!(peer, Peer::CbregCAbi | Peer::CbregRust) {
                    cbreg::Target::reserve(fx.pump.target()).unwrap();
                }
                pushes(fx, peer, CHUNK, None); // warm up
                start.wait();
                pushes(fx, peer, calls, Some(&together))
            })
        })
        .collect();
    let slowest = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(0.0, f64::max);
    slowest * 1e9 / calls as f64
}

/// One sender to an entry on the native dispatcher, end to end: from the
/// first post to the last event's delivery; events per second.
fn dispatcher_end_to_end(calls: u64) -> f64 {
    let reg = Registry::global();
    let delivered: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    // SAFETY: the callback only counts in the leaked counter.
    let id = unsafe {
        reg.register_raw(
            Some(count_callback),
            delivered as *const AtomicU64 as *mut c_void,
            None,
            false,
        )
    }
    .unwrap();
    cbreg::Target::DISPATCHER.reserve().unwrap();
    let (h, arg) = (
        RegistryHandle {
            handle: reg.handle(),
        },
        Value::f64(440.0),
    );
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < calls {
        // SAFETY: one scalar value.
        match unsafe { cbreg::post::abi::cbreg_post(h, id, &arg, 1, 0) } {
            Status::Ok => sent += 1,
            Status::Full => std::thread::yield_now(),
            e => panic!("{e:?}"),
        }
    }
    while delivered.load(Ordering::Acquire) < calls {
        std::hint::spin_loop();
    }
    let seconds = t0.elapsed().as_secs_f64();
    let _ = reg.unregister_wait(id);
    calls as f64 / seconds
}

fn json(row: &str, metric: &str, value: f64, threads: usize) -> String {
    let extra = if threads > 1 {
        format!(", \"threads\": {threads}")
    } else {
        String::new()
    };
    format!("  {{\"group\": \"post\", \"row\": \"{row}\", \"metric\": \"{metric}\", \"value\": {value:.6e}{extra}}}")
}

fn time_rows(fx: &Fixture, calls: u64) {
    let mut out = Vec::new();
    let mut one = Vec::new();
    for row in ROWS {
        let ns = best(ROUNDS, || pushes(fx, row.peer, calls, None)) * 1e9 / calls as f64;
        one.push(ns);
        out.push(json(row.name, "ns", ns, 1));
    }
    // (row, peer, a queue per sender)
    let pairs: [(&str, Peer, bool); 5] = [
        ("cbreg_post_c_abi", Peer::CbregCAbi, false),
        ("cbreg_post_c_abi_target_each", Peer::CbregCAbi, true),
        ("crossbeam_array_queue_push", Peer::ArrayQueue, false),
        ("rtrb_push_ring_each", Peer::Rtrb, true),
        ("std_mutex_deque_push", Peer::MutexDeque, false),
    ];
    let mut two = Vec::new();
    for (name, peer, own) in pairs {
        let ns = best(3, || two_senders(peer, own, calls));
        two.push(ns);
        out.push(json(name, "ns", ns, 2));
    }
    let rate = (0..3)
        .map(|_| dispatcher_end_to_end(calls * 4))
        .fold(0.0, f64::max);
    out.push(json(
        "cbreg_post_dispatcher_end_to_end",
        "events_per_s",
        rate,
        1,
    ));
    println!("[\n{}\n]", out.join(",\n"));
    eprintln!("ns per post, one sender (ratio to cbreg_post_c_abi):");
    for (i, row) in ROWS.iter().enumerate() {
        eprintln!("  {:30} {:7.2}  x{:.2}", row.name, one[i], one[i] / one[0]);
    }
    eprintln!("ns per post, two senders at once (ratio to the same queue with one sender):");
    let single = |peer: Peer| {
        ROWS.iter()
            .position(|r| std::mem::discriminant(&r.peer) == std::mem::discriminant(&peer))
            .map_or(f64::NAN, |i| one[i])
    };
    for (i, (name, peer, _)) in pairs.iter().enumerate() {
        eprintln!(
            "  {:30} {:7.2}  x{:.2}",
            name,
            two[i],
            two[i] / single(*peer)
        );
    }
    eprintln!(
        "one sender to the native dispatcher, end to end: {:.1} M events/s",
        rate / 1e6
    );
}

fn main() {
    // `cargo bench` adds --bench; the modes are positional.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("ns");
    let calls = args
        .get(1)
        .map_or(DEFAULT_CALLS, |c| c.parse().expect("CALLS"));
    // The dispatcher's rings hold 64 Ki events each: on a loaded machine
    // the sender and the dispatcher often run by turns, a scheduler's time
    // slice each, and a ring that fills within a slice would time the
    // scheduler rather than the queue.
    cbreg::Target::configure_dispatcher(PostConfig {
        ring_events: DISPATCHER_RING_EVENTS,
        ring_bytes: 0,
        period_us: 0,
    })
    .unwrap();
    let fx = Fixture::new();
    match mode {
        "rows" => run_rows(&fx, calls, args.get(2).map(String::as_str)),
        "ns" => time_rows(&fx, calls),
        "dispatcher" => {
            let rate = dispatcher_end_to_end(calls);
            eprintln!(
                "{:.2} M events/s; {:?}",
                rate / 1e6,
                cbreg::Target::DISPATCHER.stats()
            );
        }
        _ => {
            eprintln!("usage: post rows [CALLS [GROUP]] | ns [CALLS] | dispatcher [CALLS]");
            std::process::exit(2);
        }
    }
}
