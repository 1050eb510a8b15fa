//! `Arg`: an argument as safe Rust sees it.
//!
//! `Value` is the C type, with public fields, so safe code can put any
//! pointer in one and reading its string or array must stay `unsafe`. An
//! `Arg<'a>` is the same bytes with a borrow attached: it can only be made
//! from memory that lives for `'a`, so reading it is safe. The safe Rust API
//! hands callbacks `&[Arg]` and invokes with `&[Arg]`; C callers and the
//! adapters keep building `Value`s.

// Every unsafe step is its own block with the obligation it meets.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;

use crate::value::{Tag, Value};

/// One argument, borrowing what it points to for `'a`.
///
/// An `Arg<'a>` exists only
/// - from its constructors, which borrow strings, bytes and arrays for `'a`;
/// - as an argument a callback receives: invoke refuses a vector unless every
///   value is well formed (a known tag, a non-null pointer wherever `len` is
///   nonzero, a BOOL byte of 0 or 1) before any callback runs, and the
///   caller of `cbreg_invoke` promises that the memory is valid for the call;
/// - from [`Arg::from_values`], whose caller makes the same promises.
///
/// So its memory is always readable for `'a`, and its accessors are safe.
/// It is `Send` and `Sync` as the borrowed slices are; a `Ptr` argument is
/// an opaque pointer that cbreg passes through and never dereferences.
///
/// The borrow is checked: an `Arg` cannot outlive the string it reads.
///
/// ```
/// let name = String::from("A4");
/// let arg = cbreg::Arg::str(&name);
/// assert_eq!(arg.as_str(), Some("A4"));
/// drop(name);
/// ```
///
/// ```compile_fail,E0505
/// let name = String::from("A4");
/// let arg = cbreg::Arg::str(&name);
/// drop(name);
/// assert_eq!(arg.as_str(), Some("A4"));
/// ```
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    value: Value,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> Arg<'a> {
    fn with(value: Value) -> Self {
        Arg {
            value,
            _borrow: PhantomData,
        }
    }
    pub fn none() -> Self {
        Self::with(Value::none())
    }
    pub fn bool(v: bool) -> Self {
        Self::with(Value::bool(v))
    }
    pub fn i64(v: i64) -> Self {
        Self::with(Value::i64(v))
    }
    pub fn f64(v: f64) -> Self {
        Self::with(Value::f64(v))
    }
    pub fn str(s: &'a str) -> Self {
        Self::with(Value::str(s))
    }
    pub fn bytes(b: &'a [u8]) -> Self {
        Self::with(Value::bytes(b))
    }
    pub fn i64_array(v: &'a [i64]) -> Self {
        Self::with(Value::i64_array(v))
    }
    pub fn f64_array(v: &'a [f64]) -> Self {
        Self::with(Value::f64_array(v))
    }
    /// An opaque pointer, passed through untouched.
    pub fn ptr(p: *mut c_void) -> Self {
        Self::with(Value::ptr(p))
    }

    /// Views a vector of values as arguments (what an adapter that receives
    /// a C argument vector does).
    ///
    /// # Safety
    /// Every value is well formed ([`Value::is_well_formed`]), and the
    /// memory each one points to (string, bytes, array) is initialized,
    /// aligned for its element type, and neither freed nor written for `'a`.
    pub unsafe fn from_values(values: &'a [Value]) -> &'a [Arg<'a>] {
        // SAFETY: `Arg` is a transparent `Value`; the caller vouches for the
        // memory, which is `Arg`'s invariant.
        unsafe { &*(values as *const [Value] as *const [Arg<'a>]) }
    }

    /// As [`Arg::from_values`], for one value that only needs reading (what
    /// `Value`'s own unsafe accessors do).
    ///
    /// # Safety
    /// The memory the value points to is valid for `'a`, as for
    /// [`Arg::from_values`]. An unknown tag or a BOOL byte other than 0 or 1
    /// is harmless here: the accessors check both before reading.
    pub(crate) unsafe fn from_value(value: &'a Value) -> &'a Arg<'a> {
        // SAFETY: as in `from_values`.
        unsafe { &*(value as *const Value as *const Arg<'a>) }
    }

    /// The arguments as the C ABI takes them (`cbreg_invoke`).
    pub fn as_values<'s>(args: &'s [Arg<'_>]) -> &'s [Value] {
        // SAFETY: `Arg` is a transparent `Value`; dropping the borrow only
        // makes reading the memory unsafe again.
        unsafe { &*(args as *const [Arg<'_>] as *const [Value]) }
    }

    /// The raw value.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    pub fn tag(&self) -> Tag {
        // An `Arg`'s tag is always known.
        self.value.tag().unwrap_or(Tag::None)
    }
    pub fn as_bool(&self) -> Option<bool> {
        self.value.as_bool()
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.value.as_i64()
    }
    pub fn as_f64(&self) -> Option<f64> {
        self.value.as_f64()
    }
    pub fn as_ptr(&self) -> Option<*mut c_void> {
        self.value.as_ptr()
    }

    /// The bytes of a string or bytes argument.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.tag() {
            // SAFETY: the tag names the member.
            Tag::Str | Tag::Bytes => Some(unsafe { self.memory(self.value.r#as.bytes) }),
            _ => None,
        }
    }
    /// A string argument; `None` also for invalid UTF-8 (a C caller may pass
    /// any bytes as a string: `as_bytes` still reads them).
    pub fn as_str(&self) -> Option<&'a str> {
        match self.tag() {
            // SAFETY: the tag names the member.
            Tag::Str => std::str::from_utf8(unsafe { self.memory(self.value.r#as.str) }).ok(),
            _ => None,
        }
    }
    pub fn as_i64s(&self) -> Option<&'a [i64]> {
        // SAFETY: the tag names the member.
        (self.tag() == Tag::I64Array).then(|| unsafe { self.memory(self.value.r#as.i64s) })
    }
    pub fn as_f64s(&self) -> Option<&'a [f64]> {
        // SAFETY: the tag names the member.
        (self.tag() == Tag::F64Array).then(|| unsafe { self.memory(self.value.r#as.f64s) })
    }

    /// The `len` elements at `p`.
    ///
    /// # Safety
    /// `p` is the pointer member the tag names.
    unsafe fn memory<T>(&self, p: *const T) -> &'a [T] {
        if self.value.len == 0 {
            return &[];
        }
        // SAFETY: `Arg`'s invariant (see the type): non-null since `len` is
        // nonzero, and the memory is valid for `'a`.
        unsafe { std::slice::from_raw_parts(p, self.value.len) }
    }
}

impl Default for Arg<'_> {
    fn default() -> Self {
        Arg::none()
    }
}

impl fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag() {
            Tag::Str => match self.as_str() {
                Some(s) => write!(f, "Str({s:?})"),
                None => write!(
                    f,
                    "Str(not UTF-8 {:?})",
                    self.as_bytes().unwrap_or_default()
                ),
            },
            Tag::Bytes => write!(f, "Bytes({:?})", self.as_bytes().unwrap_or_default()),
            Tag::I64Array => write!(f, "I64Array({:?})", self.as_i64s().unwrap_or_default()),
            Tag::F64Array => write!(f, "F64Array({:?})", self.as_f64s().unwrap_or_default()),
            _ => self.value.fmt(f),
        }
    }
}
