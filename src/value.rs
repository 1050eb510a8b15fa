//! The typed value vector every language can build: one call signature for
//! C, C++, Rust and Python callbacks.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;

use crate::{Arg, Status};

/// The kind of a `cbreg_value`; stored in `cbreg_value.tag`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// No value (`None` in Python).
    None = 0,
    /// `as.b`.
    Bool = 1,
    /// `as.i64`.
    I64 = 2,
    /// `as.f64`.
    F64 = 3,
    /// UTF-8 text: `as.str` and `len` bytes (no NUL needed).
    Str = 4,
    /// Bytes: `as.bytes` and `len`.
    Bytes = 5,
    /// `len` 64-bit integers at `as.i64s`.
    I64Array = 6,
    /// `len` doubles at `as.f64s`.
    F64Array = 7,
    /// An opaque pointer `as.ptr`, passed through untouched.
    Ptr = 8,
}

impl Tag {
    /// The tag for a raw `cbreg_value.tag`, if it is one.
    pub fn from_raw(raw: u32) -> Option<Tag> {
        use Tag::*;
        [None, Bool, I64, F64, Str, Bytes, I64Array, F64Array, Ptr]
            .get(raw as usize)
            .copied()
    }
}

/// The payload of a `cbreg_value`; `tag` says which member is set.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Payload {
    pub b: bool,
    pub i64: i64,
    pub f64: f64,
    pub str: *const u8,
    pub bytes: *const u8,
    pub i64s: *const i64,
    pub f64s: *const f64,
    pub ptr: *mut c_void,
}

/// Releases the storage a returned value owns; receives `owner`.
pub type ValueDropFn = Option<unsafe extern "C-unwind" fn(owner: *mut c_void)>;

/// One argument or return value.
///
/// Arguments are borrowed by the callback for the duration of the call. A
/// callback that returns a string, bytes or an array whose memory it must
/// free sets `drop` and `owner`; the caller then calls `cbreg_value_drop`
/// once it is done with the value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Value {
    /// One of `cbreg_tag` (a `uint32_t` so a bad tag can be reported).
    pub tag: u32,
    /// Element count for str (bytes), bytes and arrays; 0 otherwise.
    pub len: usize,
    pub r#as: Payload,
    /// Optional: frees `owner` (see above). NULL for borrowed values.
    pub drop: ValueDropFn,
    /// Passed to `drop`.
    pub owner: *mut c_void,
}

// SAFETY: a Value is plain data; what its pointers may be used for is the
// contract of the call that carries it.
unsafe impl Send for Value {}
// SAFETY: as for `Send`: shared, it is only read.
unsafe impl Sync for Value {}

impl Default for Value {
    fn default() -> Self {
        Value::none()
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: each arm reads the member its tag names.
        unsafe {
            match Tag::from_raw(self.tag) {
                Some(Tag::None) => write!(f, "None"),
                Some(Tag::Bool) => write!(f, "Bool({})", self.bool_byte()),
                Some(Tag::I64) => write!(f, "I64({})", self.r#as.i64),
                Some(Tag::F64) => write!(f, "F64({})", self.r#as.f64),
                Some(Tag::Ptr) => write!(f, "Ptr({:p})", self.r#as.ptr),
                Some(t) => write!(f, "{t:?}(len {})", self.len),
                None => write!(f, "BadTag({})", self.tag),
            }
        }
    }
}

impl Value {
    fn with(tag: Tag, len: usize, payload: Payload) -> Self {
        Value {
            tag: tag as u32,
            len,
            r#as: payload,
            drop: None,
            owner: std::ptr::null_mut(),
        }
    }
    pub fn none() -> Self {
        Self::with(Tag::None, 0, Payload { i64: 0 })
    }
    pub fn bool(v: bool) -> Self {
        Self::with(Tag::Bool, 0, Payload { i64: v as i64 })
    }
    pub fn i64(v: i64) -> Self {
        Self::with(Tag::I64, 0, Payload { i64: v })
    }
    pub fn f64(v: f64) -> Self {
        Self::with(Tag::F64, 0, Payload { f64: v })
    }
    /// Borrows `s`: the value must not outlive it.
    pub fn str(s: &str) -> Self {
        Self::with(Tag::Str, s.len(), Payload { str: s.as_ptr() })
    }
    /// Borrows `b`: the value must not outlive it.
    pub fn bytes(b: &[u8]) -> Self {
        Self::with(Tag::Bytes, b.len(), Payload { bytes: b.as_ptr() })
    }
    /// Borrows `v`: the value must not outlive it.
    pub fn i64_array(v: &[i64]) -> Self {
        Self::with(Tag::I64Array, v.len(), Payload { i64s: v.as_ptr() })
    }
    /// Borrows `v`: the value must not outlive it.
    pub fn f64_array(v: &[f64]) -> Self {
        Self::with(Tag::F64Array, v.len(), Payload { f64s: v.as_ptr() })
    }
    pub fn ptr(p: *mut c_void) -> Self {
        Self::with(Tag::Ptr, 0, Payload { ptr: p })
    }

    pub fn tag(&self) -> Option<Tag> {
        Tag::from_raw(self.tag)
    }
    /// `None` also for a BOOL whose byte is neither 0 nor 1.
    pub fn as_bool(&self) -> Option<bool> {
        match (self.tag(), self.bool_byte()) {
            (Some(Tag::Bool), b @ (0 | 1)) => Some(b == 1),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self.tag() {
            // SAFETY: the tag says `i64` is set.
            Some(Tag::I64) => Some(unsafe { self.r#as.i64 }),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self.tag() {
            // SAFETY: the tag says `f64` is set.
            Some(Tag::F64) => Some(unsafe { self.r#as.f64 }),
            _ => None,
        }
    }
    pub fn as_ptr(&self) -> Option<*mut c_void> {
        match self.tag() {
            // SAFETY: the tag says `ptr` is set.
            Some(Tag::Ptr) => Some(unsafe { self.r#as.ptr }),
            _ => None,
        }
    }

    /// # Safety
    /// The pointer and length must still describe live memory (true for the
    /// arguments a callback receives, during the call). Safe Rust reads
    /// arguments through [`Arg`] instead.
    pub unsafe fn as_bytes(&self) -> Option<&[u8]> {
        // SAFETY: the caller's promise is `Arg`'s invariant for this borrow.
        unsafe { Arg::from_value(self) }.as_bytes()
    }
    /// # Safety
    /// As for [`Value::as_bytes`]; `None` also for invalid UTF-8.
    pub unsafe fn as_str(&self) -> Option<&str> {
        // SAFETY: as in `as_bytes`.
        unsafe { Arg::from_value(self) }.as_str()
    }
    /// # Safety
    /// As for [`Value::as_bytes`].
    pub unsafe fn as_i64s(&self) -> Option<&[i64]> {
        // SAFETY: as in `as_bytes`.
        unsafe { Arg::from_value(self) }.as_i64s()
    }
    /// # Safety
    /// As for [`Value::as_bytes`].
    pub unsafe fn as_f64s(&self) -> Option<&[f64]> {
        // SAFETY: as in `as_bytes`.
        unsafe { Arg::from_value(self) }.as_f64s()
    }

    /// A tag cbreg knows, a non-null pointer wherever `len` is nonzero, and
    /// a BOOL byte of 0 or 1. Branch-free: each condition is a bit.
    #[inline(always)]
    pub fn is_well_formed(&self) -> bool {
        const BORROWS: u32 = 1 << Tag::Str as u32
            | 1 << Tag::Bytes as u32
            | 1 << Tag::I64Array as u32
            | 1 << Tag::F64Array as u32;
        let tag = self.tag;
        let known = tag <= Tag::Ptr as u32;
        let borrows = BORROWS >> (tag & 31) & 1 != 0;
        // SAFETY: every pointer member shares the same storage.
        let has_memory = self.len == 0 || unsafe { !self.r#as.bytes.is_null() };
        let bool_ok = tag != Tag::Bool as u32 || self.bool_byte() <= 1;
        known & (!borrows | has_memory) & bool_ok
    }

    /// The raw byte of `as.b`, whatever C stored there.
    #[inline(always)]
    fn bool_byte(&self) -> u8 {
        // SAFETY: the payload is at least one byte of plain data.
        unsafe { *(&self.r#as as *const Payload as *const u8) }
    }

    /// Frees what a returned value owns (if anything) and resets it to none.
    ///
    /// # Safety
    /// `drop` and `owner` are what the value's producer set (a callback's
    /// return value): `drop(owner)` is then sound to call once. The fields
    /// are public, so safe code could have put any function there.
    pub unsafe fn drop_owned(&mut self) {
        if let Some(drop) = self.drop.take() {
            // SAFETY: the caller's promise above.
            unsafe { drop(self.owner) };
        }
        *self = Value::none();
    }
}

/// The most arguments one invoke may carry; more is `INVALID_ARGUMENT`.
pub const CBREG_MAX_ARGS: usize = 64;

/// The argument vector of an invoke, checked in full: NULL only when
/// empty, at most `CBREG_MAX_ARGS`, every value well formed.
///
/// # Safety
/// `args` is NULL or points to `nargs` values that stay unchanged for `'a`.
#[inline(always)]
pub(crate) unsafe fn checked_args<'a>(
    args: *const Value,
    nargs: usize,
) -> Result<&'a [Value], Status> {
    if nargs == 0 {
        return Ok(&[]);
    }
    if args.is_null() || nargs > CBREG_MAX_ARGS {
        return Err(Status::InvalidArgument);
    }
    // SAFETY: non-null and `nargs` values there (the caller's promise).
    let args = unsafe { args_unchecked(args, nargs) };
    if args.iter().all(Value::is_well_formed) {
        Ok(args)
    } else {
        Err(Status::InvalidArgument)
    }
}

/// The argument vector as a slice, with no check.
///
/// # Safety
/// `nargs` is 0, or `args` is non-null and points to `nargs` values that
/// stay unchanged for `'a`.
#[inline(always)]
pub(crate) unsafe fn args_unchecked<'a>(args: *const Value, nargs: usize) -> &'a [Value] {
    if nargs == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(args, nargs) }
}

/// The invoke path's check for one argument: true when it is certainly
/// acceptable because it is a scalar (none, i64, f64, pointer). False sends
/// the caller to `args_plainly_acceptable`, then to the full check
/// (`checked_args`), which serves BOOL and memory arguments and reports
/// what is wrong.
#[inline(always)]
pub(crate) fn plainly_acceptable(arg: &Value) -> bool {
    const NONE: u32 = Tag::None as u32;
    const I64: u32 = Tag::I64 as u32;
    const F64: u32 = Tag::F64 as u32;
    const PTR: u32 = Tag::Ptr as u32;
    matches!(arg.tag, NONE | I64 | F64 | PTR)
}

/// Tags whose values need no check beyond the tag.
const SCALARS: u64 =
    1 << Tag::None as u32 | 1 << Tag::I64 as u32 | 1 << Tag::F64 as u32 | 1 << Tag::Ptr as u32;

/// The same for any number of arguments: scalars only, at most
/// `CBREG_MAX_ARGS`, from a non-null pointer. A load, a bit set and an OR
/// per argument, one test for the whole vector.
///
/// # Safety
/// `args` points to `nargs` values, or `nargs` is 0.
#[inline(always)]
pub(crate) unsafe fn args_plainly_acceptable(args: *const Value, nargs: usize) -> bool {
    if nargs == 0 {
        return true;
    }
    if args.is_null() || nargs > CBREG_MAX_ARGS {
        return false;
    }
    let (mut seen, mut all) = (0u64, 0u32);
    for i in 0..nargs {
        // SAFETY: the caller's promise; `i < nargs`.
        let tag = unsafe { (*args.add(i)).tag };
        seen |= 1 << (tag & 63);
        all |= tag;
    }
    all < 64 && seen & !SCALARS == 0
}
