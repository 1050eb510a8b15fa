//! Shared by the edge-case test binaries (`edges`, `edges_fork`).
//!
//! Every edge test runs in a process of its own: a test that hangs, or that
//! uses up a process-wide resource (the thread records, the registry table),
//! cannot disturb the next one. Inside, `within` turns a call that should
//! return into a failure with a message when it does not.

#![allow(dead_code)]

use std::ffi::c_void;
use std::io::Read;
use std::process::{Command, Stdio};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use cbreg::ffi::*;
use cbreg::{Stats, Status, Value};

/// Generous: only there to turn a hang into a failure, never to time work.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The whole test process is killed after this (a hang `within` missed).
const PROCESS_DEADLINE: Duration = Duration::from_secs(120);
const CHILD_ENV: &str = "CBREG_EDGE_CHILD";

/// Declares `#[test] fn name()` whose body runs in a fresh process.
#[macro_export]
macro_rules! edge {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            $crate::edge_support::isolated(stringify!($name), || $body)
        }
    };
}

/// Runs `body` in a child process (this test binary, this one test).
pub fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    let log_path =
        std::env::temp_dir().join(format!("cbreg-edge-{}-{name}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create log");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn test process");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > PROCESS_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut out));
    let _ = std::fs::remove_file(&log_path);
    match status {
        None => panic!(
            "{name}: HANG: the test process was killed after {} s\n{out}",
            PROCESS_DEADLINE.as_secs()
        ),
        Some(s) if s.success() && out.contains("1 passed") => {}
        Some(s) if s.success() => panic!("{name}: the test process ran no test\n{out}"),
        Some(s) => panic!("{name}: failed in its own process ({s})\n{out}"),
    }
}

/// Runs `f` on its own thread; fails with `what` if it has not returned
/// within `DEADLINE` (the thread is left behind; the process ends soon).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within_for(DEADLINE, what, f)
}

pub fn within_for<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("HANG: {what}: did not return within {} s", limit.as_secs())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Polls `cond` until it holds; fails with `what` after `DEADLINE`.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "HANG: {what}: not seen within {} s",
            DEADLINE.as_secs()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

pub fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

/// One entry's context: counts its calls and releases, checks that no
/// release runs while a call is inside, and runs the test's own hooks.
pub struct Probe {
    pub calls: AtomicUsize,
    pub inside: AtomicUsize,
    pub releases: AtomicUsize,
    pub released_while_inside: AtomicBool,
    pub release_thread: Mutex<Option<ThreadId>>,
    on_call: Box<dyn Fn() -> u32 + Send + Sync>,
    on_release: Box<dyn Fn() + Send + Sync>,
}

impl Probe {
    pub fn released(&self) -> usize {
        self.releases.load(SeqCst)
    }
    pub fn called(&self) -> usize {
        self.calls.load(SeqCst)
    }
    pub fn release_ran_on(&self) -> Option<ThreadId> {
        *self.release_thread.lock().unwrap()
    }
}

/// A probe that lives for the rest of the process (its memory is never
/// freed, so a late or double release is counted, not a crash).
pub fn probe(
    on_call: impl Fn() -> u32 + Send + Sync + 'static,
    on_release: impl Fn() + Send + Sync + 'static,
) -> &'static Probe {
    Box::leak(Box::new(Probe {
        calls: AtomicUsize::new(0),
        inside: AtomicUsize::new(0),
        releases: AtomicUsize::new(0),
        released_while_inside: AtomicBool::new(false),
        release_thread: Mutex::new(None),
        on_call: Box::new(on_call),
        on_release: Box::new(on_release),
    }))
}

pub fn plain_probe() -> &'static Probe {
    probe(|| 0, || {})
}

unsafe extern "C-unwind" fn probe_call(
    ctx: *mut c_void,
    _: *const Value,
    _: usize,
    _: *mut Value,
) -> u32 {
    // SAFETY: the ctx `try_register` gave: a `&'static Probe`.
    let p = unsafe { &*(ctx as *const Probe) };
    p.calls.fetch_add(1, SeqCst);
    p.inside.fetch_add(1, SeqCst);
    let code = (p.on_call)();
    p.inside.fetch_sub(1, SeqCst);
    code
}

unsafe extern "C-unwind" fn probe_release(ctx: *mut c_void) {
    // SAFETY: as in `probe_call`.
    let p = unsafe { &*(ctx as *const Probe) };
    if p.inside.load(SeqCst) != 0 {
        p.released_while_inside.store(true, SeqCst);
    }
    *p.release_thread.lock().unwrap() = Some(thread::current().id());
    (p.on_release)();
    p.releases.fetch_add(1, SeqCst);
}

pub const PERSISTENT: u32 = 0;
pub const ONCE: u32 = CBREG_ONCE;

pub fn try_register(reg: RegistryHandle, p: &'static Probe, flags: u32) -> Result<u64, Status> {
    let mut id = 0;
    let ctx = p as *const Probe as *mut c_void;
    // SAFETY: a valid out-pointer; the probe functions take this ctx from
    // any thread.
    match unsafe {
        cbreg_register(
            reg,
            Some(probe_call),
            ctx,
            Some(probe_release),
            flags,
            &mut id,
        )
    } {
        Status::Ok => Ok(id),
        e => Err(e),
    }
}

pub fn register(reg: RegistryHandle, p: &'static Probe, flags: u32) -> u64 {
    try_register(reg, p, flags).expect("register")
}

pub fn invoke(reg: RegistryHandle, id: u64) -> Status {
    // SAFETY: no arguments, no return value asked for.
    unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) }
}

pub fn new_registry() -> RegistryHandle {
    let mut h = RegistryHandle { handle: 0 };
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { cbreg_registry_new(&mut h) }, Status::Ok);
    h
}

pub fn stats(reg: RegistryHandle) -> Stats {
    let mut s = Stats::default();
    assert_eq!(
        // SAFETY: a valid out-pointer.
        unsafe { cbreg_stats_get(reg, &mut s) },
        Status::Ok,
        "stats of {reg:?}"
    );
    s
}

/// Copyable wrapper so handles and ids move into closures freely.
#[derive(Clone, Copy, Debug)]
pub struct Reg(pub RegistryHandle);
// SAFETY: a handle is a plain number.
unsafe impl Send for Reg {}
// SAFETY: as for `Send`.
unsafe impl Sync for Reg {}

/// A chain of `levels.len()` entries, outermost first: entry k lives in
/// `levels[k]` and its callback invokes entry k + 1; the innermost runs
/// `innermost`. Returns the ids, outermost first, and the probes.
pub fn nest(
    levels: &[RegistryHandle],
    innermost: impl Fn() -> u32 + Send + Sync + 'static,
) -> (Vec<u64>, Vec<&'static Probe>) {
    let mut ids = Vec::new();
    let mut probes = Vec::new();
    let last = *levels.last().expect("at least one level");
    let p = probe(innermost, || {});
    ids.push(register(last, p, PERSISTENT));
    probes.push(p);
    for &reg in levels.iter().rev().skip(1) {
        let (inner_reg, inner_id) = (
            Reg(*levels.get(levels.len() - ids.len()).unwrap()),
            ids[ids.len() - 1],
        );
        let p = probe(
            // The inner status as this callback's code: never panic inside cbreg.
            move || invoke(inner_reg.0, inner_id) as u32,
            || {},
        );
        ids.push(register(reg, p, PERSISTENT));
        probes.push(p);
    }
    ids.reverse();
    probes.reverse();
    (ids, probes)
}

/// A thread whose result is awaited with a deadline.
pub struct Running<T>(mpsc::Receiver<T>, String);

pub fn spawn_named<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Running<T> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    Running(rx, what.to_string())
}

impl<T> Running<T> {
    /// The thread's result; fails if it has not returned within `DEADLINE`.
    pub fn join(self) -> T {
        match self.0.recv_timeout(DEADLINE) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "HANG: {}: did not return within {} s",
                    self.1,
                    DEADLINE.as_secs()
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{}: panicked", self.1),
        }
    }
}

/// A status slot a callback or release fills in.
pub struct Seen(std::sync::atomic::AtomicU32);
pub const UNSET: u32 = u32::MAX;
impl Seen {
    pub fn new() -> &'static Seen {
        Box::leak(Box::new(Seen(std::sync::atomic::AtomicU32::new(UNSET))))
    }
    pub fn set(&self, s: Status) {
        self.0.store(s as u32, SeqCst);
    }
    /// The status, or `None` if nothing was recorded.
    pub fn get(&self) -> Option<Status> {
        match self.0.load(SeqCst) {
            UNSET => None,
            code => Some(Status::try_from(code).expect("a status code")),
        }
    }
}

/// A flag set once, read from anywhere.
pub fn flag() -> &'static AtomicBool {
    Box::leak(Box::new(AtomicBool::new(false)))
}

/// Blocks (sleeping) until `f` is set; no deadline: the test's own
/// deadline covers the thread that waits.
pub fn block_until(f: &AtomicBool) {
    while !f.load(SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
}
