//! `make bench`: cbreg invoke against its baselines, measured in one run.
//!
//! Every figure is the best of several rounds (these machines are shared and
//! noisy) and every claim is a ratio against a baseline timed in the same
//! process: a direct call through a function pointer, and the pattern users
//! write today (`Mutex<HashMap<u64, Box<dyn Fn>>>`).

use std::collections::HashMap;
use std::ffi::c_void;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use cbreg::ffi::{
    cbreg_clear, cbreg_invoke, cbreg_register, cbreg_registry_new, cbreg_unregister, RegistryHandle,
};
use cbreg::{Arg, Registry, Status, Value};

const ITERS: u64 = 5_000_000;
const ROUNDS: usize = 7;

/// A callback context on its own pair of cache lines (no false sharing).
#[repr(align(128))]
struct Padded {
    value: u64,
}

type RawCall = unsafe extern "C-unwind" fn(*mut c_void, *const Value, usize, *mut Value) -> u32;

unsafe extern "C-unwind" fn native_callback(
    ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    _ret: *mut Value,
) -> u32 {
    black_box((*(ctx as *const Padded)).value);
    black_box((args, nargs));
    0
}

/// Best per-operation time in ns over `ROUNDS` rounds of `threads` threads,
/// each running `ITERS` operations of `op(thread index)`.
fn best_ns<F>(threads: usize, make_op: F) -> f64
where
    F: Fn(usize) -> Box<dyn FnMut() + Send> + Sync,
{
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Arc::new(Barrier::new(threads));
        let elapsed: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let mut op = make_op(t);
                    let start = start.clone();
                    s.spawn(move || {
                        for _ in 0..10_000 {
                            op(); // warm caches and claim the thread's hazard record
                        }
                        start.wait();
                        let t0 = Instant::now();
                        for _ in 0..ITERS {
                            op();
                        }
                        t0.elapsed().as_nanos() as f64 / ITERS as f64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let worst_thread = elapsed.into_iter().fold(0.0, f64::max);
        best = best.min(worst_thread);
    }
    best
}

fn new_registry() -> RegistryHandle {
    let mut reg = RegistryHandle { handle: 0 };
    assert_eq!(unsafe { cbreg_registry_new(&mut reg) }, Status::Ok);
    reg
}

fn register(reg: RegistryHandle, ctx: &'static Padded) -> u64 {
    let mut id = 0;
    let ctx = ctx as *const Padded as *mut c_void;
    assert_eq!(
        unsafe { cbreg_register(reg, Some(native_callback), ctx, None, 0, &mut id) },
        Status::Ok
    );
    id
}

fn leak_ctx() -> &'static Padded {
    Box::leak(Box::new(Padded { value: 7 }))
}

fn main() {
    let arg = Value::f64(440.0);

    // Baseline: a direct call through a function pointer the compiler cannot
    // see through; on two threads it shows how the machine itself scales.
    let direct_op = |_| -> Box<dyn FnMut() + Send> {
        let ctx = leak_ctx();
        Box::new(move || unsafe {
            let f: RawCall = black_box(native_callback as RawCall);
            f(
                ctx as *const Padded as *mut c_void,
                &arg,
                1,
                std::ptr::null_mut(),
            );
        })
    };
    let direct = best_ns(1, direct_op);
    let direct_two = best_ns(2, direct_op);

    let reg = new_registry();
    let shared_id = register(reg, leak_ctx());
    let ids: Vec<u64> = (0..2).map(|_| register(reg, leak_ctx())).collect();

    let invoke = |id: u64| -> Box<dyn FnMut() + Send> {
        Box::new(move || {
            black_box(unsafe { cbreg_invoke(reg, black_box(id), &arg, 1, std::ptr::null_mut()) });
        })
    };
    let one = best_ns(1, |_| invoke(shared_id));
    let two_same = best_ns(2, |_| invoke(shared_id));
    let two_distinct = best_ns(2, |t| invoke(ids[t]));

    // The same entry through the safe Rust API: no handle lookup, typed args.
    let rust_reg = Registry::global();
    let rust_ctx = leak_ctx() as *const Padded as *mut c_void;
    // SAFETY: the callback only reads its leaked, never-freed context.
    let rust_id =
        unsafe { rust_reg.register_raw(Some(native_callback), rust_ctx, None, false) }.unwrap();
    let rust_arg = Arg::f64(440.0);
    let rust_one = best_ns(1, |_| {
        let reg = Registry::global();
        Box::new(move || {
            black_box(reg.call(black_box(rust_id), std::slice::from_ref(&rust_arg)));
        })
    });

    // What users write today: a mutex around a map of boxed closures.
    type Map = Mutex<HashMap<u64, Box<dyn Fn(&[Value]) + Send>>>;
    let map: Arc<Map> = Arc::new(Mutex::new(HashMap::new()));
    for id in 0..64u64 {
        let ctx = leak_ctx();
        map.lock().unwrap().insert(
            id,
            Box::new(move |a: &[Value]| {
                black_box(ctx.value);
                black_box(a);
            }),
        );
    }
    let locked = |id: u64, map: Arc<Map>| -> Box<dyn FnMut() + Send> {
        Box::new(move || {
            let guard = map.lock().unwrap();
            if let Some(f) = guard.get(&black_box(id)) {
                f(std::slice::from_ref(&arg));
            }
        })
    };
    let mutex_one = best_ns(1, |_| locked(3, map.clone()));
    let mutex_two = best_ns(2, |_| locked(3, map.clone()));

    println!("invoke (per call, best of {ROUNDS} rounds of {ITERS})");
    println!("  direct call through a fn pointer       {direct:7.2} ns");
    println!(
        "  direct call, 2 threads                 {direct_two:7.2} ns   {:5.2}x 1 thread (the machine's own scaling)",
        direct_two / direct
    );
    println!(
        "  cbreg_invoke, 1 thread                 {one:7.2} ns   {:5.2}x direct   (target <= 1.5x)",
        one / direct
    );
    println!(
        "  Registry::call (Rust API), 1 thread    {rust_one:7.2} ns   {:5.2}x direct",
        rust_one / direct
    );
    println!("  cbreg_invoke, 2 threads, same id       {two_same:7.2} ns   {:5.2}x 1 thread (target <= 1.5x)", two_same / one);
    println!(
        "  cbreg_invoke, 2 threads, distinct ids  {two_distinct:7.2} ns   {:5.2}x 1 thread",
        two_distinct / one
    );
    println!("  Mutex<HashMap<Box<dyn Fn>>>, 1 thread  {mutex_one:7.2} ns   cbreg {:5.1}x faster (target >= 5x)", mutex_one / one);
    println!("  Mutex<HashMap<Box<dyn Fn>>>, 2 threads {mutex_two:7.2} ns   cbreg {:5.1}x faster (target >= 30x)", mutex_two / two_same);

    // Registration throughput and clear.
    let churn = new_registry();
    let ctx = leak_ctx();
    let pairs = 1_000_000u64;
    let mut best_pairs = 0.0f64;
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        for _ in 0..pairs {
            let id = register(churn, ctx);
            assert_eq!(cbreg_unregister(churn, id), Status::Ok);
        }
        best_pairs = best_pairs.max(pairs as f64 / t0.elapsed().as_secs_f64());
    }
    println!("registration");
    println!(
        "  register + unregister, 1 thread        {:7.2} M pairs/s (target >= 5)",
        best_pairs / 1e6
    );

    let big = new_registry();
    let n = 1_000_000;
    for _ in 0..n {
        register(big, ctx);
    }
    let t0 = Instant::now();
    let mut cleared = 0usize;
    assert_eq!(unsafe { cbreg_clear(big, &mut cleared) }, Status::Ok);
    let clear_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(cleared, n);
    println!("  clear of {n} entries             {clear_ms:7.1} ms (target < 100)");
    println!(
        "  bytes per entry (slot size)            {:7} (target <= 64)",
        cbreg::ENTRY_BYTES
    );
}
