//! The hot paths of cbreg through its Rust API, beside the peers a Rust
//! codebase would use instead; `benches/hot_paths.cpp` has C and C++.
//!
//!   invoke rows [CALLS [GROUP]]   run every row once (CALLS operations) after
//!                                 printing what each row is: the mode
//!                                 callgrind counts (benches/callgrind_rows.py)
//!   invoke ns [CALLS [THREADS]]   time every row, best of several rounds, and
//!                                 print JSON rows (benches/report.py); the
//!                                 invoke rows also on THREADS threads at
//!                                 once (at most the cores)
//!
//! `make bench` runs both. A row is a `run_<row>` function that is never
//! inlined, so callgrind's inclusive count of it is the row's whole cost,
//! loop included, and one line in `ROWS`. Every invoke row calls a callback
//! of a few instructions (a volatile read) with one f64 argument, in a
//! structure holding the same number of other entries.

use std::collections::HashMap;
use std::ffi::c_void;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use crossbeam_epoch::{self as epoch, Atomic, Owned, Shared};

use cbreg::{Arg, Registry, Value};

const DEFAULT_CALLS: u64 = 1_000_000;
const ROUNDS: usize = 9;
const THREAD_ROUNDS: usize = 5;
/// Other entries in every structure, so that no lookup hits a one-entry table.
const NEIGHBOURS: usize = 63;

static CALLBACK_FLAG: u32 = 1;

/// The peers' callback type: what a Rust codebase stores.
type Callback = Box<dyn Fn(&[f64]) + Send + Sync>;

fn tiny_closure() -> Callback {
    let flag = &CALLBACK_FLAG;
    // SAFETY: a read of a live static.
    Box::new(move |_args: &[f64]| unsafe {
        std::ptr::read_volatile(flag);
    })
}

/// cbreg's callback: the same volatile read.
unsafe extern "C-unwind" fn tiny_callback(
    ctx: *mut c_void,
    _args: *const Value,
    _nargs: usize,
    _ret: *mut Value,
) -> u32 {
    // SAFETY: ctx is CALLBACK_FLAG's address.
    unsafe { std::ptr::read_volatile(ctx as *const u32) };
    0
}

/// Ids are sequential: one multiply spreads them over the table.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// What a Rust codebase writes without cbreg: a mutex around a map of boxed
/// closures, each called under the lock.
#[derive(Default)]
struct MutexMap {
    table: Mutex<MapTable>,
}

#[derive(Default)]
struct MapTable {
    next_id: u64,
    entries: HashMap<u64, Callback, BuildHasherDefault<IdHasher>>,
}

impl MutexMap {
    fn add(&self, f: Callback) -> u64 {
        let mut table = self.table.lock().unwrap();
        table.next_id += 1;
        let id = table.next_id;
        table.entries.insert(id, f);
        id
    }

    fn remove(&self, id: u64) -> bool {
        self.table.lock().unwrap().entries.remove(&id).is_some()
    }

    #[inline]
    fn invoke(&self, id: u64, args: &[f64]) -> bool {
        let table = self.table.lock().unwrap();
        match table.entries.get(&id) {
            Some(f) => {
                f(args);
                true
            }
            None => false,
        }
    }
}

/// A lock-free peer: a slab of epoch-reclaimed entries indexed by the low
/// half of the id (the high half a generation, so a stale id misses).
struct EpochSlab {
    slots: Box<[Atomic<SlabEntry>]>,
    free: Mutex<SlabFree>,
}

struct SlabEntry {
    id: u64,
    f: Callback,
}

struct SlabFree {
    indices: Vec<u32>,
    generations: Vec<u32>,
}

impl EpochSlab {
    fn with_capacity(n: u32) -> EpochSlab {
        EpochSlab {
            slots: (0..n).map(|_| Atomic::null()).collect(),
            free: Mutex::new(SlabFree {
                indices: (0..n).rev().collect(),
                generations: vec![0; n as usize],
            }),
        }
    }

    fn add(&self, f: Callback) -> u64 {
        let mut free = self.free.lock().unwrap();
        let index = free.indices.pop().expect("slab full");
        free.generations[index as usize] += 1;
        let id = u64::from(free.generations[index as usize]) << 32 | u64::from(index);
        self.slots[index as usize].store(Owned::new(SlabEntry { id, f }), Ordering::Release);
        id
    }

    fn remove(&self, id: u64) -> bool {
        let Some(slot) = self.slots.get(id as u32 as usize) else {
            return false;
        };
        let guard = epoch::pin();
        let entry = slot.load(Ordering::Acquire, &guard);
        // SAFETY: the guard keeps the entry alive while we look.
        match unsafe { entry.as_ref() } {
            Some(e) if e.id == id => {}
            _ => return false,
        }
        if slot
            .compare_exchange(
                entry,
                Shared::null(),
                Ordering::AcqRel,
                Ordering::Acquire,
                &guard,
            )
            .is_err()
        {
            return false;
        }
        // SAFETY: unlinked above; readers that still see it are pinned.
        unsafe { guard.defer_destroy(entry) };
        self.free.lock().unwrap().indices.push(id as u32);
        true
    }

    #[inline]
    fn invoke(&self, id: u64, args: &[f64]) -> bool {
        let Some(slot) = self.slots.get(id as u32 as usize) else {
            return false;
        };
        let guard = epoch::pin();
        let entry = slot.load(Ordering::Acquire, &guard);
        // SAFETY: the guard keeps the entry alive for the call.
        match unsafe { entry.as_ref() } {
            Some(e) if e.id == id => {
                (e.f)(args);
                true
            }
            _ => false,
        }
    }
}

impl Drop for EpochSlab {
    fn drop(&mut self) {
        // SAFETY: no other thread holds the slab any more.
        let guard = unsafe { epoch::unprotected() };
        for slot in self.slots.iter() {
            let entry = slot.swap(Shared::null(), Ordering::Relaxed, guard);
            if !entry.is_null() {
                // SAFETY: unlinked, and no reader is left.
                drop(unsafe { entry.into_owned() });
            }
        }
    }
}

struct Fixture {
    x: f64,
    map: MutexMap,
    map_id: u64,
    slab: EpochSlab,
    slab_id: u64,
    reg: Registry,
    reg_id: u64,
    churn_map: MutexMap,
    churn_slab: EpochSlab,
}

impl Fixture {
    fn new() -> Fixture {
        let reg = Registry::new().expect("registry");
        let ctx = &CALLBACK_FLAG as *const u32 as *mut c_void;
        // SAFETY: the callback only reads the static it is given.
        let register =
            || unsafe { reg.register_raw(Some(tiny_callback), ctx, None, false) }.unwrap();
        let map = MutexMap::default();
        let slab = EpochSlab::with_capacity(1024);
        let mut ids = (0, 0, 0);
        for i in 0..=2 * NEIGHBOURS {
            let entry = (
                map.add(tiny_closure()),
                slab.add(tiny_closure()),
                register(),
            );
            if i == NEIGHBOURS {
                ids = entry;
            }
        }
        let fx = Fixture {
            x: 440.0,
            map,
            map_id: ids.0,
            slab,
            slab_id: ids.1,
            reg,
            reg_id: ids.2,
            churn_map: MutexMap::default(),
            churn_slab: EpochSlab::with_capacity(1024),
        };
        // This thread's epoch and hazard records are claimed here, not in a row.
        assert!(fx.map.invoke(fx.map_id, &[fx.x]) && fx.slab.invoke(fx.slab_id, &[fx.x]));
        run_cbreg_rust_api(&fx, 1);
        fx
    }
}

// ---- invoke rows ----

#[inline(never)]
fn run_rust_mutex_hashmap(fx: &Fixture, n: u64) {
    let (map, id, args) = (&fx.map, fx.map_id, [fx.x]);
    for _ in 0..n {
        map.invoke(id, &args);
    }
}

#[inline(never)]
fn run_rust_epoch_slab(fx: &Fixture, n: u64) {
    let (slab, id, args) = (&fx.slab, fx.slab_id, [fx.x]);
    for _ in 0..n {
        slab.invoke(id, &args);
    }
}

#[inline(never)]
fn run_cbreg_rust_api(fx: &Fixture, n: u64) {
    let (reg, id, args) = (&fx.reg, fx.reg_id, [Arg::f64(fx.x)]);
    for _ in 0..n {
        reg.call(id, &args);
    }
}

#[inline(never)]
fn run_cbreg_rust_site(fx: &Fixture, n: u64) {
    let (site, args) = (fx.reg.site(fx.reg_id).unwrap(), [Arg::f64(fx.x)]);
    for _ in 0..n {
        site.call(&args);
    }
}

// ---- writer rows ----

#[inline(never)]
fn run_rust_mutex_hashmap_insert_remove(fx: &Fixture, n: u64) {
    for _ in 0..n {
        fx.churn_map.remove(fx.churn_map.add(tiny_closure()));
    }
}

#[inline(never)]
fn run_rust_epoch_slab_insert_remove(fx: &Fixture, n: u64) {
    for _ in 0..n {
        fx.churn_slab.remove(fx.churn_slab.add(tiny_closure()));
    }
}

// ---- the row table ----

#[derive(Clone, Copy, PartialEq)]
enum Timing {
    NsPerOp,
    PairsPerS,
}

struct Row {
    group: &'static str,
    /// The function is `run_<name>`.
    name: &'static str,
    run: fn(&Fixture, u64),
    timing: Timing,
}

const ROWS: &[Row] = &[
    Row {
        group: "invoke",
        name: "rust_mutex_hashmap",
        run: run_rust_mutex_hashmap,
        timing: Timing::NsPerOp,
    },
    Row {
        group: "invoke",
        name: "rust_epoch_slab",
        run: run_rust_epoch_slab,
        timing: Timing::NsPerOp,
    },
    Row {
        group: "invoke",
        name: "cbreg_rust_api",
        run: run_cbreg_rust_api,
        timing: Timing::NsPerOp,
    },
    Row {
        group: "invoke",
        name: "cbreg_rust_site",
        run: run_cbreg_rust_site,
        timing: Timing::NsPerOp,
    },
    Row {
        group: "writers",
        name: "rust_mutex_hashmap_insert_remove",
        run: run_rust_mutex_hashmap_insert_remove,
        timing: Timing::PairsPerS,
    },
    Row {
        group: "writers",
        name: "rust_epoch_slab_insert_remove",
        run: run_rust_epoch_slab_insert_remove,
        timing: Timing::PairsPerS,
    },
];

fn seconds(fx: &Fixture, row: &Row, ops: u64) -> f64 {
    let t0 = Instant::now();
    (row.run)(fx, ops);
    t0.elapsed().as_secs_f64()
}

/// Seconds for `ops` operations on each of `threads` threads started
/// together: the slowest thread's.
fn seconds_on_threads(fx: &Fixture, row: &Row, ops: u64, threads: usize) -> f64 {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (row.run)(fx, 1000); // warm up; claims the thread's records
                    start.wait();
                    seconds(fx, row, ops)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0.0, f64::max)
    })
}

fn best(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..rounds).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn run_rows(fx: &Fixture, calls: u64, group: Option<&str>) {
    let rows = ROWS.iter().filter(|r| group.map_or(true, |g| g == r.group));
    for row in rows.clone() {
        println!("row run_{} {} {} {calls}", row.name, row.group, row.name);
    }
    for row in rows {
        (row.run)(fx, calls);
    }
}

fn time_rows(fx: &Fixture, calls: u64, threads: usize) {
    let mut out = Vec::new();
    let json = |row: &Row, metric: &str, value: f64, threads: usize| {
        let extra = if threads > 1 {
            format!(", \"threads\": {threads}")
        } else {
            String::new()
        };
        format!(
            "  {{\"group\": \"{}\", \"row\": \"{}\", \"metric\": \"{metric}\", \"value\": {value:.6e}{extra}}}",
            row.group, row.name
        )
    };
    for row in ROWS {
        let s = best(ROUNDS, || seconds(fx, row, calls));
        out.push(match row.timing {
            Timing::NsPerOp => json(row, "ns", s * 1e9 / calls as f64, 1),
            Timing::PairsPerS => json(row, "pairs_per_s", calls as f64 / s, 1),
        });
        if row.timing == Timing::NsPerOp && threads > 1 {
            let s = best(THREAD_ROUNDS, || {
                seconds_on_threads(fx, row, calls, threads)
            });
            out.push(json(row, "ns", s * 1e9 / calls as f64, threads));
        }
    }
    println!("[\n{}\n]", out.join(",\n"));
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
    let fx = Fixture::new();
    match mode {
        "rows" => run_rows(&fx, calls, args.get(2).map(String::as_str)),
        "ns" => {
            // More threads than cores would time the scheduler, not the rows.
            let threads: usize = args.get(2).map_or(1, |t| t.parse().expect("THREADS"));
            time_rows(&fx, calls, threads.min(available_cores()));
        }
        _ => {
            eprintln!("usage: invoke rows [CALLS [GROUP]] | ns [CALLS [THREADS]]");
            std::process::exit(2);
        }
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
